"""`nodecli.odeint` against `torchdiffeq.odeint` on a batched linear problem.

The problem is torchdiffeq's LinearODE batched: dy/dt = y Aᵀ, A = U - Uᵀ (10 × 10, an
nn.Parameter), y a (128, 10) float32 state, t = [0, 1], dopri5 for both libraries (the
method they share; torchdiffeq has no tsit5), at rtol = atol = 1e-3 and 1e-6. Each
gradient method of nodecli runs against its torchdiffeq counterpart: odeint for direct,
odeint_adjoint for adjoint, and the closest for the others (odeint for checkpoint, which
gives direct's gradient; odeint_adjoint for interpolating and gauss, continuous adjoints).

Forward: the call, with autograd on (as in training); backward: `loss.backward()` of the
mean of y(1). Rounds are interleaved (every contender once per round, then the next
round), one CPU thread; the table gives medians over rounds and their ratio (nodecli /
torchdiffeq), and the forward evaluation counts.

    python benchmarks/bench_odeint.py --out benchmarks/ODEINT.md
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable

import torch
import torchdiffeq
from torch import Tensor, nn

from nodecli import odeint
from nodecli.ode.methods import METHODS

#: torchdiffeq's counterpart of each nodecli gradient method
PEERS = {
    "direct": "odeint",
    "adjoint": "odeint_adjoint",
    "checkpoint": "odeint",
    "interpolating": "odeint_adjoint",
    "gauss": "odeint_adjoint",
}


class Linear(nn.Module):
    def __init__(self, dim: int = 10) -> None:
        super().__init__()
        u = torch.randn(dim, dim, generator=torch.Generator().manual_seed(0)) * 0.1
        self.A = nn.Parameter(u - u.T)
        self.nfe = 0

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        self.nfe += 1
        return y @ self.A.T


Solve = Callable[[nn.Module, Tensor, Tensor, float], Tensor]


def nodecli_solve(sensealg: str) -> Solve:
    def run(f: nn.Module, y0: Tensor, t: Tensor, tol: float) -> Tensor:
        return odeint(f, y0, t, rtol=tol, atol=tol, method="dopri5", sensealg=sensealg)

    return run


def torchdiffeq_solve(name: str) -> Solve:
    fn = getattr(torchdiffeq, name)

    def run(f: nn.Module, y0: Tensor, t: Tensor, tol: float) -> Tensor:
        return fn(f, y0, t, rtol=tol, atol=tol, method="dopri5")

    return run


def time_once(solve: Solve, f: Linear, y0: Tensor, t: Tensor, tol: float) -> tuple[float, ...]:
    """(forward s, backward s, forward NFE) of one solve."""
    f.zero_grad(set_to_none=True)
    f.nfe = 0
    start = time.perf_counter()
    ys = solve(f, y0, t, tol)
    mid = time.perf_counter()
    nfe = f.nfe
    ys[-1].mean().backward()
    end = time.perf_counter()
    return mid - start, end - mid, nfe


def run(rounds: int) -> list[dict[str, object]]:
    torch.set_num_threads(1)
    f = Linear()
    y0 = torch.randn(128, 10, generator=torch.Generator().manual_seed(1))
    t = torch.tensor([0.0, 1.0])
    contenders = {}
    for tol in (1e-3, 1e-6):
        for sensealg in METHODS:
            contenders[(tol, sensealg, "nodecli")] = nodecli_solve(sensealg)
            contenders[(tol, sensealg, "torchdiffeq")] = torchdiffeq_solve(PEERS[sensealg])
    samples: dict[tuple, list[tuple[float, ...]]] = {key: [] for key in contenders}
    for key, solve in contenders.items():  # warm-up, not timed
        time_once(solve, f, y0, t, key[0])
    for _ in range(rounds):
        for key, solve in contenders.items():
            samples[key].append(time_once(solve, f, y0, t, key[0]))
    rows = []

    def med(xs: list[tuple[float, ...]], i: int) -> float:
        return statistics.median(x[i] for x in xs)

    for tol in (1e-3, 1e-6):
        for sensealg in METHODS:
            ours = samples[(tol, sensealg, "nodecli")]
            peer = samples[(tol, sensealg, "torchdiffeq")]
            rows.append(
                {
                    "tol": tol,
                    "sensealg": sensealg,
                    "peer": PEERS[sensealg],
                    "fwd": med(ours, 0),
                    "peer_fwd": med(peer, 0),
                    "bwd": med(ours, 1),
                    "peer_bwd": med(peer, 1),
                    "nfe": int(med(ours, 2)),
                    "peer_nfe": int(med(peer, 2)),
                }
            )
    return rows


def markdown(rows: list[dict[str, object]], rounds: int, command: str) -> str:
    lines = [
        "# nodecli.odeint vs torchdiffeq",
        "",
        f"`{command}` — batched LinearODE (128 × 10, float32), t = [0, 1], dopri5, one CPU "
        f"thread, medians of {rounds} interleaved rounds; ratio = nodecli / torchdiffeq "
        f"(torch {torch.__version__}, torchdiffeq {torchdiffeq.__version__}, "
        f"{platform.processor() or platform.machine()}).",
        "",
        "| rtol=atol | sensealg | torchdiffeq | forward ms | torchdiffeq ms | ratio "
        "| backward ms | torchdiffeq ms | ratio | NFE fwd (nodecli / torchdiffeq) |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        fwd, pf, bwd, pb = (1e3 * float(r[k]) for k in ("fwd", "peer_fwd", "bwd", "peer_bwd"))
        lines.append(
            f"| {r['tol']:g} | {r['sensealg']} | {r['peer']} | {fwd:.2f} | {pf:.2f} | "
            f"{fwd / pf:.2f}× | {bwd:.2f} | {pb:.2f} | {bwd / pb:.2f}× | "
            f"{r['nfe']} / {r['peer_nfe']} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--out", default=None, help="write the Markdown table here")
    args = parser.parse_args()
    command = "python benchmarks/bench_odeint.py" + (f" --out {args.out}" if args.out else "")
    if args.rounds != 30:
        command += f" --rounds {args.rounds}"
    text = markdown(run(args.rounds), args.rounds, command)
    print(text)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(text)


if __name__ == "__main__":
    main()
