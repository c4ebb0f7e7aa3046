"""Models. Every one exposes ``features(x)`` (φ, the penultimate representation)
and ``head`` (an ``nn.Linear``), with ``model(x) == model.head(model.features(x))``.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["LinearModel", "TwoLayerLinear", "MLP", "SmallCNN", "ResNet18", "build_model"]


class _HeadModel(nn.Module):
    head: nn.Linear

    def features(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - overridden
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class LinearModel(_HeadModel):
    """f(x) = wᵀx: one logit, binary logistic loss. φ is the input itself."""

    def __init__(self, d: int):
        super().__init__()
        self.head = nn.Linear(d, 1, bias=False)

    def features(self, x):
        return x.flatten(1)


class TwoLayerLinear(_HeadModel):
    """f(x) = vᵀWx with W ∈ ℝ^{h×d} (``hidden``) and v ∈ ℝ^h (``head``); φ(x) = Wx."""

    def __init__(self, d: int, h: int):
        super().__init__()
        self.hidden = nn.Linear(d, h, bias=False)
        self.head = nn.Linear(h, 1, bias=False)

    def features(self, x):
        return self.hidden(x.flatten(1))


class MLP(_HeadModel):
    """Fully connected ReLU network, e.g. 3072-512-512-10 on CIFAR-10."""

    def __init__(self, d_in: int = 3072, hidden: tuple[int, ...] = (512, 512), num_classes: int = 10):
        super().__init__()
        layers: list[nn.Module] = []
        d = d_in
        for h in hidden:
            layers += [nn.Linear(d, h), nn.ReLU()]
            d = h
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(d, num_classes)

    def features(self, x):
        return self.body(x.flatten(1))


def _norm(kind: str | None, c: int) -> nn.Module:
    if kind is None or kind == "none":
        return nn.Identity()
    if kind == "gn":
        return nn.GroupNorm(min(8, c), c)
    if kind == "bn":
        return nn.BatchNorm2d(c)
    raise ValueError(f"unknown norm {kind!r}; choose 'none', 'gn' or 'bn'")


class SmallCNN(_HeadModel):
    """A small, fast convolutional network without BatchNorm (per-example rules are defined).

    Three conv blocks (conv-norm-ReLU-maxpool) of widths ``widths``, global
    average pooling, a linear head. ``norm`` is ``"none"`` (default) or ``"gn"``.
    """

    def __init__(self, widths: tuple[int, ...] = (32, 64, 128), num_classes: int = 10,
                 norm: str | None = "none", in_channels: int = 3):
        super().__init__()
        blocks: list[nn.Module] = []
        c = in_channels
        for w in widths:
            blocks += [nn.Conv2d(c, w, 3, padding=1, bias=norm in (None, "none")), _norm(norm, w),
                       nn.ReLU(), nn.MaxPool2d(2)]
            c = w
        self.body = nn.Sequential(*blocks)
        self.head = nn.Linear(c, num_classes)

    def features(self, x):
        return self.body(x).mean((2, 3))


class _BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, norm: str):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.n1 = _norm(norm, c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.n2 = _norm(norm, c_out)
        self.short = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.short = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), _norm(norm, c_out))

    def forward(self, x):
        out = F.relu(self.n1(self.conv1(x)))
        out = self.n2(self.conv2(out))
        return F.relu(out + self.short(x))


class ResNet18(_HeadModel):
    """ResNet-18 for 32×32 inputs (3×3 stem, no max-pool), as used for CIFAR-10.

    ``norm="bn"`` is the usual BatchNorm network (SGD/SAM only); ``norm="gn"``
    uses GroupNorm so that per-example rules (1-SAM, L-SAM, J-SAM) are defined.
    """

    def __init__(self, num_classes: int = 10, norm: str = "gn", width: int = 64):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, 1, 1, bias=False), _norm(norm, width), nn.ReLU())
        layers, c = [], width
        for i, mult in enumerate((1, 2, 4, 8)):
            stride = 1 if i == 0 else 2
            layers += [_BasicBlock(c, width * mult, stride, norm), _BasicBlock(width * mult, width * mult, 1, norm)]
            c = width * mult
        self.layers = nn.Sequential(*layers)
        self.head = nn.Linear(c, num_classes)

    def features(self, x):
        return self.layers(self.stem(x)).mean((2, 3))


def build_model(name: str, **kw) -> nn.Module:
    """Build a model by name: ``linear``, ``twolayer``, ``mlp``, ``smallcnn``, ``resnet18``."""
    table = {"linear": LinearModel, "twolayer": TwoLayerLinear, "mlp": MLP,
             "smallcnn": SmallCNN, "resnet18": ResNet18}
    if name not in table:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(table)}")
    kw = {k: tuple(v) if isinstance(v, list) else v for k, v in kw.items()}
    return table[name](**kw)
