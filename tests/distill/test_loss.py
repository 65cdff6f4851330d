"""The distillation loss against the formula computed by hand in numpy."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the distill extra (torch==2.13.0) is not installed")

from edgec.distill.train import distillation_loss  # noqa: E402


def _log_softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def _reference(s, t, y, T, alpha):
    ps, pt = _log_softmax(s / T), _log_softmax(t / T)
    kl = (np.exp(pt) * (pt - ps)).sum(axis=1).mean()
    ce = -_log_softmax(s)[np.arange(len(y)), y].mean()
    return alpha * T * T * kl + (1 - alpha) * ce


@pytest.mark.parametrize("T,alpha", [(4.0, 0.7), (1.0, 0.5), (2.5, 1.0), (3.0, 0.0)])
def test_loss_equals_formula(T, alpha):
    rng = np.random.default_rng(0)
    s, t = rng.normal(0, 3, (6, 5)), rng.normal(0, 3, (6, 5))
    y = rng.integers(0, 5, 6)
    got = float(distillation_loss(torch.tensor(s), torch.tensor(t), torch.tensor(y), T, alpha))
    assert got == pytest.approx(_reference(s, t, y, T, alpha), rel=1e-10, abs=1e-12)


def test_loss_known_numbers():
    # two classes, one sample: s = [0, 0], t = [2 ln 3 * T/2 ...] chosen so softmax(t/T) = [0.75, 0.25]
    T, alpha = 2.0, 0.5
    s = torch.tensor([[0.0, 0.0]], dtype=torch.float64)
    t = torch.tensor([[T * np.log(3.0), 0.0]], dtype=torch.float64)
    y = torch.tensor([1])
    kl = 0.75 * np.log(0.75 / 0.5) + 0.25 * np.log(0.25 / 0.5)    # 0.1308120360
    ce = np.log(2.0)
    want = alpha * T * T * kl + (1 - alpha) * ce
    assert float(distillation_loss(s, t, y, T, alpha)) == pytest.approx(want, rel=1e-12)
    assert want == pytest.approx(0.5 * 4 * 0.1308120360 + 0.5 * 0.6931471806, rel=1e-9)


def test_kl_term_vanishes_when_student_equals_teacher():
    z = torch.tensor(np.random.default_rng(1).normal(size=(4, 3)))
    assert float(distillation_loss(z, z, torch.tensor([0, 1, 2, 0]), 4.0, 1.0)) == pytest.approx(0.0, abs=1e-12)


def test_gradient_scale_is_independent_of_temperature_order():
    # the T^2 factor keeps the soft-target gradient magnitude comparable across temperatures
    rng = np.random.default_rng(2)
    s0, t = rng.normal(size=(32, 6)), rng.normal(size=(32, 6)) * 2
    norms = []
    for T in (2.0, 8.0):
        s = torch.tensor(s0, requires_grad=True)
        distillation_loss(s, torch.tensor(t), torch.zeros(32, dtype=torch.long), T, 1.0).backward()
        norms.append(float(s.grad.norm()))
    assert 0.2 < norms[1] / norms[0] < 5.0
