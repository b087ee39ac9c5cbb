"""`nodecli train`: compose and check the command line, claim the run folder, then hand
over to Hydra, which runs `train_task` once.

Everything that can be refused is refused here, before Hydra writes .hydra/: a bad
config, a missing dataset, a folder owned by a live run or holding someone's files, a
resume of a damaged record. Each is one line on stderr and exit code 2.
"""

from __future__ import annotations

import sys
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from nodecli.config.compose import compose_config, resolve_hydra_dir
from nodecli.config.environment import check_environment
from nodecli.config.launch import current_job, hydra_arg_parser, run_hydra
from nodecli.config.overrides import override_value, quote_override_value
from nodecli.config.schema import Config, validate
from nodecli.errors import EXIT_OK, EXIT_USAGE, ConfigError, UsageError, os_error_line
from nodecli.record.ownership import ClaimError, ClaimLost, check_writable, claim_folder
from nodecli.signals import output_never_stops_work
from nodecli.train.resume import (
    check_new_run_dir,
    check_resumable,
    resume_overrides,
)

DEFAULT_RUNS_ROOT = Path("outputs") / "runs"
# The codes train_task returned during the current train_command (Hydra's main returns
# none); emptied at each command, so a process that runs several keeps each one's own.
_exit_codes: list[int] = []


def train_task(cfg: DictConfig) -> int:
    """What Hydra runs for the job: train into its output directory. Nothing may escape
    as an exception (Hydra would print a traceback): refusals become exit code 2."""
    # Imported here: the training stack (torch, the model) is only needed once a run
    # really starts, not for --help or a refused command line.
    from nodecli.train.loop import run_experiment

    job = current_job()
    try:
        config = OmegaConf.to_object(cfg)
        assert isinstance(config, Config)
        validate(config)  # again: ${oc.env:…} resolves only now, in the job's environment
        code = run_experiment(config, job.output_dir, job.overrides)
    except (ConfigError, ClaimLost) as exc:  # the folder is (now) another process's
        print(f"nodecli: error: {exc}", flush=True, file=sys.stderr)
        code = EXIT_USAGE
    except OSError as exc:  # the record could not even be started: nothing was trained
        print(f"nodecli: error: {os_error_line(exc)}", flush=True, file=sys.stderr)
        code = EXIT_USAGE
    _exit_codes.append(code)
    if code >= 128:  # stopped by a signal: stop the whole command, sweeps included
        raise SystemExit(code)
    return code


def train_command(args: list[str]) -> int:
    # The run is the work, its output only a view of it: a closed pipe must not fail it.
    with output_never_stops_work():
        return _train_command(args)


def _train_command(args: list[str]) -> int:
    parsed = hydra_arg_parser().parse_args(args)
    if parsed.multirun:
        raise UsageError("train runs one job; use `nodecli sweep` for multirun")
    informational = parsed.help or parsed.hydra_help or parsed.cfg or parsed.info
    run_dir: Path | None = None
    resume = [o for o in parsed.overrides if o.startswith("resume=")]
    if resume and not informational:
        target = override_value(resume[-1])
        overrides = resume_overrides(target, [o for o in parsed.overrides if o not in resume])
        config = compose_config(overrides)
        run_dir = Path(config.resume or "")
        claim_folder(run_dir, "resume")
        check_resumable(run_dir, config, target)
        check_environment(config)
        args = [*overrides, f"hydra.run.dir={quote_override_value(str(run_dir))}"]
    elif parsed.cfg or parsed.info:
        compose_config(parsed.overrides)  # a typo is one line here too, not Hydra's text
    elif not informational:
        config = compose_config(parsed.overrides)
        check_environment(config)
        run_dir = explicit_run_dir(parsed.overrides)
        if run_dir is not None and "${" in str(run_dir):
            resolved = resolve_hydra_dir("hydra.run.dir", parsed.overrides)
            run_dir = Path(resolved)
            args = [a for a in args if a.partition("=")[0].lstrip("+") != "hydra.run.dir"]
            args.append(f"hydra.run.dir={quote_override_value(resolved)}")
        if run_dir is None:
            check_writable(DEFAULT_RUNS_ROOT)
        else:
            claim_run_dir(run_dir)
    _exit_codes.clear()
    run_hydra(train_task, args, run_dir)
    return _exit_codes[-1] if _exit_codes else EXIT_OK


def explicit_run_dir(overrides: list[str]) -> Path | None:
    """hydra.run.dir as given on the command line (the last one wins, as in Hydra)."""
    found = None
    for override in overrides:
        if override.partition("=")[0].lstrip("+") == "hydra.run.dir":
            found = Path(override_value(override))
    return found


def claim_run_dir(run_dir: Path) -> None:
    """Own RUN_DIR before Hydra writes into it; refuse a live owner, a record or foreign
    files. The claim is atomic, so of two commands racing for one folder exactly one
    passes. Checked once before claiming too, so a refused run leaves the folder as is."""
    check_new_run_dir(run_dir, "hydra.run.dir")
    try:
        claim_folder(run_dir, "a nodecli run")
    except ClaimError as exc:
        raise ClaimError(f"hydra.run.dir={run_dir}: {exc}") from None
    check_new_run_dir(run_dir, "hydra.run.dir")
