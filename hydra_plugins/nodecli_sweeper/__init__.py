"""`hydra/sweeper=nodecli`, the sweeper `nodecli sweep` runs its grids with (conf/config.yaml).

Hydra's BasicSweeper composes every job once to validate the batch, and its launcher
composes each job again to run it. `nodecli sweep` has already composed and validated
every job (nodecli.sweep.plan.validate_jobs: the same overrides, checked further, before
anything is written), so this sweeper is the BasicSweeper without that second
composition: ~65 ms a job. Hydra loads sweepers only from the `hydra_plugins` package;
nodecli.config.schema.register_schema registers this one as `hydra/sweeper=nodecli` (in the
ConfigStore, as Hydra's plugin scan may not see an editable install's `hydra_plugins`).
"""

from __future__ import annotations

from collections.abc import Sequence

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper


class ValidatedSweeper(BasicSweeper):
    """Hydra's BasicSweeper for batches that `nodecli sweep` validated before Hydra ran.

    `completed` (set by `nodecli sweep` on a resume) numbers the jobs whose record is
    complete: they still run, under their own number and folder, to say "skipped", but
    with `hydra.output_subdir=null`, so Hydra does not rewrite their .hydra/ files."""

    completed: frozenset[int] = frozenset()

    def get_job_batch(self) -> Sequence[Sequence[str]]:
        first = sum(len(b) for b in (self.overrides or [])[: self.batch_index])
        batch = super().get_job_batch()
        return [
            [*job, "hydra.output_subdir=null"] if first + i in self.completed else job
            for i, job in enumerate(batch)
        ]

    def validate_batch_is_legal(self, batch: Sequence[Sequence[str]]) -> None:
        """Nothing left to check: validate_jobs composed each of these jobs already."""
