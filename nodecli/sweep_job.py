"""Stable pickle path: a SLURM job submitted before the sweep package was formed unpickles
`nodecli.sweep_job.sweep_task`; it now lives in nodecli.sweep.job."""

from nodecli.sweep.job import sweep_task

__all__ = ["sweep_task"]
