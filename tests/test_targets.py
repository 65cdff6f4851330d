"""Target files: loading, host selection, and the errors a user sees."""
from pathlib import Path

import pytest

from edgec.errors import TargetError
from edgec.targets import TARGETS_DIR, available_targets, host_cpu_flags, host_target_name, load_target


def test_every_shipped_target_loads_and_builds_a_tvm_target():
    names = available_targets()
    assert {"x86_64", "x86_64-avx2"} <= set(names)
    for name in names:
        t = load_target(name)
        # every target is an LLVM one with a triple, except generic-c (TVM's C source backend)
        assert t.name == name and (t.tvm["kind"] == "llvm" and t.tvm["mtriple"] or
                                   t.tvm["kind"] == "c" and name == "generic-c")
        assert str(t.tvm_target())  # TVM accepts the dict


def test_host_matches_this_cpu():
    flags = host_cpu_flags()
    name = host_target_name()
    assert name == ("x86_64" if {"avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512vbmi"} <= flags
                    else "x86_64-avx2")
    assert load_target("host").host_can_run()


def test_unknown_target_lists_the_available_ones():
    with pytest.raises(TargetError, match="unknown target 'cortex-m99'.*x86_64"):
        load_target("cortex-m99")


def test_target_from_a_file_and_missing_compiler_says_what_to_install(tmp_path):
    text = (TARGETS_DIR / "x86_64-avx2.toml").read_text()
    board = tmp_path / "myboard.toml"
    board.write_text(text.replace('name = "x86_64-avx2"', 'name = "myboard"')
                     .replace('cc = "gcc"', 'cc = "no-such-gcc-xyz"\ninstall_hint = "apt-get install gcc-xyz"'))
    t = load_target(board)
    assert t.name == "myboard" and t.vector_bits == 256
    with pytest.raises(TargetError, match="no-such-gcc-xyz.*apt-get install gcc-xyz"):
        t.check_toolchain()


def test_broken_target_files_are_clear_errors(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("name = [")
    with pytest.raises(TargetError, match="invalid TOML"):
        load_target(bad)
    nodict = tmp_path / "nodict.toml"
    nodict.write_text('name = "x"\n')
    with pytest.raises(TargetError, match="missing field 'tvm'"):
        load_target(nodict)


def test_compile_with_missing_compiler_writes_nothing(tmp_path):
    import edgec
    board = tmp_path / "b.toml"
    board.write_text((TARGETS_DIR / "x86_64-avx2.toml").read_text().replace('cc = "gcc"', 'cc = "no-such-cc"'))
    out = tmp_path / "out"
    model = Path(__file__).parent / "data" / "models" / "sms_spam_mlp.onnx"
    with pytest.raises(TargetError, match="no-such-cc"):
        edgec.compile(model, target=str(board), input_shapes={"features": (1, 1024)}, output_dir=out)
    assert not out.exists()
