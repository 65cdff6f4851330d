"""The C runtime's own tests (runtime_c/tests), cross-built for armv7 and aarch64 and run under
qemu: the blob loader, sessions, fuzzing, the no-heap core, the generated kernel glue, the
thread pool and the hosted layer, on a 32-bit ABI (DLTensor 40 bytes) and on AArch64."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from edgec.artifact.glue import render_kernel_glue
from edgec.targets import load_target
from tests.targets_arm.arm_helpers import ARM_TARGETS, REPO, need_tools

pytestmark = pytest.mark.compiled

RT = REPO / "runtime_c"
CORE = [RT / "src" / f for f in ("crc32.c", "model.c", "session.c", "status.c", "workspace.c")]
HOSTED = [RT / "src" / "hosted.c", RT / "src" / "hosted_pool.c"]
FLAGS = ["-O1", "-std=c99", "-Wall", "-Wextra", "-Wno-unused-function", "-Werror=incompatible-pointer-types",
         f"-I{RT / 'include'}", f"-I{RT / 'src'}", f"-I{RT / 'tests'}"]


def _cc(target, args: list) -> None:
    cmd = [target.cc, *[f for f in target.cflags if f != "-fPIC"], *FLAGS, *map(str, args)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, f"{' '.join(cmd[:2])} ... failed:\n{res.stderr[-3000:]}"


def _run(target, exe: Path) -> str:
    res = subprocess.run([*target.emulator, str(exe)], capture_output=True, text=True, timeout=300)
    out = res.stdout + res.stderr
    assert res.returncode == 0, f"{exe.name} under {target.emulator[0]} exited {res.returncode}:\n{out[-3000:]}"
    assert " 0 failures" in out, out[-3000:]
    return out


@pytest.mark.parametrize("target_name", ARM_TARGETS)
def test_runtime_c_tests_pass_on_target(target_name, tmp_path):
    need_tools(target_name)
    t = load_target(target_name)
    glue = tmp_path / "kernel_glue_test.c"
    glue.write_text(render_kernel_glue(["add_f32", "mul_f32", "par_ws", "fail_k"]))
    inc = f"-I{tmp_path}"
    exes = []
    for name in ("test_model_load", "test_session", "test_fuzz"):
        _cc(t, [RT / "tests" / f"{name}.c", *CORE, "-o", tmp_path / name])
        exes.append(name)
    _cc(t, [RT / "tests" / "test_no_malloc.c", *CORE, "-o", tmp_path / "test_no_malloc",
            "-Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=free"])
    _cc(t, [inc, RT / "tests" / "test_glue.c", RT / "tests" / "tvm_style_kernels.c", *CORE, "-o",
            tmp_path / "test_glue", "-lpthread"])
    _cc(t, [RT / "tests" / "test_pool.c", *CORE, *HOSTED, "-o", tmp_path / "test_pool", "-lpthread", "-ldl"])
    kso, noso = tmp_path / "libtest_kernels.so", tmp_path / "libtest_nokernels.so"
    _cc(t, ["-fPIC", "-shared", inc, RT / "tests" / "kernel_glue_shared.c", RT / "tests" / "tvm_style_kernels.c",
            "-o", kso, "-lpthread"])
    _cc(t, ["-fPIC", "-shared", RT / "tests" / "no_kernels.c", "-o", noso])
    _cc(t, [f'-DTEST_KERNELS_SO="{kso}"', f'-DTEST_NOKERNELS_SO="{noso}"', RT / "tests" / "test_hosted.c", *CORE,
            *HOSTED, "-o", tmp_path / "test_hosted", "-lpthread", "-ldl"])
    exes += ["test_no_malloc", "test_glue", "test_pool", "test_hosted"]
    for name in exes:
        _run(t, tmp_path / name)
