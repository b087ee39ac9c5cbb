"""A private one-node SLURM cluster for the tests: munged + slurmctld + slurmd on localhost.

Everything lives under one temporary folder (munge key and socket, slurm.conf, state and
spool folders, logs); the daemons listen on free ports, are found by their pid files and
stopped by pid when the cluster is closed. Clients (sbatch, squeue, submitit) find the
cluster through the SLURM_CONF variable in `SlurmCluster.env`.

Written by hand because no library starts a throw-away SLURM cluster; the binaries come
from Debian's `slurm-wlm` and `munge` packages (installed by `.ci/run` when run as root).
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scancel", "scontrol")

# The test cluster has no accounting database (slurmdbd + MySQL would take minutes to set
# up), so the real `sacct` only answers "accounting storage is disabled" and submitit
# never learns that a job was cancelled. This stand-in answers submitit's one query,
# `sacct -o JobID,State,NodeList --parsable2 -j ID …`, from the controller's own job
# table (`scontrol show job`, which keeps finished jobs for MinJobAge seconds).
SACCT_FROM_SCONTROL = """#!{python}
import subprocess, sys
ids = [sys.argv[i + 1] for i, a in enumerate(sys.argv[:-1]) if a == "-j"]
print("JobID|State|NodeList")
for jid in ids:
    out = subprocess.run(["scontrol", "-o", "show", "job", jid], capture_output=True, text=True)
    for line in out.stdout.splitlines():
        f = dict(kv.split("=", 1) for kv in line.split() if "=" in kv)
        task = f.get("ArrayTaskId")
        name = f"{{f['ArrayJobId']}}_{{task}}" if task not in (None, "N/A") else f["JobId"]
        print(f"{{name}}|{{f.get('JobState', 'UNKNOWN')}}|{{f.get('NodeList', '')}}")
"""


def missing_binaries() -> list[str]:
    return [name for name in DAEMONS if shutil.which(name) is None]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class SlurmCluster:
    root: Path
    env: dict[str, str]
    pid_files: tuple[Path, ...]

    def run(self, *args: str) -> str:
        """Run a SLURM client command against this cluster; return its stdout."""
        return subprocess.run(
            list(args), env=self.env, check=True, capture_output=True, text=True, timeout=30
        ).stdout

    def jobs(self) -> dict[str, str]:
        """Job id → state (PENDING, RUNNING, …) of the jobs the controller still lists."""
        out = self.run("squeue", "--noheader", "--format=%i %T")
        return dict(line.split() for line in out.splitlines() if line.strip())

    def close(self) -> None:
        for pid_file in self.pid_files:
            try:
                os.kill(int(pid_file.read_text().strip()), signal.SIGTERM)
            except (OSError, ValueError):
                pass


def start_cluster(root: Path, cpus: int | None = None) -> SlurmCluster:
    """Start munged, slurmctld and slurmd under ROOT; wait until the node is idle."""
    cpus = cpus or os.cpu_count() or 1
    for sub in ("munge", "state", "spool", "log"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    key = root / "munge" / "munge.key"
    key.write_bytes(secrets.token_bytes(1024))
    key.chmod(0o400)
    sock = root / "munge" / "munge.socket"
    munge_pid = root / "munge" / "munged.pid"
    subprocess.run(
        [
            "munged",
            f"--key-file={key}",
            f"--socket={sock}",
            f"--pid-file={munge_pid}",
            f"--log-file={root / 'log' / 'munged.log'}",
            f"--seed-file={root / 'munge' / 'seed'}",
            "--force",  # root-owned temporary folders are fine for a throw-away cluster
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    conf = root / "slurm.conf"
    conf.write_text(
        "\n".join(
            [
                "ClusterName=nodecli-test",
                "SlurmctldHost=localhost",
                "AuthType=auth/munge",
                f"AuthInfo=socket={sock}",
                "CredType=cred/munge",
                "SlurmUser=root",
                "SlurmdUser=root",
                f"SlurmctldPort={_free_port()}",
                f"SlurmdPort={_free_port()}",
                f"StateSaveLocation={root / 'state'}",
                f"SlurmdSpoolDir={root / 'spool'}",
                f"SlurmctldPidFile={root / 'slurmctld.pid'}",
                f"SlurmdPidFile={root / 'slurmd.pid'}",
                f"SlurmctldLogFile={root / 'log' / 'slurmctld.log'}",
                f"SlurmdLogFile={root / 'log' / 'slurmd.log'}",
                "ProctrackType=proctrack/linuxproc",
                "TaskPlugin=task/none",
                "SelectType=select/cons_tres",
                "SelectTypeParameters=CR_Core",
                "ReturnToService=2",
                "MpiDefault=none",
                "JobRequeue=1",
                "JobAcctGatherType=jobacct_gather/none",
                # No slurmdbd: sacct answers "accounting storage is disabled"; nodecli
                # reads each job's state from its own run record, not from sacct.
                "AccountingStorageType=accounting_storage/none",
                "SchedulerType=sched/backfill",
                "SchedulerParameters=sched_interval=1",
                f"NodeName=localhost CPUs={cpus} RealMemory=4000 State=UNKNOWN",
                "PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP",
                "",
            ]
        )
    )
    bin_dir = root / "bin"
    bin_dir.mkdir(exist_ok=True)
    sacct = bin_dir / "sacct"
    sacct.write_text(SACCT_FROM_SCONTROL.format(python=sys.executable))
    sacct.chmod(0o755)
    env = {**os.environ, "SLURM_CONF": str(conf), "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    pid_files = (root / "slurmd.pid", root / "slurmctld.pid", munge_pid)
    cluster = SlurmCluster(root, env, pid_files)
    try:
        subprocess.run(["slurmctld", "-f", str(conf)], env=env, check=True, timeout=30)
        subprocess.run(["slurmd", "-f", str(conf)], env=env, check=True, timeout=30)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                state = cluster.run("sinfo", "--noheader", "--format=%T").strip()
            except subprocess.CalledProcessError:
                state = ""
            if state == "idle":
                return cluster
            time.sleep(0.3)
        raise RuntimeError(f"the test SLURM node did not come up (state {state!r}); see {root}")
    except BaseException:
        cluster.close()
        raise
