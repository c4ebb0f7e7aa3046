"""Label noise, the toy generator, CIFAR-10 loading and the device-resident loader."""
import io

import numpy as np
import pytest
import torch

from samlib import data as D


@pytest.mark.parametrize("rate", [0.0, 0.1, 0.3, 0.8])
def test_symmetric_noise_exact_count_and_all_flipped_differ(rate):
    y = torch.arange(1000) % 10
    noisy, mask = D.add_label_noise(y, rate, 10, seed=3)
    assert int(mask.sum()) == round(rate * 1000)
    assert (noisy[mask] != y[mask]).all() and (noisy[~mask] == y[~mask]).all()
    assert noisy.min() >= 0 and noisy.max() < 10


def test_symmetric_noise_is_uniform_over_other_classes():
    y = np.zeros(60_000, dtype=np.int64)
    noisy, mask = D.add_label_noise(y, 0.5, 4, seed=0)
    counts = np.bincount(noisy[mask], minlength=4)
    assert counts[0] == 0
    assert np.allclose(counts[1:] / mask.sum(), 1 / 3, atol=0.01)


def test_noise_deterministic_per_seed_and_type_preserved():
    y = np.arange(500) % 10
    a, ma = D.add_label_noise(y, 0.3, 10, seed=1)
    b, mb = D.add_label_noise(y, 0.3, 10, seed=1)
    c, _ = D.add_label_noise(y, 0.3, 10, seed=2)
    assert isinstance(a, np.ndarray) and np.array_equal(a, b) and np.array_equal(ma, mb)
    assert not np.array_equal(a, c)


def test_asymmetric_noise_follows_the_cifar_map():
    y = torch.arange(1000) % 10
    noisy, mask = D.add_label_noise(y, 0.4, 10, seed=0, kind="asymmetric")
    for src, dst in D.CIFAR10_ASYMMETRIC.items():
        sel = y == src
        assert int(mask[sel].sum()) == round(0.4 * int(sel.sum()))
        assert (noisy[sel & mask] == dst).all()
    assert not mask[(y == 0) | (y == 1) | (y == 6) | (y == 7) | (y == 8)].any()


@pytest.mark.parametrize("args, match", [
    (dict(rate=1.0), r"\[0, 1\)"), (dict(rate=-0.1), r"\[0, 1\)"),
    (dict(kind="pairwise"), "unknown noise kind"), (dict(num_classes=1), "at least 2"),
])
def test_noise_bad_input(args, match):
    kw = dict(labels=np.arange(10) % 2, rate=0.2, num_classes=2, seed=0) | args
    with pytest.raises(D.DataError, match=match):
        D.add_label_noise(**kw)


def test_gaussian_generator():
    xtr, ytr, xte, yte = D.make_gaussian(4000, 10, 50, mu=2.0, seed=0, decay=1.0)
    assert xtr.shape == (4000, 50) and set(ytr.unique().tolist()) == {0, 1}
    t = 2.0 * ytr - 1
    assert abs(float((xtr[:, 0] * t).mean()) - 2.0) < 0.1  # signal along e_1
    var = xtr[:, 1:].var(0)
    assert var[0] > 5 * var[-1]  # decaying nuisance spectrum
    assert abs(float(xtr[:, 1:].var(0).sum()) - 49) < 5  # trace preserved
    a = D.make_gaussian(10, 10, 5, 1.0, seed=4)
    b = D.make_gaussian(10, 10, 5, 1.0, seed=4)
    assert all(torch.equal(u, v) for u, v in zip(a, b))


def _fake_archive(path, n_train=20, n_test=10):
    """A tiny archive in the offline copy's format (JPEGs concatenated + offsets)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    arrays = {"classes": np.array([f"c{i}" for i in range(10)])}
    for split, n in (("train", n_train), ("test", n_test)):
        blobs, offs = [], [0]
        for _ in range(n):
            buf = io.BytesIO()
            Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(buf, "JPEG", quality=75)
            blobs.append(np.frombuffer(buf.getvalue(), dtype=np.uint8))
            offs.append(offs[-1] + len(blobs[-1]))
        arrays[f"{split}_jpeg"] = np.concatenate(blobs)
        arrays[f"{split}_offsets"] = np.array(offs, dtype=np.int64)
        arrays[f"{split}_labels"] = (np.arange(n) % 10).astype(np.uint8)
    np.savez(path, **arrays)


def test_load_cifar10_from_jpeg_archive(tmp_path, monkeypatch):
    monkeypatch.setenv("SAMLIB_CACHE", str(tmp_path / "cache"))
    _fake_archive(tmp_path / "cifar10_jpeg.npz")
    for root in (tmp_path, tmp_path / "cifar10_jpeg.npz"):
        xtr, ytr, xte, yte, name = D.load_cifar10(root)
        assert xtr.shape == (20, 3, 32, 32) and xtr.dtype == torch.uint8 and xte.shape == (10, 3, 32, 32)
        assert ytr.tolist() == [i % 10 for i in range(20)]
        assert name == "CIFAR-10 (JPEG q75 copy)"
    again = D.load_cifar10(tmp_path)  # from the decoded cache
    assert torch.equal(again[0], xtr)


def test_load_cifar10_missing_gives_clear_error(tmp_path):
    with pytest.raises(D.DataError, match="SAMLIB_CIFAR10"):
        D.load_cifar10(tmp_path / "nowhere")


def test_shared_cifar_copy(cifar_copy):
    xtr, ytr, xte, yte, name = D.load_cifar10(cifar_copy)
    assert xtr.shape == (50_000, 3, 32, 32) and xte.shape == (10_000, 3, 32, 32)
    assert np.bincount(ytr.numpy()).tolist() == [5000] * 10
    mean = (xtr[::10].float() / 255).mean((0, 2, 3))  # every class: the file is sorted by class
    assert torch.allclose(mean, torch.tensor(D.CIFAR10_MEAN), atol=0.005)


def test_subset_per_class_balanced():
    y = torch.arange(1000) % 10
    idx = D.subset_per_class(y, 100, seed=0)
    assert torch.bincount(y[idx]).tolist() == [10] * 10
    assert torch.equal(idx, D.subset_per_class(y, 100, seed=0))


def test_device_loader_deterministic_and_augments():
    x = torch.randint(0, 256, (50, 3, 8, 8), dtype=torch.uint8)
    y = torch.arange(50)
    L = D.DeviceLoader(x, y, 16, augment=True, pad=2, seed=5)
    a = list(L.epoch(3))
    b = list(L.epoch(3))
    c = list(L.epoch(4))
    assert len(a) == len(L) == 4
    assert all(torch.equal(u[0], v[0]) and torch.equal(u[2], v[2]) for u, v in zip(a, b))
    assert not torch.equal(a[0][2], c[0][2])
    assert sorted(torch.cat([t[2] for t in a]).tolist()) == list(range(50))
    xb, yb, idx = a[0]
    assert xb.shape == (16, 3, 8, 8) and xb.dtype == torch.float32 and torch.equal(yb, y[idx])
    # Without augmentation the batch is exactly the normalised images.
    plain = next(D.DeviceLoader(x, y, 16, augment=False, seed=5).epoch(3))
    torch.testing.assert_close(plain[0], L.prepare(x[plain[2]]))
    # Each augmented image is a shifted (possibly flipped) copy: the centre pixel of a
    # 2-pixel shift stays inside the original image, so all values are attainable.
    assert not torch.equal(xb, L.prepare(x[idx]))


def test_download_cifar10_unpacks_and_loads(tmp_path, monkeypatch):
    """The download path, fed a small archive in the original format through a file:// URL."""
    import pickle
    import tarfile

    src = tmp_path / "src" / "cifar-10-batches-py"
    src.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name, n in [*((f"data_batch_{i}", 4) for i in range(1, 6)), ("test_batch", 3)]:
        with open(src / name, "wb") as f:
            pickle.dump({"data": rng.integers(0, 255, (n, 3072), dtype=np.uint8), "labels": list(range(n))}, f)
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(src, arcname="cifar-10-batches-py")
    monkeypatch.delenv("SAMLIB_CIFAR10", raising=False)
    monkeypatch.setenv("SAMLIB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(D.download_cifar10, "__defaults__", (archive.as_uri(), None))
    xtr, ytr, xte, yte, name = D.load_cifar10()
    assert xtr.shape == (20, 3, 32, 32) and xte.shape == (3, 3, 32, 32) and name == "CIFAR-10"
    assert (tmp_path / "cache" / "cifar10" / "cifar-10-batches-py" / "test_batch").is_file()
    with pytest.raises(D.DataError, match="could not download"):
        D.download_cifar10(tmp_path / "other", url=(tmp_path / "missing.tar.gz").as_uri())
