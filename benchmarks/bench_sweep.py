"""`make bench`: every backend × sensealg (× layer_style for nodecli) as `nodecli sweep`s.

Each contender is a `nodecli train` job run by `nodecli sweep` (the same loop, data, init,
batches, optimiser, timers and NFE counter for every backend; the peers solve through
their own APIs, nodecli.backends). The records are read back with `nodecli.report`, and
`nodecli report` tables them. Two scales:

* `reference`: the tutorial's experiment (1500 bundled digits, 9 epochs);
* `60k`: `dataset=mnist_bundled_repeated data.n=null`, the 5000 bundled digits repeated to
  60 000 (54 000 training digits; TIMING ONLY: repeated digits, accuracies meaningless).

Noise control: rounds are interleaved (round r runs every contender, then round r+1), and
all contenders of a round share its seed (same data, init and batch order); ratios are
medians of paired ratios: contender / other for the same round and epoch (2..N). The eager
floor (the model with the ODE block replaced by as many bare vector-field calls as
nodecli's direct solve makes, trained by nodecli's own `train_epoch` and Adam) is timed in
this process after each round's sweeps.

    python benchmarks/bench_sweep.py --out benchmarks/RESULTS.md      # both scales
    python benchmarks/bench_sweep.py --quick                          # smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import torch
from torch import Tensor, nn

from nodecli.backends.registry import MATRIX
from nodecli.config.schema import LAYER_STYLES
from nodecli.experiment.data import load_dataset
from nodecli.experiment.model import ODEBlock, build_model
from nodecli.ode.methods import METHODS
from nodecli.ode.spec import SolveSpec
from nodecli.record.provenance import dist_version
from nodecli.report.aggregate import load_runs
from nodecli.train.loop import make_optimizer, train_epoch

SENSEALGS = ",".join(METHODS)
FLOOR_FILE = "floor.json"  # the floor's epoch times per round (it has no run record)
STYLES = ",".join(LAYER_STYLES)


@dataclass
class Scale:
    """One benchmark scale: its common overrides and its sweeps (each a product)."""

    name: str
    label: str
    common: list[str]
    sweeps: list[list[str]]
    n: int | None
    dataset: str


def scales(epochs: int, large_epochs: int) -> list[Scale]:
    peers = ",".join(MATRIX)
    return [
        Scale(
            "reference",
            f"1500 bundled digits (1350 train), {epochs} epochs",
            [f"train.epochs={epochs}"],
            [
                [
                    "backend=nodecli",
                    f"sensealg={SENSEALGS}",
                    "layer_style=module,functional,compiled",
                ],
                [f"backend={peers}", "sensealg=direct,adjoint"],
                ["backend=torchdyn", "sensealg=interpolating"],
            ],
            1500,
            "mnist_bundled",
        ),
        Scale(
            "60k",
            "60 000 digits = the 5000 bundled digits repeated 12× (54 000 train; timing only: "
            f"repeated digits, accuracies meaningless), {large_epochs} epochs",
            ["dataset=mnist_bundled_repeated", "data.n=null", f"train.epochs={large_epochs}"],
            [
                [f"backend=nodecli,{peers}", "sensealg=direct,adjoint"],
                ["backend=nodecli,torchdyn", "sensealg=interpolating"],
            ],
            None,
            "mnist_bundled_repeated",
        ),
    ]


# ----------------------------------------------------------------------------- the floor


class FloorBlock(nn.Module):
    """No solver: N chained bare calls of the block's own (counted) vector field."""

    def __init__(self, ode: ODEBlock, n_calls: int) -> None:
        super().__init__()
        self.field, self.counter, self.n_calls = ode.field, ode.counter, n_calls

    @property
    def nfe(self) -> int:
        return self.counter.total

    def forward(self, y: Tensor) -> Tensor:
        self.counter.f = self.field.func()
        for _ in range(self.n_calls):
            y = self.counter(0.0, y)
        return y


def floor_epochs(scale: Scale, seed: int, epochs: int, device_name: str = "cpu") -> list[float]:
    """Epoch times of the eager floor, trained by nodecli's own loop and optimiser."""
    torch.set_num_threads(1)
    data = load_dataset(scale.dataset, scale.n, 0.9, seed)
    torch.manual_seed(seed)
    model = build_model("module", SolveSpec())
    before = model.ode.counter.calls
    model(data.x_train[:128])
    n_calls = model.ode.counter.calls - before  # nodecli direct's forward NFE per batch
    model.ode = FloorBlock(model.ode, n_calls)  # type: ignore[assignment]
    device = torch.device(device_name)
    model, data = model.to(device), data.to(device)
    optimizer = make_optimizer(model, 1e-3)
    generator = torch.Generator().manual_seed(seed)
    return [
        train_epoch(model, optimizer, data, 128, generator, e, device)[0]  # type: ignore[arg-type]
        for e in range(1, epochs + 1)
    ]


# ----------------------------------------------------------------------------- running


def nodecli_exe() -> list[str]:
    script = Path(sys.executable).with_name("nodecli")
    return [str(script)] if script.exists() else [sys.executable, "-m", "nodecli.cli"]


def run_scale(
    scale: Scale, root: Path, rounds: int, epochs: int, log, device: str = "cpu"
) -> dict[int, list[float]]:
    """Run every round's sweeps (interleaved by round); returns the floor's epoch times."""
    floor: dict[int, list[float]] = {}
    for r in range(rounds):
        for i, sweep in enumerate(scale.sweeps):
            out = root / scale.name / f"round{r}_{i}"
            cmd = [*nodecli_exe(), "sweep", *scale.common, *sweep, f"seed={r}", f"device={device}"]
            cmd.append(f"hydra.sweep.dir={out}")
            log(f"[{scale.name}] round {r + 1}/{rounds}: {shlex.join(cmd[1:])}")
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode != 0:
                log(done.stdout[-2000:] + done.stderr[-2000:])
                raise SystemExit(f"sweep failed ({done.returncode}): {shlex.join(cmd)}")
        floor[r] = floor_epochs(scale, r, epochs, device)
    (root / scale.name / FLOOR_FILE).write_text(json.dumps(floor), encoding="utf-8")
    return floor


def process_wall(repeats: int) -> list[float]:
    """Wall time of a whole `nodecli train` process with no overrides, in a scratch dir."""
    import tempfile

    walls = []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(repeats):
            start = time.perf_counter()
            subprocess.run([*nodecli_exe(), "train"], cwd=tmp, check=True, capture_output=True)
            walls.append(time.perf_counter() - start)
    return walls


# ----------------------------------------------------------------------------- tables


@dataclass
class Contender:
    label: str
    backend: str
    sensealg: str
    style: str
    kind: str  # backprop / adjoint / floor
    times: dict[int, list[float]] = field(default_factory=dict)  # round -> epoch times
    nfe_f: float = 0.0
    nfe_b: float = 0.0
    hold: float = 0.0
    peak: float = 0.0
    accs: list[float] = field(default_factory=list)  # final test accuracy per round
    compile_s: float = 0.0

    @property
    def warm(self) -> float:
        return statistics.median(t for ts in self.times.values() for t in ts[1:])

    @property
    def first(self) -> float:
        return statistics.median(ts[0] for ts in self.times.values())

    def ratio_to(self, other: Contender) -> float:
        """Median of paired ratios: same round (seed), same epoch, epochs 2..N."""
        pairs = [
            a / b
            for r, mine in self.times.items()
            for a, b in zip(mine[1:], other.times.get(r, [])[1:], strict=False)
        ]
        return statistics.median(pairs) if pairs else float("nan")


def contenders(root: Path, floor: dict[int, list[float]]) -> list[Contender]:
    df = load_runs([root], on_warning=lambda msg: None)
    df = df[df["status"] == "completed"]
    found: dict[tuple[str, str, str], Contender] = {}
    for (_run_dir, backend, sensealg, style, seed), runs in df.groupby(
        ["run_dir", "backend.name", "sensealg.name", "layer_style.name", "seed"]
    ):
        style = style if backend == "nodecli" else "module"
        key = (backend, sensealg, style)
        if key not in found:
            label = f"{backend} {sensealg}" + (f" {style}" if backend == "nodecli" else "")
            kind = "backprop" if METHODS[sensealg].backpropagates else "adjoint"
            found[key] = Contender(label, backend, sensealg, style, kind)
        c = found[key]
        runs = runs.sort_values("epoch")
        c.times[int(seed)] = [float(t) for t in runs["train_time_s"]]
        c.nfe_f, c.nfe_b = runs["nfe_forward"].mean(), runs["nfe_backward"].mean()
        c.hold, c.peak = runs["hold_memory_bytes"].max(), runs["peak_memory_bytes"].max()
        c.accs.append(float(runs["test_acc"].iloc[-1]))
        c.compile_s = float(runs["compile_time_s"].max())
    out = sorted(found.values(), key=lambda c: (c.backend != "nodecli", c.backend, c.label))
    out.append(Contender("floor (bare f calls)", "floor", "–", "module", "floor", floor))
    return out


def scale_table(cs: list[Contender]) -> tuple[list[str], dict[str, Contender]]:
    peers = [c for c in cs if c.backend in MATRIX]
    fastest: dict[str, Contender] = {}
    for c in peers:
        if c.kind not in fastest or c.warm < fastest[c.kind].warm:
            fastest[c.kind] = c
    floor = next(c for c in cs if c.kind == "floor")
    lines = [
        "| contender | gradient | warm epoch (s) | first epoch (s) | NFE fwd / epoch "
        "| NFE bwd / epoch | held (KiB) | peak (KiB) | final test acc (%, mean over rounds) "
        "| × fastest peer (same gradient) | × floor |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for c in cs:
        peer = fastest.get(c.kind)
        vs_peer = f"{c.ratio_to(peer):.2f}" if peer and c.kind != "floor" else "–"
        if c.kind == "floor":
            dashes = " | ".join("–" * 6)
            lines.append(f"| {c.label} | floor | {c.warm:.4f} | {c.first:.4f} | {dashes} | 1.00 |")
            continue
        acc = statistics.mean(c.accs)
        lines.append(
            f"| {c.label} | {c.kind} | {c.warm:.4f} | {c.first:.4f} | {c.nfe_f:.0f} | "
            f"{c.nfe_b:.0f} | {c.hold / 1024:.1f} | {c.peak / 1024:.1f} | {acc:.1f} | "
            f"{vs_peer} | {c.ratio_to(floor):.2f} |"
        )
    lines += [
        "",
        "Fastest peer per gradient kind: "
        + ", ".join(f"{k}: {v.label} ({v.warm:.4f} s)" for k, v in sorted(fastest.items()))
        + ".",
    ]
    return lines, fastest


TARGETS = (  # (nodecli sensealg, gradient kind of the peer it is compared with, limit)
    ("direct", "backprop", 0.5),
    ("adjoint", "adjoint", 0.45),
    ("interpolating", "adjoint", 0.5),
    ("gauss", "adjoint", 0.5),
    ("checkpoint", "backprop", 0.6),
)


def target_lines(cs: list[Contender], fastest: dict[str, Contender]) -> list[str]:
    """Each target for the default layer style (module) and for nodecli's fastest style."""
    lines = []
    for sensealg, kind, limit in TARGETS:
        peer = fastest.get(kind)
        mine = [c for c in cs if c.backend == "nodecli" and c.sensealg == sensealg]
        if not mine or peer is None:
            continue
        default = [c for c in mine if c.style == LAYER_STYLES[0]]
        best = min(mine, key=lambda c: c.ratio_to(peer))
        for c in default + ([best] if best not in default else []):
            ratio = c.ratio_to(peer)
            mark = "met" if ratio <= limit else "NOT met"
            lines.append(
                f"- nodecli {sensealg} ({c.style}) / {peer.label}: {ratio:.2f} "
                f"(target ≤ {limit}) — {mark}"
            )
    return lines


def report_markdown(root: Path) -> str:
    """`nodecli report` of the scale, grouped by backend × sensealg × layer_style."""
    cmd = [
        *nodecli_exe(),
        "report",
        str(root),
        "--by",
        "backend,sensealg,layer_style",
        "--baseline",
        "backend=torchdiffeq",
        "--format",
        "markdown",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "COLUMNS": "300"})
    return f"`{shlex.join(['nodecli', *cmd[1:]])}`:\n\n" + done.stdout.strip()


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=9, help="reference scale")
    parser.add_argument("--rounds", type=int, default=3, help="reference scale")
    parser.add_argument("--large-epochs", type=int, default=3, help="60k scale")
    parser.add_argument("--large-rounds", type=int, default=2, help="60k scale")
    parser.add_argument("--only", choices=("reference", "60k"), help="one scale only")
    parser.add_argument(
        "--table-only", action="store_true", help="re-table the runs already under --root"
    )
    parser.add_argument("--quick", action="store_true", help="3 epochs, 1 round, no 60k")
    parser.add_argument("--root", type=Path, help="sweep folders (default outputs/bench/<time>)")
    parser.add_argument("--process-runs", type=int, default=3, help="`nodecli train` walls")
    parser.add_argument("--out", type=Path, help="write the markdown here")
    parser.add_argument(
        "--device", default="cpu", choices=("cpu", "cuda"), help="device= of every contender"
    )
    args = parser.parse_args(argv)
    command = "python benchmarks/bench_sweep.py " + shlex.join(
        sys.argv[1:] if argv is None else argv
    )
    if args.quick:
        args.epochs, args.rounds, args.only, args.process_runs = 3, 1, "reference", 0
    root = args.root or Path("outputs/bench") / datetime.now().strftime("%Y-%m-%d_%H-%M-%S")

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    device_label = args.device
    if args.device == "cuda":
        device_label = f"cuda ({torch.cuda.get_device_name()})"
    versions = ", ".join(
        f"{d} {dist_version(d)}" for d in ("torch", "torchdiffeq", "torchdyn", "torchode")
    )
    text = [
        "# Epoch-time benchmark: nodecli's backends (`make bench`)",
        "",
        f"- command: `{command}` (sweep folders: `{root}`)"
        + (
            "; --table-only: the runs in that folder were made earlier by "
            "`python benchmarks/bench_sweep.py --out benchmarks/RESULTS.md` (`make bench`)"
            if args.table_only
            else ""
        ),
        f"- date: {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- machine: {cpu_name()}; {os.cpu_count()} logical CPUs; device `{device_label}`; "
        f"torch threads 1; python {platform.python_version()}; {versions}",
        "- every contender is a `nodecli train` job (`nodecli sweep`): same data, init, batch "
        "order, Adam, timers and NFE counter; Tsit5 at rtol = atol = 1e-3",
        "- warm = median epoch time over epochs 2..N of all rounds; first = median of the "
        "rounds' first epochs; ratios = median of paired ratios (same round/seed and epoch, "
        "epochs 2..N); held/peak: the run record's largest `hold_memory_bytes` / "
        "`peak_memory_bytes`",
        "",
    ]
    for scale in scales(args.epochs, args.large_epochs):
        if args.only and scale.name != args.only:
            continue
        rounds = args.rounds if scale.name == "reference" else args.large_rounds
        epochs = args.epochs if scale.name == "reference" else args.large_epochs
        start = time.perf_counter()
        if args.table_only:
            saved = json.loads((root / scale.name / FLOOR_FILE).read_text(encoding="utf-8"))
            floor = {int(r): times for r, times in saved.items()}
        else:
            floor = run_scale(scale, root, rounds, epochs, log, args.device)
        cs = contenders(root / scale.name, floor)
        lines, fastest = scale_table(cs)
        sweeps = "; ".join(
            "`nodecli sweep "
            + shlex.join([*scale.common, *s, "seed=R", f"device={args.device}"])
            + "`"
            for s in scale.sweeps
        )
        text += [
            f"## Scale `{scale.name}`: {scale.label}, {rounds} round(s)",
            "",
            f"Per round R: {sweeps}; then the floor."
            + ("" if args.table_only else f" ({time.perf_counter() - start:.0f} s wall.)"),
            "",
            *lines,
            "",
            "Targets (nodecli vs the fastest peer with the same gradient kind):",
            "",
            *target_lines(cs, fastest),
            "",
            report_markdown(root / scale.name),
            "",
        ]
    walls = process_wall(args.process_runs) if args.process_runs else []
    if walls:
        text += [
            f"Whole `nodecli train` process (no overrides), median of {len(walls)}: "
            f"{statistics.median(walls):.2f} s wall (runs: "
            + ", ".join(f"{w:.2f}" for w in walls)
            + ").",
            "",
        ]
    text += [
        "NFE: vector-field evaluations per epoch counted by nodecli's wrapper around the "
        "field for every backend; backward: one per VJP through a recorded evaluation "
        "(backpropagation) or 2 per backward-solve evaluation (f call + VJP, adjoints).",
        "",
    ]
    out = "\n".join(text)
    print(out)
    if args.out:
        args.out.write_text(out, encoding="utf-8")
        log(f"wrote {args.out}")


if __name__ == "__main__":
    main()
