import os
from pathlib import Path

import pytest
import torch

SHARED_CIFAR = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-jpeg" / "cifar10_jpeg.npz"


@pytest.fixture
def f64():
    """Run a test in float64 so that comparisons can be tight."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


@pytest.fixture
def cifar_copy():
    """Path of the offline CIFAR-10 copy (SAMLIB_CIFAR10 or ../shared), or skip."""
    p = os.environ.get("SAMLIB_CIFAR10") or (str(SHARED_CIFAR) if SHARED_CIFAR.is_file() else None)
    if not p:
        pytest.skip("no offline CIFAR-10 copy: set SAMLIB_CIFAR10")
    return p


@pytest.fixture(autouse=True, scope="session")
def _offline_cifar_env():
    """Point samlib at the offline copy when one is beside the checkout (CI and dev machines)."""
    if "SAMLIB_CIFAR10" not in os.environ and SHARED_CIFAR.is_file():
        os.environ["SAMLIB_CIFAR10"] = str(SHARED_CIFAR)
    yield
