"""The one training loop: every rule, every experiment, every scale.

Each epoch records test accuracy, train accuracy/loss on clean and on noisy
examples separately (w.r.t. the labels trained on), per-example gradient norms
of clean and noisy examples on a fixed probe subset, the feature norm ‖φ(x)‖,
the head norm ‖V‖_F and the wall time. Checkpoints are written every epoch and a
resumed run continues the same history (exactly, on CPU).
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn as nn
from tqdm import tqdm

from .data import DeviceLoader, NoisyDataset
from .methods import SAM, logit_grad_norms, loss_per_example, per_example_grad_norms, per_example_update_norms

__all__ = ["TrainConfig", "train", "evaluate", "TrainingDiverged", "HISTORY_KEYS"]

HISTORY_KEYS = (
    "epoch", "test_acc", "train_acc_clean", "train_acc_noisy", "train_loss_clean", "train_loss_noisy",
    "grad_norm_clean", "grad_norm_noisy", "grad_norm_ratio", "feature_norm", "head_norm", "seconds",
)


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


@dataclass
class TrainConfig:
    method: str = "sgd"
    rho: float = 0.0
    epochs: int = 10
    batch_size: int | None = 128  # None: full batch (gradient descent)
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    act_penalty: float = 0.0
    weight_penalty: float = 0.0
    squared: bool = False
    augment: bool = False
    seed: int = 0
    probe_size: int = 512
    probe_rho: float | None = None  # ρ for the logit-scale diagnostic; None skips it
    update_norms: bool = False  # also record norms of the rule's own per-example directions
    eval_batch: int = 1000
    chunk_size: int | None = 32


@torch.no_grad()
def _scores(model, loader: DeviceLoader, x, y, batch):
    """(per-example loss, per-example correctness) over a whole split."""
    losses, correct = [], []
    for s in range(0, x.shape[0], batch):
        z = model(loader.prepare(x[s:s + batch]))
        yb = y[s:s + batch]
        losses.append(loss_per_example(z, yb))
        pred = (z.squeeze(-1) > 0).long() if z.shape[-1] == 1 else z.argmax(-1)
        correct.append((pred == yb).float())
    return torch.cat(losses), torch.cat(correct)


def _mean(v: torch.Tensor) -> float:
    return float(v.mean()) if v.numel() else float("nan")


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 else float("nan")  # e.g. every noisy example fit to float precision


def _probe_indices(data: NoisyDataset, size: int, seed: int) -> torch.Tensor:
    """A fixed probe: half clean, half noisy examples (as many as exist)."""
    g = torch.Generator().manual_seed(10_007 + seed)
    out = []
    for mask in (~data.is_noisy.cpu(), data.is_noisy.cpu()):
        members = torch.nonzero(mask).flatten()
        out.append(members[torch.randperm(members.numel(), generator=g)[: size // 2]])
    return torch.sort(torch.cat(out)).values


def evaluate(model: nn.Module, data: NoisyDataset, loader: DeviceLoader, probe: torch.Tensor,
             cfg: TrainConfig) -> dict:
    """Every per-epoch metric of the history except ``epoch`` and ``seconds``."""
    was_training = model.training
    model.eval()
    _, test_correct = _scores(model, loader, data.x_test, data.y_test, cfg.eval_batch)
    tr_loss, tr_correct = _scores(model, loader, data.x_train, data.y_train, cfg.eval_batch)
    noisy = data.is_noisy
    out = {
        "test_acc": _mean(test_correct),
        "train_acc_clean": _mean(tr_correct[~noisy]),
        "train_acc_noisy": _mean(tr_correct[noisy]),
        "train_loss_clean": _mean(tr_loss[~noisy]),
        "train_loss_noisy": _mean(tr_loss[noisy]),
    }
    px, py, pn = loader.prepare(data.x_train[probe]), data.y_train[probe], noisy[probe]
    per_example = not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    if per_example:
        gn = per_example_grad_norms(model, px, py)
        out["grad_norm_clean"], out["grad_norm_noisy"] = _mean(gn[~pn]), _mean(gn[pn])
        out["grad_norm_ratio"] = _ratio(out["grad_norm_clean"], out["grad_norm_noisy"])
    else:  # BatchNorm: per-example gradients are not defined in train mode; not recorded
        out["grad_norm_clean"] = out["grad_norm_noisy"] = out["grad_norm_ratio"] = float("nan")
    if cfg.update_norms and per_example:
        un = per_example_update_norms(model, px, py, cfg.method, cfg.rho)
        out["update_norm_clean"], out["update_norm_noisy"] = _mean(un[~pn]), _mean(un[pn])
        out["update_norm_ratio"] = _ratio(out["update_norm_clean"], out["update_norm_noisy"])
    with torch.no_grad():
        out["feature_norm"] = float(model.features(px).flatten(1).norm(dim=1).mean())
        out["head_norm"] = float(model.head.weight.norm())
    if cfg.probe_rho is not None and per_example:
        d0, d1 = logit_grad_norms(model, px, py, cfg.probe_rho)
        out["logit_grad_ratio"] = _ratio(_mean(d0[~pn]), _mean(d0[pn]))
        out["logit_grad_ratio_perturbed"] = _ratio(_mean(d1[~pn]), _mean(d1[pn]))
    model.train(was_training)
    return out


def _save(path: Path, state: dict):
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)  # atomic: a crash never leaves a half-written checkpoint


def _clean(v):
    return None if isinstance(v, float) and math.isnan(v) else v


def train(model: nn.Module, data: NoisyDataset, cfg: TrainConfig, *, checkpoint: str | os.PathLike | None = None,
          resume: bool = False, progress: bool = True, device: str | torch.device | None = None) -> dict:
    """Train ``model`` on ``data`` with the rule in ``cfg``; returns the history and summary.

    With ``checkpoint`` a state file is written after every epoch; ``resume=True``
    continues from it (the config must match).
    """
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model.to(device)
    data = data.to(device)
    loader = DeviceLoader(data.x_train, data.y_train, cfg.batch_size, shuffle=cfg.batch_size is not None,
                          augment=cfg.augment, seed=cfg.seed)
    probe = _probe_indices(data, cfg.probe_size, cfg.seed).to(device)
    opt = SAM(model, torch.optim.SGD, method=cfg.method, rho=cfg.rho, act_penalty=cfg.act_penalty,
              weight_penalty=cfg.weight_penalty, squared=cfg.squared, chunk_size=cfg.chunk_size,
              lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    ckpt = Path(checkpoint) if checkpoint else None
    history: list[dict] = []
    start = 1
    if resume and ckpt is not None and ckpt.is_file():
        state = torch.load(ckpt, map_location=device, weights_only=False)
        if state["config"] != asdict(cfg):
            raise ValueError(f"checkpoint {ckpt} was written by a different config; delete it or drop --resume")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        history = state["history"]
        start = state["epoch"] + 1
    elif not history:
        t0 = time.perf_counter()
        history.append({"epoch": 0, **evaluate(model, data, loader, probe, cfg),
                        "seconds": time.perf_counter() - t0})

    bar = tqdm(range(start, cfg.epochs + 1), desc=f"{cfg.method} rho={cfg.rho:g}", disable=not progress,
               initial=start - 1, total=cfg.epochs, leave=False)
    for epoch in bar:
        t0 = time.perf_counter()
        model.train()
        for step, (xb, yb, _) in enumerate(loader.epoch(epoch)):
            loss = opt.step(xb, yb)
            if not torch.isfinite(loss):
                where = f"; the last good checkpoint is {ckpt}" if ckpt else ""
                raise TrainingDiverged(f"loss became {float(loss)} at epoch {epoch}, step {step} "
                                       f"(method {cfg.method}, rho {cfg.rho}, lr {cfg.lr}){where}")
        row = {"epoch": epoch, **evaluate(model, data, loader, probe, cfg)}
        row["seconds"] = time.perf_counter() - t0
        history.append(row)
        bar.set_postfix(test=f"{row['test_acc']:.3f}", noisy_fit=f"{row['train_acc_noisy']:.2f}")
        if ckpt is not None:
            _save(ckpt, {"config": asdict(cfg), "model": model.state_dict(),
                         "optimizer": opt.state_dict(), "history": history, "epoch": epoch})
    bar.close()
    return summarise(history)


def summarise(history: list[dict]) -> dict:
    """Best test accuracy and its epoch (early stopping), and the final one."""
    history = [{k: _clean(v) for k, v in row.items()} for row in history]
    best = max(history, key=lambda r: r["test_acc"])
    return {"history": {k: [r.get(k) for r in history] for k in history[0]},
            "best_test_acc": best["test_acc"], "best_epoch": best["epoch"],
            "final_test_acc": history[-1]["test_acc"]}
