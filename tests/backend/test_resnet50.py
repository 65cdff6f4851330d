"""ResNet-50-sized kernels (slow): the whole graph's kernels compile well under a minute without
the cache, and every distinct conv / pool / dense kernel of the graph matches the reference."""
from __future__ import annotations

import subprocess
import time

import numpy as np
import pytest

from edgec.backend import build_kernels
from edgec.ir import ops as irops

from ._harness import host_target, tvm
from .resnet50_graph import resnet50_graph

pytestmark = [pytest.mark.tvm, pytest.mark.slow]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    g = resnet50_graph()
    wd = tmp_path_factory.mktemp("resnet50")
    t0 = time.time()
    lib = build_kernels(g, host_target(), wd, cache=None, jobs=2)
    seconds = time.time() - t0
    so = wd / "tvm.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(so), *map(str, lib.objects), "-lm"], check=True)
    return g, lib, seconds, tvm.runtime.load_module(str(so))


def test_resnet50_kernels_compile_quickly(built):
    g, lib, seconds, _ = built
    assert lib.compiled == len(lib.kernels) and lib.cache_hits == 0
    assert seconds < 30, f"{len(lib.kernels)} kernels took {seconds:.1f} s"
    assert lib.library is not None and lib.library.stat().st_size > 0


def test_resnet50_heavy_kernels_match_reference(built):
    g, lib, _, mod = built
    rng = np.random.default_rng(0)
    done = set()
    for node, call in zip(g.nodes, lib.calls):
        if node.op not in ("conv", "dense", "max_pool", "global_avg_pool") or call.kernel in done:
            continue
        done.add(call.kernel)
        ins = [rng.standard_normal(g.values[n].shape).astype(np.float32) for n in node.inputs if n]
        want = irops.get(node.op).reference(*ins, **node.attrs)[0]
        out = tvm.runtime.tensor(np.zeros(want.shape, np.float32))
        mod[call.kernel](*[tvm.runtime.tensor(a) for a in ins], out)
        k = int(np.prod(ins[1].shape[1:])) if node.op in ("conv", "dense") else 1
        tol = 3e-6 * np.sqrt(k) * max(1.0, float(np.abs(want).max()) / np.sqrt(k))
        np.testing.assert_allclose(out.numpy(), want, rtol=1e-4, atol=tol, err_msg=f"{node.name} {node.op}")
    assert len(done) >= 25
