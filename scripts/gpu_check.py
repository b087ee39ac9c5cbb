"""The device check (issue 23): what scripts/gpu_check.sh runs once the bundle is installed.

Phases, in this order, each bounded by a share of one time budget (time a phase leaves
unused passes on to the next; what no longer fits is skipped with a line saying so):

* tests  - the CUDA tests (`pytest -m cuda tests/test_device.py`);
* matrix - `nodecli train` at the reference settings for every sensealg x layer style,
           on device=cuda and then device=cpu on the same machine (pairs, so a cut leaves
           whole pairs), each run in its own process with its own empty compile caches
           (the first epoch is a cold start, as the Julia reference's first epoch);
* syncs  - one epoch per sensealg (module style, after one warm-up epoch) under
           `torch.cuda.set_sync_debug_mode("warn")`: the CUDA syncs counted, with the host
           reads of tensor values (`item`, `tolist`, ...) counted over the same epoch;
* scale  - the 60 000-digit scale (dataset=mnist_bundled_repeated data.n=null, timing
           only) for direct and adjoint, CUDA then CPU.

Without CUDA every CUDA part is skipped with a line and the rest runs, so the whole check
can be dry-run on a CPU (`--quick`: fewer epochs, a smaller 60k stand-in).

Results go to OUT/gpu_check.md (every table) and OUT/gpu_check.csv (one row per training
run), rewritten after every item so that a cut-off run still leaves what it measured.
Exit status: 0 when everything that ran passed, 1 when a test or a run failed.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import math
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import time
import warnings
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
PHASES = ("tests", "matrix", "syncs", "scale")
# Seconds per phase (cumulative deadlines: unused time passes on); 450 s in all.
SHARES = {"tests": 120, "matrix": 210, "syncs": 40, "scale": 80}
SCALE_SENSEALGS = ("direct", "adjoint")
RUN_COLUMNS = [
    "phase",
    "scale",
    "device",
    "sensealg",
    "layer_style",
    "epochs",
    "status",
    "first_epoch_s",
    "warm_epoch_s",
    "compile_time_s",
    "train_acc",
    "test_acc",
    "nfe_forward",
    "nfe_backward",
    "peak_memory_bytes",
    "wall_s",
    "note",
]
SYNC_COLUMNS = [
    "sensealg",
    "device",
    "batches",
    "cuda_syncs",
    "cuda_syncs_per_batch",
    "host_reads",
    "host_reads_per_batch",
    "sync_sites",
    "note",
]
READS = ("item", "tolist", "__float__", "__int__", "__bool__", "__index__")
NOT_MEASURED = "not measured"


def log(line: str) -> None:
    print(line, flush=True)


class Results:
    """What the check found so far; `write` puts it all in OUT, atomically per file."""

    def __init__(self, out: Path, settings: dict[str, str]) -> None:
        self.out = out
        self.settings = settings
        self.machine: dict[str, str] = {}
        self.tests: dict[str, str] = {}
        self.runs: list[dict] = []
        self.syncs: list[dict] = []
        self.skipped: list[str] = []
        self.failed = False

    def skip(self, line: str) -> None:
        log(f"SKIP {line}")
        self.skipped.append(line)

    def write(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        tmp = self.out / "gpu_check.csv.tmp"
        with tmp.open("w", newline="") as f:
            writer = csv.DictWriter(f, RUN_COLUMNS)
            writer.writeheader()
            writer.writerows({k: row.get(k, "") for k in RUN_COLUMNS} for row in self.runs)
        tmp.replace(self.out / "gpu_check.csv")
        tmp = self.out / "gpu_check.md.tmp"
        tmp.write_text(self.markdown())
        tmp.replace(self.out / "gpu_check.md")

    # ---- the Markdown report ------------------------------------------------------------

    def markdown(self) -> str:
        lines = ["# nodecli device check (scripts/gpu_check.sh)", ""]
        lines += [f"- {key}: {value}" for key, value in self.settings.items()]
        lines += ["", "## Machine", "", "| | |", "| --- | --- |"]
        lines += [f"| {key} | {value} |" for key, value in self.machine.items()]
        lines += ["", "## CUDA tests", ""]
        lines += [f"- {key}: {value}" for key, value in self.tests.items()] or [f"- {NOT_MEASURED}"]
        lines += ["", *self.pairs_table("matrix")]
        lines += ["", *self.syncs_table()]
        lines += ["", *self.pairs_table("scale")]
        lines += ["", "## Skipped", ""]
        lines += [f"- {line}" for line in self.skipped] or ["- nothing"]
        return "\n".join(lines) + "\n"

    def find(self, phase: str, device: str, sensealg: str, style: str) -> dict | None:
        for row in self.runs:
            if (row["phase"], row["device"], row["sensealg"], row["layer_style"]) == (
                phase,
                device,
                sensealg,
                style,
            ):
                return row
        return None

    def pairs_table(self, phase: str) -> list[str]:
        rows = [r for r in self.runs if r["phase"] == phase]
        keys = list(dict.fromkeys((r["sensealg"], r["layer_style"]) for r in rows))
        epochs = rows[0]["epochs"] if rows else "?"
        if phase == "matrix":
            title = f"## Reference experiment: every sensealg x layer style ({epochs} epochs)"
        else:
            title = (
                "## 60 000-digit scale (dataset=mnist_bundled_repeated, timing only: "
                f"repeated digits, accuracies meaningless; {epochs} epochs)"
            )
        head = [
            title,
            "",
            "first = epoch 1 (cold start: compile included); warm = median of epochs 2..N; "
            "ratio = CPU warm / CUDA warm (above 1: CUDA is faster).",
            "",
            "| sensealg | layer style | CUDA first (s) | CUDA warm (s) | CPU first (s) "
            "| CPU warm (s) | CPU / CUDA | CUDA train / test acc (%) | CPU train / test acc (%) "
            "| test acc CUDA - CPU (pp) |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        body = []
        for sensealg, style in keys:
            cuda = self.find(phase, "cuda", sensealg, style)
            cpu = self.find(phase, "cpu", sensealg, style)
            body.append(
                "| "
                + " | ".join(
                    [
                        sensealg,
                        style,
                        cell(cuda, "first_epoch_s"),
                        cell(cuda, "warm_epoch_s"),
                        cell(cpu, "first_epoch_s"),
                        cell(cpu, "warm_epoch_s"),
                        ratio(cpu, cuda, "warm_epoch_s"),
                        accuracies(cuda),
                        accuracies(cpu),
                        difference(cuda, cpu, "test_acc"),
                    ]
                )
                + " |"
            )
        return head + (body or [f"| {NOT_MEASURED} | | | | | | | | | |"])

    def syncs_table(self) -> list[str]:
        lines = [
            "## Host syncs per training batch (one epoch after a warm-up epoch, module style)",
            "",
            "CUDA syncs: warnings of torch.cuda.set_sync_debug_mode('warn'); host reads: "
            "calls of Tensor.item/tolist/__float__/__int__/__bool__/__index__ (an epoch's "
            "one-off reads included).",
            "",
            "| " + " | ".join(SYNC_COLUMNS) + " |",
            "| " + " | ".join("---" for _ in SYNC_COLUMNS) + " |",
        ]
        rows = [
            "| " + " | ".join(str(row.get(k, "")) for k in SYNC_COLUMNS) + " |"
            for row in self.syncs
        ]
        return lines + (rows or [f"| {NOT_MEASURED} |" + " |" * (len(SYNC_COLUMNS) - 1)])


def cell(row: dict | None, key: str) -> str:
    if row is None:
        return NOT_MEASURED
    value = row.get(key, "")
    if value == "" or value is None:
        return f"{NOT_MEASURED} ({row['status']})"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def ratio(num: dict | None, den: dict | None, key: str) -> str:
    try:
        return f"{num[key] / den[key]:.2f}"  # type: ignore[index]
    except (TypeError, KeyError, ZeroDivisionError):
        return NOT_MEASURED


def accuracies(row: dict | None) -> str:
    if row is None or not isinstance(row.get("test_acc"), float):
        return NOT_MEASURED
    return f"{row['train_acc']:.2f} / {row['test_acc']:.2f}"


def difference(a: dict | None, b: dict | None, key: str) -> str:
    try:
        return f"{a[key] - b[key]:+.2f}"  # type: ignore[index]
    except (TypeError, KeyError):
        return NOT_MEASURED


# ---- the machine --------------------------------------------------------------------------


def machine_info(cuda: bool) -> dict[str, str]:
    import nodecli

    info = {
        "python": f"{platform.python_version()} ({sys.executable})",
        "torch": f"{torch.__version__} (CUDA build {torch.version.cuda})",
        "nodecli": f"{_version('nodecli')} ({Path(nodecli.__file__).parent})",
        "hydra-core": _version("hydra-core"),
        "torchdiffeq": _version("torchdiffeq"),
        "cpu": f"{_cpu_model()}, {os.cpu_count()} logical CPUs",
        "torch device": "cuda" if cuda else "cpu (torch.cuda.is_available() is False)",
    }
    if cuda:
        props = torch.cuda.get_device_properties(0)
        info["gpu"] = (
            f"{props.name}, {props.total_memory / 2**30:.1f} GiB, compute capability "
            f"{props.major}.{props.minor}, {props.multi_processor_count} SMs"
        )
        smi = shutil.which("nvidia-smi")
        if smi:
            query = [smi, "--query-gpu=driver_version", "--format=csv,noheader"]
            info["driver"] = subprocess.run(query, capture_output=True, text=True).stdout.strip()
    return info


def _version(name: str) -> str:
    import importlib.metadata

    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


# ---- phases ---------------------------------------------------------------------------------


def run_tests(results: Results, cuda: bool, deadline: float) -> None:
    """The CUDA tests, against the installed nodecli (-P: the checkout is not on sys.path)."""
    command = [sys.executable, "-P", "-m", "pytest", "-m", "cuda", "tests/test_device.py"]
    command += ["-p", "no:cacheprovider", "-rs"]
    if cuda and _has("xdist"):
        command += ["-n", str(min(8, os.cpu_count() or 1))]
    results.tests["command"] = "`python " + " ".join(command[1:]) + "`"
    timeout = deadline - time.monotonic()
    if timeout < 10:
        results.skip("CUDA tests: no time left in the budget")
        return
    log("$ " + " ".join(command))
    start = time.monotonic()
    code, output, _ = bounded(command, REPO, dict(os.environ), timeout)
    print(output, end="", flush=True)
    summary = [line for line in output.splitlines() if line.strip()][-1:] or ["no output"]
    results.tests["exit"] = code
    results.tests["summary"] = summary[0].strip("= ")
    results.tests["wall_s"] = f"{time.monotonic() - start:.1f}"
    if not cuda:
        results.skip("CUDA tests ran but skip themselves: no CUDA on this machine")
    if code != "0":
        results.failed = True


def bounded(
    command: list[str], cwd: Path, env: dict[str, str], timeout: float
) -> tuple[str, str, str]:
    """Run COMMAND in its own process group for at most TIMEOUT seconds; on timeout the
    whole group goes (pytest-xdist workers, the nodecli processes tests start).
    Returns (exit code or "timeout after N s", stdout, stderr)."""
    process = subprocess.Popen(
        command,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout)
        return str(process.returncode), stdout, stderr
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        return f"timeout after {timeout:.0f} s", stdout, stderr


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def nodecli_command() -> list[str]:
    found = shutil.which("nodecli")
    return [found] if found else [sys.executable, "-m", "nodecli.cli"]


def train(
    results: Results,
    work: Path,
    phase: str,
    scale: str,
    device: str,
    sensealg: str,
    style: str,
    epochs: int,
    extra: list[str],
    deadline: float,
) -> None:
    """One `nodecli train` process; its run record's epochs become one row."""
    row: dict = dict(phase=phase, scale=scale, device=device, sensealg=sensealg, layer_style=style)
    row["epochs"] = epochs
    name = f"{phase}-{device}-{sensealg}-{style}"
    timeout = deadline - time.monotonic()
    if timeout < 5:
        row["status"] = "skipped: budget"
        results.skip(f"{name}: no time left in the budget")
        results.runs.append(row)
        return
    run_dir = work / "runs" / name
    caches = work / "caches" / name  # empty compile caches: the first epoch is a cold start
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "TORCHINDUCTOR_CACHE_DIR": str(caches / "inductor"),
        "TRITON_CACHE_DIR": str(caches / "triton"),
    }
    command = [
        *nodecli_command(),
        "train",
        f"device={device}",
        f"sensealg={sensealg}",
        f"layer_style={style}",
        f"train.epochs={epochs}",
        *extra,
        f"hydra.run.dir={run_dir}",
    ]
    log("$ " + " ".join(["nodecli", *command[len(nodecli_command()) :]]))
    start = time.monotonic()
    code, stdout, stderr = bounded(command, work, env, timeout)
    row["wall_s"] = round(time.monotonic() - start, 2)
    for line in stdout.splitlines():
        if line.startswith("["):
            log("  " + line)
    row.update(read_record(run_dir))
    status = "completed" if code == "0" else f"failed ({code})"
    if code != "0":
        row["note"] = (stderr.strip().splitlines() or ["no stderr"])[-1][:300]
        log(f"  {status}: {row['note']}")
    row["status"] = status
    if status != "completed":
        results.failed = True
    results.runs.append(row)
    results.write()


def read_record(run_dir: Path) -> dict:
    """Epoch times, accuracies, NFE and memory from a run record's metrics.csv."""
    path = run_dir / "metrics.csv"
    if not path.exists():
        return {}
    with path.open() as f:
        epochs = list(csv.DictReader(f))
    if not epochs:
        return {}
    last = epochs[-1]
    warm = [float(e["train_time_s"]) for e in epochs[1:]]
    row = {
        "first_epoch_s": float(epochs[0]["train_time_s"]),
        "warm_epoch_s": statistics.median(warm) if warm else "",
        "compile_time_s": float(epochs[0].get("compile_time_s") or 0.0),
        "train_acc": float(last["train_acc"]),
        "test_acc": float(last["test_acc"]),
        "nfe_forward": int(float(last["nfe_forward"])),
        "nfe_backward": int(float(last["nfe_backward"])),
        "peak_memory_bytes": int(float(last["peak_memory_bytes"])),
    }
    with contextlib.suppress(OSError, ValueError):
        info = json.loads((run_dir / "run.json").read_text())
        row["note"] = f"device {info.get('device')}, threads {info.get('threads')}"
    return row


def run_pairs(
    results: Results,
    work: Path,
    phase: str,
    scale: str,
    pairs: list[tuple[str, str]],
    epochs: int,
    extra: list[str],
    cuda: bool,
    deadline: float,
) -> None:
    for sensealg, style in pairs:
        for device in ("cuda", "cpu"):
            if device == "cuda" and not cuda:
                row = dict(phase=phase, scale=scale, device=device, sensealg=sensealg)
                row.update(layer_style=style, epochs=epochs, status="skipped: no CUDA")
                results.runs.append(row)
                results.skip(f"{phase}-cuda-{sensealg}-{style}: no CUDA on this machine")
                continue
            train(results, work, phase, scale, device, sensealg, style, epochs, extra, deadline)


@contextlib.contextmanager
def counting_reads() -> Iterator[list[str]]:
    """Record every host read of a tensor value (Tensor.item & co.) while the block runs."""
    seen: list[str] = []
    originals = {name: getattr(torch.Tensor, name) for name in READS}
    for name, original in originals.items():

        def wrapper(self, *args, _name=name, _original=original):
            seen.append(_name)
            return _original(self, *args)

        setattr(torch.Tensor, name, wrapper)
    try:
        yield seen
    finally:
        for name, original in originals.items():
            setattr(torch.Tensor, name, original)


def count_syncs(results: Results, sensealg: str, cuda: bool, deadline: float) -> None:
    """One epoch of the reference run (module style) after a warm-up epoch: CUDA syncs
    (sync debug mode "warn") and host reads of tensor values, per batch."""
    from nodecli.config.compose import compose_config
    from nodecli.experiment.data import load_dataset
    from nodecli.train.loop import make_optimizer, model_for, train_epoch

    device = torch.device("cuda" if cuda else "cpu")
    row: dict = {"sensealg": sensealg, "device": device.type}
    if deadline - time.monotonic() < 5:
        row["note"] = "skipped: budget"
        results.skip(f"syncs-{sensealg}: no time left in the budget")
        results.syncs.append(row)
        return
    cfg = compose_config([f"sensealg={sensealg}", f"device={device.type}"])
    torch.manual_seed(cfg.seed)
    data = load_dataset(
        cfg.dataset.name, cfg.data.n, cfg.data.split, cfg.seed, cfg.dataset.root
    ).to(device)
    model = model_for(cfg).to(device)
    optimizer = make_optimizer(model, cfg.train.lr)
    generator = torch.Generator().manual_seed(cfg.seed)
    batch = cfg.train.batch_size
    train_epoch(model, optimizer, data, batch, generator, 1, device)  # warm-up
    with counting_reads() as reads, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if cuda:
            torch.cuda.set_sync_debug_mode("warn")
        try:
            train_epoch(model, optimizer, data, batch, generator, 2, device)
        finally:
            if cuda:
                torch.cuda.set_sync_debug_mode("default")
    syncs = [w for w in caught if "synchroniz" in str(w.message).lower()]
    batches = math.ceil(len(data.y_train) / batch)
    row["batches"] = batches
    row["host_reads"] = len(reads)
    row["host_reads_per_batch"] = f"{len(reads) / batches:.2f}"
    if cuda:
        sites = Counter(f"{Path(w.filename).name}:{w.lineno}" for w in syncs)
        row["cuda_syncs"] = len(syncs)
        row["cuda_syncs_per_batch"] = f"{len(syncs) / batches:.2f}"
        row["sync_sites"] = ", ".join(f"{site} x{n}" for site, n in sites.most_common(4))
    else:
        row["cuda_syncs"] = row["cuda_syncs_per_batch"] = f"{NOT_MEASURED} (no CUDA)"
    log(
        f"  syncs {sensealg}: {row['cuda_syncs']} CUDA syncs, {len(reads)} host reads "
        f"over {batches} batches"
    )
    results.syncs.append(row)
    results.write()


# ---- main -----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the results")
    parser.add_argument("--work", type=Path, required=True, help="scratch folder for runs")
    parser.add_argument("--budget", type=float, default=sum(SHARES.values()), help="seconds")
    parser.add_argument("--quick", action="store_true", help="fewer epochs, smaller scale")
    parser.add_argument("--phases", default=",".join(PHASES), help="comma-separated subset")
    args = parser.parse_args(argv)
    phases = [p for p in args.phases.split(",") if p]
    unknown = sorted(set(phases) - set(PHASES))
    if unknown:
        parser.error(f"unknown phase(s) {', '.join(unknown)}; valid: {', '.join(PHASES)}")

    from nodecli.config.schema import LAYER_STYLES
    from nodecli.ode.methods import METHODS

    started = time.monotonic()
    cuda = torch.cuda.is_available()
    epochs = 2 if args.quick else 9
    settings = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "mode": "quick (dry run: fewer epochs, smaller scale)" if args.quick else "full",
        "phases": ", ".join(phases),
        "budget": f"{args.budget:.0f} s",
    }
    results = Results(args.out, settings)
    results.machine = machine_info(cuda)
    for key, value in results.machine.items():
        log(f"{key}: {value}")
    if not cuda:
        log("no CUDA here: every CUDA part is skipped (a dry run)")
    results.write()

    scale = args.budget / sum(SHARES.values())
    deadline = started
    for phase in PHASES:
        deadline += SHARES[phase] * scale
        if phase not in phases:
            continue
        log(f"== {phase} (until t+{deadline - started:.0f} s)")
        if phase == "tests":
            run_tests(results, cuda, deadline)
        elif phase == "matrix":
            # style-major: the costly cold compile (compiled) comes last, where a cut hurts least
            pairs = [(s, style) for style in LAYER_STYLES for s in METHODS]
            run_pairs(results, args.work, phase, "reference", pairs, epochs, [], cuda, deadline)
        elif phase == "syncs":
            for sensealg in METHODS:
                count_syncs(results, sensealg, cuda, deadline)
        elif phase == "scale":
            n = "data.n=3000" if args.quick else "data.n=null"
            extra = ["dataset=mnist_bundled_repeated", n]
            pairs = [(s, "module") for s in SCALE_SENSEALGS]
            run_pairs(results, args.work, phase, "60k", pairs, 2, extra, cuda, deadline)
        results.write()
    results.settings["elapsed"] = f"{time.monotonic() - started:.0f} s"
    results.write()
    log(f"results: {args.out / 'gpu_check.md'}, {args.out / 'gpu_check.csv'}")
    log(f"elapsed: {results.settings['elapsed']}; {'FAILED' if results.failed else 'ok'}")
    return 1 if results.failed else 0


if __name__ == "__main__":
    sys.exit(main())
