"""Hydra composition through nodecli's compose API: overrides applied and validated."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
from conftest import TINY

from nodecli.config.compose import compose_config
from nodecli.errors import ConfigError
from nodecli.sweep.plan import plan_sweep


def test_compose_applies_overrides_and_validates() -> None:
    config = compose_config(["sensealg=adjoint", "solver=dopri5", *TINY])
    assert config.sensealg.name == "adjoint" and config.solver.method == "dopri5"
    assert config.train.epochs == 1 and config.data.n == 200
    with pytest.raises(ConfigError, match="train.epochs=0 is out of range"):
        compose_config(["train.epochs=0"])
    with pytest.raises(ConfigError, match="did you mean 'train.epochs'"):
        compose_config(["train.epoch=3"])


def test_run_and_sweep_folders_resolve_as_hydra_resolves_them() -> None:
    from nodecli.config.compose import resolve_hydra_dir

    got = resolve_hydra_dir("hydra.run.dir", ["seed=3", "hydra.run.dir=runs/s_${seed}"])
    assert got == "runs/s_3"
    year = datetime.now().strftime("%Y")
    got = resolve_hydra_dir("hydra.sweep.dir", ["hydra.sweep.dir=sw_${now:%Y}"])
    assert got == f"sw_{year}"
    with pytest.raises(ConfigError, match=r"hydra.run.dir: cannot resolve it .*'nope'"):
        resolve_hydra_dir("hydra.run.dir", ["hydra.run.dir=${nope}"])
    plan = plan_sweep(["seed=0,1", "data.n=300", "hydra.sweep.dir=sw_${data.n}_${now:%Y}"])
    assert plan.sweep_dir == Path(f"sw_300_{year}")


@pytest.mark.parametrize(
    "sweep",
    [
        # one shared composition per group choice; conv refuses 48 channels
        ["model=mlp,conv", "model.hidden=8,48", "hydra.job.name=x"],
        # a key below a group's dict, a value that cannot be set, an option the group lacks
        ["model=custom,nope", "model.field._target_=a.F", "model.latent=6,x"],
        # Hydra sets ++seed after seed: the order matters, so each job is composed alone
        ["seed=1,2", "++seed=3"],
        # an interpolation of another value, and of a key the config lacks
        ["model.t1=${seed},${nope}", "seed=2"],
    ],
)
def test_a_sweeps_jobs_compose_to_the_configs_and_errors_of_each_job_alone(
    sweep: list[str],
) -> None:
    from nodecli.config.compose import JobComposer
    from nodecli.sweep.plan import expand_jobs

    def outcome(compose, job: list[str]) -> object:
        try:
            return compose(job)
        except ConfigError as exc:
            return str(exc)

    compose_job = JobComposer()
    for job in expand_jobs(sweep):
        assert outcome(compose_job, job) == outcome(compose_config, job), job
