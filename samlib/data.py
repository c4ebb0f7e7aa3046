"""Data: label noise, the toy Gaussian generator, small datasets, CIFAR-10 and a
device-resident loader (data moved to the GPU once, augmentation on the device).
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import tarfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "add_label_noise",
    "make_gaussian",
    "load_digits",
    "load_cifar10",
    "NoisyDataset",
    "DeviceLoader",
    "CIFAR10_ASYMMETRIC",
    "DataError",
]

# CIFAR-10 class indices: 0 airplane, 1 automobile, 2 bird, 3 cat, 4 deer, 5 dog,
# 6 frog, 7 horse, 8 ship, 9 truck. The usual asymmetric map:
# truck→automobile, bird→airplane, cat↔dog, deer→horse.
CIFAR10_ASYMMETRIC = {9: 1, 2: 0, 3: 5, 5: 3, 4: 7}
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


class DataError(ValueError):
    """Bad data request (missing files, bad arguments); the message says how to fix it."""


# --------------------------------------------------------------------------
# Label noise
# --------------------------------------------------------------------------
def add_label_noise(labels, rate: float, num_classes: int, seed: int, kind: str = "symmetric"):
    """Flip labels; returns ``(noisy_labels, is_noisy)`` of the input's type (tensor or array).

    ``symmetric``: exactly ``round(rate·n)`` examples, chosen uniformly, each moved
    to a different class drawn uniformly. ``asymmetric`` (CIFAR-10): for each class
    ``c`` in :data:`CIFAR10_ASYMMETRIC`, exactly ``round(rate·n_c)`` of its examples
    move to the mapped class. Deterministic for a given ``seed``.
    """
    if not (0.0 <= rate < 1.0):
        raise DataError(f"noise rate must be in [0, 1), got {rate}")
    if kind not in ("symmetric", "asymmetric"):
        raise DataError(f"unknown noise kind {kind!r}; choose 'symmetric' or 'asymmetric'")
    if num_classes < 2:
        raise DataError("label noise needs at least 2 classes")
    is_tensor = isinstance(labels, torch.Tensor)
    y = labels.detach().cpu().numpy() if is_tensor else np.asarray(labels)
    y = y.astype(np.int64)
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise DataError(f"labels must lie in [0, {num_classes})")
    rng = np.random.default_rng(seed)
    noisy = y.copy()
    if kind == "symmetric":
        idx = rng.choice(y.size, size=int(round(rate * y.size)), replace=False)
        # An offset in 1..C-1 lands uniformly on the C-1 other classes.
        noisy[idx] = (y[idx] + rng.integers(1, num_classes, size=idx.size)) % num_classes
    else:
        if num_classes != 10:
            raise DataError("asymmetric noise is defined for CIFAR-10 (10 classes)")
        for src, dst in sorted(CIFAR10_ASYMMETRIC.items()):
            members = np.flatnonzero(y == src)
            idx = rng.choice(members, size=int(round(rate * members.size)), replace=False)
            noisy[idx] = dst
    is_noisy = noisy != y
    if is_tensor:
        return torch.as_tensor(noisy, device=labels.device), torch.as_tensor(is_noisy, device=labels.device)
    return noisy, is_noisy


@dataclass
class NoisyDataset:
    """A training set with label noise (the clean labels and the noise mask kept) and a test set."""

    x_train: torch.Tensor
    y_train: torch.Tensor  # the labels we train on (noisy)
    y_clean: torch.Tensor
    is_noisy: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    name: str = ""

    @classmethod
    def with_noise(cls, x_train, y_train, x_test, y_test, num_classes, rate, seed, kind="symmetric", name=""):
        y_train = torch.as_tensor(y_train, dtype=torch.long)
        noisy, mask = add_label_noise(y_train, rate, num_classes, seed, kind)
        return cls(x_train, noisy, y_train, mask, x_test, torch.as_tensor(y_test, dtype=torch.long),
                   num_classes, name)

    def to(self, device) -> "NoisyDataset":
        f = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in self.__dict__.items()}
        return NoisyDataset(**f)


# --------------------------------------------------------------------------
# The toy Gaussian data
# --------------------------------------------------------------------------
def make_gaussian(n_train: int, n_test: int, d: int, mu: float, seed: int,
                  decay: float = 0.0, dtype=torch.float32):
    """Two Gaussian classes ``x = t·μ·e_1 + ξ``, ``t = ±1``, labels ``(t+1)/2 ∈ {0, 1}``.

    ``ξ ~ N(0, Σ)`` with ``Σ = diag(1, 2^{-decay}, 3^{-decay}, …)`` scaled so that
    ``tr Σ = d``: ``decay = 0`` is isotropic; ``decay > 0`` concentrates the noise
    in a few high-variance nuisance directions. The signal direction ``e_1``
    keeps unit noise variance. Returns ``(x_train, y_train, x_test, y_test)``.
    """
    if min(n_train, n_test, d) < 1:
        raise DataError("n_train, n_test and d must be positive")
    g = torch.Generator().manual_seed(seed)
    var = torch.arange(1, d + 1, dtype=torch.float64).pow(-decay)
    var[1:] *= (d - 1) / var[1:].sum() if d > 1 else 1.0
    var[0] = 1.0
    std = var.sqrt().to(dtype)

    def sample(n):
        t = torch.randint(0, 2, (n,), generator=g)
        x = torch.randn(n, d, generator=g, dtype=dtype) * std
        x[:, 0] += (2 * t - 1).to(dtype) * mu
        return x, t

    x_tr, y_tr = sample(n_train)
    x_te, y_te = sample(n_test)
    return x_tr, y_tr, x_te, y_te


def load_digits():
    """scikit-learn's 8×8 digits (1,797 images, 10 classes), pixel values scaled to [0, 1].

    Returns ``(x, y)`` tensors; split them yourself. Needs scikit-learn.
    """
    try:
        from sklearn.datasets import load_digits as _ld
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise DataError("load_digits needs scikit-learn: pip install scikit-learn") from e
    d = _ld()
    return torch.tensor(d.data / 16.0, dtype=torch.float32), torch.tensor(d.target, dtype=torch.long)


# --------------------------------------------------------------------------
# CIFAR-10
# --------------------------------------------------------------------------
def _cache_dir() -> Path:
    return Path(os.environ.get("SAMLIB_CACHE", Path.home() / ".cache" / "samlib"))


def _decode_jpeg_archive(path: Path):
    """Our offline copy: all JPEGs of a split concatenated, with offsets (see its README)."""
    from PIL import Image

    z = np.load(path, allow_pickle=False)
    out = []
    for split in ("train", "test"):
        buf, off = z[f"{split}_jpeg"], z[f"{split}_offsets"]
        imgs = np.stack([
            np.asarray(Image.open(io.BytesIO(buf[off[i]:off[i + 1]].tobytes())).convert("RGB"))
            for i in range(len(off) - 1)
        ])
        out += [imgs, z[f"{split}_labels"].astype(np.int64)]
    return out


def _read_python_batches(folder: Path):
    """The original archive as torchvision unpacks it (cifar-10-batches-py)."""
    def read(names):
        xs, ys = [], []
        for n in names:
            with open(folder / n, "rb") as f:
                d = pickle.load(f, encoding="latin1")
            xs.append(np.asarray(d["data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
            ys.append(np.asarray(d["labels"], dtype=np.int64))
        return np.concatenate(xs), np.concatenate(ys)

    xtr, ytr = read([f"data_batch_{i}" for i in range(1, 6)])
    xte, yte = read(["test_batch"])
    return xtr, ytr, xte, yte


def cifar10_source(root: str | os.PathLike | None = None) -> tuple[str, Path]:
    """Where CIFAR-10 will come from: ``("jpeg-archive" | "python-batches" | "download", path)``.

    ``root`` or the environment variable ``SAMLIB_CIFAR10`` may name a ``.npz``
    archive in our JPEG format, or a folder holding it or ``cifar-10-batches-py``.
    With neither, the original dataset is downloaded into the cache folder.
    """
    root = root or os.environ.get("SAMLIB_CIFAR10") or None  # an empty variable counts as unset
    if root is None:
        return "download", _cache_dir() / "cifar10"
    p = Path(root).expanduser()
    if p.is_file() and p.suffix == ".npz":
        return "jpeg-archive", p
    if p.is_dir():
        if (p / "cifar10_jpeg.npz").is_file():
            return "jpeg-archive", p / "cifar10_jpeg.npz"
        for cand in (p, p / "cifar-10-batches-py"):
            if (cand / "data_batch_1").is_file():
                return "python-batches", cand
    raise DataError(f"no CIFAR-10 found at {p}: point SAMLIB_CIFAR10 at cifar10_jpeg.npz or a "
                    "folder with cifar-10-batches-py, or unset it to download the dataset")


CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"  # the archive torchvision uses
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"


def download_cifar10(folder: Path, url: str = CIFAR10_URL, md5: str | None = CIFAR10_MD5) -> Path:
    """Download and unpack the original CIFAR-10 (python version) into ``folder``, once."""
    target = folder / "cifar-10-batches-py"
    if (target / "data_batch_1").is_file():
        return target
    folder.mkdir(parents=True, exist_ok=True)
    archive = folder / "cifar-10-python.tar.gz"
    if not archive.is_file():
        part = archive.with_suffix(".part")
        try:
            urllib.request.urlretrieve(url, part)
        except OSError as e:
            raise DataError(f"could not download CIFAR-10 from {url} ({e}); set SAMLIB_CIFAR10 to a local copy") from e
        os.replace(part, archive)
    if md5 and hashlib.md5(archive.read_bytes()).hexdigest() != md5:
        archive.unlink()
        raise DataError(f"the CIFAR-10 download from {url} is corrupt (md5 mismatch); run again")
    with tarfile.open(archive) as tf:
        try:
            tf.extractall(folder, filter="data")
        except TypeError:  # Python < 3.11.4 has no extraction filters
            tf.extractall(folder)
    return target


def load_cifar10(root: str | os.PathLike | None = None, cache: bool = True):
    """CIFAR-10 as uint8 tensors ``(x_train N×3×32×32, y_train, x_test, y_test, name)``.

    ``name`` is ``"CIFAR-10"`` for the original data and ``"CIFAR-10 (JPEG q75 copy)"``
    for the offline JPEG re-encoding, so every result says what it was measured on.
    Decoded JPEG archives are cached under ``$SAMLIB_CACHE`` (default ``~/.cache/samlib``).
    """
    kind, path = cifar10_source(root)
    if kind == "jpeg-archive":
        name = "CIFAR-10 (JPEG q75 copy)"
        key = hashlib.sha1(f"{path.resolve()}:{path.stat().st_size}:{path.stat().st_mtime_ns}".encode()).hexdigest()[:12]
        cached = _cache_dir() / f"cifar10-jpeg-{key}.npz"
        if cache and cached.is_file():
            z = np.load(cached)
            arrays = [z[k] for k in ("xtr", "ytr", "xte", "yte")]
        else:
            arrays = _decode_jpeg_archive(path)
            if cache:
                cached.parent.mkdir(parents=True, exist_ok=True)
                tmp = cached.with_suffix(".tmp.npz")
                np.savez(tmp, xtr=arrays[0], ytr=arrays[1], xte=arrays[2], yte=arrays[3])
                os.replace(tmp, cached)
    elif kind == "python-batches":
        name = "CIFAR-10"
        arrays = _read_python_batches(path)
    else:
        name = "CIFAR-10"
        arrays = _read_python_batches(download_cifar10(path))
    xtr, ytr, xte, yte = arrays
    to_t = lambda a: torch.from_numpy(np.ascontiguousarray(a.transpose(0, 3, 1, 2)))  # noqa: E731
    return to_t(xtr), torch.from_numpy(ytr).long(), to_t(xte), torch.from_numpy(yte).long(), name


def subset_per_class(y: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """Indices of a class-balanced subset of size ``n`` (n/C per class), deterministic per seed."""
    classes = torch.unique(y)
    per = n // len(classes)
    g = torch.Generator().manual_seed(seed)
    idx = []
    for c in classes:
        members = torch.nonzero(y == c).flatten()
        if per > members.numel():
            raise DataError(f"asked for {per} examples of class {int(c)} but it has {members.numel()}")
        idx.append(members[torch.randperm(members.numel(), generator=g)[:per]])
    return torch.sort(torch.cat(idx)).values


# --------------------------------------------------------------------------
# A device-resident loader (airbench-style)
# --------------------------------------------------------------------------
class DeviceLoader:
    """Batches from tensors that already sit on the device; no worker processes.

    uint8 images (N×C×H×W) are normalised on the fly; with ``augment`` each batch
    gets a random crop (zero padding ``pad``) and a horizontal flip, on the
    device. Order and augmentation depend only on ``(seed, epoch)``, so a
    resumed run sees exactly the batches of an uninterrupted one.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int | None, *, shuffle: bool = True,
                 augment: bool = False, pad: int = 4, seed: int = 0, mean=None, std=None):
        self.x, self.y = x, y
        self.n = x.shape[0]
        self.batch_size = batch_size or self.n
        self.shuffle, self.augment, self.pad, self.seed = shuffle, augment, pad, seed
        self.images = x.dtype == torch.uint8
        if self.images:
            c = x.shape[1]
            self.mean = torch.tensor(mean or CIFAR10_MEAN[:c], device=x.device).view(1, c, 1, 1)
            self.std = torch.tensor(std or CIFAR10_STD[:c], device=x.device).view(1, c, 1, 1)

    def __len__(self):
        return -(-self.n // self.batch_size)

    def prepare(self, xb: torch.Tensor) -> torch.Tensor:
        """uint8 → normalised float; float inputs pass through."""
        if not self.images:
            return xb
        return (xb.float() / 255.0 - self.mean) / self.std

    def _augment(self, xb: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        B, C, H, W = xb.shape
        p = self.pad
        dev = xb.device
        padded = torch.nn.functional.pad(xb, (p, p, p, p))
        oy = torch.randint(0, 2 * p + 1, (B,), generator=g).to(dev)
        ox = torch.randint(0, 2 * p + 1, (B,), generator=g).to(dev)
        flip = (torch.rand(B, generator=g) < 0.5).to(dev)
        rows = (oy[:, None] + torch.arange(H, device=dev))[:, None, :, None]
        cols = ox[:, None] + torch.arange(W, device=dev)
        cols = torch.where(flip[:, None], cols.flip(1), cols)[:, None, None, :]
        b = torch.arange(B, device=dev)[:, None, None, None]
        c = torch.arange(C, device=dev)[None, :, None, None]
        return padded[b, c, rows, cols]

    def epoch(self, epoch: int):
        """Yield ``(x, y, idx)`` batches for ``epoch`` (idx: positions in the dataset)."""
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        order = torch.randperm(self.n, generator=g) if self.shuffle else torch.arange(self.n)
        order = order.to(self.x.device)
        for s in range(0, self.n, self.batch_size):
            idx = order[s:s + self.batch_size]
            xb = self.prepare(self.x[idx])
            if self.augment:
                xb = self._augment(xb, g)
            yield xb, self.y[idx], idx
