"""Per-step cost of every rule: ``python -m samlib bench``.

One process, the rules interleaved round by round, in a fresh random order each
round (so that drift hits all alike and no rule always follows the slow
per-example loop, which leaves caches cold); the median of ``steps`` timed steps after warm-up. Peak memory:
on CUDA ``max_memory_allocated`` per rule; on CPU the peak resident set of a
fresh process that runs three steps of that rule, next to the same process
running one forward pass ("baseline"): a process-wide peak is the only honest
CPU figure.
"""

from __future__ import annotations

import json
import os
import random
import statistics
import subprocess
import sys
import time

import torch

from .methods import gradient
from .models import MLP, ResNet18, SmallCNN

RULES = ("sgd", "sam", "1sam", "lsam", "jsam", "regsgd", "1sam-loop")
RHO = 0.05


def _setup(model_name: str, batch: int, device):
    torch.manual_seed(0)
    model = {"mlp": lambda: MLP(3072, (512, 512), 10),
             "smallcnn": lambda: SmallCNN((16, 32, 64), 10),
             "resnet18": lambda: ResNet18(10, norm="gn")}[model_name]().to(device)
    x = torch.randn(batch, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    return model, x, y


def _call(model, x, y, rule):
    method, impl = (rule[:-5], "loop") if rule.endswith("-loop") else (rule, "auto")
    kw = dict(act_penalty=1e-3, weight_penalty=1e-3, squared=True) if method == "regsgd" else {}
    return gradient(model, x, y, method, RHO, impl=impl, **kw)


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_rules(model_name: str, steps: int = 10, batch: int = 128, device=None, rules=RULES, warmup: int = 2):
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model, x, y = _setup(model_name, batch, device)
    times = {r: [] for r in rules}
    mem = {}
    for r in rules:
        for _ in range(warmup):
            _call(model, x, y, r)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
            base = torch.cuda.memory_allocated(device)
            _call(model, x, y, r)
            _sync(device)
            mem[r] = (torch.cuda.max_memory_allocated(device) - base) / 2**20
    rng = random.Random(0)
    for _ in range(steps):
        for r in rng.sample(rules, len(rules)):  # interleaved, in a new order each round
            _sync(device)
            t0 = time.perf_counter()
            _call(model, x, y, r)
            _sync(device)
            times[r].append(time.perf_counter() - t0)
    med = {r: statistics.median(v) for r, v in times.items()}
    return {"model": model_name, "batch": batch, "device": str(device), "steps": steps,
            "median_s": med, "ratio_to_sgd": {r: med[r] / med["sgd"] for r in rules},
            "peak_mem_mb": mem or None}


def _cpu_peak_mb(model_name: str, rule: str, batch: int) -> float:
    code = ("import resource, sys; from samlib.bench import _setup, _call; "
            f"m, x, y = _setup({model_name!r}, {batch}, 'cpu'); "
            f"[_call(m, x, y, {rule!r}) for _ in range(3)] if {rule!r} != 'none' else m(x); "
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(out.stdout.strip()) / 1024  # ru_maxrss is in KiB on Linux


def cpu_peak_memory(model_name: str, batch: int = 128, rules=RULES) -> dict:
    """Peak RSS (MB) of a fresh process per rule, and of one running a forward pass only."""
    return {"baseline": _cpu_peak_mb(model_name, "none", batch), **{r: _cpu_peak_mb(model_name, r, batch) for r in rules}}


def default_path(device_type: str):
    from .experiments import RESULTS_DIR

    return RESULTS_DIR / "bench" / f"{'gpu' if device_type == 'cuda' else 'cpu'}.json"


def load_all() -> list[dict]:
    """Every stored benchmark (results/bench/*.json)."""
    from .experiments import RESULTS_DIR

    return [json.loads(p.read_text()) for p in sorted((RESULTS_DIR / "bench").glob("*.json"))]


def main(steps: int = 30, models=("mlp", "smallcnn"), device=None, out=None) -> int:
    from .experiments import code_version, device_name

    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    out = out or default_path(dev.type)
    t0 = time.perf_counter()
    rows = []
    for m in models:
        rules = RULES if (m != "resnet18" or dev.type == "cuda") else tuple(r for r in RULES if r != "1sam-loop")
        res = time_rules(m, steps, device=dev, rules=rules)
        if dev.type == "cpu":
            res["peak_mem_mb"] = cpu_peak_memory(m, rules=rules)
        rows.append(res)
        print(f"\n{m} (batch {res['batch']}, {device_name(dev)}), median of {steps} steps")
        print(f"{'rule':>10} {'ms/step':>9} {'x sgd':>7} {'peak MB':>9}"
              + (f"   (peak RSS of a fresh process; forward only: {res['peak_mem_mb']['baseline']:.0f} MB)"
                 if dev.type == "cpu" else "   (max_memory_allocated)"))
        for r in rules:
            pm = res["peak_mem_mb"][r] if res["peak_mem_mb"] else float("nan")
            print(f"{r:>10} {1e3 * res['median_s'][r]:9.1f} {res['ratio_to_sgd'][r]:7.2f} {pm:9.0f}")
        if "1sam-loop" in rules:
            for r in ("1sam", "lsam", "jsam"):
                print(f"  {r} is {res['median_s']['1sam-loop'] / res['median_s'][r]:.0f}x faster than the per-example loop")
    result = {"benchmarks": rows, "provenance": {
        "code_version": code_version(), "torch_version": torch.__version__, "device": device_name(dev),
        "threads": torch.get_num_threads(), "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "wall_time_s": round(time.perf_counter() - t0, 1), "command": "python -m samlib bench"}}
    if out:
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        with open(out, "w") as f:
            json.dump(result, f, indent=1)
        print(f"\nwrote {out}")
    return 0
