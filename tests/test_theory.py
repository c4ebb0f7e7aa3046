"""The two-layer linear proposition: J-SAM = SGD + loss-weighted norm penalties (exact)."""
import pytest
import torch

from samlib import methods as M
from samlib import theory as T
from samlib.models import TwoLayerLinear


@pytest.mark.parametrize("seed", range(60))
def test_twolayer_jsam_closed_form(f64, seed):
    """Includes large margins (|f| ~ 30), where a naive σ(z) − y loses all relative precision."""
    g = torch.Generator().manual_seed(seed)
    d, h = int(torch.randint(2, 30, (1,), generator=g)), int(torch.randint(1, 30, (1,), generator=g))
    rho = float(torch.rand(1, generator=g)) * 2
    model = TwoLayerLinear(d, h)
    with torch.no_grad():
        model.hidden.weight.copy_(torch.randn(h, d, generator=g))
        model.head.weight.copy_(torch.randn(1, h, generator=g))
    x, y = torch.randn(1, d, generator=g), torch.randint(0, 2, (1,), generator=g)
    W, v, t = model.hidden.weight.detach(), model.head.weight.detach()[0], 2.0 * y[0] - 1
    out = M.gradient(model, x, y, "jsam", rho)
    dW, dv = T.twolayer_jsam_direction(W, v, x[0], t, rho)
    for got, want in ((out["hidden.weight"], dW), (out["head.weight"][0], dv)):
        assert ((got - want).norm() / want.norm()) <= 1e-6
    # The 1-SAM perturbed logit, read off the rule's own perturbation.
    gsgd = M.gradient(model, x, y, "sgd")
    n = torch.sqrt(sum(v_.pow(2).sum() for v_ in gsgd.values()))
    Wp = W + rho * gsgd["hidden.weight"] / n
    vp = v + rho * gsgd["head.weight"][0] / n
    want = T.twolayer_1sam_logit(W, v, x[0], t, rho)
    assert abs(float(vp @ (Wp @ x[0]) - want)) <= 1e-6 * max(1.0, abs(float(want)))


def test_linear_weight_ratio_increases_with_margin():
    m = torch.linspace(-4, 4, 81)
    for rho in (0.1, 0.5, 1.0):
        ratio = T.linear_1sam_weight(m, rho, torch.tensor(1.0)) / torch.sigmoid(-m)
        assert (ratio.diff() > 0).all()
        # Limits: → 1 as m → −∞ and → e^{ρ‖x‖} as m → +∞.
        big = torch.tensor([-40.0, 40.0])
        r = T.linear_1sam_weight(big, rho, torch.tensor(1.0)) / torch.sigmoid(-big)
        torch.testing.assert_close(r, torch.tensor([1.0, float(torch.exp(torch.tensor(rho)))]), rtol=1e-4, atol=1e-4)


def test_large_margin_keeps_relative_precision(f64):
    """At margin 35, σ(−m) ≈ 6e-16: a naive σ(z) − y would return 0 or noise."""
    from samlib.models import LinearModel

    model = LinearModel(2)
    with torch.no_grad():
        model.head.weight.copy_(torch.tensor([[35.0, 0.0]]))
    x, y = torch.tensor([[1.0, 0.5]]), torch.tensor([1])
    w, t = model.head.weight.detach()[0], torch.tensor([1.0])
    for method, want in (("sgd", T.linear_sgd_direction(w, x, t)), ("1sam", T.linear_1sam_direction(w, x, t, 0.3))):
        got = M.gradient(model, x, y, method, 0.3)["head.weight"][0]
        assert ((got - want).norm() / want.norm()) <= 1e-10, method
