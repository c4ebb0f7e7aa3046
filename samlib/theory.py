"""Closed forms from the book, written once so that the chapters and the tests
check :func:`samlib.methods.gradient` against the same formulas.

Labels t = ±1 (``t = 2y − 1`` for y ∈ {0, 1}), logistic loss ℓ = −log σ(t f).
"""

from __future__ import annotations

import torch

__all__ = ["linear_1sam_weight", "linear_1sam_direction", "linear_sgd_direction",
           "twolayer_grad_norm", "twolayer_jsam_direction", "twolayer_1sam_logit"]


def linear_1sam_weight(margin: torch.Tensor, rho: float, xnorm: torch.Tensor) -> torch.Tensor:
    """Weight of example i in the 1-SAM direction of f(x) = wᵀx: σ(−m_i + ρ‖x_i‖).

    SGD's weight is σ(−m_i); the ratio σ(−m + ρ‖x‖)/σ(−m) grows with the margin
    m = t·wᵀx, so well-fit (low-loss) examples gain weight relative to SGD.
    """
    return torch.sigmoid(-margin + rho * xnorm)


def linear_1sam_direction(w: torch.Tensor, x: torch.Tensor, t: torch.Tensor, rho: float) -> torch.Tensor:
    """−(1/B) Σ t_i σ(−m_i + ρ‖x_i‖) x_i: 1-SAM (and L-SAM) on a linear model."""
    m = t * (x @ w)
    return -(t * linear_1sam_weight(m, rho, x.norm(dim=1))) @ x / x.shape[0]


def linear_sgd_direction(w: torch.Tensor, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """−(1/B) Σ t_i σ(−m_i) x_i (also J-SAM's: a linear model's Jacobian is constant)."""
    return linear_1sam_direction(w, x, t, 0.0)


def twolayer_grad_norm(W: torch.Tensor, v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """‖∇_w f‖ for f = vᵀWx: ‖∇f‖² = ‖Wx‖² + ‖x‖²‖v‖²."""
    return ((W @ x).pow(2).sum() + x.pow(2).sum() * v.pow(2).sum()).sqrt()


def twolayer_jsam_direction(W, v, x, t, rho):
    """J-SAM direction of one example, as (dW, dv): SGD plus a loss-weighted norm penalty,

    ∇ℓ + (ρ σ(−t f)/‖∇f‖) · ∇[½‖Wx‖² + ½‖x‖²‖v‖²].
    """
    f = v @ (W @ x)
    s = torch.sigmoid(-t * f)
    c = rho * s / twolayer_grad_norm(W, v, x)
    dW = -t * s * torch.outer(v, x) + c * torch.outer(W @ x, x)
    dv = -t * s * (W @ x) + c * x.pow(2).sum() * v
    return dW, dv


def twolayer_1sam_logit(W, v, x, t, rho):
    """f(w + ε) under the 1-SAM perturbation: f·(1 + ρ²‖x‖²/‖∇f‖²) − ρ t ‖∇f‖."""
    f = v @ (W @ x)
    g = twolayer_grad_norm(W, v, x)
    return f * (1 + rho**2 * x.pow(2).sum() / g**2) - rho * t * g
