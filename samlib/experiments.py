"""Experiments, scales and the results cache.

An experiment at a scale is a preset: a plain, JSON-able config. ``run`` turns a
config into a result (history, summary, provenance); ``run_or_load`` returns the
cached result under ``results/`` when its config matches exactly and refuses a
stale one; ``verify`` re-runs a result and compares the histories.

Scales: ``smoke`` (seconds, CI), ``cpu`` (minutes on a laptop, real data: the
book's cached results), ``gpu`` (paper scale; ``cifar10`` also has ``colab``).
"""

from __future__ import annotations

import copy
import datetime as _dt
import json
import math
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

import torch

from . import __version__
from .data import NoisyDataset, load_cifar10, make_gaussian, subset_per_class
from .methods import METHODS
from .models import build_model
from .train import TrainConfig, train

__all__ = ["EXPERIMENTS", "SCALES", "make_config", "run", "run_or_load", "verify", "result_path",
           "load_result", "StaleResultError", "ConfigError", "RESULTS_DIR"]

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = Path(os.environ.get("SAMLIB_RESULTS", REPO_ROOT / "results"))


class ConfigError(ValueError):
    """A bad experiment request; the message names the problem and the fix."""


class StaleResultError(RuntimeError):
    """A cached result exists but was produced by a different config."""


# ---------------------------------------------------------------------------
# Presets. Where the paper is silent (toy data, penalty coefficients, CPU-scale
# sizes) these values are our choice; the book says so.
# ---------------------------------------------------------------------------
_TOY_DATA = {"kind": "gaussian", "n_train": 200, "n_test": 2000, "d": 400, "mu": 1.5, "decay": 0.0}
# Our choice (the paper does not give its recipe): isotropic data, d = 2n, and a random
# initialisation of norm ~3 so that GD has to travel (from w = 0 one GD step is already
# the class-mean classifier). The chapter also runs the w = 0 case.
_TOY_TRAIN = {"batch_size": None, "lr": 0.5, "momentum": 0.0, "weight_decay": 0.0, "probe_size": 10_000,
              "update_norms": True}

_TL_TRAIN = {**_TOY_TRAIN, "lr": 0.1, "update_norms": False}
_PAPER_RHO = {"sam": 0.01, "1sam": 0.01, "lsam": 0.01, "jsam": 0.01}  # the paper's protocol

EXPERIMENTS: dict[str, dict] = {
    "toy": {
        "doc": "Linear logistic regression on two Gaussians with flipped labels, full-batch GD/SAM/1-SAM.",
        "methods": ("sgd", "sam", "1sam", "lsam", "jsam"),
        "rho": {"sam": 0.5, "1sam": 1.6, "lsam": 1.6, "jsam": 1.6},
        "noise": 0.2,
        "scales": {
            "smoke": {"data": {**_TOY_DATA, "n_train": 60, "n_test": 200, "d": 120},
                      "model": {"name": "linear", "init_scale": 3.0}, "train": {**_TOY_TRAIN, "epochs": 20}},
            "cpu": {"data": _TOY_DATA, "model": {"name": "linear", "init_scale": 3.0},
                    "train": {**_TOY_TRAIN, "epochs": 300}},
            "gpu": {"data": {**_TOY_DATA, "n_train": 2000, "d": 4000, "n_test": 10_000},
                    "model": {"name": "linear", "init_scale": 3.0}, "train": {**_TOY_TRAIN, "epochs": 1000}},
        },
    },
    "twolayer": {
        "doc": "Two-layer linear network f = vᵀWx on the toy Gaussian data.",
        "methods": METHODS,
        "rho": {"sam": 0.1, "1sam": 0.1, "lsam": 0.1, "jsam": 0.1},
        "regsgd": {"act_penalty": 0.001, "weight_penalty": 0.001, "squared": True},
        "noise": 0.2,
        "scales": {
            "smoke": {"data": {**_TOY_DATA, "n_train": 60, "n_test": 200, "d": 120},
                      "model": {"name": "twolayer", "h": 16, "init_scale": 1.0}, "train": {**_TL_TRAIN, "epochs": 20}},
            "cpu": {"data": _TOY_DATA, "model": {"name": "twolayer", "h": 50, "init_scale": 1.0},
                    "train": {**_TL_TRAIN, "epochs": 300}},
            "gpu": {"data": {**_TOY_DATA, "n_train": 2000, "d": 4000, "n_test": 10_000},
                    "model": {"name": "twolayer", "h": 200, "init_scale": 1.0}, "train": {**_TL_TRAIN, "epochs": 1000}},
        },
    },
    "decomposition": {
        "doc": "MLP 3072-512-512-10 on CIFAR-10 with 30% symmetric noise: SGD, SAM, 1-SAM, L-SAM, J-SAM, regularised SGD.",
        "methods": METHODS,
        "rho": {"sam": 0.2, "1sam": 0.02, "lsam": 0.02, "jsam": 0.02},
        "regsgd": {"act_penalty": 0.005, "weight_penalty": 0.005, "squared": True},
        "noise": 0.3,
        "scales": {
            "smoke": {"data": {"kind": "cifar10", "n_train": 512, "n_test": 500},
                      "model": {"name": "mlp", "d_in": 3072, "hidden": [64, 64], "num_classes": 10},
                      "train": {"epochs": 2, "batch_size": 128, "lr": 0.01, "probe_size": 128, "probe_rho": 0.02}},
            "cpu": {"data": {"kind": "cifar10", "n_train": 10_000, "n_test": 10_000},
                    "model": {"name": "mlp", "d_in": 3072, "hidden": [512, 512], "num_classes": 10},
                    "train": {"epochs": 25, "batch_size": 128, "lr": 0.01, "probe_size": 1000, "probe_rho": 0.02}},
            "gpu": {"data": {"kind": "cifar10", "n_train": 50_000, "n_test": 10_000},
                    "model": {"name": "mlp", "d_in": 3072, "hidden": [512, 512], "num_classes": 10},
                    "train": {"epochs": 200, "batch_size": 128, "lr": 0.01, "probe_size": 1000, "probe_rho": 0.02}},
        },
    },
    "cifar10": {
        "doc": "The paper's headline: CIFAR-10, 30% symmetric noise, every rule on one GroupNorm network.",
        "methods": METHODS,
        "rho": {"sam": 0.05, "1sam": 0.01, "lsam": 0.01, "jsam": 0.01},
        "regsgd": {"act_penalty": 0.005, "weight_penalty": 0.005, "squared": True},
        "noise": 0.3,
        "scales": {
            "smoke": {"data": {"kind": "cifar10", "n_train": 256, "n_test": 256},
                      "model": {"name": "smallcnn", "widths": [8, 16, 32], "num_classes": 10},
                      "train": {"epochs": 2, "batch_size": 128, "lr": 0.01, "augment": True, "probe_size": 64}},
            # CPU scale (our choice): a 4k-image subset, the small CNN, no augmentation and a
            # larger learning rate, so that the early-stopping peak comes within 20 epochs.
            "cpu": {"data": {"kind": "cifar10", "n_train": 4000, "n_test": 2000},
                    "model": {"name": "smallcnn", "widths": [16, 32, 64], "num_classes": 10},
                    "train": {"epochs": 20, "batch_size": 128, "lr": 0.05, "augment": False, "probe_size": 256}},
            # Sized to fit the six-rule comparison in one free Colab T4 session: an estimate,
            # not a measurement (see the chapter); `python -m samlib bench --models resnet18`
            # measures the throughput on the GPU at hand.
            "colab": {"rho": _PAPER_RHO, "data": {"kind": "cifar10", "n_train": 20_000, "n_test": 10_000},
                      "model": {"name": "resnet18", "norm": "gn", "num_classes": 10},
                      "train": {"epochs": 15, "batch_size": 128, "lr": 0.01, "augment": True, "probe_size": 512}},
            "gpu": {"rho": _PAPER_RHO, "data": {"kind": "cifar10", "n_train": 50_000, "n_test": 10_000},
                    "model": {"name": "resnet18", "norm": "gn", "num_classes": 10},
                    "train": {"epochs": 200, "batch_size": 128, "lr": 0.01, "augment": True, "probe_size": 512}},
        },
    },
}
SCALES = ("smoke", "cpu", "colab", "gpu")

# The grids each chapter shows. An entry: method, rho values (None: the default),
# seeds, overrides, and optionally the scales it runs at. Where a grid has one
# value on three seeds and others on seed 0 only, the three-seed value was fixed
# before the runs (from the calibration noted in the chapter), not picked on test.
SWEEPS: dict[str, list[dict]] = {
    "toy": [
        {"method": "sgd", "seeds": range(5)},
        {"method": "sam", "rho": [0.5, 2.0], "seeds": range(5)},
        {"method": "1sam", "rho": [0.2, 0.4, 0.8, 1.6, 3.2], "seeds": range(5)},
        {"method": "sgd", "seeds": range(5), "overrides": {"init_scale": 0.0}},
        {"method": "1sam", "rho": [0.4, 1.6], "seeds": range(5), "overrides": {"init_scale": 0.0}},
        {"method": "sgd", "seeds": range(5), "overrides": {"lr": 2.0, "epochs": 1500}, "scales": ("cpu",)},
    ],
    "twolayer": [
        *({"method": m, "seeds": range(5)} for m in ("sgd", "1sam", "lsam", "jsam", "regsgd")),
        {"method": "regsgd", "seeds": range(5), "overrides": {"act_penalty": 0.01, "weight_penalty": 0.01}},
        {"method": "jsam", "rho": [0.2], "seeds": [0]},  # too large: collapses (an exercise)
    ],
    "decomposition": [
        {"method": "sgd", "seeds": range(3)},
        *({"method": m, "seeds": range(3)} for m in ("sam", "1sam", "lsam", "jsam", "regsgd")),
        {"method": "sam", "rho": [0.1], "seeds": [0]},
        *({"method": m, "rho": [0.01], "seeds": [0]} for m in ("1sam", "lsam", "jsam")),
        {"method": "1sam", "rho": [0.1], "seeds": [0]},  # too large: shown in an exercise
        {"method": "regsgd", "seeds": [0], "overrides": {"act_penalty": 0.02, "weight_penalty": 0.02}},
    ],
    "cifar10": [
        *({"method": m, "seeds": range(3)} for m in ("sgd", "sam", "1sam", "lsam", "jsam", "regsgd")),
        *({"method": m, "noise": r, "seeds": [0], "scales": ("smoke", "cpu", "gpu")}
          for r in (0.2, 0.4, 0.6, 0.8) for m in ("sgd", "sam")),
    ],
}
_TOP = ("experiment", "scale", "method", "rho", "noise", "seed")


_OPTIONAL = {"noise_kind": "data", "root": "data", "norm": "model"}  # settings a preset may leave out


def _find_section(cfg: dict, key: str) -> str:
    hits = [s for s in ("data", "model", "train") if key in cfg[s]]
    if not hits and key in _OPTIONAL:
        hits = [_OPTIONAL[key]]
    if key in TrainConfig.__dataclass_fields__ and key not in ("method", "rho", "seed"):
        hits = hits or ["train"]
    if len(hits) != 1:
        raise ConfigError(f"unknown setting {key!r}; settings of this preset: "
                          + ", ".join(sorted(k for s in ("data", "model", "train") for k in cfg[s])))
    return hits[0]


def _fmt(v) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def make_config(experiment: str, scale: str, method: str = "sgd", rho: float | None = None,
                noise: float | None = None, seed: int = 0, **overrides) -> dict:
    """The full config of one run. Keyword ``overrides`` change preset settings by name
    (e.g. ``init_scale=0.0``, ``epochs=5``) and are recorded in the config's ``variant``."""
    if experiment not in EXPERIMENTS:
        raise ConfigError(f"unknown experiment {experiment!r}; choose one of {', '.join(EXPERIMENTS)}")
    spec = EXPERIMENTS[experiment]
    if scale not in spec["scales"]:
        raise ConfigError(f"unknown scale {scale!r} for {experiment}; choose one of {', '.join(spec['scales'])}")
    if method not in spec["methods"]:
        raise ConfigError(f"unknown method {method!r} for {experiment}; choose one of {', '.join(spec['methods'])}")
    if rho is None:
        rho = spec["scales"][scale].get("rho", spec["rho"]).get(method, 0.0)
    rho = float(rho)
    if not (rho >= 0) or math.isinf(rho):
        raise ConfigError(f"rho must be a finite number >= 0, got {rho}")
    noise = float(spec["noise"] if noise is None else noise)
    if not (0.0 <= noise < 1.0):
        raise ConfigError(f"noise rate must be in [0, 1), got {noise}")
    if int(seed) != seed or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed}")
    preset = {k: v for k, v in copy.deepcopy(spec["scales"][scale]).items() if k != "rho"}
    cfg = {"experiment": experiment, "scale": scale, "method": method, "rho": rho, "noise": noise,
           "seed": int(seed), "variant": "", **preset}
    if method == "regsgd":
        cfg["train"].update(spec.get("regsgd", {}))
    parts = []
    for key in sorted(overrides):
        value = overrides[key]
        cfg[_find_section(cfg, key)][key] = list(value) if isinstance(value, tuple) else value
        parts.append(f"{key}={_fmt(value)}")
    cfg["variant"] = ",".join(parts)
    return cfg


def result_path(cfg: dict, results_dir: str | os.PathLike | None = None) -> Path:
    """``results/EXPERIMENT/SCALE/METHOD-rhoR-noiseN[-VARIANT]-seedS.json``."""
    name = f"{cfg['method']}-rho{_fmt(cfg['rho'])}-noise{_fmt(cfg['noise'])}"
    if cfg.get("variant"):
        name += "-" + re.sub(r"[^A-Za-z0-9.=_]+", "_", cfg["variant"])
    name += f"-seed{cfg['seed']}.json"
    return Path(results_dir or RESULTS_DIR) / cfg["experiment"] / cfg["scale"] / name


# ---------------------------------------------------------------------------
# Building data and models from a config
# ---------------------------------------------------------------------------
def _build_data(cfg: dict) -> NoisyDataset:
    d, seed = cfg["data"], cfg["seed"]
    if d["kind"] == "gaussian":
        xtr, ytr, xte, yte = make_gaussian(d["n_train"], d["n_test"], d["d"], d["mu"], seed=seed,
                                           decay=d.get("decay", 0.0))
        return NoisyDataset.with_noise(xtr, ytr, xte, yte, 2, cfg["noise"], seed, name="Gaussian toy")
    if d["kind"] == "cifar10":
        xtr, ytr, xte, yte, name = load_cifar10(d.get("root"))
        # The subset is fixed (seed 0) so seeds vary noise, initialisation and order only.
        tr = subset_per_class(ytr, d["n_train"], 0) if d["n_train"] < len(ytr) else torch.arange(len(ytr))
        te = subset_per_class(yte, d["n_test"], 0) if d["n_test"] < len(yte) else torch.arange(len(yte))
        return NoisyDataset.with_noise(xtr[tr], ytr[tr], xte[te], yte[te], 10, cfg["noise"], seed,
                                       kind=d.get("noise_kind", "symmetric"), name=name)
    raise ConfigError(f"unknown data kind {d['kind']!r}")


def _build_model(cfg: dict, data: NoisyDataset) -> torch.nn.Module:
    m = dict(cfg["model"])
    name, init_scale = m.pop("name"), m.pop("init_scale", None)
    if name in ("linear", "twolayer"):
        m["d"] = data.x_train.shape[1]
    torch.manual_seed(cfg["seed"])
    model = build_model(name, **m)
    if init_scale is not None:
        # Every weight matrix N(0, s²/fan_in): the initial function has scale ~s.
        with torch.no_grad():
            for p in model.parameters():
                p.normal_(0.0, init_scale / math.sqrt(p.shape[-1]))
    return model


def _train_config(cfg: dict) -> TrainConfig:
    return TrainConfig(method=cfg["method"], rho=cfg["rho"], seed=cfg["seed"], **cfg["train"])


# ---------------------------------------------------------------------------
# Provenance
# ---------------------------------------------------------------------------
def code_version() -> str:
    """Git commit of the code this process imported (``-dirty`` if samlib/ had uncommitted
    changes then), else the package version."""
    return _CODE_VERSION


def _git_version() -> str:
    try:
        sha = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--", "samlib"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return f"samlib {__version__}"


_CODE_VERSION = _git_version()  # at import: the code actually loaded, even if the tree changes later


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"cpu: {cpu} ({torch.get_num_threads()} threads)"


def run(cfg: dict, *, out: str | os.PathLike | None = None, checkpoint: str | os.PathLike | None = None,
        resume: bool = False, progress: bool = True, device: str | None = None, command: str | None = None) -> dict:
    """Run one config; returns ``{config, history, best_test_acc, best_epoch, final_test_acc, provenance}``."""
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True  # fp32 parameters and perturbations; TF32 matmuls
        torch.backends.cudnn.allow_tf32 = True
    t0 = time.perf_counter()
    data = _build_data(cfg)
    model = _build_model(cfg, data)
    summary = train(model, data, _train_config(cfg), checkpoint=checkpoint, resume=resume,
                    progress=progress, device=dev)
    result = {
        "config": cfg,
        **summary,
        "provenance": {
            "code_version": code_version(),
            "samlib_version": __version__,
            "torch_version": torch.__version__,
            "python_version": platform.python_version(),
            "device": device_name(dev),
            "dataset": data.name,
            "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "wall_time_s": round(time.perf_counter() - t0, 3),
            "command": command or "samlib.experiments.run",
        },
    }
    if out is not None:
        save_result(result, out)
    return result


def save_result(result: dict, path: str | os.PathLike):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=1, allow_nan=False) + "\n")
    os.replace(tmp, path)  # atomic: never a partial result file


def load_result(path: str | os.PathLike) -> dict:
    return json.loads(Path(path).read_text())


def _diff(a, b, prefix="") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            out += _diff(a.get(k), b.get(k), f"{prefix}{k}.")
        return out
    return [] if a == b else [f"{prefix[:-1]}: {b!r} in the file, {a!r} now"]


def run_or_load(experiment: str | dict, scale: str | None = None, method: str = "sgd", rho: float | None = None,
                noise: float | None = None, seed: int = 0, *, results_dir=None, save: bool | None = None,
                progress: bool = True, **overrides) -> dict:
    """The cached result for this config if ``results/`` has it, else run it.

    A cached file whose config differs is refused (``StaleResultError``), never
    silently used. ``save`` defaults to True except at ``smoke`` scale.
    """
    cfg = experiment if isinstance(experiment, dict) else make_config(
        experiment, scale, method, rho, noise, seed, **overrides)
    path = result_path(cfg, results_dir)
    if path.is_file():
        stored = load_result(path)
        if stored["config"] != json.loads(json.dumps(cfg)):
            raise StaleResultError(
                f"{path} was produced by a different config ({'; '.join(_diff(cfg, stored['config'])[:3])}); "
                f"re-run it with `python -m samlib run {cfg['experiment']} --scale {cfg['scale']} "
                f"--method {cfg['method']} --rho {_fmt(cfg['rho'])} --seed {cfg['seed']}` or delete the file")
        return stored
    if save is None:
        save = cfg["scale"] != "smoke"
    return run(cfg, out=path if save else None, progress=progress, command="samlib.experiments.run_or_load")


def compare_histories(a: dict, b: dict, ignore=("seconds",)) -> list[str]:
    """Where two histories differ (exact comparison), ignoring wall-clock fields."""
    out = []
    for k in sorted(set(a) | set(b)):
        if k in ignore:
            continue
        if a.get(k) != b.get(k):
            va, vb = a.get(k) or [], b.get(k) or []
            i = next((i for i, (x, y) in enumerate(zip(va, vb)) if x != y), min(len(va), len(vb)))
            out.append(f"{k} differs first at epoch {i}: "
                       f"{va[i] if i < len(va) else 'missing'} vs {vb[i] if i < len(vb) else 'missing'}")
    return out


def verify(path: str | os.PathLike, progress: bool = True) -> tuple[bool, list[str]]:
    """Re-run a stored result's config; (True, []) if the history is reproduced exactly."""
    stored = load_result(path)
    fresh = run(stored["config"], progress=progress, command=f"samlib verify {path}")
    diffs = compare_histories(fresh["history"], stored["history"])
    return not diffs, diffs


def load_all(experiment: str, scale: str, results_dir=None) -> list[dict]:
    """Every stored result of an experiment at a scale (sorted by file name)."""
    folder = Path(results_dir or RESULTS_DIR) / experiment / scale
    return [load_result(p) for p in sorted(folder.glob("*.json"))]


def command_line() -> str:
    return " ".join(["python -m samlib", *sys.argv[1:]])


def group(results: list[dict], by=("method", "rho", "variant")) -> dict[tuple, list[dict]]:
    """Results grouped by config keys (seeds pooled), in a stable order."""
    out: dict[tuple, list[dict]] = {}
    for r in results:
        out.setdefault(tuple(r["config"].get(k) for k in by), []).append(r)
    return dict(sorted(out.items(), key=lambda kv: tuple(str(x) for x in kv[0])))


def summary_table(results: list[dict], by=("method", "rho")):
    """Best and final test accuracy (%; mean ± std over seeds) and the best epoch, per group."""
    import numpy as np
    import pandas as pd

    rows = []
    for key, rs in group(results, by).items():
        best = np.array([r["best_test_acc"] for r in rs]) * 100
        final = np.array([r["final_test_acc"] for r in rs]) * 100
        rows.append({**dict(zip(by, key)), "seeds": len(rs),
                     "best_mean": best.mean(), "best_std": best.std(ddof=1) if len(rs) > 1 else 0.0,
                     "best_epoch": float(np.mean([r["best_epoch"] for r in rs])),
                     "final_mean": final.mean(), "final_std": final.std(ddof=1) if len(rs) > 1 else 0.0})
    return pd.DataFrame(rows)


def best_per_method(table, method_col="method", score="best_mean"):
    """The row of each method with the highest mean best accuracy (its best ρ in the grid)."""
    return table.loc[table.groupby(method_col)[score].idxmax()].reset_index(drop=True)


def sweep_configs(experiment: str, scale: str) -> list[dict]:
    """Every config of a chapter's grid at a scale. ``smoke`` and ``colab`` keep one seed
    (``colab``: the six-rule comparison in one free Colab session)."""
    if experiment not in SWEEPS:
        raise ConfigError(f"unknown experiment {experiment!r}; choose one of {', '.join(SWEEPS)}")
    out = []
    for e in SWEEPS[experiment]:
        if scale not in e.get("scales", (scale,)):
            continue
        seeds = list(e["seeds"])[:1] if scale in ("smoke", "colab") else list(e["seeds"])
        for rho in e.get("rho", [None]):
            for seed in seeds:
                out.append(make_config(experiment, scale, e["method"], rho, e.get("noise"), seed,
                                       **e.get("overrides", {})))
    return out


def sweep(experiment: str, scale: str, *, results_dir=None, progress: bool = True, save: bool | None = None):
    """Results of a chapter's whole grid: cached ones loaded, missing ones run."""
    from tqdm import tqdm

    cfgs = sweep_configs(experiment, scale)
    missing = sum(not result_path(c, results_dir).is_file() for c in cfgs)
    return [run_or_load(c, results_dir=results_dir, save=save, progress=False)
            for c in tqdm(cfgs, desc=f"{experiment}/{scale}: {missing} to run", leave=False,
                          disable=not progress or missing == 0)]  # no bar when all are cached


def select(results: list[dict], **where) -> list[dict]:
    """The results whose config matches every ``key=value`` given (e.g. method="sgd", variant="")."""
    return [r for r in results if all(r["config"].get(k) == v for k, v in where.items())]


def memorisation_epoch(history: dict) -> int | None:
    """First epoch at which more than half of the noisy examples that were *not* fit at
    initialisation are fit: (a_t − a_0)/(1 − a_0) > 1/2, with a_t the noisy-train accuracy.

    From w = 0 (a_0 = 0) this is the first epoch fitting over half the noisy labels; from a
    random initialisation, which fits about half of them by chance, it discounts that luck.
    """
    acc = history["train_acc_noisy"]
    a0 = acc[0]
    return next((e for e, a in zip(history["epoch"], acc) if a0 < 1 and (a - a0) / (1 - a0) > 0.5), None)
