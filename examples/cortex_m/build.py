#!/usr/bin/env python3
"""Build the example firmware for a bare-metal edgec artifact, and optionally run it in qemu.

    edgec compile model.onnx --target cortex-m7 --input-shape features=1,1024 -o out/
    python examples/cortex_m/build.py out/ --input features=x.npy -o firmware.elf --run

Compiles startup.c, main.c, the artifact's model_blob.c and a model_input.c generated from the
.npy inputs (random ones when --input is not given) with the target's toolchain, links them
with the artifact's libmodel.a and libedgec_runtime.a using mps2.ld, and with --run starts
``qemu-system-arm -M <board> -nographic -semihosting -kernel firmware.elf`` (for generic-c: builds main.c
with the host compiler and runs it here) and prints the
outputs it reports. Everything is in edgec.artifact.firmware; this is its command line.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from edgec.artifact.firmware import Firmware  # noqa: E402
from edgec.cli import load_inputs, random_inputs  # noqa: E402
from edgec.errors import EdgecError  # noqa: E402
from edgec.runtime.emulated import _target_of, read_manifest  # noqa: E402
from edgec.runtime.model import TensorInfo  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("artifact", help="artifact folder of a bare-metal target (edgec compile --target cortex-m7)")
    ap.add_argument("--input", action="append", metavar="NAME=FILE.npy", help="input tensor (repeatable)")
    ap.add_argument("-o", "--output", default="firmware.elf", help="firmware ELF to write (default firmware.elf)")
    ap.add_argument("--run", action="store_true", help="run the firmware under the target's emulator")
    ap.add_argument("--seed", type=int, default=0, help="seed of random inputs when --input is not given")
    a = ap.parse_args(argv)
    try:
        art = Path(a.artifact)
        manifest = read_manifest(art)
        if manifest is None or manifest.get("hosted") is not False:
            raise EdgecError(f"{art} is not a bare-metal edgec artifact (compile with --target cortex-m7, cortex-m4 or "
                             f"generic-c)")
        target = _target_of(manifest)
        if target is None:
            raise EdgecError(f"unknown target {manifest.get('target')!r}")
        infos = [TensorInfo(t["name"], t["dtype"], tuple(t["shape"])) for t in manifest["inputs"]]
        feeds = random_inputs(infos, a.seed)
        feeds.update(load_inputs(a.input or [], infos))
        arrays = [np.asarray(feeds[i.name], dtype=i.dtype).reshape(i.shape) for i in infos]
        with tempfile.TemporaryDirectory(prefix="edgec-fw-") as tmp:
            f = Firmware(art, target, Path(tmp))
            elf = f.build(arrays, Path(a.output).resolve())
            print(f"wrote {elf}")
            if a.run:
                parsed, stdout = f.run(elf)
                sys.stdout.write(stdout)
                return 0 if parsed["status"] == "EDGEC_OK" else 1
        return 0
    except EdgecError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
