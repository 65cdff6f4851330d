"""The CMake toolchain files for users (cmake/toolchains/): configure and build the C runtime
with them into a temporary folder. aarch64: the runtime and run_model built by CMake run an
edgec aarch64 artifact under qemu and give the outputs onnxruntime gives. Cortex-M7: the core
library is thumb code with the hard-float ABI. A missing cross compiler stops the configure
step with the packages to install."""
from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

from tests.helpers import assert_close, run_ort
from tests.targets_arm.arm_helpers import ELF_MACHINE, REPO, SMS, elf_machine, need_tools, seeded

pytestmark = pytest.mark.compiled

TOOLCHAINS = REPO / "cmake" / "toolchains"


def _cmake(*args, cwd=None):
    return subprocess.run(["cmake", *map(str, args)], capture_output=True, text=True, cwd=cwd)


def _configure_build(build, toolchain, *defs):
    if shutil.which("cmake") is None:
        pytest.skip("cmake not installed")
    res = _cmake("-S", REPO, "-B", build, f"-DCMAKE_TOOLCHAIN_FILE={TOOLCHAINS / toolchain}", *defs)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    res = _cmake("--build", build, "-j1")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]


def test_toolchain_files_exist():
    names = sorted(p.name for p in TOOLCHAINS.glob("*.cmake"))
    assert names == ["aarch64-linux-gnu.cmake", "arm-linux-gnueabihf.cmake", "arm-none-eabi-cortex-m4.cmake",
                     "arm-none-eabi-cortex-m7.cmake"]
    assert "-mfpu=${EDGEC_ARM_FPU}" in (TOOLCHAINS / "arm-none-eabi-cortex-m4.cmake").read_text()


def test_aarch64_runtime_built_with_cmake_runs_an_artifact(arm_artifact, tmp_path):
    need_tools("aarch64")
    build = tmp_path / "build"
    _configure_build(build, "aarch64-linux-gnu.cmake", "-DEDGEC_BUILD_TESTS=OFF")
    exe = build / "run_model"
    assert elf_machine(exe) == ELF_MACHINE["aarch64"]
    members = subprocess.run(["ar", "t", str(build / "libedgec_runtime.a")], capture_output=True, text=True).stdout
    assert "session.c.o" in members
    cache = (build / "CMakeCache.txt").read_text()
    assert "aarch64-linux-gnu-gcc" in cache

    art = arm_artifact(SMS, "aarch64", {"features": (1, 1024)})
    x = seeded((1, 1024), 11, 0.0, 0.2)
    np.save(tmp_path / "x.npy", x)
    res = subprocess.run(["qemu-aarch64", "-L", "/usr/aarch64-linux-gnu", str(exe), str(art), str(tmp_path / "x.npy"),
                          "-o", str(tmp_path / "res")], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    assert_close(np.load(tmp_path / "res" / "probs.npy"), run_ort(SMS, {"features": x})["probs"], rel=1e-4)


def test_cortex_m7_core_built_with_cmake(tmp_path):
    if shutil.which("arm-none-eabi-gcc") is None:
        pytest.skip("arm-none-eabi-gcc not installed (apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi)")
    build = tmp_path / "build"
    _configure_build(build, "arm-none-eabi-cortex-m7.cmake", "-DEDGEC_BUILD_HOSTED=OFF", "-DEDGEC_BUILD_EXAMPLES=OFF",
                     "-DEDGEC_BUILD_TESTS=OFF")
    lib = build / "libedgec_runtime.a"
    attrs = subprocess.run(["arm-none-eabi-readelf", "-A", str(lib)], capture_output=True, text=True).stdout
    assert "v7E-M" in attrs and "VFP registers" in attrs and "FPv5/FP-D16" in attrs and "Microcontroller" in attrs
    size = subprocess.run(["arm-none-eabi-size", "-t", str(lib)], capture_output=True, text=True).stdout
    text = int(size.strip().splitlines()[-1].split()[0])
    assert 2_000 < text < 64_000


def test_missing_cross_compiler_names_the_packages(tmp_path):
    if shutil.which("cmake") is None:
        pytest.skip("cmake not installed")
    res = _cmake("-S", REPO, "-B", tmp_path / "b", f"-DCMAKE_TOOLCHAIN_FILE={TOOLCHAINS / 'arm-linux-gnueabihf.cmake'}",
                 "-DEDGEC_CROSS_PREFIX=armv99-nowhere-", "-DEDGEC_BUILD_TESTS=OFF")
    assert res.returncode != 0
    assert "armv99-nowhere-gcc not found" in res.stderr and "gcc-arm-linux-gnueabihf" in res.stderr
