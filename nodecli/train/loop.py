"""The epoch loop: Adam on cross-entropy, per-epoch timing, accuracy and NFE counters.

`run_experiment` turns a validated config into a finished run record; it never raises
for a failed run: the record says what happened and the return value is the exit code.
"""

from __future__ import annotations

import gc
import logging
import math
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn.functional as F
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from torch import Tensor

from nodecli.backends.registry import distribution
from nodecli.config.fields import instantiate_field
from nodecli.config.overrides import shell_override
from nodecli.config.schema import Config
from nodecli.console import make_console
from nodecli.errors import EXIT_FAILED, EXIT_OK, EXIT_USAGE, os_error_line
from nodecli.experiment.data import DataSplit, load_dataset, shuffled_batches
from nodecli.experiment.device import synchronize
from nodecli.experiment.memory import MemoryProbe
from nodecli.experiment.model import NeuralODEClassifier, build_model, describe_model
from nodecli.experiment.optim import Adam
from nodecli.experiment.trackers import Trackers
from nodecli.ode.solver import SolverError
from nodecli.ode.spec import SolveSpec
from nodecli.record.checkpoint import ResumeError, load_training_state, save_training_state
from nodecli.record.layout import CHECKPOINT_FILE
from nodecli.record.ownership import ClaimLost
from nodecli.record.read import flatten
from nodecli.record.run import RunRecord
from nodecli.signals import GracefulStop, StopRequested
from nodecli.train.auto_device import choose_device
from nodecli.train.epochs import EpochResult, epochs_table, format_epoch_line

console = make_console()
err_console = make_console(stderr=True)
# layer_style=compiled: torch.compile imports torch.utils.cpp_extension, which logs "No CUDA
# runtime is found, using CUDA_HOME=…" on every machine without a GPU; it concerns only
# building C++ extensions, which nodecli never does. Only that logger is quietened.
logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)


class TrainingError(RuntimeError):
    """The run cannot go on (for example the loss is no longer finite)."""


def solve_spec(cfg: Config) -> SolveSpec:
    """The ODE block's solve: the config's own solver and gradient-method objects."""
    return SolveSpec(solver=cfg.solver, sensealg=cfg.sensealg)


def model_for(cfg: Config, style: str | None = None) -> NeuralODEClassifier:
    """The classifier CFG describes (STYLE replaces its layer style), initialised from the
    global RNG like `build_model`: seed it first for reproducible weights (model=custom:
    the user's field is built from it too, first, as the reference builds its MLP first)."""
    field = instantiate_field(cfg.model) if cfg.model.name == "custom" else None
    return build_model(
        style or cfg.layer_style.name,
        solve_spec(cfg),
        cfg.model.latent,
        cfg.model.hidden,
        cfg.model.t1,
        backend=cfg.backend.name,
        model=cfg.model.name,
        field=field,
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


def make_optimizer(model: torch.nn.Module, lr: float) -> Adam:
    """The training optimiser: Adam with the reference's defaults (see nodecli.experiment.optim),
    over the trainable parameters (a user's field may freeze some)."""
    return Adam([p for p in model.parameters() if p.requires_grad], lr=lr)


def train_epoch(
    model: NeuralODEClassifier,
    optimizer: Adam | torch.optim.Optimizer,
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
    # Losses stay on the device and are read once, at the end of the epoch: a per-batch
    # read would wait for the device every batch. A non-finite loss makes the next
    # batch's solve fail (its initial state is no longer finite) or reaches the epoch's
    # end; either way `_check_losses` then names the first bad batch, as a per-batch
    # check would have.
    losses: list[Tensor] = []
    sizes: list[int] = []
    synchronize(device)
    start = time.perf_counter()
    for xb, yb in shuffled_batches(data.x_train, data.y_train, batch_size, generator):
        before = ode.nfe
        try:
            loss = F.cross_entropy(model(xb), yb)
            after_forward = ode.nfe
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
        except Exception:
            _check_losses(losses, epoch)  # an earlier divergence is the real cause
            raise
        optimizer.step()
        losses.append(loss.detach())
        sizes.append(len(yb))
        nfe_forward += after_forward - before
        nfe_backward += ode.nfe - after_forward
        on_batch()
    values = _check_losses(losses, epoch)
    loss_sum = 0.0
    for value, size in zip(values, sizes, strict=True):
        loss_sum += value * size
    synchronize(device)
    elapsed = time.perf_counter() - start
    return elapsed, loss_sum / len(data.y_train), nfe_forward, nfe_backward


def _check_losses(losses: list[Tensor], epoch: int) -> list[float]:
    """The batch losses as floats (one host read); TrainingError at the first non-finite."""
    values = torch.stack(losses).tolist() if losses else []
    for batch, value in enumerate(values, start=1):
        if not math.isfinite(value):
            raise TrainingError(f"loss became {value} at epoch {epoch}, batch {batch}")
    return values


def compile_model(model: NeuralODEClassifier, batch_size: int, device: torch.device) -> float:
    """Compile what layer_style=compiled compiles (forward and backward); seconds, else 0.

    Done before the first epoch, whose time then includes it, so that the compile cost is
    both honest (in epoch 1, as the reference's) and reported separately.
    """
    synchronize(device)
    seconds = model.ode.warm_up(batch_size)
    synchronize(device)
    return seconds


def _training_step(cfg: Config) -> Callable[[torch.device], Callable[[], None]]:
    """MAKE_STEP for device.fastest: one forward + backward of this experiment's model on
    its first training batch. The model is built under a forked RNG, so the run's own
    initialisation is unchanged; compiled style is timed eagerly (functional), since
    compiling once per candidate device would cost more than the choice saves."""
    data = load_dataset(cfg.dataset.name, cfg.data.n, cfg.data.split, cfg.seed, cfg.dataset.root)
    xb, yb = data.x_train[: cfg.train.batch_size], data.y_train[: cfg.train.batch_size]
    style = "functional" if cfg.layer_style.name == "compiled" else cfg.layer_style.name

    def make(device: torch.device) -> Callable[[], None]:
        with torch.random.fork_rng(devices=[]):
            model = model_for(cfg, style).to(device)
        x, y = xb.to(device), yb.to(device)

        def step() -> None:
            model.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()

        return step

    return make


def run_experiment(
    cfg: Config, run_dir: Path, overrides: list[str], resume_hint: str | None = None
) -> int:
    """Train the configured experiment into RUN_DIR; return the process exit code.

    Whatever happens, the record ends with a status: completed (0), failed (1) or
    interrupted (128 + signal: 130 for Ctrl-C, 143 for SIGTERM). RESUME_HINT is the
    command that continues an interrupted run (a sweep job's is its sweep's resume; ""
    where none can, as for an Optuna trial).
    """
    if cfg.device.threads is not None:
        torch.set_num_threads(cfg.device.threads)
    device, step_seconds = choose_device(cfg, lambda: _training_step(cfg))
    record = RunRecord(Path(run_dir))
    record.start(
        str(device),
        torch.get_num_threads(),
        overrides,
        resumed=cfg.resume is not None,
        backend=cfg.backend.name,
        backend_distribution=distribution(cfg.backend.name),
        device_step_s=step_seconds,
    )
    moved = record.info.get("devices", [])
    if len(moved) > 1:
        earlier = ", ".join(f"{d['device']} from epoch {d['from_epoch']}" for d in moved[:-1])
        err_console.print(
            f"[yellow]note:[/yellow] this run continues on {device}; it ran on {earlier} "
            "(recorded in run.json `devices`; numbers may differ slightly between devices)"
        )
    trackers = Trackers(cfg.logger, record.run_dir, flatten(asdict(cfg)))
    try:
        hint = (
            f"nodecli train {shell_override('resume', str(run_dir))}"
            if resume_hint is None
            else resume_hint
        )
        return _run(cfg, device, record, trackers.log_epoch, hint)
    finally:
        trackers.finish(str(record.info.get("status")))


def _run(
    cfg: Config,
    device: torch.device,
    record: RunRecord,
    on_epoch: Callable[[dict], None],
    resume_hint: str,
) -> int:
    """run_experiment's body: train, then close the record with the right status."""
    run_dir = record.run_dir
    with GracefulStop() as stopper:
        try:
            results = _train(cfg, device, record, stopper, on_epoch)
        except StopRequested as stop:
            done = record.info["epochs_completed"]
            record.finish("interrupted", error=f"{stop} after {done} finished epoch(s)")
            if stop.signum in stopper.deferred:  # e.g. submitit's requeue at the time limit
                err_console.print(
                    f"[yellow]run interrupted[/yellow] ({stop}) after epoch {done}; "
                    "its signal handler (the launcher's requeue) takes over"
                )
            elif not resume_hint:  # e.g. an Optuna trial: its search cannot be continued
                err_console.print(f"[yellow]run interrupted[/yellow] ({stop})")
            else:
                err_console.print(
                    f"[yellow]run interrupted[/yellow] ({stop}); resume with:\n"
                    f"  {escape(resume_hint)}"
                )
            return stop.exit_code
        except KeyboardInterrupt:
            record.finish("interrupted", error="stopped by a second SIGINT/SIGTERM")
            return 130
        except ClaimLost as exc:  # another process owns the folder now: write nothing more
            err_console.print(f"[red]run stopped:[/red] {escape(str(exc))}")
            return EXIT_USAGE
        except Exception as exc:  # the record must say what happened, whatever it was
            message = failure_message(exc)
            # The traceback holds the failed batch's frames (its whole autograd graph):
            # free them first, or a MemoryError leaves no memory to write the record with.
            traceback.clear_frames(exc.__traceback__)
            del exc
            gc.collect()
            try:
                record.finish("failed", error=message)
            except (OSError, ClaimLost, MemoryError) as again:  # e.g. the disk is still full
                message += f"; the record could not be updated either ({again})"
            err_console.print(f"[red]run failed:[/red] {escape(message)}\nrecord: {run_dir}")
            return EXIT_FAILED
    try:
        record.finish("completed")
    except (OSError, ClaimLost) as exc:  # trained, but the record cannot say so
        err_console.print(f"[red]run failed:[/red] {escape(failure_message(exc))}")
        return EXIT_FAILED
    if results:
        console.print(epochs_table(results))
    console.print(f"record: {run_dir}")
    return EXIT_OK


#: What a run out of memory can lower (memory grows with the batch and the solver's steps).
MEMORY_ADVICE = (
    "lower train.batch_size or solver.max_steps, shorten model.t1, or loosen solver.rtol/atol"
)


def failure_message(exc: BaseException) -> str:
    """One line for the record and the terminal; solver errors already say what helps."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, (TrainingError, SolverError, ResumeError)):
        return text
    if isinstance(exc, (MemoryError, torch.cuda.OutOfMemoryError)) or (
        isinstance(exc, RuntimeError) and "can't allocate memory" in text
    ):
        what = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
        return f"out of memory ({what}): {MEMORY_ADVICE}"
    if isinstance(exc, OSError):  # a full disk, a folder removed: say which file
        return os_error_line(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _train(
    cfg: Config,
    device: torch.device,
    record: RunRecord,
    stopper: GracefulStop,
    on_epoch: Callable[[dict], None],
) -> list[EpochResult]:
    torch.manual_seed(cfg.seed)
    data = load_dataset(
        cfg.dataset.name, cfg.data.n, cfg.data.split, cfg.seed, cfg.dataset.root
    ).to(device)
    model = model_for(cfg).to(device)
    record.describe_model(describe_model(cfg.model.name, model))
    optimizer = make_optimizer(model, cfg.train.lr)
    generator = torch.Generator().manual_seed(cfg.seed)
    finished = 0
    if cfg.resume is not None and (record.run_dir / CHECKPOINT_FILE).exists():
        finished = load_training_state(record.run_dir, model, optimizer, generator)
    if cfg.resume is not None:
        # Without a checkpoint no epoch is known to be complete: start over in place.
        record.truncate(finished)
        console.print(f"resuming {record.run_dir} after epoch {finished}")
    epochs = cfg.train.epochs
    n_batches = math.ceil(len(data.y_train) / cfg.train.batch_size)
    with record.beating(), stopper.immediate():
        compile_s = compile_model(model, cfg.train.batch_size, device)
    probe = MemoryProbe()
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
        task = progress.add_task(
            "train", total=(epochs - finished) * n_batches, epoch=finished + 1, epochs=epochs
        )

        def after_batch() -> None:
            progress.advance(task)

        for epoch in range(finished + 1, epochs + 1):
            progress.update(task, epoch=epoch)
            # The epoch's computation writes nothing to the record: a stop is honoured at
            # once inside it, and a thread keeps the heartbeat going through long batches.
            with record.beating(), stopper.immediate():
                seconds, loss, nfe_f, nfe_b = train_epoch(
                    model,
                    optimizer,
                    data,
                    cfg.train.batch_size,
                    generator,
                    epoch,
                    device,
                    on_batch=after_batch,
                )
                # Like the reference's first epoch, ours includes compiling (done just
                # before it, so it can be reported on its own as well); after a resume,
                # the first new one.
                first_compile = compile_s if epoch == finished + 1 else 0.0
                memory = probe(model, data, cfg.train.batch_size, device)
                result = EpochResult(
                    epoch=epoch,
                    train_time_s=seconds + first_compile,
                    compile_time_s=first_compile,
                    train_loss=loss,
                    train_acc=accuracy(model, data.x_train, data.y_train),
                    test_acc=accuracy(model, data.x_test, data.y_test),
                    nfe_forward=nfe_f,
                    nfe_backward=nfe_b,
                    hold_memory_bytes=memory.hold_bytes,
                    peak_memory_bytes=memory.peak_bytes,
                )
            # Metrics first, then the checkpoint: if a kill lands in between, resume
            # redoes this epoch from the previous checkpoint and rewrites its row.
            record.append_epoch(result.as_row())
            save_training_state(
                record.run_dir, epoch, model, optimizer, generator, record.info.get("run_id")
            )
            on_epoch(result.as_row())  # trackers: after the record, which is the truth
            results.append(result)
            # print(), not rich: the reference line uses real tab characters.
            print(format_epoch_line(epoch, epochs, result), flush=True)
    return results
