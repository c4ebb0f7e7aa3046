"""What every chapter notebook calls first, and ``glue`` that also works outside the book build."""

from __future__ import annotations

import os

import torch

from .experiments import SCALES, device_name
from .plots import set_style

__all__ = ["setup", "glue"]


def setup(scale: str) -> None:
    """Check the scale, set the figure style and say where this notebook runs."""
    if scale not in SCALES:
        raise ValueError(f"SAMLIB_SCALE={scale!r} is not a scale; choose one of {', '.join(SCALES)}")
    set_style()
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    print(f"scale: {scale}; device: {device_name(dev)}; torch {torch.__version__}")
    if dev.type == "cpu" and scale in ("gpu", "colab"):
        print("No GPU found. In Colab: Runtime > Change runtime type > GPU, then run all cells again. "
              "Results already in results/ are still loaded without one.")
    elif dev.type == "cpu":
        print("No GPU: fine at this scale (cached results are loaded from results/; "
              "anything missing runs on the CPU).")
    if "SAMLIB_CIFAR10" in os.environ:
        print(f"CIFAR-10 from {os.environ['SAMLIB_CIFAR10']}")


def glue(name: str, value, display: bool = False):
    """myst-nb's ``glue`` in the book build; a no-op elsewhere (Colab has no myst-nb)."""
    try:
        from myst_nb import glue as _glue
    except ImportError:
        return
    _glue(name, value, display=display)


def glue_runs(prefix: str, results: list[dict], minutes: bool = False):
    """Glue ``{prefix}_nruns``, ``{prefix}_wall`` (total CPU wall time) and ``{prefix}_device``
    from the results' provenance: the "What we ran" line of every chapter."""
    wall = sum(r["provenance"]["wall_time_s"] for r in results)
    glue(f"{prefix}_nruns", len(results))
    glue(f"{prefix}_wall", f"{wall / 60:.0f}" if minutes else f"{wall:.0f}")
    glue(f"{prefix}_device", results[0]["provenance"]["device"])
