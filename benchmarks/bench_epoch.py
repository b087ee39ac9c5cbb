"""Epoch-time benchmark: nodecli against the PyTorch Neural ODE libraries and the eager floor.

Every contender trains the reference experiment (1500 bundled MNIST digits, 90/10 split,
batch 128, Adam lr 1e-3, Tsit5 rtol = atol = 1e-3) from the same Glorot init (seed 0), on
the same data tensors, in the same batch order, with the same thread count:

* nodecli, for every `sensealg` x `layer_style` that exists at run time (read from
  nodecli.config, so new methods are benchmarked without editing this file), timed by
  nodecli's own training loop (`nodecli.train.train_epoch`);
* the peers written the way their documentation shows, in a plain PyTorch loop with
  torch.optim.Adam: torchdiffeq `odeint` / `odeint_adjoint`, torchdyn `NeuralODE` with
  sensitivity autograd / adjoint / interpolated_adjoint, torchode `AutoDiffAdjoint`;
* the eager floor: the same model with the ODE block replaced by the same number of bare
  vector-field calls as nodecli's direct solve makes, in the same plain loop.

Noise control: all contenders live in one process and are interleaved epoch by epoch
(epoch e of every contender, then epoch e+1 ...), the order rotating each epoch; each
round builds every contender afresh. The warm time is the median over epochs 2..N of all
rounds. The first epoch is round 1's (cold: it includes one-time costs such as compiling).

    python benchmarks/bench_epoch.py --out benchmarks/RESULTS.md            # full run
    python benchmarks/bench_epoch.py --quick                                # a smoke run
    python benchmarks/bench_epoch.py --device cuda --out benchmarks/RESULTS_cuda.md
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nodecli.config import LAYER_STYLES
from nodecli.data import DataSplit, load_dataset, shuffled_batches
from nodecli.device import synchronize
from nodecli.model import build_model
from nodecli.ode.methods import METHODS, SENSEALGS, method_for
from nodecli.ode.settings import SolverSettings
from nodecli.ode.spec import SolveSpec
from nodecli.runs import dist_version
from nodecli.train import accuracy, compile_model, make_optimizer, train_epoch

SEED, N_DIGITS, SPLIT, BATCH, LR, RTOL, ATOL = 0, 1500, 0.9, 128, 1e-3, 1e-3, 1e-3
# Sensitivity methods whose gradient is backpropagation through the discrete solve; every
# other nodecli sensealg is compared with the peers' adjoints.
BACKPROP_SENSEALGS = {name for name, cls in METHODS.items() if cls.backpropagates}


# ----------------------------------------------------------------------------- contenders


class CountingMLP(nn.Module):
    """The reference vector field as the peers' docs write it (nn.Sequential), counting calls."""

    def __init__(self, net: nn.Sequential) -> None:
        super().__init__()
        self.net = net
        self.calls = 0

    def forward(self, *args: Tensor) -> Tensor:  # (x) for torchdyn, (t, y) for the others
        self.calls += 1
        return self.net(args[-1])


class PeerClassifier(nn.Module):
    """Flatten -> Linear(784, 20) + tanh -> BLOCK -> Linear(20, 10), weights from nodecli's."""

    def __init__(self, block: nn.Module, field: CountingMLP) -> None:
        super().__init__()
        self.encoder = nn.Linear(784, 20)
        self.block = block
        self.field = field
        self.head = nn.Linear(20, 10)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.block(torch.tanh(self.encoder(x.flatten(1)))))


def reference_weights() -> dict[str, Tensor]:
    """nodecli's initial weights (seed 0, Glorot uniform, zero biases), by layer."""
    torch.manual_seed(SEED)
    ref = build_model("module", SolveSpec())
    mlp = ref.ode.field.mlp
    layers = {"encoder": ref.encoder, "l1": mlp.l1, "l2": mlp.l2, "l3": mlp.l3, "head": ref.head}
    return {
        f"{k}.{p}": getattr(m, p).detach().clone()
        for k, m in layers.items()
        for p in ("weight", "bias")
    }


def peer_model(make_block: Callable[[CountingMLP], nn.Module], w: dict[str, Tensor]):
    lin = [nn.Linear(20, 10), nn.Linear(10, 10), nn.Linear(10, 20)]
    field = CountingMLP(nn.Sequential(lin[0], nn.Tanh(), lin[1], nn.Tanh(), lin[2], nn.Tanh()))
    model = PeerClassifier(make_block(field), field)
    with torch.no_grad():
        for name, layer in (("encoder", model.encoder), ("head", model.head)) + tuple(
            (f"l{i + 1}", lin[i]) for i in range(3)
        ):
            layer.weight.copy_(w[f"{name}.weight"])
            layer.bias.copy_(w[f"{name}.bias"])
    return model


class TorchdiffeqBlock(nn.Module):
    def __init__(self, field: CountingMLP, method: str, adjoint: bool) -> None:
        super().__init__()
        import torchdiffeq

        from nodecli.ode.torchdiffeq_tsit5 import register_tsit5

        register_tsit5()  # torchdiffeq has no Tsit5; nodecli registers one (same tableau)
        self.field, self.method = field, method
        self.odeint = torchdiffeq.odeint_adjoint if adjoint else torchdiffeq.odeint
        self.register_buffer("t", torch.tensor([0.0, 1.0]))

    def forward(self, y0: Tensor) -> Tensor:
        return self.odeint(self.field, y0, self.t, rtol=RTOL, atol=ATOL, method=self.method)[-1]


class TorchdynBlock(nn.Module):
    def __init__(self, field: CountingMLP, sensitivity: str) -> None:
        super().__init__()
        from torchdyn.core import NeuralODE

        self.node = NeuralODE(
            field,
            sensitivity=sensitivity,
            solver="tsit5",
            atol=ATOL,
            rtol=RTOL,
            atol_adjoint=ATOL,
            rtol_adjoint=RTOL,
            return_t_eval=False,
        )
        self.register_buffer("t_span", torch.tensor([0.0, 1.0]))

    def forward(self, y0: Tensor) -> Tensor:
        return self.node(y0, self.t_span)[-1]


class TorchodeBlock(nn.Module):
    def __init__(self, field: CountingMLP) -> None:
        super().__init__()
        import torchode as to

        self.torchode, self.field = to, field  # (not `self.to`: that is nn.Module.to)
        term = to.ODETerm(field)
        step = to.Tsit5(term=term)
        controller = to.IntegralController(atol=ATOL, rtol=RTOL, term=term)
        self.solver = to.AutoDiffAdjoint(step, controller)
        self.register_buffer("t", torch.tensor([0.0, 1.0]))

    def forward(self, y0: Tensor) -> Tensor:
        t_eval = self.t.expand(len(y0), 2)
        sol = self.solver.solve(self.torchode.InitialValueProblem(y0=y0, t_eval=t_eval))
        return sol.ys[:, -1]


class FloorBlock(nn.Module):
    """No solver at all: N chained bare vector-field calls (N = nodecli direct's NFE/batch)."""

    def __init__(self, field: CountingMLP, n_calls: int) -> None:
        super().__init__()
        self.field, self.n_calls = field, n_calls
        self.t = 0.0

    def forward(self, y: Tensor) -> Tensor:
        for _ in range(self.n_calls):
            y = self.field(self.t, y)
        return y


@dataclass
class Contender:
    name: str
    library: str  # nodecli, torchdiffeq, torchdyn, torchode, floor
    kind: str  # backprop, adjoint, floor
    make: Callable[[], object]  # -> Runner
    note: str = ""


@dataclass
class Result:
    contender: Contender
    epochs: list[list[float]] = field(default_factory=list)  # per round, per epoch
    nfe_forward: int = 0
    nfe_backward: int = 0
    test_acc: list[float] = field(default_factory=list)
    compile_s: float = 0.0
    error: str = ""

    @property
    def warm(self) -> float:
        times = [t for round_ in self.epochs for t in round_[1:]]
        return statistics.median(times) if times else float("nan")

    def ratio_to(self, other: Result) -> float:
        """Median of the paired per-epoch ratios (same round, same epoch, epochs 2..N).

        Paired epochs ran back to back, so a load spike from other processes hits both:
        the ratio is far steadier than a ratio of two medians on a shared machine.
        """
        pairs = [
            a / b
            for mine, theirs in zip(self.epochs, other.epochs, strict=False)
            for a, b in zip(mine[1:], theirs[1:], strict=False)
        ]
        return statistics.median(pairs) if pairs else float("nan")

    @property
    def first(self) -> float:
        return self.epochs[0][0] if self.epochs else float("nan")


class NodecliRunner:
    """nodecli's model, optimiser and training loop, exactly as `nodecli train` uses them."""

    def __init__(self, style: str, sensealg: str, data: DataSplit, device: torch.device):
        torch.manual_seed(SEED)
        spec = SolveSpec(SolverSettings(rtol=RTOL, atol=ATOL), method_for(sensealg))
        self.model = build_model(style, spec)
        self.model.to(device)
        self.optimizer = make_optimizer(self.model, LR)
        self.generator = torch.Generator().manual_seed(SEED)
        self.data, self.device, self.epoch_no = data, device, 0
        self.compile_seconds = 0.0

    def epoch(self) -> tuple[float, int, int]:
        self.epoch_no += 1
        if self.epoch_no == 1:  # as `nodecli train`: compile first, count it in epoch 1
            self.compile_seconds = compile_model(self.model, BATCH, self.device)
        seconds, _, nfe_f, nfe_b = train_epoch(
            self.model,
            self.optimizer,
            self.data,
            BATCH,
            self.generator,
            self.epoch_no,
            self.device,
        )
        return seconds + (self.compile_seconds if self.epoch_no == 1 else 0.0), nfe_f, nfe_b

    def test_acc(self) -> float:
        return accuracy(self.model, self.data.x_test, self.data.y_test)

    def compile_s(self) -> float:
        return self.compile_seconds


class PlainRunner:
    """A peer (or the floor) in the plain PyTorch training loop their docs show."""

    def __init__(self, model: PeerClassifier, data: DataSplit, device: torch.device):
        self.model = model.to(device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=LR)
        self.generator = torch.Generator().manual_seed(SEED)
        self.data, self.device = data, device

    def epoch(self) -> tuple[float, int, int]:
        model, opt, field_ = self.model, self.optimizer, self.model.field
        nfe_f = nfe_b = 0
        batches: Iterator = shuffled_batches(
            self.data.x_train, self.data.y_train, BATCH, self.generator
        )
        synchronize(self.device)
        start = time.perf_counter()
        for xb, yb in batches:
            before = field_.calls
            opt.zero_grad()
            loss = F.cross_entropy(model(xb), yb)
            after_forward = field_.calls
            loss.backward()
            opt.step()
            nfe_f += after_forward - before
            nfe_b += field_.calls - after_forward
        synchronize(self.device)
        return time.perf_counter() - start, nfe_f, nfe_b

    def test_acc(self) -> float:
        return accuracy(self.model, self.data.x_test, self.data.y_test)

    def compile_s(self) -> float:
        return 0.0


def contenders(
    data: DataSplit, device: torch.device, floor_calls: int, skip_peers: bool
) -> list[Contender]:
    w = reference_weights()
    out: list[Contender] = []
    for sensealg in SENSEALGS:
        kind = "backprop" if sensealg in BACKPROP_SENSEALGS else "adjoint"
        for style in LAYER_STYLES:
            out.append(
                Contender(
                    f"nodecli {sensealg} {style}",
                    "nodecli",
                    kind,
                    lambda s=style, a=sensealg: NodecliRunner(s, a, data, device),
                )
            )

    def peer(make_block: Callable[[CountingMLP], nn.Module]) -> Callable[[], PlainRunner]:
        return lambda: PlainRunner(peer_model(make_block, w), data, device)

    out.append(
        Contender(
            f"floor ({floor_calls} bare f calls)",
            "floor",
            "floor",
            peer(lambda f: FloorBlock(f, floor_calls)),
        )
    )
    if skip_peers:
        return out
    for method in ("tsit5", "dopri5"):
        out.append(
            Contender(
                f"torchdiffeq odeint {method}",
                "torchdiffeq",
                "backprop",
                peer(lambda f, m=method: TorchdiffeqBlock(f, m, adjoint=False)),
                "tsit5: nodecli's tableau registered in torchdiffeq" if method == "tsit5" else "",
            )
        )
    out.append(
        Contender(
            "torchdiffeq odeint_adjoint tsit5",
            "torchdiffeq",
            "adjoint",
            peer(lambda f: TorchdiffeqBlock(f, "tsit5", adjoint=True)),
        )
    )
    for sens, kind in (
        ("autograd", "backprop"),
        ("adjoint", "adjoint"),
        ("interpolated_adjoint", "adjoint"),
    ):
        out.append(
            Contender(
                f"torchdyn NeuralODE {sens}",
                "torchdyn",
                kind,
                peer(lambda f, s=sens: TorchdynBlock(f, s)),
            )
        )
    out.append(Contender("torchode AutoDiffAdjoint", "torchode", "backprop", peer(TorchodeBlock)))
    return out


# ----------------------------------------------------------------------------- running


def direct_nfe_per_batch(data: DataSplit, device: torch.device) -> int:
    """Vector-field calls in nodecli's direct forward solve of the first batch (e.g. 14)."""
    torch.manual_seed(SEED)
    model = build_model("module", SolveSpec(rtol=RTOL, atol=ATOL)).to(device)
    before = model.ode.counter.calls
    model(data.x_train[:BATCH])
    return model.ode.counter.calls - before


def run(cands: list[Contender], epochs: int, rounds: int, log: Callable[[str], None]):
    results = {c.name: Result(c) for c in cands}
    for r in range(rounds):
        runners = {}
        for c in cands:
            if results[c.name].error:
                continue
            try:
                runners[c.name] = c.make()
            except Exception as exc:  # a peer that is not installed is reported, not fatal
                results[c.name].error = f"{type(exc).__name__}: {exc}".splitlines()[0]
                log(f"  {c.name}: skipped ({results[c.name].error})")
        times: dict[str, list[float]] = {name: [] for name in runners}
        names = list(runners)
        for e in range(epochs):
            k = e % len(names) if names else 0
            for name in names[k:] + names[:k]:  # rotate who goes first
                res = results[name]
                if res.error:
                    continue
                try:
                    seconds, nfe_f, nfe_b = runners[name].epoch()
                except Exception as exc:
                    res.error = f"{type(exc).__name__}: {exc}".splitlines()[0]
                    log(f"  {name}: failed ({res.error})")
                    continue
                times[name].append(seconds)
                res.nfe_forward, res.nfe_backward = nfe_f, nfe_b
        for name, runner in runners.items():
            res = results[name]
            if res.error:
                continue
            res.epochs.append(times[name])
            res.test_acc.append(runner.test_acc())
            if r == 0:
                res.compile_s = runner.compile_s()
        log(f"round {r + 1}/{rounds} done")
    return list(results.values())


def process_wall(repeats: int) -> list[float]:
    """Wall time of the whole `nodecli train` process with no overrides, in a scratch dir."""
    exe = Path(sys.executable).with_name("nodecli")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "nodecli.cli"]
    walls = []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(repeats):
            start = time.perf_counter()
            subprocess.run([*cmd, "train"], cwd=tmp, check=True, capture_output=True)
            walls.append(time.perf_counter() - start)
    return walls


# ----------------------------------------------------------------------------- report


def versions() -> str:
    parts = [f"python {platform.python_version()}", f"torch {torch.__version__}"]
    parts += [f"{dist} {dist_version(dist)}" for dist in ("torchdiffeq", "torchdyn", "torchode")]
    return ", ".join(parts)


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def markdown(results: list[Result], args: argparse.Namespace, device: torch.device, walls) -> str:
    ok = [r for r in results if not r.error and r.epochs]
    fastest: dict[str, Result] = {}
    for r in ok:
        if r.contender.library in ("nodecli", "floor"):
            continue
        kind = r.contender.kind
        if kind not in fastest or r.warm < fastest[kind].warm:
            fastest[kind] = r
    floor = next((r for r in ok if r.contender.kind == "floor"), None)

    def ratio(a: Result, b: Result | None) -> str:
        return f"{a.ratio_to(b):.2f}" if b else "–"

    dev = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()
    lines = [
        "# Epoch-time benchmark: nodecli vs PyTorch Neural ODE libraries",
        "",
        "The reference experiment (1500 bundled MNIST digits, batch 128, Adam lr 1e-3, Tsit5 "
        "rtol = atol = 1e-3, same data, init, batch order and threads for every contender). "
        "Contenders are interleaved epoch by epoch in one process.",
        "",
        f"- command: `{args.command}`",
        f"- date: {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- machine: {dev}; {os.cpu_count()} logical CPUs; device `{device}`; "
        f"torch threads {torch.get_num_threads()}",
        f"- versions: {versions()}",
        f"- {args.epochs} epochs x {args.rounds} rounds; warm = median epoch over epochs "
        f"2..{args.epochs} of all rounds; first = round 1's first epoch (cold process); "
        "ratios = median of paired per-epoch ratios (same round and epoch, run back to back)",
        "",
        "| contender | gradient | warm epoch (s) | first epoch (s) | compile (s) | NFE fwd / epoch "
        "| NFE bwd / epoch | test acc (%) | × fastest peer (same gradient) | × floor |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        c = r.contender
        if r.error or not r.epochs:
            lines.append(f"| {c.name} | {c.kind} | – | – | – | – | – | – | – | – |")
            continue
        acc = statistics.median(r.test_acc)
        peer = fastest.get(c.kind)
        lines.append(
            f"| {c.name} | {c.kind} | {r.warm:.4f} | {r.first:.4f} | "
            f"{r.compile_s:.1f} | {r.nfe_forward} | {r.nfe_backward} | {acc:.1f} | "
            f"{ratio(r, peer) if c.kind != 'floor' else '–'} | {ratio(r, floor)} |"
        )
    lines += [
        "",
        "Fastest peer per gradient kind: "
        + ", ".join(f"{k}: {v.contender.name} ({v.warm:.4f} s)" for k, v in sorted(fastest.items()))
        + ".",
    ]
    errors = [r for r in results if r.error]
    if errors:
        lines += ["", "Not measured:"] + [f"- {r.contender.name}: {r.error}" for r in errors]
    lines += ["", "## Targets (issue: “ahead of every PyTorch Neural ODE library”)", ""]
    by_name = {r.contender.name: r for r in ok}
    default_style = LAYER_STYLES[0]

    def check(label: str, value: float | None, limit: float) -> None:
        if value is None:
            lines.append(f"- {label}: not measured")
        else:
            mark = "met" if value <= limit else "NOT met"
            lines.append(f"- {label}: {value:.2f} (target ≤ {limit}) — {mark}")

    direct = by_name.get(f"nodecli direct {default_style}")
    adjoint = by_name.get(f"nodecli adjoint {default_style}")
    bp, adj = fastest.get("backprop"), fastest.get("adjoint")
    check(
        f"direct ({default_style}) / fastest backprop peer",
        direct.ratio_to(bp) if direct and bp else None,
        0.6,
    )
    check(
        f"direct ({default_style}) / eager floor",
        direct.ratio_to(floor) if direct and floor else None,
        1.25,
    )
    check(
        f"adjoint ({default_style}) / fastest adjoint peer",
        adjoint.ratio_to(adj) if adjoint and adj else None,
        0.6,
    )
    # layer_style=compiled compiles the step of nodecli's own differentiated integrator
    # (direct); for the other sensealgs it runs the functional field, so only direct counts.
    comp, mod = by_name.get("nodecli direct compiled"), by_name.get("nodecli direct module")
    if comp and mod:
        check("direct: compiled / module warm epoch", comp.ratio_to(mod), 1.0)
    if walls:
        lines.append(
            f"- whole `nodecli train` process (no overrides), median of {len(walls)}: "
            f"{statistics.median(walls):.2f} s wall (target ≤ 8 s; runs: "
            + ", ".join(f"{w:.2f}" for w in walls)
            + ")"
        )
    lines += [
        "",
        "NFE columns: vector-field calls per epoch in the forward pass and during backward. "
        "For nodecli `direct` the backward column counts the vector-Jacobian products through "
        "the recorded evaluations (peers that backpropagate through their solver show 0 "
        "there: they make no calls during backward); for adjoints it counts the backward "
        "solve's evaluations. torchode counts one call per batched evaluation.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=9)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--only", default="", help="comma-separated substrings of names")
    parser.add_argument("--no-peers", action="store_true", help="nodecli and the floor only")
    parser.add_argument("--process-runs", type=int, default=3, help="`nodecli train` walls")
    parser.add_argument("--quick", action="store_true", help="3 epochs x 1 round, no walls")
    parser.add_argument("--out", type=Path, help="write the markdown table here")
    args = parser.parse_args(argv)
    args.command = "python benchmarks/bench_epoch.py " + " ".join(
        shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv)
    )
    if args.quick:
        args.epochs, args.rounds, args.process_runs = 3, 1, 0
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device here")

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    data = load_dataset("mnist_bundled", N_DIGITS, SPLIT, SEED).to(device)
    floor_calls = direct_nfe_per_batch(data, device)
    cands = contenders(data, device, floor_calls, args.no_peers)
    if args.only:
        keys = [k.strip() for k in args.only.split(",") if k.strip()]
        cands = [c for c in cands if any(k in c.name for k in keys)]
    log(f"{len(cands)} contenders, {args.epochs} epochs x {args.rounds} rounds")
    results = run(cands, args.epochs, args.rounds, log)
    walls = process_wall(args.process_runs) if args.process_runs else []
    text = markdown(results, args, device, walls)
    print(text)
    if args.out:
        args.out.write_text(text, encoding="utf-8")
        log(f"wrote {args.out}")


if __name__ == "__main__":
    main()
