"""When a run may be continued or started in a folder: the rules, checked before Hydra
writes anything.

* `resume_overrides`: a resumed run reuses its own overrides (only train.epochs and the
  device may change), so resume never silently changes an experiment half-way.
* `validate_record`: the whole record must be consistent (run.json, metrics.csv rows,
  checkpoint.pt loadable with weights_only=True into this config's model) before one
  byte is written; a refused resume leaves the record as it was.
* `check_new_run_dir`: a new run never writes over a record or a user's files.

Training state itself (saving/loading checkpoint.pt) is nodecli.record.checkpoint's concern.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from omegaconf import OmegaConf

from nodecli.config.overrides import quote_override_value, shell_override
from nodecli.config.schema import Config, config_from_tree
from nodecli.errors import ConfigError
from nodecli.record.layout import (
    CHECKPOINT_FILE,
    CONFIG_FILE,
    METRICS_FILE,
    MULTIRUN_FILE,
    RUN_FILE,
    SWEEP_FILE,
    folder_entries,
)
from nodecli.record.ownership import ClaimError, live_owner
from nodecli.record.read import (
    flatten,
    hydra_mode,
    read_config_tree,
    read_metrics,
    read_run_json,
    run_state,
)

RUN_HINT = "give a run folder such as outputs/runs/<date>/<time>-<id>"
UNCHANGED = "the record was left as it is"
#: What resume may change: how long, and where it runs (a change of device is recorded in
#: run.json's `devices` and announced); anything else would change the experiment half-way.
RESUME_CHANGES = {"train.epochs", "device", "device.threads"}


def resume_overrides(target: str, extra: list[str]) -> list[str]:
    """The overrides that continue the run in TARGET: its own, plus train.epochs if given.

    The run's directory, config and record are reused, so resume refuses anything that
    would silently change the experiment half-way.
    """
    run_dir = Path(target).expanduser().resolve()
    if not run_dir.is_dir():
        raise ConfigError(f"resume={target}: no such directory; {RUN_HINT}")
    saved_path = run_dir / ".hydra" / "overrides.yaml"
    missing = [
        name for name in (RUN_FILE, ".hydra/overrides.yaml") if not (run_dir / name).is_file()
    ]
    if missing == [RUN_FILE] and folder_entries(run_dir) == [".hydra"]:
        raise ConfigError(
            f"resume={target} holds no run record yet (only Hydra's .hydra/: the run was "
            "stopped before its first record write); start it again in that folder with "
            f"`nodecli train … {shell_override('hydra.run.dir', str(run_dir))}`"
        )
    if missing:
        raise ConfigError(
            f"resume={target} is not a run directory (no {' or '.join(missing)}); {RUN_HINT}"
        )
    try:
        info = read_run_json(run_dir)
    except ValueError as exc:
        raise ConfigError(f"resume={target}: {RUN_FILE} is damaged ({exc}); {UNCHANGED}") from exc
    try:
        saved = OmegaConf.to_container(OmegaConf.load(saved_path))
        if not isinstance(saved, list) or not all(isinstance(o, str) for o in saved):
            raise ValueError("not a list of overrides")  # a dict's keys read as overrides
    except Exception as exc:  # noqa: BLE001 - unreadable YAML: say which file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(
            f"resume={target}: .hydra/overrides.yaml is damaged ({first}); {UNCHANGED}"
        ) from exc
    refuse_live(info, f"resume={target}")
    refuse_sweep_job(run_dir, target)
    keys = {o.split("=", 1)[0].lstrip("+~") for o in extra}
    if keys - RESUME_CHANGES:
        raise ConfigError(
            "resume continues a run with its own config; only train.epochs=N, device=NAME "
            "and device.threads=N may be given with it "
            f"(got {', '.join(sorted(keys - RESUME_CHANGES))})"
        )
    kept = [o for o in saved if not o.startswith("resume=") and o.split("=", 1)[0] not in keys]
    return [*kept, *extra, f"resume={quote_override_value(str(run_dir))}"]


def sweep_of(run_dir: Path) -> Path | None:
    """The sweep folder RUN_DIR is a job of: Hydra recorded the run as a multirun job,
    and the nearest folder above it holds a sweep's plan (an ordinary run below some
    unrelated multirun.yaml is not a sweep job)."""
    if hydra_mode(run_dir) != "MULTIRUN":
        return None
    for parent in run_dir.parents:
        if (parent / SWEEP_FILE).is_file() or (parent / MULTIRUN_FILE).is_file():
            return parent
    return None


def refuse_sweep_job(run_dir: Path, target: str) -> None:
    """A sweep job is continued by resuming its sweep: `train resume=` would rewrite the
    job's .hydra/overrides.yaml (adding resume=…), and its sweep could not resume then."""
    sweep_dir = sweep_of(run_dir)
    if sweep_dir is not None:
        again = shell_override("sweep.resume", str(sweep_dir))
        raise ConfigError(
            f"resume={target} is a job of the sweep {sweep_dir}; continue it with "
            f"`nodecli sweep {again}`, which resumes every unfinished job of that sweep"
        )


def refuse_live(info: dict, what: str) -> None:
    """A record that is still being written (live pid here, fresh heartbeat elsewhere)."""
    state, age = run_state(info)
    if state == "running":
        raise ConfigError(
            f"{what}: that run is still running (pid {info.get('pid')} on {info.get('host')}, "
            f"last heartbeat {age:.0f} s ago); wait for it or stop it"
        )


def validate_record(run_dir: Path, config: Config, check_live: bool = True) -> int:
    """Check RUN_DIR's whole record against CONFIG; return the epochs resume keeps.

    CHECK_LIVE=False only where the scheduler vouches that the writer is gone (a requeued
    sweep job restarting on another node, whose old heartbeat may still look fresh).
    Write order per epoch is metrics.csv, run.json, checkpoint.pt, so after any kill the
    checkpointed epochs c, recorded epochs e and metric rows r satisfy c <= e <= r <= c+1
    (the one unsaved epoch is redone). Anything else is damage: refuse, touch nothing.
    """
    where = f"resume={run_dir}"
    try:
        info = read_run_json(run_dir)
    except ValueError as exc:
        raise ConfigError(f"{where}: {RUN_FILE} is damaged ({exc}); {UNCHANGED}") from exc
    if check_live:
        refuse_live(info, where)
    recorded = info.get("epochs_completed")
    if not isinstance(recorded, int) or isinstance(recorded, bool) or recorded < 0:
        raise ConfigError(f"{where}: {RUN_FILE} has no valid epochs_completed; {UNCHANGED}")
    rows = 0
    if (run_dir / METRICS_FILE).exists() or recorded:
        try:  # read_metrics also refuses epochs that do not run 1, 2, … in order
            rows = len(read_metrics(run_dir / METRICS_FILE))
        except ValueError as exc:
            raise ConfigError(f"{where}: {METRICS_FILE} is damaged ({exc}); {UNCHANGED}") from exc
    run_id = info.get("run_id")
    exists = (run_dir / CHECKPOINT_FILE).exists()
    saved = checkpoint_epoch(run_dir, config, run_id) if exists else 0
    if not saved <= recorded <= rows <= saved + 1:
        raise ConfigError(
            f"{where}: the record is inconsistent ({RUN_FILE}: {recorded} epoch(s), "
            f"{METRICS_FILE}: {rows} row(s), {CHECKPOINT_FILE}: "
            f"{saved if saved else 'none'}); resuming would retrain or lose finished "
            f"epochs; {UNCHANGED}"
        )
    return saved


def check_resumable(run_dir: Path, config: Config, target: str) -> int:
    """The record is consistent (`validate_record`), its stored config sound
    (`check_stored_config`), and it has epochs left to train; return the epochs kept.
    A run killed after its last checkpoint but before it said "completed" may resume
    with nothing left to train: that only completes its record."""
    finished = validate_record(run_dir, config)
    check_stored_config(run_dir, config, target)
    done = read_run_json(run_dir)["status"] == "completed"
    if config.train.epochs < finished or (config.train.epochs == finished and done):
        raise ConfigError(
            f"resume={target}: the run already has {finished} finished epoch(s); "
            f"train.epochs={config.train.epochs} is not more than that; valid: "
            f"train.epochs > {finished} (e.g. train.epochs={finished + 1}) to train further"
        )
    return finished


def check_stored_config(run_dir: Path, config: Config, target: str) -> None:
    """.hydra/config.yaml must be a config a fresh run accepts, equal to what the run's
    own overrides compose to (resume and what RESUME_CHANGES lets resume change aside,
    so `resume=… device=cpu` is allowed). Hydra rewrites it on
    resume, so a damaged or edited one would otherwise be replaced without a word."""
    where = f"resume={target}: {CONFIG_FILE}"
    try:
        stored = config_from_tree(read_config_tree(run_dir))
    except (ValueError, ConfigError) as exc:  # unreadable YAML, a wrong type or range
        raise ConfigError(f"{where} is damaged ({exc}); {UNCHANGED}") from exc
    now, then = flatten(asdict(config)), flatten(asdict(stored))
    for key in sorted(now.keys() | then.keys()):
        if key != "resume" and not may_change(key) and now.get(key) != then.get(key):
            raise ConfigError(
                f"{where} says {key}={then.get(key)}, but the run's overrides compose to "
                f"{key}={now.get(key)}; resuming would change the experiment; {UNCHANGED}"
            )


def may_change(key: str) -> bool:
    """KEY (flattened, e.g. `device.name`) is one resume may change: RESUME_CHANGES
    names `device` for the group's choice, stored as `device.name`."""
    return key in RESUME_CHANGES or key.removesuffix(".name") in RESUME_CHANGES


def checkpoint_epoch(run_dir: Path, config: Config, run_id: str | None = None) -> int:
    """The epoch checkpoint.pt holds, after loading it into CONFIG's model and optimiser
    (so a truncated or foreign checkpoint is refused now, not half-way through resume).

    A checkpoint names its run (RUN_ID, from run.json): one of another run is refused
    even when its tensors have this run's shapes. A checkpoint without a run id (written
    before nodecli stored one, or by the first resume of such an old run before its
    next epoch ended) is accepted on its shapes alone: nothing else can tell."""
    # Imported here: torch and the model are only needed once a resume gets this far.
    import torch

    from nodecli.record.checkpoint import ResumeError, read_training_state
    from nodecli.train.loop import make_optimizer, model_for

    path = run_dir / CHECKPOINT_FILE
    try:
        state = read_training_state(path)
        model = model_for(config)
        model.load_state_dict(state["model"])
        make_optimizer(model, config.train.lr).load_state_dict(state["optimizer"])
        torch.Generator().set_state(state["data_generator"])
        owner = state.get("run_id")
        if owner is not None and owner != run_id:
            raise ResumeError(
                f"{path} belongs to another run (run id {owner}; {RUN_FILE} says "
                f"{run_id or 'none'})"
            )
    except (ResumeError, ConfigError) as exc:  # ConfigError: a field that no longer builds
        raise ConfigError(f"resume={run_dir}: {exc}; {UNCHANGED}") from exc
    except (RuntimeError, KeyError, ValueError, TypeError) as exc:
        # load_state_dict's first line is only a heading: keep the first mismatch too.
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        first = " ".join(lines[:2]) if lines else type(exc).__name__
        raise ConfigError(
            f"resume={run_dir}: {path} does not fit this run's model ({first}); {UNCHANGED}"
        ) from exc
    return int(state["epoch"])


def check_new_run_dir(run_dir: Path, given_as: str) -> None:
    """A new run never writes over another run's record or over a user's files."""
    owner = live_owner(run_dir)
    if owner is not None:
        raise ClaimError(
            f"{given_as}={run_dir} is in use by {owner}; wait for it to finish or stop it, "
            "or choose another folder"
        )
    if (run_dir / RUN_FILE).is_file():
        raise ConfigError(
            f"{given_as}={run_dir} already holds a run record; choose another folder, "
            f"or continue that run with `nodecli train {shell_override('resume', str(run_dir))}`"
        )
    # `.hydra/` alone is a start killed between Hydra's files and the run's first record
    # write: nothing was recorded, and the new run's Hydra rewrites those files. Only
    # Hydra's own files, though: anything else in .hydra/ is somebody's.
    foreign = [
        name
        for name in folder_entries(run_dir)
        if not (name == ".hydra" and only_hydra_files(run_dir / name))
    ]
    if foreign:
        raise ConfigError(
            f"{given_as}={run_dir} is not empty and holds no run record "
            f"({', '.join(foreign[:3])}{' …' if len(foreign) > 3 else ''}); choose an empty "
            "or new folder"
        )


HYDRA_FILES = {"config.yaml": dict, "hydra.yaml": dict, "overrides.yaml": list}


def only_hydra_files(folder: Path) -> bool:
    """FOLDER holds nothing but what Hydra writes there (config.yaml, hydra.yaml and
    overrides.yaml, each a YAML mapping or list, or empty: cut off by a kill)."""
    import yaml

    if not folder.is_dir() or folder.is_symlink():
        return False
    for path in folder.iterdir():
        kind = HYDRA_FILES.get(path.name)
        if kind is None or not path.is_file():
            return False
        try:
            content = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            return False
        if content is not None and not isinstance(content, kind):
            return False
    return True
