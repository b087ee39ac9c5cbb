"""Where each job of a sweep keeps its record: nodecli's own `<num>_<overrides>` folders,
or the folders a custom `hydra.sweep.subdir` names, resolved per job before anything is
written (unique, inside the sweep folder, the same on every run), and finding a job's
folder again for the summary and for `sweep.resume`.
"""

from __future__ import annotations

import re
from pathlib import Path

from omegaconf import OmegaConf

from nodecli.errors import ConfigError
from nodecli.record.layout import ATTEMPTS_DIR, MULTIRUN_FILE, SWEEP_FILE
from nodecli.record.ownership import CLAIM_FILE

# Hydra overrides that decide the job folders' names: a resume must keep them, or every
# job would look for its record in another folder (and completed jobs would train again).
FOLDER_KEYS = ("hydra.sweep.subdir", "hydra.job.config.override_dirname")
# Names a job folder may not take at the top of the sweep folder (the sweep's own files).
RESERVED = (SWEEP_FILE, MULTIRUN_FILE, CLAIM_FILE, ".hydra", ".submitit")


def custom_folders(hydra_overrides: list[str]) -> bool:
    """Whether the Hydra overrides choose the job folders' names (else nodecli's own)."""
    return any(o.lstrip("+").startswith(FOLDER_KEYS) for o in hydra_overrides)


def stored_overrides(job_dir: Path) -> list[str] | None:
    """The overrides Hydra saved for the job in JOB_DIR, sorted; None if unreadable."""
    try:
        return sorted(map(str, OmegaConf.load(job_dir / ".hydra" / "overrides.yaml")))
    except Exception:  # noqa: BLE001 - missing or damaged YAML cannot confirm the job
        return None


def numbered_folders(sweep_dir: Path) -> dict[int, Path]:
    """Numbered job folders (<num>_<overrides> or <num>) that Hydra created."""
    found = {}
    for path in sweep_dir.iterdir() if sweep_dir.is_dir() else []:
        match = re.fullmatch(r"(\d+)(_.*)?", path.name)
        if match and (path / ".hydra").is_dir():
            found[int(match.group(1))] = path
    return found


def check_plan_matches_folders(
    sweep_dir: Path, jobs: list[list[str]], where: str, job_dirs: list[str] | None = None
) -> None:
    """The plan must name every job folder already there, with that folder's overrides:
    a resume never shrinks a sweep nor reuses a folder for another job. JOB_DIRS: the
    custom subdir's folder of each job (then folder names carry no job number)."""
    if job_dirs:
        folders = {num: sweep_dir / name for num, name in enumerate(job_dirs)}
        folders = {num: path for num, path in folders.items() if (path / ".hydra").is_dir()}
    else:
        folders = numbered_folders(sweep_dir)
    for num, path in sorted(folders.items()):
        if num >= len(jobs):
            raise ConfigError(
                f"{where}: job folder {path.name} is not in the plan ({len(jobs)} job(s)); "
                "resuming would drop it; give the sweep's full command line"
            )
        stored = stored_overrides(path)
        if stored is not None and stored != sorted(jobs[num]):
            raise ConfigError(
                f"{where}: job folder {path.relative_to(sweep_dir)} was run with "
                f"{' '.join(stored)}, but the plan's job {num} is "
                f"{' '.join(jobs[num]) or '(defaults)'}; the plan and the folders disagree"
            )


def resolve_job_dirs(hydra_overrides: list[str], jobs: list[list[str]]) -> list[str]:
    """Each job's folder under a custom hydra.sweep.subdir, relative to the sweep folder;
    [] for nodecli's own names (one folder per job by construction). Refused: folders
    that two jobs share or that one job's folder contains (the second job 'skipped as
    completed' on the first one's record), that leave the sweep folder, take the name of
    the sweep's own files, or differ between two resolutions (a random or per-launcher
    value: a resume would look elsewhere and train completed jobs again)."""
    from nodecli.config.compose import resolve_sweep_subdirs

    if not custom_folders(hydra_overrides):
        return []
    folders: list[str] = []
    for num, names in enumerate(resolve_sweep_subdirs(hydra_overrides, jobs)):
        folders.append(_checked(names, num, folders))
    return folders


def _checked(names: list[str], num: int, earlier: list[str]) -> str:
    """The one folder NAMES agree on for job NUM, checked against the EARLIER jobs'."""
    subdir = names[0]
    parts = Path(subdir).parts
    if not parts or Path(subdir).is_absolute() or ".." in parts:
        raise ConfigError(
            f"hydra.sweep.subdir gives job {num} the folder {subdir!r}, which is not a folder "
            "inside the sweep folder; use a relative name such as job${hydra.job.num}"
        )
    if ATTEMPTS_DIR in parts[1:]:  # report reads <job>/attempts/<n>/ as old attempts
        raise ConfigError(
            f"hydra.sweep.subdir gives job {num} the folder {subdir!r}, inside a folder named "
            f"{ATTEMPTS_DIR!r}, where a resume keeps a job's earlier attempts (the report "
            "leaves those out); choose another name"
        )
    if parts[0] in RESERVED:
        raise ConfigError(
            f"hydra.sweep.subdir gives job {num} the folder {subdir!r}, the name of the "
            f"sweep's own {parts[0]}; choose another name"
        )
    if len(set(names)) > 1:
        raise ConfigError(
            f"hydra.sweep.subdir gives job {num} a different folder on every run ({names[0]!r}, "
            f"{names[1]!r}); a resume could not find its record; use ${{hydra.job.num}} or "
            "config keys"
        )
    key = Path(*parts)
    for other, name in enumerate(earlier):
        mine = Path(name)
        if key == mine or mine in key.parents or key in mine.parents:
            raise ConfigError(
                f"hydra.sweep.subdir gives jobs {other} and {num} the folders {name!r} and "
                f"{str(key)!r}, one inside or the same as the other; include "
                "${hydra.job.num} so that every job has its own"
            )
    return str(key)


def find_job_dir(
    sweep_dir: Path, num: int, overrides: list[str], job_dirs: list[str] | None = None
) -> Path | None:
    """The folder Hydra used for job NUM: JOB_DIRS[NUM] under a custom subdir, else the
    numbered folder (matched by number, then by its overrides)."""
    if job_dirs:
        path = sweep_dir / job_dirs[num]
        return path if path.is_dir() else None
    candidates = sorted(p for p in sweep_dir.glob(f"{num}_*") if p.is_dir())
    if not overrides:
        candidates += [p for p in (sweep_dir / str(num),) if p.is_dir()]
    for path in candidates:
        if stored_overrides(path) == sorted(overrides):
            return path
    if len(candidates) == 1:
        return candidates[0]
    # A custom hydra.sweep.subdir of a sweep made before job_dirs were stored: look for
    # the one folder whose overrides are this job's.
    matches = [
        p.parent.parent
        for p in sorted(sweep_dir.glob("*/.hydra/overrides.yaml"))
        if stored_overrides(p.parent.parent) == sorted(overrides)
    ]
    return matches[0] if len(matches) == 1 else None
