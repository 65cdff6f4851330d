"""A cross compiler without its target C library (gcc-aarch64-linux-gnu without
libc6-dev-arm64-cross, arm-none-eabi-gcc without newlib) fails with the packages to install,
not only the compiler's "stdio.h: No such file or directory"."""
from __future__ import annotations

import shutil

import pytest

from edgec.artifact.runner import build_runner, sysroot_hint
from edgec.errors import CompileError
from edgec.targets import TARGETS_DIR, load_target


def _board_without_sysroot(tmp_path, name: str):
    text = (TARGETS_DIR / f"{name}.toml").read_text()
    text = text.replace(f'name = "{name}"', f'name = "{name}-nosysroot"').replace(
        'cflags = ["-O2",', 'cflags = ["-O2", "-nostdinc",', 1)   # as if the libc headers were not installed
    board = tmp_path / "board.toml"
    board.write_text(text)
    return load_target(board)


def test_hint_only_for_missing_library_errors():
    t = load_target("armv7")
    assert "libc6-dev-armhf-cross" in sysroot_hint(t, "x.c:1:10: fatal error: stdio.h: No such file or directory")
    assert "libc6-dev-armhf-cross" in sysroot_hint(t, "ld: cannot find -lc: No such file or directory")
    assert sysroot_hint(t, "x.c:3:1: error: expected ';' before '}' token") == ""


def test_runner_without_target_libc_names_the_packages(tmp_path):
    t = _board_without_sysroot(tmp_path, "aarch64")
    if shutil.which(t.cc) is None:
        pytest.skip(f"{t.cc} not installed")
    with pytest.raises(CompileError, match=r"(?s)No such file.*install the target's libc development files "
                                           r"\(Debian: apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross"):
        build_runner(t, tmp_path / "bin" / "run_model")
    assert not (tmp_path / "bin" / "run_model").exists()


def test_firmware_without_newlib_names_the_packages(tmp_path):
    from edgec.artifact.firmware import _run
    t = _board_without_sysroot(tmp_path, "cortex-m7")
    if shutil.which(t.cc) is None:
        pytest.skip(f"{t.cc} not installed")
    src = tmp_path / "x.c"
    src.write_text("#include <stdio.h>\nint main(void) { puts(\"hi\"); return 0; }\n")
    with pytest.raises(CompileError, match=r"(?s)stdio.h.*libnewlib-arm-none-eabi"):
        _run([t.cc, *t.cflags, "-c", str(src), "-o", str(tmp_path / "x.o")], "compiling x.c", target=t)
