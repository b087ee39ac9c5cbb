"""Where nodecli's conf/ tree lives and the resolvers its YAML uses (a run folder's random
suffix, a sweep job's folder name): the bottom of the config package."""

from __future__ import annotations

import hashlib
import secrets
from pathlib import Path

from omegaconf import OmegaConf

MAX_NAME_BYTES = 255  # the longest file name (one path component) Linux and macOS allow


def job_dir_name(num: int, overrides: str) -> str:
    """`<num>_<overrides>`, a sweep job's folder name: Hydra's own when it is one valid
    file name. A `/` (a path in a value) would make nested folders, so it becomes `_`;
    a name over 255 bytes ("File name too long") is cut and ends in a hash of the whole
    overrides. Deterministic, so a resume finds the same folder; unique by its number."""
    name = f"{num}_{overrides}".replace("/", "_")
    if len(name.encode()) <= MAX_NAME_BYTES:
        return name
    digest = "-" + hashlib.sha256(overrides.encode()).hexdigest()[:12]
    head = name.encode()[: MAX_NAME_BYTES - len(digest)].decode("utf-8", errors="ignore")
    return head + digest


def conf_dir() -> Path:
    """conf/ ships inside the wheel as nodecli/conf; in a source checkout it is ../../conf."""
    here = Path(__file__).resolve().parent.parent  # nodecli/
    for candidate in (here / "conf", here.parent / "conf"):
        if (candidate / "config.yaml").is_file():
            return candidate
    raise RuntimeError(f"nodecli's conf/ tree is missing (looked in {here} and {here.parent})")


def register_resolvers() -> None:
    """A short random suffix keeps two runs started in the same second apart. use_cache
    makes Hydra resolve it once per run, so every reference names the same directory.
    nodecli_job_dir names a sweep's job folders (conf/config.yaml's hydra.sweep.subdir)."""
    if not OmegaConf.has_resolver("nodecli_uid"):
        OmegaConf.register_new_resolver("nodecli_uid", lambda: secrets.token_hex(3), use_cache=True)
    if not OmegaConf.has_resolver("nodecli_job_dir"):
        OmegaConf.register_new_resolver("nodecli_job_dir", job_dir_name)
