"""Every model exposes features(x) and an nn.Linear head with model(x) == head(features(x))."""
import pytest
import torch
import torch.nn as nn

from samlib import data as D
from samlib.models import build_model

CASES = [
    ("linear", dict(d=7), (5, 7)),
    ("twolayer", dict(d=7, h=4), (5, 7)),
    ("mlp", dict(d_in=48, hidden=[16, 8], num_classes=3), (5, 3, 4, 4)),
    ("smallcnn", dict(widths=[4, 8, 8], num_classes=3), (5, 3, 16, 16)),
    ("smallcnn", dict(widths=[4, 8, 8], num_classes=3, norm="gn"), (5, 3, 16, 16)),
    ("resnet18", dict(num_classes=3, norm="gn", width=4), (2, 3, 16, 16)),
    ("resnet18", dict(num_classes=3, norm="bn", width=4), (2, 3, 16, 16)),
]


@pytest.mark.parametrize("name, kw, shape", CASES)
def test_features_and_head(name, kw, shape):
    torch.manual_seed(0)
    model = build_model(name, **kw).eval()
    x = torch.randn(*shape)
    assert isinstance(model.head, nn.Linear)
    torch.testing.assert_close(model(x), model.head(model.features(x)))


def test_unknown_model_and_norm():
    with pytest.raises(ValueError, match="unknown model"):
        build_model("vgg")
    with pytest.raises(ValueError, match="unknown norm"):
        build_model("smallcnn", norm="ln")


def test_digits_loader():
    pytest.importorskip("sklearn")
    x, y = D.load_digits()
    assert x.shape == (1797, 64) and 0 <= float(x.min()) and float(x.max()) <= 1 and int(y.max()) == 9
