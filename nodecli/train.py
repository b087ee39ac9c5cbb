"""The epoch loop: Adam on cross-entropy, per-epoch timing, accuracy and NFE counters.

`run_experiment` turns a validated config into a finished run record; it never raises
for a failed run: the record says what happened and the return value is the exit code.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from torch import Tensor

from nodecli.config import Config
from nodecli.data import DataSplit, load_dataset, shuffled_batches
from nodecli.device import resolve_device, synchronize
from nodecli.memory import StepMemory, measure_step
from nodecli.model import NeuralODEClassifier, build_model
from nodecli.ode.sensitivity import SolveSpec
from nodecli.runs import RunRecord

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

console = Console(highlight=False)


class TrainingError(RuntimeError):
    """The run cannot go on (for example the loss is no longer finite)."""


@dataclass
class EpochResult:
    epoch: int
    train_time_s: float
    train_loss: float
    train_acc: float
    test_acc: float
    nfe_forward: int
    nfe_backward: int
    hold_memory_bytes: float
    peak_memory_bytes: float

    def as_row(self) -> dict[str, Any]:
        return dict(self.__dict__)


def solve_spec(cfg: Config) -> SolveSpec:
    return SolveSpec(
        method=cfg.solver.method,
        rtol=cfg.solver.rtol,
        atol=cfg.solver.atol,
        step_size=cfg.solver.step_size,
        max_steps=cfg.solver.max_steps,
        sensealg=cfg.sensealg.name,
        seminorm=cfg.sensealg.seminorm,
        checkpointing=cfg.sensealg.checkpointing,
        adjoint_rtol=cfg.sensealg.adjoint_rtol,
        adjoint_atol=cfg.sensealg.adjoint_atol,
    )


@torch.no_grad()
def accuracy(model: NeuralODEClassifier, x: Tensor, y: Tensor, chunk: int = 8192) -> float:
    """Percentage of correct predictions, evaluated in large chunks (one solve per chunk)."""
    model.eval()
    correct = torch.zeros((), dtype=torch.long, device=y.device)
    for xs, ys in zip(x.split(chunk), y.split(chunk), strict=False):
        correct += (model(xs).argmax(dim=1) == ys).sum()
    model.train()
    return 100.0 * correct.item() / len(y)


def format_epoch_line(epoch: int, epochs: int, r: EpochResult) -> str:
    """The reference tutorial's exact per-epoch line."""
    return (
        f"[{epoch}/{epochs}]\tTime {r.train_time_s:.4f}s\t"
        f"Training Accuracy: {r.train_acc:.5f}%\tTest Accuracy: {r.test_acc:.5f}%"
    )


def train_epoch(
    model: NeuralODEClassifier,
    optimizer: torch.optim.Optimizer,
    data: DataSplit,
    batch_size: int,
    generator: torch.Generator,
    epoch: int,
    device: torch.device,
    on_batch: Callable[[], None] = lambda: None,
) -> tuple[float, float, int, int]:
    """One pass over the shuffled training set; returns (time, mean loss, NFE fwd, NFE bwd)."""
    ode = model.ode
    nfe_forward = nfe_backward = 0
    loss_sum = 0.0
    synchronize(device)
    start = time.perf_counter()
    for batch, (xb, yb) in enumerate(
        shuffled_batches(data.x_train, data.y_train, batch_size, generator), start=1
    ):
        before = ode.nfe
        loss = F.cross_entropy(model(xb), yb)
        after_forward = ode.nfe
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        # The adaptive solver synchronises with the host every step anyway, so reading
        # the loss here costs nothing extra and lets a divergence stop the run at once.
        value = loss.item()
        if not math.isfinite(value):
            raise TrainingError(f"loss became {value} at epoch {epoch}, batch {batch}")
        optimizer.step()
        nfe_forward += after_forward - before
        nfe_backward += ode.nfe - after_forward
        loss_sum += value * len(yb)
        on_batch()
    synchronize(device)
    elapsed = time.perf_counter() - start
    return elapsed, loss_sum / len(data.y_train), nfe_forward, nfe_backward


def memory_probe(
    model: NeuralODEClassifier, data: DataSplit, batch_size: int, device: torch.device
) -> StepMemory:
    """Hold and peak memory of one training step on the first training batch.

    Runs after the epoch, outside the timed loop (the CPU profiler is slow); no optimiser
    step, gradients cleared, the ODE block's counters restored: training is unaffected.
    See nodecli/memory.py for exactly what the two numbers measure.
    """
    xb, yb = data.x_train[:batch_size], data.y_train[:batch_size]
    counter = model.ode.counter
    saved = (counter.calls, counter.backpropagated, counter._recorded)
    result = measure_step(
        lambda: F.cross_entropy(model(xb), yb), device, exclude=[*model.parameters(), xb]
    )
    counter.calls, counter.backpropagated, counter._recorded = saved
    model.zero_grad(set_to_none=True)
    return result


def epochs_table(results: list[EpochResult]) -> Table:
    table = Table(title="nodecli: per-epoch results")
    for name in (
        "epoch",
        "time (s)",
        "loss",
        "train acc (%)",
        "test acc (%)",
        "NFE fwd",
        "NFE bwd",
        "held (KiB)",
        "peak (KiB)",
    ):
        table.add_column(name, justify="right")
    for r in results:
        table.add_row(
            str(r.epoch),
            f"{r.train_time_s:.4f}",
            f"{r.train_loss:.4f}",
            f"{r.train_acc:.2f}",
            f"{r.test_acc:.2f}",
            str(r.nfe_forward),
            str(r.nfe_backward),
            f"{r.hold_memory_bytes / 1024:.1f}",
            "n/a" if math.isnan(r.peak_memory_bytes) else f"{r.peak_memory_bytes / 1024:.1f}",
        )
    return table


def run_experiment(cfg: Config, run_dir: Path, overrides: list[str]) -> int:
    """Train the configured experiment into RUN_DIR; return the process exit code."""
    device = resolve_device(cfg.device.name)
    if cfg.device.threads is not None:
        torch.set_num_threads(cfg.device.threads)
    record = RunRecord(Path(run_dir))
    record.start(str(device), torch.get_num_threads(), overrides)
    try:
        results = _train(cfg, device, record)
    except Exception as exc:  # the record must say what happened, whatever it was
        message = f"{type(exc).__name__}: {exc}".splitlines()[0]
        record.finish("failed", error=message)
        console.print(f"[red]run failed:[/red] {message}\nrecord: {run_dir}")
        return EXIT_FAILED
    record.finish("completed")
    if results:
        console.print(epochs_table(results))
    console.print(f"record: {run_dir}")
    return EXIT_OK


def _train(cfg: Config, device: torch.device, record: RunRecord) -> list[EpochResult]:
    torch.manual_seed(cfg.seed)
    data = load_dataset(
        cfg.dataset.name, cfg.data.n, cfg.data.split, cfg.seed, cfg.dataset.root
    ).to(device)
    model = build_model(
        cfg.layer_style.name, solve_spec(cfg), cfg.model.latent, cfg.model.hidden, cfg.model.t1
    ).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.train.lr)
    generator = torch.Generator().manual_seed(cfg.seed)
    epochs = cfg.train.epochs
    n_batches = math.ceil(len(data.y_train) / cfg.train.batch_size)
    results: list[EpochResult] = []
    with Progress(
        TextColumn("epoch {task.fields[epoch]}/{task.fields[epochs]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    ) as progress:
        task = progress.add_task("train", total=epochs * n_batches, epoch=1, epochs=epochs)
        for epoch in range(1, epochs + 1):
            progress.update(task, epoch=epoch)
            seconds, loss, nfe_f, nfe_b = train_epoch(
                model,
                optimizer,
                data,
                cfg.train.batch_size,
                generator,
                epoch,
                device,
                on_batch=lambda: progress.advance(task),
            )
            memory = memory_probe(model, data, cfg.train.batch_size, device)
            result = EpochResult(
                epoch=epoch,
                train_time_s=seconds,
                train_loss=loss,
                train_acc=accuracy(model, data.x_train, data.y_train),
                test_acc=accuracy(model, data.x_test, data.y_test),
                nfe_forward=nfe_f,
                nfe_backward=nfe_b,
                hold_memory_bytes=memory.hold_bytes,
                peak_memory_bytes=memory.peak_bytes,
            )
            record.append_epoch(result.as_row())
            results.append(result)
            # print(), not rich: the reference line uses real tab characters.
            print(format_epoch_line(epoch, epochs, result), flush=True)
    return results
