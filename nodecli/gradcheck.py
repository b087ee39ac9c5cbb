"""`nodecli gradcheck`: every sensitivity method against a tight float64 reference.

For one batch of the configured experiment (the first `train.batch_size` training
digits, the model as initialised with `seed`), the gradient of the cross-entropy loss
w.r.t. all model parameters is computed

* once as the reference: sensealg=direct in float64 at rtol = atol = `--ref-tol`;
* once per sensitivity method, in `--dtype` at the configured solver tolerances (each
  method with its own config-group defaults plus the command line's sensealg.* keys),

and compared: relative L2 error ‖g − g_ref‖ / ‖g_ref‖, NFE forward / backward, median
time of forward + backward over `--repeats` runs (after one warm-up), and the memory
figures of nodecli/memory.py. The table is printed and written as JSON
(`gradcheck.json`, with the composed config) into its own record directory under
outputs/gradcheck/, next to the run records.
"""

from __future__ import annotations

import argparse
import difflib
import json
import math
import secrets
import statistics
import time
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.table import Table

from nodecli.atomic import atomic_write_text
from nodecli.config.compose import compose_config
from nodecli.config.environment import check_environment
from nodecli.config.schema import SENSEALGS, Config, all_keys
from nodecli.console import make_console
from nodecli.errors import EXIT_FAILED, ConfigError, raise_usage_errors
from nodecli.ode.methods import METHODS, Direct
from nodecli.record.ownership import check_writable

# torch and the training stack are imported once the command line has been checked
# (run_gradcheck, gradcheck_command): importing them takes seconds, and a refused
# command line must be answered at once.
if TYPE_CHECKING:
    import torch

console = make_console()

GRADCHECK_FILE = "gradcheck.json"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nodecli gradcheck",
        description="Compare every sensealg's gradient with a float64 reference on one batch.",
        epilog="Other arguments are config overrides, as for `nodecli train`.",
    )
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument(
        "--methods",
        default=",".join(SENSEALGS),
        help=f"comma-separated sensealgs to check (default: all: {','.join(SENSEALGS)})",
    )
    parser.add_argument("--ref-tol", type=float, default=1e-10, help="reference rtol = atol")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per method")
    parser.add_argument("--out", default=None, help="directory for gradcheck.json")
    parser.add_argument(
        "--max-rel-error",
        type=float,
        default=None,
        help="exit 1 if any method's relative error exceeds this",
    )
    return parser


def parse_args(args: list[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = raise_usage_errors(_parser(), "nodecli gradcheck --help lists the options")
    parsed, overrides = parser.parse_known_args(args)
    flags = [a for a in overrides if a.startswith("-")]
    if flags:
        raise ConfigError(f"unknown option {flags[0]} (nodecli gradcheck --help lists them)")
    parsed.methods = parse_methods(parsed.methods)
    if not (math.isfinite(parsed.ref_tol) and parsed.ref_tol > 0):
        raise ConfigError(
            f"--ref-tol={parsed.ref_tol} is out of range: it must be a positive finite number"
        )
    limit = parsed.max_rel_error
    if limit is not None and not (math.isfinite(limit) and limit >= 0):
        raise ConfigError(
            f"--max-rel-error={limit} is out of range: it must be a finite number >= 0 "
            "(e.g. --max-rel-error 1e-3)"
        )
    if parsed.repeats < 1:
        raise ConfigError(f"--repeats={parsed.repeats} is out of range: it must be >= 1")
    return parsed, overrides


def parse_methods(text: str) -> list[str]:
    """--methods: comma-separated sensealg names, each named once; a bad one is named
    in the refusal, with the closest valid name when there is one."""
    methods = list(dict.fromkeys(m.strip() for m in text.split(",") if m.strip()))
    valid = ", ".join(SENSEALGS)
    if not methods:
        raise ConfigError(f"--methods={text!r} names no method; valid: {valid} (comma-separated)")
    for name in methods:
        if name not in SENSEALGS:
            close = difflib.get_close_matches(name, SENSEALGS, n=1, cutoff=0.6)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise ConfigError(
                f"--methods: unknown method '{name}'{hint}; valid: {valid} (comma-separated)"
            )
    return methods


def _flat_grad(model: torch.nn.Module) -> torch.Tensor:
    import torch

    return torch.cat([p.grad.reshape(-1).double() for p in model.parameters()])


def run_gradcheck(
    configs: dict[str, Config],
    ref_cfg: Config,
    dtype: torch.dtype,
    ref_tol: float,
    repeats: int,
) -> dict[str, Any]:
    """Check every method in CONFIGS (sensealg name → composed config); return the report."""
    import torch
    import torch.nn.functional as F

    from nodecli.experiment.data import load_dataset
    from nodecli.experiment.device import resolve_device, synchronize
    from nodecli.experiment.memory import measure_step
    from nodecli.experiment.model import build_model
    from nodecli.train.loop import solve_spec

    cfg = ref_cfg
    device = resolve_device(cfg.device.name)
    if cfg.device.threads is not None:
        torch.set_num_threads(cfg.device.threads)
    torch.manual_seed(cfg.seed)
    data = load_dataset(cfg.dataset.name, cfg.data.n, cfg.data.split, cfg.seed, cfg.dataset.root)
    xb = data.x_train[: cfg.train.batch_size].to(device)
    yb = data.y_train[: cfg.train.batch_size].to(device)

    def make(c: Config, spec_dtype: torch.dtype, **spec_changes: Any):
        spec = solve_spec(c)
        if spec_changes:
            spec = replace(spec, **spec_changes)
        torch.manual_seed(c.seed)
        model = build_model(c.layer_style.name, spec, c.model.latent, c.model.hidden, c.model.t1)
        return model.to(device=device, dtype=spec_dtype)

    def loss_fn(model, x):
        return lambda: F.cross_entropy(model(x), yb)

    ref_solver = replace(cfg.solver, rtol=ref_tol, atol=ref_tol)
    ref_model = make(cfg, torch.float64, solver=ref_solver, sensealg=Direct())
    x64 = xb.to(torch.float64)
    loss_fn(ref_model, x64)().backward()
    g_ref = _flat_grad(ref_model)
    ref_nfe = ref_model.ode.nfe

    rows = []
    x = xb.to(dtype)
    for name, c in configs.items():
        model = make(c, dtype)
        counter = model.ode.counter
        before = counter.total
        loss = loss_fn(model, x)()
        mid = counter.total
        loss.backward()
        nfe_f, nfe_b = mid - before, counter.total - mid
        g = _flat_grad(model)
        err = float((g - g_ref).norm() / g_ref.norm())
        times = []
        for _ in range(repeats + 1):
            model.zero_grad(set_to_none=True)
            synchronize(device)
            start = time.perf_counter()
            loss_fn(model, x)().backward()
            synchronize(device)
            times.append(time.perf_counter() - start)
        model.zero_grad(set_to_none=True)
        mem = measure_step(loss_fn(model, x), device, exclude=[*model.parameters(), x])
        model.zero_grad(set_to_none=True)
        rows.append(
            {
                "sensealg": name,
                "rel_l2_error": err,
                "nfe_forward": nfe_f,
                "nfe_backward": nfe_b,
                "time_s": statistics.median(times[1:]),
                "hold_memory_bytes": mem.hold_bytes,
                "peak_memory_bytes": mem.peak_bytes,
            }
        )
    return {
        "dtype": str(dtype).removeprefix("torch."),
        "device": str(device),
        "threads": torch.get_num_threads(),
        "batch_size": int(len(yb)),
        "reference": {
            "sensealg": "direct",
            "dtype": "float64",
            "rtol": ref_tol,
            "atol": ref_tol,
            "nfe": ref_nfe,
            "grad_norm": float(g_ref.norm()),
        },
        "methods": rows,
    }


def _fmt_bytes(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{x / 1024:.1f} KiB"


def report_table(report: dict[str, Any]) -> Table:
    table = Table(
        title=(
            f"nodecli gradcheck: {report['dtype']} vs float64 direct at "
            f"rtol=atol={report['reference']['rtol']:g} ({report['device']})"
        )
    )
    for col in ("sensealg", "rel L2 error", "NFE fwd", "NFE bwd", "time (ms)", "hold", "peak"):
        table.add_column(col, justify="left" if col == "sensealg" else "right", no_wrap=True)
    for r in report["methods"]:
        table.add_row(
            r["sensealg"],
            f"{r['rel_l2_error']:.2e}",
            str(r["nfe_forward"]),
            str(r["nfe_backward"]),
            f"{r['time_s'] * 1e3:.2f}",
            _fmt_bytes(r["hold_memory_bytes"]),
            _fmt_bytes(r["peak_memory_bytes"]),
        )
    return table


def method_overrides(base: list[str], method: str) -> list[str]:
    """BASE for sensealg=METHOD: `sensealg.KEY=…` overrides go only to the methods that
    accept KEY (seminorm means something to adjoint, nothing to direct)."""
    accepted = METHODS[method].option_keys()
    kept = [
        o
        for o in base
        if not o.lstrip("+").startswith("sensealg.")
        or o.lstrip("+").split("=", 1)[0].removeprefix("sensealg.") in accepted
    ]
    return [*kept, f"sensealg={method}"]


def check_sensealg_keys(base: list[str], methods: list[str]) -> None:
    """Each `sensealg.KEY=…` must mean something to a checked method: method_overrides
    gives it only to those, so a typo or a key for none of them would silently vanish."""
    for override in base:
        key = override.lstrip("+").split("=", 1)[0]
        if not key.startswith("sensealg."):
            continue
        name = key.removeprefix("sensealg.")
        if any(name in METHODS[m].option_keys() for m in methods):
            continue
        takers = [m for m, cls in METHODS.items() if name in cls.option_keys()]
        if takers:
            raise ConfigError(
                f"{key} applies to none of the checked methods ({', '.join(methods)}); "
                f"it applies to {', '.join(takers)}: add one with --methods"
            )
        close = difflib.get_close_matches(key, all_keys(), n=1, cutoff=0.6)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise ConfigError(
            f"unknown config key '{key}'{hint} (nodecli train --help lists every key)"
        )


def claim_out_folder(out: Path) -> None:
    """Claim OUT for this gradcheck as train and sweep claim theirs: a folder holding
    anything (an earlier gradcheck.json, a run record, a user's files) is refused, so a
    record is never silently replaced; a live gradcheck's claim refuses a second one."""
    from nodecli.record.layout import folder_entries
    from nodecli.record.ownership import claim_folder, live_owner

    owner = live_owner(out) if out.is_dir() else None
    if owner is not None:
        raise ConfigError(
            f"--out {out} is in use by {owner}; wait for it to finish or choose another folder"
        )
    entries = folder_entries(out)
    if entries:
        shown = ", ".join(entries[:3]) + (", …" if len(entries) > 3 else "")
        raise ConfigError(
            f"--out {out} is not empty (it holds {shown}); name a new or empty folder, "
            "or leave --out out for a fresh one under outputs/gradcheck/"
        )
    check_writable(out)  # a file in the way or a read-only disk: exit 2 before the work
    claim_folder(out, "gradcheck")


def gradcheck_command(args: list[str]) -> int:
    if any(a in ("-h", "--help") for a in args):
        _parser().print_help()
        return 0
    parsed, overrides = parse_args(args)
    # The config's numbers are used in --dtype (the reference is float64 anyway).
    checked = {"dtype": parsed.dtype, "user": f"gradcheck --dtype={parsed.dtype}"}
    base = [o for o in overrides if not o.lstrip("+").startswith("sensealg=")]
    check_sensealg_keys(base, parsed.methods)
    chosen = [o for o in overrides if o not in base]
    if chosen:  # --methods decides the methods; a sensealg= choice is only checked
        compose_config(
            [o for o in base if not o.lstrip("+").startswith("sensealg.")] + chosen, **checked
        )
    # The reference is direct: it gets the same per-method filtering as every method, so
    # sensealg.seminorm=true (meant for adjoint) does not make its config invalid.
    ref_cfg = compose_config(method_overrides(base, "direct"), **checked)
    if ref_cfg.backend.name != "nodecli":  # else it would be silently ignored
        raise ConfigError(
            f"gradcheck checks nodecli's own gradient methods; backend={ref_cfg.backend.name} "
            "is not used here (compare backends with nodecli sweep backend=... and nodecli report)"
        )
    configs = {m: compose_config(method_overrides(base, m), **checked) for m in parsed.methods}
    if parsed.out is not None:
        out = Path(parsed.out)
    else:
        now = datetime.now()
        out = (
            Path("outputs/gradcheck")
            / now.strftime("%Y-%m-%d")
            / (now.strftime("%H-%M-%S") + "-" + secrets.token_hex(3))
        )
    check_environment(ref_cfg)  # imports torch: after every check of the command line
    claim_out_folder(out)

    import torch
    from omegaconf import OmegaConf

    from nodecli.ode.solver import SolverError
    from nodecli.train.loop import failure_message

    dtype = torch.float64 if parsed.dtype == "float64" else torch.float32
    try:
        report = run_gradcheck(configs, ref_cfg, dtype, parsed.ref_tol, parsed.repeats)
    except (SolverError, AssertionError) as exc:  # the solver gave up on this config
        console.print(f"[red]gradcheck failed:[/red] {failure_message(exc)}", markup=True)
        return EXIT_FAILED
    report["overrides"] = overrides
    report["config"] = OmegaConf.to_container(OmegaConf.structured(ref_cfg))
    atomic_write_text(out / GRADCHECK_FILE, json.dumps(report, indent=2) + "\n")
    console.print(report_table(report))
    console.print(f"record: {out / GRADCHECK_FILE}")
    if parsed.max_rel_error is not None:
        worst = max(r["rel_l2_error"] for r in report["methods"])
        if not worst <= parsed.max_rel_error:
            console.print(f"[red]largest relative error {worst:.2e} > {parsed.max_rel_error:g}")
            return EXIT_FAILED
    return 0
