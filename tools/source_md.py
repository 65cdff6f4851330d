"""Keep one section per file in a SOURCE.md shared by several tools.

    update_section(Path("tests/data/models/SOURCE.md"), "model.onnx", markdown)

A section is delimited by ``<!-- begin NAME -->`` / ``<!-- end NAME -->``; updating one
replaces it in place and leaves the others alone. Sections are kept sorted by NAME.
"""
from __future__ import annotations

import re
from pathlib import Path

TITLE = "# Models used by edgec's tests and benchmarks\n\nOne section per file, written by the tool named in it.\n"


def update_section(path: Path, name: str, body: str) -> None:
    text = path.read_text() if path.exists() else TITLE
    pat = re.compile(r"<!-- begin (.+?) -->\n.*?<!-- end \1 -->\n", re.S)
    sections = {m.group(1): m.group(0) for m in pat.finditer(text)}
    head = pat.sub("", text).rstrip() + "\n"
    sections[name] = f"<!-- begin {name} -->\n{body.rstrip()}\n<!-- end {name} -->\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".md.part")
    tmp.write_text(head + "".join("\n" + sections[k] for k in sorted(sections)))
    tmp.replace(path)
