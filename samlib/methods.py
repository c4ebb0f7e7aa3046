"""The update rules: SGD, SAM, 1-SAM, L-SAM, J-SAM and regularised SGD.

One public contract, :func:`gradient`, returns the update direction (mean over
the batch) of any rule, keyed like ``model.named_parameters()``, and leaves the
model's parameters, buffers and ``.grad`` exactly as they were.

Notation (see the book's notation page). For example ``i`` with logits
``z_i = f(w; x_i)``, the per-example gradient factors as ``∇ℓ_i = J_iᵀ δ_i`` with
``δ_i = ∂ℓ_i/∂z_i`` (the logit-scale term, ``softmax(z_i) − onehot(y_i)`` for
cross-entropy) and ``J_i = ∂z_i/∂w`` (the Jacobian term). With
``ε_i = ρ ∇ℓ_i(w)/‖∇ℓ_i(w)‖``:

=========  =======================================================
``sgd``    ``(1/B) Σ ∇ℓ_i(w)``
``sam``    ``∇ (1/B) Σ ℓ_i(w + ε)``, ``ε = ρ g/‖g‖``, ``g`` the SGD direction
``1sam``   ``(1/B) Σ ∇ℓ_i(w + ε_i)``
``lsam``   ``(1/B) Σ J_i(w)ᵀ δ_i(w + ε_i)``  (logit-scale term perturbed)
``jsam``   ``(1/B) Σ J_i(w + ε_i)ᵀ δ_i(w)``  (Jacobian term perturbed)
``regsgd`` ``∇[(1/B) Σ ℓ_i + γ_a (1/B) Σ ‖φ(x_i)‖ + γ_w ‖V‖_F]``
=========  =======================================================

Per-example rules have three implementations that must agree (see tests):

* ``"fast"``: exploits layer structure. A Linear layer's per-example gradient is
  the rank-one ``δ_i a_iᵀ``, so its norm is ``‖δ_i‖‖a_i‖`` and the perturbed
  layer's output is ``W a'_i + c_i δ_i (a_iᵀ a'_i)``: no per-example copy of
  the weights is ever formed. Conv2d and GroupNorm get exact per-example terms
  too. Used whenever every parameter lives in one of those layers.
* ``"func"``: the generic reference, torch.func (functional_call + vmap +
  grad/vjp), chunked over examples so memory stays bounded.
* ``"loop"``: one example at a time; the baseline the others are checked and
  timed against.
"""

from __future__ import annotations

import contextlib
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.func import functional_call, grad, vjp, vmap

METHODS = ("sgd", "sam", "1sam", "lsam", "jsam", "regsgd")
PER_EXAMPLE = ("1sam", "lsam", "jsam")
IMPLS = ("auto", "fast", "func", "loop")

__all__ = [
    "METHODS",
    "PER_EXAMPLE",
    "gradient",
    "per_example_grad_norms",
    "logit_grad_norms",
    "per_example_update_norms",
    "loss_per_example",
    "logit_grad",
    "SAM",
]


# --------------------------------------------------------------------------
# Losses
# --------------------------------------------------------------------------
def loss_per_example(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """ℓ_i: cross-entropy for C ≥ 2 logits, logistic loss for one logit (labels 0/1)."""
    if logits.shape[-1] == 1:
        # softplus(−t z), t = ±1: its gradient −t σ(−t z) keeps full relative precision even
        # at large margins, where σ(z) − y would cancel.
        return F.softplus(-(2.0 * y.to(logits.dtype) - 1) * logits.squeeze(-1))
    return F.cross_entropy(logits, y, reduction="none")


def logit_grad(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """δ_i = ∂ℓ_i/∂z_i, same shape as ``logits``."""
    if logits.shape[-1] == 1:
        t = (2.0 * y.to(logits.dtype) - 1).unsqueeze(-1)
        return -t * torch.sigmoid(-t * logits)  # = σ(z) − y without cancellation
    return torch.softmax(logits, dim=-1) - F.one_hot(y, logits.shape[-1]).to(logits.dtype)


def _check_inputs(model: nn.Module, x: torch.Tensor, y: torch.Tensor, method: str, rho: float, impl: str):
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if impl not in IMPLS:
        raise ValueError(f"unknown impl {impl!r}; choose one of {', '.join(IMPLS)}")
    if not (rho >= 0):  # also catches NaN
        raise ValueError(f"rho must be >= 0, got {rho}")
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x has {x.shape[0]} examples but y has {y.shape[0]}")
    if y.dtype.is_floating_point:
        raise ValueError("labels must be integer class indices (got a floating-point tensor)")
    if method in PER_EXAMPLE or impl == "loop":
        for name, m in model.named_modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                raise ValueError(
                    f"per-example rule {method!r} is undefined with BatchNorm (layer {name!r} mixes "
                    "examples); use GroupNorm instead, e.g. ResNet18(norm='gn')"
                )


@contextlib.contextmanager
def _preserved_buffers(model: nn.Module, keep: bool = False):
    """Restore every buffer on exit (so BatchNorm statistics are untouched), unless ``keep``."""
    saved = None if keep else [(b, b.detach().clone()) for b in model.buffers()]
    try:
        yield
    finally:
        if saved is not None:
            with torch.no_grad():
                for b, v in saved:
                    b.copy_(v)


def _named_trainable(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


# --------------------------------------------------------------------------
# Public contract
# --------------------------------------------------------------------------
def gradient(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    method: str,
    rho: float = 0.0,
    *,
    act_penalty: float = 0.0,
    weight_penalty: float = 0.0,
    squared: bool = False,
    impl: str = "auto",
    chunk_size: int | None = 32,
) -> dict[str, torch.Tensor]:
    """Update direction of ``method`` on the batch ``(x, y)``; the model is left as it was.

    Parameters
    ----------
    method : one of ``"sgd", "sam", "1sam", "lsam", "jsam", "regsgd"``.
    rho : perturbation radius ρ ≥ 0 (ignored by ``sgd`` and ``regsgd``).
    act_penalty, weight_penalty, squared : γ_a, γ_w and whether the ``regsgd``
        norms are squared.
    impl : per-example implementation, ``"auto"`` (fast when every parameter
        sits in a Linear/Conv2d/GroupNorm layer, else func), ``"fast"``,
        ``"func"`` or ``"loop"``.
    chunk_size : examples per vmap chunk for ``impl="func"``.
    """
    return _direction(
        model, x, y, method, rho,
        act_penalty=act_penalty, weight_penalty=weight_penalty, squared=squared,
        impl=impl, chunk_size=chunk_size,
    )[0]


def _direction(model, x, y, method, rho=0.0, *, act_penalty=0.0, weight_penalty=0.0,
               squared=False, impl="auto", chunk_size=32, update_buffers=False):
    """(direction, mean loss at w). ``update_buffers`` keeps the buffer update of the
    unperturbed forward pass (BatchNorm running statistics while training)."""
    _check_inputs(model, x, y, method, rho, impl)
    params = _named_trainable(model)
    if method in PER_EXAMPLE:
        if impl == "auto":
            impl = "fast" if _fast_supported(model) else "func"
        if impl == "fast" and not _fast_supported(model):
            raise ValueError("impl='fast' supports models whose parameters all sit in "
                             "Linear, Conv2d or affine GroupNorm layers; use impl='func'")
        fn = {"fast": _per_example_fast, "func": _per_example_func, "loop": _per_example_loop}[impl]
        with _preserved_buffers(model):
            return fn(model, params, x, y, method, rho, chunk_size=chunk_size)

    with _preserved_buffers(model, keep=update_buffers):
        if method == "regsgd":
            return _regsgd(model, params, x, y, act_penalty, weight_penalty, squared)
        logits = model(x)
        loss = loss_per_example(logits, y).mean()
        g = torch.autograd.grad(loss, list(params.values()))
    if method == "sgd" or rho == 0.0:
        return dict(zip(params, g)), loss.detach()
    # sam: one global L2 norm over all parameters; a zero gradient means no step away.
    norm = torch.sqrt(sum(gi.pow(2).sum() for gi in g))
    scale = rho / norm if norm > 0 else 0.0
    plist = list(params.values())
    saved = [p.detach().clone() for p in plist]
    try:
        with torch.no_grad():  # perturb in place (cheaper than functional_call) ...
            for p, gi in zip(plist, g):
                p.add_(scale * gi)
        with _preserved_buffers(model):
            loss_p = loss_per_example(model(x), y).mean()
            g_p = torch.autograd.grad(loss_p, plist)
    finally:
        with torch.no_grad():  # ... and restore the saved copies exactly
            for p, v in zip(plist, saved):
                p.copy_(v)
    return dict(zip(params, g_p)), loss.detach()


def _regsgd(model, params, x, y, act_penalty, weight_penalty, squared):
    if act_penalty < 0 or weight_penalty < 0:
        raise ValueError("act_penalty and weight_penalty must be >= 0")
    if not (hasattr(model, "features") and isinstance(getattr(model, "head", None), nn.Linear)):
        raise ValueError("regsgd needs a model with features(x) and an nn.Linear head (every samlib model has both)")
    phi = model.features(x)
    loss = loss_per_example(model.head(phi), y).mean()
    act = phi.flatten(1).norm(dim=1)
    wn = model.head.weight.norm()
    if squared:
        act, wn = act.pow(2), wn.pow(2)
    total = loss + act_penalty * act.mean() + weight_penalty * wn
    g = torch.autograd.grad(total, list(params.values()))
    return dict(zip(params, g)), loss.detach()


def _scale_from_sqnorm(sq: torch.Tensor, rho: float) -> torch.Tensor:
    """c_i = ρ/‖g_i‖, and 0 where g_i = 0 (never NaN)."""
    norm = sq.sqrt()
    return torch.where(norm > 0, rho / norm.clamp_min(torch.finfo(norm.dtype).tiny), torch.zeros_like(norm))


# --------------------------------------------------------------------------
# Reference path: torch.func, chunked over examples
# --------------------------------------------------------------------------
def _single(model, buffers):
    def f(p, xi):
        return functional_call(model, (p, buffers), (xi.unsqueeze(0),)).squeeze(0)
    return f


def _func_rule(model, p0, method, rho):
    """rule_i(p, x_i, y_i): example i's direction under ``method``, for vmap."""
    f = _single(model, {n: b.detach() for n, b in model.named_buffers()})

    def loss_i(p, xi, yi):
        return loss_per_example(f(p, xi).unsqueeze(0), yi.unsqueeze(0)).squeeze(0)

    def rule_i(p, xi, yi):
        g = grad(loss_i)(p, xi, yi)
        if method in ("sgd", "sam", "regsgd"):
            return g
        sq = sum(v.pow(2).sum() for v in g.values())
        norm = sq.sqrt()
        # Branch-free zero guard (vmap cannot branch on data).
        c = rho / torch.where(norm > 0, norm, torch.ones_like(norm)) * (norm > 0)
        pe = {n: p[n] + c * g[n] for n in p}
        if method == "1sam":
            return grad(loss_i)(pe, xi, yi)
        if method == "lsam":
            _, pullback = vjp(lambda q: f(q, xi), p)
            delta_pert = logit_grad(f(pe, xi).unsqueeze(0), yi.unsqueeze(0)).squeeze(0)
            return pullback(delta_pert)[0]
        # jsam
        delta = logit_grad(f(p, xi).unsqueeze(0), yi.unsqueeze(0)).squeeze(0)
        _, pullback = vjp(lambda q: f(q, xi), pe)
        return pullback(delta)[0]

    return rule_i


def _chunks(n, chunk_size):
    step = chunk_size or n
    return [(s, min(s + step, n)) for s in range(0, n, step)]


def _per_example_func(model, params, x, y, method, rho, chunk_size=32):
    p0 = {n: v.detach() for n, v in params.items()}
    rule_i = _func_rule(model, p0, method, rho)
    total = {k: torch.zeros_like(v) for k, v in p0.items()}
    for s, e in _chunks(x.shape[0], chunk_size):
        out = vmap(rule_i, in_dims=(None, 0, 0))(p0, x[s:e], y[s:e])
        for k in total:
            total[k] += out[k].sum(0)
    with torch.no_grad():
        loss = loss_per_example(model(x), y).mean()
    return {k: v / x.shape[0] for k, v in total.items()}, loss


def per_example_update_norms(model: nn.Module, x: torch.Tensor, y: torch.Tensor, method: str, rho: float,
                             chunk_size: int = 32) -> torch.Tensor:
    """‖u_i‖ for the per-example direction u_i that ``method`` applies to example i.

    SGD (and SAM, regsgd): ∇ℓ_i(w). 1-SAM: ∇ℓ_i(w + ε_i); L-SAM: J_i(w)ᵀδ_i(w + ε_i);
    J-SAM: J_i(w + ε_i)ᵀδ_i(w). Their clean/noisy ratio is how much the rule
    weighs clean against noisy examples.
    """
    _check_inputs(model, x, y, method, rho, "func")
    with _preserved_buffers(model):
        if method not in PER_EXAMPLE:
            return per_example_grad_norms(model, x, y)
        if _fast_supported(model):
            try:
                return _update_norms_fast(model, x, y, method, rho)
            except _SharedLayer:
                pass
        p0 = {n: v.detach() for n, v in _named_trainable(model).items()}
        rule_i = _func_rule(model, p0, method, rho)
        norms = []
        for s, e in _chunks(x.shape[0], chunk_size):
            out = vmap(rule_i, in_dims=(None, 0, 0))(p0, x[s:e], y[s:e])
            norms.append(sum(v.flatten(1).pow(2).sum(1) for v in out.values()).sqrt())
        return torch.cat(norms)


def _update_norms_fast(model, x, y, method, rho):
    """Per-example norms of the rule's direction from each layer's (input, output gradient)."""
    z, _, grads = _layer_grads(model, x, y, create_graph_for_logits=method == "lsam")
    c = _scale_from_sqnorm(sum(g.sqnorm() for g in grads), rho)
    if method == "lsam":  # δ at w + ε_i, pulled back through the network at w
        with torch.no_grad():
            d_pert = logit_grad(_perturbed_forward(model, x, grads, c), y)
        layers = [g.m for g in grads]
        outs = [g.out for g in grads]
        ds = torch.autograd.grad((z * d_pert).sum(), outs)
        return sum(_LayerGrad(m, g.inp, d).sqnorm() for m, g, d in zip(layers, grads, ds)).sqrt().detach()
    record = {}
    zp = _perturbed_forward(model, x, grads, c, record=record)
    seed = loss_per_example(zp, y).sum() if method == "1sam" else (zp * logit_grad(z.detach(), y)).sum()
    layers = list(record)
    ds = torch.autograd.grad(seed, [record[m][1] for m in layers])
    return sum(_LayerGrad(m, record[m][0], d).sqnorm() for m, d in zip(layers, ds)).sqrt().detach()


# --------------------------------------------------------------------------
# Baseline path: one example at a time
# --------------------------------------------------------------------------
def _per_example_loop(model, params, x, y, method, rho, chunk_size=None):
    names, plist = list(params), list(params.values())
    total = [torch.zeros_like(p) for p in plist]
    losses = []
    for i in range(x.shape[0]):
        xi, yi = x[i:i + 1], y[i:i + 1]
        z = model(xi)
        li = loss_per_example(z, yi).sum()
        losses.append(li.detach())
        g = torch.autograd.grad(li, plist, retain_graph=method == "lsam")
        c = _scale_from_sqnorm(sum(gi.pow(2).sum() for gi in g), rho)
        pe = {n: p + c * gi.detach() for n, p, gi in zip(names, plist, g)}
        z_pert = functional_call(model, pe, (xi,))
        if method == "1sam":
            gi = torch.autograd.grad(loss_per_example(z_pert, yi).sum(), plist)
        elif method == "lsam":
            d = logit_grad(z_pert.detach(), yi)
            gi = torch.autograd.grad((z * d).sum(), plist)
        else:  # jsam
            d = logit_grad(z.detach(), yi)
            gi = torch.autograd.grad((z_pert * d).sum(), plist)
        for t, v in zip(total, gi):
            t += v
    n = x.shape[0]
    return {k: t / n for k, t in zip(names, total)}, torch.stack(losses).mean()


# --------------------------------------------------------------------------
# Fast path: structure of Linear / Conv2d / GroupNorm layers
# --------------------------------------------------------------------------
_FAST_LAYERS = (nn.Linear, nn.Conv2d, nn.GroupNorm)


def _fast_supported(model: nn.Module) -> bool:
    """True when every trainable parameter is a direct parameter of a supported layer."""
    owned = set()
    for m in model.modules():
        direct = [p for p in m.parameters(recurse=False) if p.requires_grad]
        if not direct:
            continue
        if not isinstance(m, _FAST_LAYERS):
            return False
        if isinstance(m, nn.Conv2d) and (m.padding_mode != "zeros" or isinstance(m.padding, str)):
            return False
        if isinstance(m, nn.GroupNorm) and not m.affine:
            return False
        owned.update(id(p) for p in direct)
    return owned == {id(p) for p in model.parameters() if p.requires_grad}


def _layers(model):
    return [m for m in model.modules()
            if isinstance(m, _FAST_LAYERS) and any(p.requires_grad for p in m.parameters(recurse=False))]


@contextlib.contextmanager
def _hooks(layers, hook: Callable):
    handles = [m.register_forward_hook(hook) for m in layers]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def _gn_normalise(m: nn.GroupNorm, a: torch.Tensor) -> torch.Tensor:
    return F.group_norm(a, m.num_groups, None, None, m.eps)


def _conv_unfold(m: nn.Conv2d, a: torch.Tensor) -> torch.Tensor:
    return F.unfold(a, m.kernel_size, dilation=m.dilation, padding=m.padding, stride=m.stride)


class _LayerGrad:
    """Per-example gradient of one layer in a compact form, and its use at w + ε_i."""

    def __init__(self, m: nn.Module, a: torch.Tensor, d: torch.Tensor, out: torch.Tensor | None = None):
        self.m, self.inp, self.out = m, a, out
        a, d = a.detach(), d.detach()
        self.has_bias = getattr(m, "bias", None) is not None and m.bias.requires_grad
        self.w_grad = m.weight.requires_grad
        if isinstance(m, nn.Linear):
            # Rank one: g_W,i = δ_i a_iᵀ; inputs with extra dims are flattened into a sum over positions.
            if a.dim() == 2:
                self.kind = "linear"
                self.a, self.d = a, d
            else:
                self.kind = "dense"
                a3, d3 = a.flatten(1, -2), d.flatten(1, -2)
                self.gw = torch.einsum("bto,bti->boi", d3, a3)
                self.gb = d3.sum(1)
        elif isinstance(m, nn.Conv2d):
            self.kind = "dense"
            u = _conv_unfold(m, a)  # (B, in*k*k/groups*groups, L)
            B, L = a.shape[0], u.shape[-1]
            dd = d.flatten(2)  # (B, out, L)
            G = m.groups
            u = u.view(B, G, -1, L)
            dd = dd.view(B, G, -1, L)
            self.gw = torch.einsum("bgol,bgil->bgoi", dd, u).reshape(B, *m.weight.shape)
            self.gb = d.sum((2, 3))
        else:  # GroupNorm
            self.kind = "dense"
            xhat = _gn_normalise(m, a)
            red = tuple(range(2, a.dim()))
            self.gw = (d * xhat).sum(red)
            self.gb = d.sum(red)

    def sqnorm(self) -> torch.Tensor:
        if self.kind == "linear":
            dn = self.d.pow(2).sum(1)
            sq = dn * self.a.pow(2).sum(1) if self.w_grad else torch.zeros_like(dn)
            return sq + dn if self.has_bias else sq
        sq = self.gw.flatten(1).pow(2).sum(1) if self.w_grad else 0.0
        return sq + self.gb.flatten(1).pow(2).sum(1) if self.has_bias else sq

    def perturbation(self, ap: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """Extra output of the layer at w + ε_i on its (perturbed-network) input ``ap``."""
        m = self.m
        if self.kind == "linear":
            coef = (self.a * ap).sum(1) if self.w_grad else torch.zeros_like(c)
            if self.has_bias:
                coef = coef + 1
            return (c * coef).unsqueeze(1) * self.d
        B = ap.shape[0]
        gw = self.gw * c.view(-1, *[1] * (self.gw.dim() - 1))
        gb = self.gb * c.view(-1, *[1] * (self.gb.dim() - 1))
        if isinstance(m, nn.Linear):
            out = torch.einsum("boi,b...i->b...o", gw, ap) if self.w_grad else 0.0
            return out + gb.view(B, *[1] * (ap.dim() - 2), -1) if self.has_bias else out
        if isinstance(m, nn.Conv2d):
            out = 0.0
            if self.w_grad:
                # Per-example weights as one grouped convolution over the batch.
                x = ap.reshape(1, B * ap.shape[1], *ap.shape[2:])
                w = gw.reshape(B * gw.shape[1], *gw.shape[2:])
                out = F.conv2d(x, w, None, m.stride, m.padding, m.dilation, groups=B * m.groups)
                out = out.view(B, -1, *out.shape[2:])
            return out + gb.view(B, -1, 1, 1) if self.has_bias else out
        shape = (B, -1) + (1,) * (ap.dim() - 2)
        out = _gn_normalise(m, ap) * gw.view(shape) if self.w_grad else 0.0
        return out + gb.view(shape) if self.has_bias else out


def _layer_grads(model, x, y, create_graph_for_logits=False):
    """Forward at w capturing each layer's input and output; per-example δ at every layer."""
    layers = _layers(model)
    record: dict[nn.Module, tuple] = {}

    def hook(m, inp, out):
        if m in record:
            raise _SharedLayer
        record[m] = (inp[0], out)

    with _hooks(layers, hook):
        z = model(x)
    losses = loss_per_example(z, y)
    outs = [record[m][1] for m in layers]
    # Sum, not mean: each example's own loss, so δ at every layer is per example.
    ds = torch.autograd.grad(losses.sum(), outs, retain_graph=create_graph_for_logits)
    grads = [_LayerGrad(m, record[m][0], d, record[m][1]) for m, d in zip(layers, ds)]
    return z, losses, grads


class _SharedLayer(Exception):
    pass


def _perturbed_forward(model, x, grads, c, record: dict | None = None):
    """Forward at w + ε_i (each example its own perturbation); ``record`` gets each layer's
    (input, perturbed output)."""
    by_layer = {g.m: g for g in grads}

    def hook(m, inp, out):
        out = out + by_layer[m].perturbation(inp[0], c)
        if record is not None:
            record[m] = (inp[0], out)
        return out

    with _hooks(list(by_layer), hook):
        return model(x)


def _per_example_fast(model, params, x, y, method, rho, chunk_size=None):
    names, plist = list(params), list(params.values())
    n = x.shape[0]
    try:
        z, losses, grads = _layer_grads(model, x, y, create_graph_for_logits=method == "lsam")
    except _SharedLayer:  # a layer used twice in one forward: fall back to the reference
        return _per_example_func(model, params, x, y, method, rho)
    c = _scale_from_sqnorm(sum(g.sqnorm() for g in grads), rho)
    if method == "lsam":
        with torch.no_grad():
            d_pert = logit_grad(_perturbed_forward(model, x, grads, c), y)
        out = torch.autograd.grad((z * d_pert).sum() / n, plist)
    elif method == "1sam":
        zp = _perturbed_forward(model, x, grads, c)
        out = torch.autograd.grad(loss_per_example(zp, y).sum() / n, plist)
    else:  # jsam
        d = logit_grad(z.detach(), y)
        zp = _perturbed_forward(model, x, grads, c)
        out = torch.autograd.grad((zp * d).sum() / n, plist)
    return dict(zip(names, out)), losses.detach().mean()


# --------------------------------------------------------------------------
# Diagnostics
# --------------------------------------------------------------------------
def per_example_grad_norms(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """‖∇ℓ_i(w)‖ for every example (the model is left as it was)."""
    _check_inputs(model, x, y, "1sam", 0.0, "auto")
    params = _named_trainable(model)
    with _preserved_buffers(model):
        if _fast_supported(model):
            try:
                _, _, grads = _layer_grads(model, x, y)
                return sum(g.sqnorm() for g in grads).sqrt().detach()
            except _SharedLayer:
                pass
        p0 = {n: v.detach() for n, v in params.items()}
        f = _single(model, {n: b.detach() for n, b in model.named_buffers()})

        def sq(xi, yi):
            g = grad(lambda p: loss_per_example(f(p, xi).unsqueeze(0), yi.unsqueeze(0)).squeeze(0))(p0)
            return sum(v.pow(2).sum() for v in g.values())

        return torch.cat([vmap(sq)(x[s:s + 32], y[s:s + 32]) for s in range(0, x.shape[0], 32)]).sqrt()


def logit_grad_norms(model: nn.Module, x: torch.Tensor, y: torch.Tensor, rho: float):
    """(‖δ_i(w)‖, ‖δ_i(w + ε_i)‖): the logit-scale term before and after the 1-SAM perturbation.

    Its clean/noisy ratio shows the explicit up-weighting of low-loss examples
    that L-SAM keeps and J-SAM removes.
    """
    _check_inputs(model, x, y, "1sam", rho, "auto")
    params = _named_trainable(model)
    with _preserved_buffers(model):
        if _fast_supported(model):
            z, _, grads = _layer_grads(model, x, y)
            c = _scale_from_sqnorm(sum(g.sqnorm() for g in grads), rho)
            with torch.no_grad():
                zp = _perturbed_forward(model, x, grads, c)
        else:
            p0 = {n: v.detach() for n, v in params.items()}
            f = _single(model, {n: b.detach() for n, b in model.named_buffers()})

            def pert(xi, yi):
                g = grad(lambda p: loss_per_example(f(p, xi).unsqueeze(0), yi.unsqueeze(0)).squeeze(0))(p0)
                norm = sum(v.pow(2).sum() for v in g.values()).sqrt()
                cc = rho / torch.where(norm > 0, norm, torch.ones_like(norm)) * (norm > 0)
                return f({k: p0[k] + cc * g[k] for k in p0}, xi)

            with torch.no_grad():
                z = model(x)
            zp = torch.cat([vmap(pert)(x[s:s + 32], y[s:s + 32]) for s in range(0, x.shape[0], 32)])
    return logit_grad(z.detach(), y).norm(dim=1), logit_grad(zp.detach(), y).norm(dim=1)


# --------------------------------------------------------------------------
# Optimizer-level step, in the spirit of davda54/sam
# --------------------------------------------------------------------------
class SAM:
    """Wraps a base optimizer; the rule supplies the gradient, the base does the rest.

    >>> opt = SAM(model, torch.optim.SGD, method="sam", rho=0.05, lr=0.01, momentum=0.9, weight_decay=5e-4)
    >>> loss = opt.step(x, y)

    The base optimizer applies momentum and weight decay to whatever direction
    the rule returns, as in davda54/sam where the second step hands the
    perturbed gradient to the base optimizer.
    """

    def __init__(self, model: nn.Module, base_optimizer=torch.optim.SGD, *, method: str = "sam",
                 rho: float = 0.05, act_penalty: float = 0.0, weight_penalty: float = 0.0,
                 squared: bool = False, impl: str = "auto", chunk_size: int | None = 32, **base_kwargs):
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
        if not (rho >= 0):
            raise ValueError(f"rho must be >= 0, got {rho}")
        self.model = model
        self.method, self.rho = method, rho
        self.rule_kwargs = dict(act_penalty=act_penalty, weight_penalty=weight_penalty,
                                squared=squared, impl=impl, chunk_size=chunk_size)
        self.base_optimizer = base_optimizer([p for p in model.parameters() if p.requires_grad], **base_kwargs)
        self.param_groups = self.base_optimizer.param_groups

    def step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """One update on the batch; returns the mean loss at w (before the step)."""
        g, loss = _direction(self.model, x, y, self.method, self.rho, update_buffers=True, **self.rule_kwargs)
        for n, p in self.model.named_parameters():
            if n in g:
                p.grad = g[n]
        self.base_optimizer.step()
        return loss

    def zero_grad(self, set_to_none: bool = True):
        self.base_optimizer.zero_grad(set_to_none=set_to_none)

    def state_dict(self):
        return self.base_optimizer.state_dict()

    def load_state_dict(self, state):
        self.base_optimizer.load_state_dict(state)
