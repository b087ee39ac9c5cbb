"""Datasets: the bundled 5k digits and torchvision-layout MNIST from tiny IDX files."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from nodecli.experiment.data import (
    MNIST_FILES,
    DatasetError,
    dataset_size,
    ensure_mnist,
    load_bundled,
    load_dataset,
    load_mnist,
    shuffled_batches,
)


def write_idx(path: Path, array: np.ndarray, compress: bool = False) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    if compress:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(payload))
    else:
        path.write_bytes(payload)


def make_mnist(root: Path, n_train: int = 30, n_test: int = 10, compress: bool = False) -> None:
    """Tiny MNIST in torchvision's layout; pixel (0,0) encodes the label for checking."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, size=n).astype(np.uint8)
        images = rng.integers(0, 256, size=(n, 28, 28)).astype(np.uint8)
        images[:, 0, 0] = labels * 10 + (0 if prefix == "train" else 1)
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images, compress)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels, compress)


def test_bundled_has_5000_real_digits_grouped_by_class() -> None:
    images, labels = load_bundled()
    assert images.shape == (5000, 28, 28) and images.dtype == np.uint8
    assert np.bincount(labels).tolist() == [500] * 10
    assert labels[0] == 0 and labels[-1] == 9  # grouped: shuffling before subsetting matters


def test_bundled_split_is_shuffled_scaled_and_seeded() -> None:
    data = load_dataset("mnist_bundled", 1500, 0.9, seed=0)
    assert data.x_train.shape == (1350, 1, 28, 28) and data.x_test.shape == (150, 1, 28, 28)
    assert data.x_train.dtype == torch.float32
    assert 0.0 <= data.x_train.min() and data.x_train.max() <= 1.0
    assert len(data.y_train.unique()) == 10 and len(data.y_test.unique()) == 10
    again = load_dataset("mnist_bundled", 1500, 0.9, seed=0)
    assert torch.equal(data.y_train, again.y_train)
    other = load_dataset("mnist_bundled", 1500, 0.9, seed=1)
    assert not torch.equal(data.y_train, other.y_train)


def test_bundled_n_too_large_is_an_error() -> None:
    with pytest.raises(DatasetError, match="larger than the 5000"):
        load_dataset("mnist_bundled", 5001, 0.9, seed=0)


@pytest.mark.parametrize("compress", [False, True])
def test_mnist_from_idx_files_all_and_subset(tmp_path: Path, compress: bool) -> None:
    make_mnist(tmp_path, compress=compress)
    full = load_dataset("mnist", None, 0.9, seed=0, root=str(tmp_path))
    assert len(full.y_train) == 30 and len(full.y_test) == 10  # official split kept
    # Pixel (0,0) tells which file a digit came from: train never leaks into test.
    assert torch.all((full.x_train[:, 0, 0, 0] * 255).round() % 10 == 0)
    assert torch.all((full.x_test[:, 0, 0, 0] * 255).round() % 10 == 1)
    assert torch.equal(((full.x_train[:, 0, 0, 0] * 255).round() // 10).long(), full.y_train)
    sub = load_dataset("mnist", 20, 0.75, seed=0, root=str(tmp_path))
    assert len(sub.y_train) == 15 and len(sub.y_test) == 5
    assert dataset_size("mnist", str(tmp_path)) == 40


def test_mnist_missing_files_without_download_says_where(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"MNIST files not found in .*MNIST/raw"):
        ensure_mnist(tmp_path, download=False)


def test_a_failed_download_names_its_cause_and_leaves_no_folders(
    tmp_path: Path, monkeypatch
) -> None:
    # It used to leave root/MNIST/raw behind and say only "Error downloading x.gz:".
    import torchvision.datasets

    def offline(root: str, train: bool, download: bool) -> None:
        (Path(root) / "MNIST" / "raw").mkdir(parents=True)
        raise RuntimeError(
            "Error downloading train-images-idx3-ubyte.gz:\nTried https://a/, got:\n"
            "<urlopen error [Errno -2] Name or service not known>\n"
        )

    monkeypatch.setattr(torchvision.datasets, "MNIST", offline)
    root = tmp_path / "data" / "mnist"
    with pytest.raises(DatasetError) as err:
        ensure_mnist(root, download=True)
    assert "(Error downloading train-images-idx3-ubyte.gz: <urlopen error [Errno -2]" in str(
        err.value
    )
    assert list(tmp_path.iterdir()) == []


def test_mnist_truncated_idx_is_reported(tmp_path: Path) -> None:
    make_mnist(tmp_path)
    path = tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(DatasetError, match="truncated"):
        load_dataset("mnist", None, 0.9, seed=0, root=str(tmp_path))


def test_cli_trains_on_idx_mnist(cli_here, tmp_path: Path) -> None:
    make_mnist(tmp_path / "mnistroot", n_train=40, n_test=12)
    result = cli_here(
        "train",
        "dataset=mnist",
        f"dataset.root={tmp_path / 'mnistroot'}",
        "data.n=null",
        "train.epochs=1",
        "dataset.download=false",
    )
    assert result.returncode == 0, result.stderr
    assert "[1/1]" in result.stdout


def test_cli_mnist_without_files_exits_2_nothing_written(cli_here, tmp_path: Path) -> None:
    result = cli_here(
        "train", "dataset=mnist", f"dataset.root={tmp_path / 'nowhere'}", "dataset.download=false"
    )
    assert result.returncode == 2
    assert "MNIST files not found" in result.stderr
    assert not (tmp_path / "outputs").exists()


def test_batches_cover_every_example_once_in_seeded_order() -> None:
    x, y = torch.arange(10.0).reshape(10, 1), torch.arange(10)
    batches = list(shuffled_batches(x, y, 4, torch.Generator().manual_seed(0)))
    assert [len(b[1]) for b in batches] == [4, 4, 2]
    assert sorted(torch.cat([b[1] for b in batches]).tolist()) == list(range(10))
    again = list(shuffled_batches(x, y, 4, torch.Generator().manual_seed(0)))
    assert all(torch.equal(a[1], b[1]) for a, b in zip(batches, again, strict=False))


def test_bundled_cache_is_written_reused_and_optional(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("NODECLI_CACHE_DIR", str(tmp_path / "cache"))
    images, labels = load_bundled()
    (cached,) = (tmp_path / "cache").glob("mnist_5k-*.npy")
    again_images, again_labels = load_bundled()  # now from the .npy
    assert np.array_equal(images, again_images) and np.array_equal(labels, again_labels)
    cached.write_bytes(b"not an array")  # a corrupt cache is parsed afresh and rewritten
    assert np.array_equal(load_bundled()[0], images)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    monkeypatch.setenv("NODECLI_CACHE_DIR", str(blocker / "sub"))  # cannot be created
    assert np.array_equal(load_bundled()[1], labels)


def test_mnist_unreadable_idx_file_is_a_dataset_error(tmp_path: Path) -> None:
    """A damaged .gz (gzip raises an OSError): one DatasetError line, not a traceback."""
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in MNIST_FILES.values():
        (raw / f"{name}.gz").write_bytes(b"not gzip at all")
    with pytest.raises(DatasetError, match="cannot read .*train-images-idx3-ubyte.gz"):
        load_mnist(tmp_path)
