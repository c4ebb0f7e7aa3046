"""The command line: runs write results; bad input is one line on stderr, exit 2, no file."""
import json
import subprocess
import sys

import pytest


def cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "samlib", *args], capture_output=True, text=True, cwd=cwd)


def test_list():
    r = cli("list")
    assert r.returncode == 0
    for name in ("toy", "twolayer", "decomposition", "cifar10", "smoke", "cpu", "gpu"):
        assert name in r.stdout


def test_run_and_verify(tmp_path):
    out = tmp_path / "toy.json"
    r = cli("run", "toy", "--scale", "smoke", "--method", "1sam", "--rho", "0.2", "--seed", "1", "--out", str(out), "--quiet")
    assert r.returncode == 0, r.stderr
    res = json.loads(out.read_text())
    assert res["config"]["rho"] == 0.2 and res["config"]["seed"] == 1
    assert res["provenance"]["command"].startswith("python -m samlib run toy")
    v = cli("verify", str(out), "--quiet")
    assert v.returncode == 0 and "reproduced exactly" in v.stdout


@pytest.mark.parametrize("args, needle", [
    (["run", "toy", "--rho", "-0.5"], "rho must be"),
    (["run", "toy", "--noise", "1.5"], "[0, 1)"),
    (["run", "toy", "--method", "adam"], "unknown method"),
    (["run", "nosuch"], "unknown experiment"),
    (["run", "toy", "--scale", "huge"], "unknown scale"),
    (["run", "toy", "--rho", "abc"], "invalid float value"),
    (["run", "toy", "--set", "bogus=1"], "unknown setting"),
    (["run", "toy", "--resume"], "--checkpoint"),
    (["verify", "/nonexistent.json"], "nonexistent"),
])
def test_bad_input_one_line_exit_2(tmp_path, args, needle):
    out = tmp_path / "r.json"
    r = cli(*args, *(["--out", str(out)] if args[0] == "run" else []))
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in r.stderr
    assert not out.exists() and not list(tmp_path.iterdir())


def test_missing_data_is_a_clear_error(tmp_path):
    import os
    env = dict(os.environ, SAMLIB_CIFAR10=str(tmp_path / "missing"))
    r = subprocess.run([sys.executable, "-m", "samlib", "run", "cifar10", "--scale", "smoke",
                        "--out", str(tmp_path / "x.json")], capture_output=True, text=True, env=env)
    assert r.returncode == 2 and "SAMLIB_CIFAR10" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x.json").exists()
