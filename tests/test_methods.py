"""The update rules (samlib.methods) against closed forms, each other and a plain loop."""
import pytest
import torch
import torch.nn as nn

from samlib import methods as M
from samlib import theory as T
from samlib.models import MLP, LinearModel, ResNet18, SmallCNN


def _close(a, b, tol=1e-10):
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=tol, atol=tol, msg=f"parameter {k}")


def _mlp_batch(B=9, C=5):
    torch.manual_seed(0)
    return MLP(20, (16, 12), C), torch.randn(B, 20), torch.randint(0, C, (B,))


def _cnn_batch(norm="none", B=7, C=5):
    torch.manual_seed(1)
    return SmallCNN((4, 8, 8), C, norm=norm), torch.randn(B, 3, 12, 12), torch.randint(0, C, (B,))


@pytest.mark.parametrize("method", ["sam", "1sam", "lsam", "jsam"])
@pytest.mark.parametrize("impl", ["fast", "func", "loop"])
def test_rho_zero_equals_sgd(f64, method, impl):
    model, x, y = _mlp_batch()
    sgd = M.gradient(model, x, y, "sgd")
    _close(M.gradient(model, x, y, method, 0.0, impl=impl), sgd)


def test_sgd_is_mean_of_per_example_gradients(f64):
    model, x, y = _mlp_batch()
    per = [M.gradient(model, x[i:i + 1], y[i:i + 1], "sgd") for i in range(len(x))]
    _close(M.gradient(model, x, y, "sgd"), {k: sum(p[k] for p in per) / len(per) for k in per[0]})


@pytest.mark.parametrize("impl", ["fast", "func", "loop"])
def test_linear_closed_forms(f64, impl):
    """1-SAM on wᵀx weights example i by σ(−m_i + ρ‖x_i‖); L-SAM = 1-SAM; J-SAM = SGD."""
    torch.manual_seed(2)
    d, B, rho = 6, 11, 0.7
    model = LinearModel(d)
    x, y = torch.randn(B, d), torch.randint(0, 2, (B,))
    w, t = model.head.weight.detach()[0], 2.0 * y - 1
    one = M.gradient(model, x, y, "1sam", rho, impl=impl)["head.weight"][0]
    torch.testing.assert_close(one, T.linear_1sam_direction(w, x, t, rho), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(M.gradient(model, x, y, "lsam", rho, impl=impl)["head.weight"][0], one)
    torch.testing.assert_close(M.gradient(model, x, y, "jsam", rho, impl=impl)["head.weight"][0],
                               T.linear_sgd_direction(w, x, t))


def test_sam_closed_form_linear(f64):
    """SAM: the gradient at w + ρ g/‖g‖, g the batch gradient."""
    torch.manual_seed(3)
    model = LinearModel(5)
    x, y = torch.randn(8, 5), torch.randint(0, 2, (8,))
    w, t, rho = model.head.weight.detach()[0], 2.0 * y - 1, 0.3
    g = T.linear_sgd_direction(w, x, t)
    expected = T.linear_sgd_direction(w + rho * g / g.norm(), x, t)
    torch.testing.assert_close(M.gradient(model, x, y, "sam", rho)["head.weight"][0], expected)


@pytest.mark.parametrize("method", ["1sam", "lsam", "jsam"])
@pytest.mark.parametrize("case", ["mlp", "cnn", "cnn-gn", "resnet-gn"])
def test_vectorised_equals_loop(f64, method, case):
    if case == "mlp":
        model, x, y = _mlp_batch()
    elif case == "resnet-gn":
        torch.manual_seed(4)
        model, x, y = ResNet18(4, norm="gn", width=4), torch.randn(3, 3, 8, 8), torch.randint(0, 4, (3,))
    else:
        model, x, y = _cnn_batch("gn" if case == "cnn-gn" else "none")
    loop = M.gradient(model, x, y, method, 0.4, impl="loop")
    _close(M.gradient(model, x, y, method, 0.4, impl="fast"), loop)
    _close(M.gradient(model, x, y, method, 0.4, impl="func", chunk_size=4), loop)


def test_perturbation_actually_changes_direction(f64):
    """Guards the tests above against a rule that silently ignores rho."""
    model, x, y = _mlp_batch()
    sgd = M.gradient(model, x, y, "sgd")
    for m in ("sam", "1sam", "lsam", "jsam"):
        d = M.gradient(model, x, y, m, 0.5)
        assert max((d[k] - sgd[k]).abs().max() for k in d) > 1e-4, m


def test_fast_path_matches_on_linear_with_sequence_inputs(f64):
    """A Linear layer applied to (B, T, d) inputs uses the dense per-example form."""
    class Seq(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 6)
            self.head = nn.Linear(6, 3)

        def features(self, x):
            return torch.tanh(self.lin(x)).mean(1)

        def forward(self, x):
            return self.head(self.features(x))

    torch.manual_seed(5)
    model, x, y = Seq(), torch.randn(5, 7, 4), torch.randint(0, 3, (5,))
    for m in ("1sam", "lsam", "jsam"):
        _close(M.gradient(model, x, y, m, 0.3, impl="fast"), M.gradient(model, x, y, m, 0.3, impl="loop"))


def test_unsupported_layer_falls_back_to_reference(f64):
    class Scaled(nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = nn.Parameter(torch.tensor(1.5))  # not in a Linear/Conv/GroupNorm
            self.head = nn.Linear(4, 3)

        def forward(self, x):
            return self.head(x * self.scale)

    torch.manual_seed(6)
    model, x, y = Scaled(), torch.randn(6, 4), torch.randint(0, 3, (6,))
    assert not M._fast_supported(model)
    _close(M.gradient(model, x, y, "1sam", 0.3), M.gradient(model, x, y, "1sam", 0.3, impl="loop"))
    with pytest.raises(ValueError, match="impl='func'"):
        M.gradient(model, x, y, "1sam", 0.3, impl="fast")


@pytest.mark.parametrize("method", M.METHODS)
def test_model_state_untouched(method):
    torch.manual_seed(7)
    model = ResNet18(3, norm="bn", width=4) if method in ("sgd", "sam", "regsgd") else SmallCNN((4, 4, 4), 3)
    model.train()
    x, y = torch.randn(4, 3, 8, 8), torch.randint(0, 3, (4,))
    for p in model.parameters():
        p.grad = torch.full_like(p, 0.25)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    grads_before = [p.grad.clone() for p in model.parameters()]
    out = M.gradient(model, x, y, method, 0.1, act_penalty=0.1, weight_penalty=0.1)
    assert set(out) == {n for n, _ in model.named_parameters()}
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), f"{k} changed"
    for p, g in zip(model.parameters(), grads_before):
        assert torch.equal(p.grad, g)


def test_zero_gradient_examples_get_no_perturbation(f64):
    """An example with ∇ℓ_i = 0 (here: a zero input to a bias-free linear model) gets ε_i = 0, not NaN."""
    model = LinearModel(3)
    with torch.no_grad():
        model.head.weight.zero_()
    x = torch.tensor([[0.0, 0.0, 0.0], [1.0, 2.0, 0.5]])
    y = torch.tensor([1, 0])
    for impl in ("fast", "func", "loop"):
        for m in ("1sam", "lsam", "jsam"):
            g = M.gradient(model, x, y, m, 0.5, impl=impl)["head.weight"]
            assert torch.isfinite(g).all(), (impl, m)
    w = torch.zeros(3)
    torch.testing.assert_close(M.gradient(model, x, y, "1sam", 0.5)["head.weight"][0],
                               T.linear_1sam_direction(w, x, 2.0 * y - 1, 0.5))
    g = M.gradient(model, torch.zeros(2, 3), y, "sam", 0.5)["head.weight"]
    assert torch.isfinite(g).all() and (g == 0).all()


def test_regsgd_matches_explicit_penalty(f64):
    model, x, y = _mlp_batch()
    ga, gw = 0.3, 0.2
    for squared in (False, True):
        out = M.gradient(model, x, y, "regsgd", act_penalty=ga, weight_penalty=gw, squared=squared)
        phi = model.features(x)
        a, w = phi.norm(dim=1), model.head.weight.norm()
        if squared:
            a, w = a**2, w**2
        total = M.loss_per_example(model(x), y).mean() + ga * a.mean() + gw * w
        ref = dict(zip([n for n, _ in model.named_parameters()], torch.autograd.grad(total, list(model.parameters()))))
        _close(out, ref)
    _close(M.gradient(model, x, y, "regsgd"), M.gradient(model, x, y, "sgd"))


def test_batchnorm_per_example_error_names_groupnorm():
    model = ResNet18(3, norm="bn", width=4)
    x, y = torch.randn(2, 3, 8, 8), torch.randint(0, 3, (2,))
    with pytest.raises(ValueError, match="GroupNorm"):
        M.gradient(model, x, y, "1sam", 0.1)


@pytest.mark.parametrize("kw, match", [
    (dict(method="adam"), "unknown method"),
    (dict(method="sam", rho=-0.1), "rho must be >= 0"),
    (dict(method="sam", rho=float("nan")), "rho must be >= 0"),
    (dict(method="1sam", impl="gpu"), "unknown impl"),
])
def test_bad_arguments(kw, match):
    model, x, y = _mlp_batch()
    with pytest.raises(ValueError, match=match):
        M.gradient(model, x, y, **kw)
    with pytest.raises(ValueError, match="integer class indices"):
        M.gradient(model, x, y.float(), "sgd")


def test_per_example_norms_and_logit_diagnostic(f64):
    model, x, y = _mlp_batch()
    norms = M.per_example_grad_norms(model, x, y)
    for i in range(len(x)):
        g = M.gradient(model, x[i:i + 1], y[i:i + 1], "sgd")
        torch.testing.assert_close(norms[i], torch.sqrt(sum(v.pow(2).sum() for v in g.values())))
    d0, d1 = M.logit_grad_norms(model, x, y, 0.0)
    torch.testing.assert_close(d0, d1)
    d0, d1 = M.logit_grad_norms(model, x, y, 0.5)
    # Ascent along ∇ℓ_i raises every loss, so ‖δ_i‖ = ‖softmax − onehot‖ grows for each example here.
    assert (d1 > d0).all()


def test_sam_optimizer_step_is_base_step_on_rule_direction(f64):
    model, x, y = _mlp_batch()
    ref = MLP(20, (16, 12), 5)
    ref.load_state_dict(model.state_dict())
    opt = M.SAM(model, torch.optim.SGD, method="jsam", rho=0.1, lr=0.1, momentum=0.9, weight_decay=1e-3)
    base = torch.optim.SGD(ref.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    for _ in range(3):
        opt.step(x, y)
        g = M.gradient(ref, x, y, "jsam", 0.1)
        for n, p in ref.named_parameters():
            p.grad = g[n]
        base.step()
    for (n, p), q in zip(model.named_parameters(), ref.parameters()):
        torch.testing.assert_close(p, q, msg=n)


def test_update_norms_match_linear_closed_form(f64):
    """For wᵀx the 1-SAM per-example direction has norm σ(−m_i + ρ‖x_i‖)‖x_i‖."""
    torch.manual_seed(8)
    model = LinearModel(5)
    x, y = torch.randn(10, 5), torch.randint(0, 2, (10,))
    w, t = model.head.weight.detach()[0], 2.0 * y - 1
    for rho in (0.0, 0.6):
        got = M.per_example_update_norms(model, x, y, "1sam", rho)
        want = T.linear_1sam_weight(t * (x @ w), rho, x.norm(dim=1)) * x.norm(dim=1)
        torch.testing.assert_close(got, want)
    torch.testing.assert_close(M.per_example_update_norms(model, x, y, "sgd", 0.0), M.per_example_grad_norms(model, x, y))


@pytest.mark.parametrize("method", M.METHODS)
@pytest.mark.parametrize("case", ["mlp", "cnn-gn"])
def test_update_norms_fast_equals_reference(f64, method, case):
    model, x, y = _mlp_batch() if case == "mlp" else _cnn_batch("gn")
    fast = M.per_example_update_norms(model, x, y, method, 0.4)
    p0 = {n: v.detach() for n, v in model.named_parameters()}
    rule_i = M._func_rule(model, p0, method, 0.4)
    ref = torch.stack([torch.sqrt(sum(v.pow(2).sum() for v in rule_i(p0, x[i], y[i]).values())) for i in range(len(x))])
    torch.testing.assert_close(fast, ref)
