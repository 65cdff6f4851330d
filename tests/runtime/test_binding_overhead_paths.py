"""The low-overhead call path of ``Model.run`` (edgec/runtime/model.py): a dict of exactly-typed
ndarrays takes the fast path (no conversion), everything else the checking path, with the same
errors and results as before; non-contiguous inputs are copied correctly; ``copy=False`` views
alias the arena and the returned dict is the caller's own."""
from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np
import pytest

from edgec.errors import EdgecError, RuntimeFailure, RuntimeInputError
from edgec.runtime import load

from runtime_helpers import B_CONST, SHAPE


def _a(seed: int = 0, dtype=np.float32) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(SHAPE).astype(dtype)


def test_exact_feeds_take_the_fast_path(artifact):
    with load(artifact) as m:
        def no_slow_path(feeds):
            raise AssertionError("a well-formed feed dict went through _check_feeds")
        m._check_feeds = no_slow_path
        a = _a(1)
        np.testing.assert_array_equal(m.run({"a": a})["s"], a + B_CONST)
        np.testing.assert_array_equal(m.run({"a": a}, copy=False)["y"], (a + B_CONST) + a)


@pytest.mark.parametrize("bad,what,got", [
    (lambda: _a().astype(np.float64), "dtype", r"float64\[2, 3, 4\]"),
    (lambda: _a().astype(">f4"), "dtype", r"float32\[2, 3, 4\]"),          # big-endian: not our bytes
    (lambda: _a().reshape(3, 2, 4), "shape", r"float32\[3, 2, 4\]"),
    (lambda: _a()[None], "shape", r"float32\[1, 2, 3, 4\]"),
    (lambda: _a().tolist(), "dtype", r"float64\[2, 3, 4\]"),                 # a list: converted, then checked
    (lambda: 1.5, "dtype", r"float64\[\]"),
])
def test_wrong_inputs_give_clear_errors(artifact, bad, what, got):
    with load(artifact) as m:
        with pytest.raises(RuntimeInputError, match=rf"input 'a': wrong {what}: expected float32\[2, 3, 4\], got {got}"):
            m.run({"a": bad()})
        assert issubclass(RuntimeInputError, EdgecError)
        np.testing.assert_array_equal(m.run({"a": _a(2)})["s"], _a(2) + B_CONST)   # still usable


def test_wrong_names_with_the_right_count(artifact):
    with load(artifact) as m:
        with pytest.raises(RuntimeInputError, match=r"missing input\(s\) \['a'\]; unknown input\(s\) \['b'\]"):
            m.run({"b": _a()})
        with pytest.raises(RuntimeInputError, match="dict"):
            m.run(_a())


@pytest.mark.parametrize("make", [
    lambda a: np.asfortranarray(a),
    lambda a: np.stack([a, a + 1], axis=-1)[..., 0],
    lambda a: np.ascontiguousarray(a[::-1])[::-1],
    lambda a: np.ascontiguousarray(a.transpose(2, 1, 0)).transpose(2, 1, 0),
])
def test_non_contiguous_inputs(artifact, make):
    with load(artifact) as m:
        a = _a(3)
        x = make(a)
        np.testing.assert_array_equal(x, a)
        assert not x.flags.c_contiguous
        np.testing.assert_array_equal(m.run({"a": x})["y"], (a + B_CONST) + a)


def test_other_containers_and_arrays(artifact):
    """Mappings other than dict, ndarray subclasses and read-only arrays go through the checking
    path or the fast one and give the same result."""
    with load(artifact) as m:
        a = _a(4)
        expect = a + B_CONST
        np.testing.assert_array_equal(m.run(OrderedDict(a=a))["s"], expect)
        ro = a.copy()
        ro.flags.writeable = False
        np.testing.assert_array_equal(m.run({"a": ro})["s"], expect)

        class Sub(np.ndarray):
            pass
        np.testing.assert_array_equal(m.run({"a": a.view(Sub)})["s"], expect)
        np.testing.assert_array_equal(m.run({"a": np.ma.masked_array(a)})["s"], expect)


def test_input_is_copied_not_aliased(artifact):
    with load(artifact) as m:
        a = _a(5)
        view = m.run({"a": a}, copy=False)["s"]
        a += 100.0                                    # the caller's array changes after the run
        np.testing.assert_array_equal(view, _a(5) + B_CONST)


def test_copy_false_aliasing_semantics(artifact):
    with load(artifact) as m:
        out1 = m.run({"a": _a(6)}, copy=False)
        out2 = m.run({"a": _a(7)}, copy=False)
        assert out1 is not out2                       # each call returns its own dict
        out1.pop("s")
        assert set(m.run({"a": _a(7)}, copy=False)) == {"y", "s"}
        # the arrays are views of the arena: both calls' views show the latest run
        assert np.shares_memory(out1["y"], out2["y"])
        np.testing.assert_array_equal(out1["y"], (_a(7) + B_CONST) + _a(7))
        copied = m.run({"a": _a(8)})
        assert not np.shares_memory(copied["y"], out2["y"]) and copied["y"].flags.owndata
        m.run({"a": _a(9)})
        np.testing.assert_array_equal(copied["y"], (_a(8) + B_CONST) + _a(8))
        np.testing.assert_array_equal(out2["y"], (_a(9) + B_CONST) + _a(9))


def test_closed_model_refuses_fast_path_feeds(artifact):
    m = load(artifact)
    m.run({"a": _a()})
    m.close()
    with pytest.raises(RuntimeFailure, match="closed"):
        m.run({"a": _a()})
    with pytest.raises(RuntimeFailure, match="closed"):
        m.run({"a": _a()}, copy=False)


def test_threads_share_a_model(artifact):
    with load(artifact) as m:
        errors = []

        def work(seed):
            try:
                for i in range(200):
                    a = _a(seed * 1000 + i % 5)
                    got = m.run({"a": a})
                    if not np.array_equal(got["y"], (a + B_CONST) + a):
                        errors.append(seed)
                        return
            except Exception as e:           # reported below
                errors.append(repr(e))
        ts = [threading.Thread(target=work, args=(s,)) for s in range(3)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        assert errors == []
