"""Command line: ``python -m samlib {list,run,verify,bench}``.

Bad input exits with status 2 and one line on stderr naming the problem and the
fix, never a traceback, and never leaves a partial result file.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from . import experiments as E


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2
        self.exit(2, f"samlib: error: {message} (see `python -m samlib {self.prog.split()[-1]} --help`)\n")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="samlib", description="Experiments of the book 'Why is SAM robust to label noise?'")
    sub = p.add_subparsers(dest="cmd", required=True, parser_class=_Parser)
    sub.add_parser("list", help="list experiments, scales, methods and default rho")

    r = sub.add_parser("run", help="run one experiment config and write its result JSON")
    r.add_argument("experiment")
    r.add_argument("--scale", default="smoke", help="smoke | cpu | gpu (cifar10 also: colab)")
    r.add_argument("--method", default="sgd", help="sgd | sam | 1sam | lsam | jsam | regsgd")
    r.add_argument("--rho", type=float, default=None, help="perturbation radius (default: the chapter's)")
    r.add_argument("--noise", type=float, default=None, help="label-noise rate in [0, 1)")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a preset setting, e.g. --set epochs=5 (JSON values)")
    r.add_argument("--out", default=None, help="result file (default: results/EXPERIMENT/SCALE/...json)")
    r.add_argument("--checkpoint", default=None, help="checkpoint file written every epoch")
    r.add_argument("--resume", action="store_true", help="continue from --checkpoint")
    r.add_argument("--device", default=None, help="cpu | cuda (default: cuda if available)")
    r.add_argument("--quiet", action="store_true", help="no progress bar")

    w = sub.add_parser("sweep", help="run every missing config of a chapter's grid into results/")
    w.add_argument("experiment")
    w.add_argument("--scale", default="cpu")
    w.add_argument("--dry-run", action="store_true", help="list the configs and whether each is cached")
    w.add_argument("--reverse", action="store_true",
                   help="work from the end of the grid (a second worker; runs in progress are skipped)")

    v = sub.add_parser("verify", help="re-run a result file's config and compare the history")
    v.add_argument("result")
    v.add_argument("--quiet", action="store_true")

    b = sub.add_parser("bench", help="time every rule per step (see samlib.bench)")
    b.add_argument("--steps", type=int, default=30)
    b.add_argument("--models", default="mlp,smallcnn", help="comma list of mlp, smallcnn, resnet18, fastnet")
    b.add_argument("--device", default=None)
    b.add_argument("--out", default=None, help="JSON file (default: results/bench/cpu.json or gpu.json)")
    return p


def _overrides(items: list[str]) -> dict:
    out = {}
    for item in items:
        if "=" not in item:
            raise E.ConfigError(f"--set takes KEY=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return out


def _list() -> int:
    for name, spec in E.EXPERIMENTS.items():
        print(f"{name}: {spec['doc']}")
        print(f"  scales: {', '.join(spec['scales'])}")
        print(f"  methods: {', '.join(spec['methods'])}")
        print(f"  default rho: {', '.join(f'{m}={r:g}' for m, r in spec['rho'].items())}; noise {spec['noise']:g}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from .data import DataError
    from .train import TrainingDiverged

    try:
        if args.cmd == "list":
            return _list()
        if args.cmd == "run":
            if args.resume and not args.checkpoint:
                raise E.ConfigError("--resume needs --checkpoint FILE")
            cfg = E.make_config(args.experiment, args.scale, args.method, args.rho, args.noise, args.seed,
                                **_overrides(args.set))
            out = args.out or E.result_path(cfg)
            res = E.run(cfg, out=out, checkpoint=args.checkpoint, resume=args.resume,
                        progress=not args.quiet, device=args.device, command=E.command_line())
            print(f"{cfg['experiment']} {cfg['method']} rho={cfg['rho']:g} seed={cfg['seed']}: "
                  f"best test acc {res['best_test_acc']:.4f} at epoch {res['best_epoch']}, "
                  f"final {res['final_test_acc']:.4f} ({res['provenance']['wall_time_s']:.1f} s) -> {out}")
            return 0
        if args.cmd == "sweep":
            cfgs = E.sweep_configs(args.experiment, args.scale)
            todo = [c for c in cfgs if not E.result_path(c).is_file()]
            print(f"{args.experiment}/{args.scale}: {len(cfgs)} configs, {len(cfgs) - len(todo)} cached, {len(todo)} to run")
            for i, cfg in enumerate((todo[::-1] if args.reverse else todo) if not args.dry_run else []):
                path = E.result_path(cfg)
                lock = path.with_suffix(".lock")
                path.parent.mkdir(parents=True, exist_ok=True)
                try:  # another worker may hold this config
                    fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
                except FileExistsError:
                    continue
                try:
                    if path.is_file():
                        continue
                    res = E.run(cfg, out=path, command=E.command_line())
                finally:
                    os.close(fd)
                    lock.unlink()
                print(f"[{i + 1}/{len(todo)}] {path.name}: best {res['best_test_acc']:.4f} "
                      f"@ {res['best_epoch']}, {res['provenance']['wall_time_s']:.0f} s", flush=True)
            if args.dry_run:
                for c in cfgs:
                    print(("cached " if E.result_path(c).is_file() else "missing ") + str(E.result_path(c)))
            return 0
        if args.cmd == "verify":
            ok, diffs = E.verify(args.result, progress=not args.quiet)
            print(f"{args.result}: " + ("history reproduced exactly" if ok else "MISMATCH"))
            for d in diffs:
                print("  " + d)
            return 0 if ok else 1
        if args.cmd == "bench":
            from .bench import main as bench_main
            return bench_main(steps=args.steps, models=args.models.split(","), device=args.device, out=args.out)
    except (E.ConfigError, DataError, E.StaleResultError, TrainingDiverged, ValueError, FileNotFoundError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        print(f"samlib: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("samlib: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
