"""Figures in one style: seaborn's whitegrid, one colour per rule, labelled axes with units."""

from __future__ import annotations

import warnings

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns

__all__ = ["set_style", "LABELS", "COLORS", "label", "curves", "clean_noisy", "mark_peak"]

LABELS = {"sgd": "SGD", "sam": "SAM", "1sam": "1-SAM", "lsam": "L-SAM", "jsam": "J-SAM", "regsgd": "Reg. SGD"}
_ORDER = ("sgd", "sam", "1sam", "lsam", "jsam", "regsgd")
COLORS = dict(zip(_ORDER, sns.color_palette("colorblind", len(_ORDER))))


def set_style():
    """The book's figure style; call once per notebook."""
    sns.set_theme(style="whitegrid", context="notebook", palette="colorblind")
    plt.rcParams.update({"figure.dpi": 110, "savefig.dpi": 110, "axes.titlesize": "medium",
                         "legend.fontsize": "small", "figure.figsize": (6.4, 3.6)})


def label(method: str, rho: float | None = None, full_batch: bool = False) -> str:
    name = "GD" if (full_batch and method == "sgd") else LABELS.get(method, method)
    return name if not rho else f"{name} (ρ={rho:g})"


def _stack(results, metric):
    arr = np.array([[np.nan if v is None else v for v in r["history"][metric]] for r in results], dtype=float)
    return np.array(results[0]["history"]["epoch"]), arr


def curves(ax, results: list[dict], metric: str, *, color=None, label_=None, percent=True, peak=True, band=True, **kw):
    """Mean over the given runs (seeds) of ``metric`` per epoch, with a ±1 std band."""
    epochs, arr = _stack(results, metric)
    scale = 100.0 if percent else 1.0
    with warnings.catch_warnings():  # epochs where a ratio is undefined (NaN) for every seed
        warnings.simplefilter("ignore", RuntimeWarning)
        mean, std = np.nanmean(arr, 0) * scale, np.nanstd(arr, 0) * scale
    (line,) = ax.plot(epochs, mean, color=color, label=label_, **kw)
    if band and len(results) > 1:
        ax.fill_between(epochs, mean - std, mean + std, color=line.get_color(), alpha=0.15, linewidth=0)
    if peak:
        mark_peak(ax, epochs, mean, line.get_color())
    ax.set_xlabel("epoch")
    return line


def mark_peak(ax, epochs, values, color):
    """The early-stopping peak: a marker at the best epoch."""
    i = int(np.nanargmax(values))
    ax.plot(epochs[i], values[i], marker="*", markersize=11, color=color, markeredgecolor="black",
            markeredgewidth=0.5, linestyle="none", zorder=5)


def clean_noisy(ax, results: list[dict], *, color=None, label_=None):
    """Train accuracy on clean (solid) and noisy (dashed) examples, w.r.t. the labels trained on."""
    curves(ax, results, "train_acc_clean", color=color, label_=label_, peak=False)
    curves(ax, results, "train_acc_noisy", color=color, peak=False, linestyle="--")
    ax.set_ylabel("train accuracy (%)")
