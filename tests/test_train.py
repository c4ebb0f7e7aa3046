"""The training loop: metrics, resume, divergence, and the runner's cache and verification."""
import json

import pytest
import torch

from samlib import experiments as E
from samlib.train import HISTORY_KEYS, TrainingDiverged


def _toy_cfg(**kw):
    return E.make_config("toy", "smoke", "1sam", **kw)


def test_history_has_every_metric():
    res = E.run(_toy_cfg(), progress=False)
    h = res["history"]
    for k in HISTORY_KEYS:
        assert k in h and len(h[k]) == 21, k
    assert h["epoch"] == list(range(21))
    assert res["best_test_acc"] == max(h["test_acc"]) and h["test_acc"][res["best_epoch"]] == res["best_test_acc"]
    assert res["final_test_acc"] == h["test_acc"][-1]
    assert all(0 <= a <= 1 for a in h["train_acc_noisy"])
    for k in ("code_version", "torch_version", "device", "date", "wall_time_s", "command"):
        assert res["provenance"][k]


def test_resume_equals_uninterrupted_run(tmp_path, cifar_copy):
    """Stop after 2 epochs, resume to the end: the same history as one uninterrupted run."""
    cfg = E.make_config("cifar10", "smoke", "jsam", epochs=3)
    full = E.run(cfg, progress=False)
    ck = tmp_path / "ck.pt"
    E.run({**cfg, "train": {**cfg["train"], "epochs": 2}}, checkpoint=ck, progress=False)
    state = torch.load(ck, weights_only=False)
    state["config"]["epochs"] = 3  # the same run, now asked to go on to epoch 3
    torch.save(state, ck)
    resumed = E.run(cfg, checkpoint=ck, resume=True, progress=False)
    assert E.compare_histories(resumed["history"], full["history"]) == []


def test_resume_refuses_other_config(tmp_path):
    ck = tmp_path / "ck.pt"
    E.run(_toy_cfg(epochs=2), checkpoint=ck, progress=False)
    with pytest.raises(ValueError, match="different config"):
        E.run(_toy_cfg(epochs=2, lr=0.1), checkpoint=ck, resume=True, progress=False)


def test_divergence_stops_with_clear_message(tmp_path, cifar_copy):
    cfg = E.make_config("decomposition", "smoke", "sgd", lr=1e6, epochs=2)
    with pytest.raises(TrainingDiverged, match=r"loss became (nan|inf)"):
        E.run(cfg, checkpoint=tmp_path / "ck.pt", progress=False)


def test_run_or_load_uses_cache_and_refuses_stale(tmp_path):
    first = E.run_or_load("toy", "smoke", "sam", seed=1, results_dir=tmp_path, save=True, progress=False)
    path = E.result_path(first["config"], tmp_path)
    assert path.is_file()
    again = E.run_or_load("toy", "smoke", "sam", seed=1, results_dir=tmp_path, progress=False)
    assert again == json.loads(path.read_text())  # loaded, not re-run
    stored = json.loads(path.read_text())
    stored["config"]["train"]["epochs"] = 999
    path.write_text(json.dumps(stored))
    with pytest.raises(E.StaleResultError, match="different config"):
        E.run_or_load("toy", "smoke", "sam", seed=1, results_dir=tmp_path, progress=False)


def test_verify_reproduces_exactly_and_catches_tampering(tmp_path):
    path = tmp_path / "r.json"
    E.run(_toy_cfg(), out=path, progress=False)
    assert E.verify(path, progress=False) == (True, [])
    stored = json.loads(path.read_text())
    stored["history"]["test_acc"][5] += 0.01
    path.write_text(json.dumps(stored))
    ok, diffs = E.verify(path, progress=False)
    assert not ok and "test_acc differs first at epoch 5" in diffs[0]


def test_config_overrides_and_errors():
    cfg = E.make_config("toy", "cpu", "sam", init_scale=0.0)
    assert cfg["model"]["init_scale"] == 0.0 and cfg["variant"] == "init_scale=0"
    assert "init_scale=0" in E.result_path(cfg).name
    assert E.make_config("toy", "cpu", "sgd")["rho"] == 0.0
    for kw, match in [(dict(scale="huge"), "unknown scale"), (dict(method="adam"), "unknown method"),
                      (dict(rho=-1.0), "rho must be"), (dict(noise=1.0), r"\[0, 1\)"),
                      (dict(bogus=3), "unknown setting")]:
        with pytest.raises(E.ConfigError, match=match):
            E.make_config(**({"experiment": "toy", "scale": "smoke", "method": "sgd"} | kw))


def test_full_batch_gd_without_noise_fits_training_set():
    """Sanity: plain GD on separable data reaches 100% clean train accuracy."""
    cfg = E.make_config("toy", "smoke", "sgd", noise=0.0, epochs=200)
    res = E.run(cfg, progress=False)
    assert res["history"]["train_acc_clean"][-1] == 1.0


def test_sweep_grids_per_scale():
    """The chapters' grids: cpu as cached in results/, colab = the six rules once, smoke = one seed each."""
    assert len(E.sweep_configs("cifar10", "cpu")) == 26
    colab = E.sweep_configs("cifar10", "colab")
    assert sorted(c["method"] for c in colab) == sorted(["sgd", "sam", "1sam", "lsam", "jsam", "regsgd"])
    assert all(c["noise"] == 0.3 for c in colab)
    assert {c["seed"] for c in E.sweep_configs("toy", "smoke")} == {0}
    for exp in ("toy", "twolayer", "decomposition", "cifar10"):
        cfgs = E.sweep_configs(exp, "cpu")
        assert len({str(E.result_path(c)) for c in cfgs}) == len(cfgs), exp  # one file per config
        assert all(E.result_path(c).is_file() for c in cfgs), f"results/{exp}/cpu is incomplete"
