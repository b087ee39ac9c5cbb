"""Config composition and validation in process (Hydra's compose API, no subprocess)."""

from __future__ import annotations

import re
from dataclasses import fields

import pytest

from nodecli.config.compose import compose_config
from nodecli.config.messages import group_options
from nodecli.config.schema import SOLVERS, Config
from nodecli.config.tree import conf_dir
from nodecli.errors import ConfigError
from nodecli.ode.methods import METHODS, SENSEALGS, Direct, GradientMethod
from nodecli.ode.settings import SolverSettings
from nodecli.ode.tableaus import TABLEAUS


def test_defaults_compose_to_the_ode_types() -> None:
    cfg = compose_config([])
    assert isinstance(cfg, Config)
    assert cfg.solver == SolverSettings()  # the YAML adds nothing to the schema's defaults
    assert cfg.sensealg == Direct()
    assert cfg.device.threads == 1


@pytest.mark.parametrize("name", SENSEALGS)
def test_each_sensealg_composes_to_its_options_class(name: str) -> None:
    cfg = compose_config([f"sensealg={name}"])
    assert type(cfg.sensealg) is METHODS[name]
    assert cfg.sensealg == METHODS[name]()  # conf/sensealg/*.yaml sets only the name


@pytest.mark.parametrize("name", SENSEALGS)
def test_each_sensealg_accepts_exactly_its_own_keys(name: str) -> None:
    cls = METHODS[name]
    every_key = {f.name for m in METHODS.values() for f in fields(m)}
    for key in sorted(every_key):
        override = f"sensealg.{key}={'true' if key in ('seminorm', 'checkpointing') else '1e-7'}"
        if key == "name":
            continue
        if key in cls.option_keys():
            cfg = compose_config([f"sensealg={name}", override])
            assert getattr(cfg.sensealg, key) in (True, 1e-7)
        else:
            with pytest.raises(ConfigError) as err:
                compose_config([f"sensealg={name}", override])
            accepted = ", ".join(f"sensealg.{k}" for k in cls.option_keys())
            assert str(err.value) == (
                f"sensealg.{key} does not apply to sensealg={name}; {name} accepts: {accepted}"
            )


def test_key_of_no_method_is_answered_with_did_you_mean() -> None:
    with pytest.raises(ConfigError, match="unknown config key 'sensealg.seminorn'.*seminorm"):
        compose_config(["sensealg=adjoint", "sensealg.seminorn=true"])


def test_unknown_sensealg_lists_the_registry() -> None:
    with pytest.raises(ConfigError) as err:
        compose_config(["sensealg=nope"])
    assert str(err.value).endswith("valid sensealg options: " + ", ".join(sorted(SENSEALGS)))


def test_solver_choices_come_from_the_tableaus() -> None:
    assert SOLVERS == tuple(TABLEAUS)
    for name, tableau in TABLEAUS.items():
        cfg = compose_config([f"solver={name}"])
        assert cfg.solver.method == name
        assert (cfg.solver.step_size is None) == tableau.adaptive
    with pytest.raises(ConfigError, match="valid solver options: " + ", ".join(sorted(TABLEAUS))):
        compose_config(["solver=nope"])


def test_yaml_options_match_the_registries() -> None:
    """conf/solver and conf/sensealg hold one file per registry entry, no more, no less."""
    on_disk = {g.name: sorted(p.stem for p in g.glob("*.yaml")) for g in conf_dir().iterdir()}
    assert on_disk["solver"] == sorted(TABLEAUS) == group_options(conf_dir())["solver"]
    assert on_disk["sensealg"] == sorted(METHODS) == group_options(conf_dir())["sensealg"]


@pytest.mark.parametrize("name", [n for n, t in TABLEAUS.items() if not t.adaptive])
def test_fixed_solver_needs_step_size(name: str) -> None:
    with pytest.raises(ConfigError, match=f"solver={name} is a fixed-step method"):
        compose_config([f"solver={name}", "solver.step_size=null"])


def test_adaptive_solver_with_step_size_runs_fixed_steps() -> None:
    assert compose_config(["solver.step_size=0.25"]).solver.step_size == 0.25


def test_defaults_are_written_once() -> None:
    """No YAML repeats a schema default (rtol, atol, max_steps, threads)."""
    for path in conf_dir().glob("*/*.yaml"):
        keys = {line.split(":")[0].strip() for line in path.read_text().splitlines()}
        assert not keys & {"rtol", "atol", "max_steps", "threads"}, path


def test_every_method_has_an_implementation() -> None:
    from nodecli.ode.sensitivity import IMPLEMENTATIONS, implementation

    assert set(IMPLEMENTATIONS) == set(METHODS.values())
    with pytest.raises(TypeError, match="no implementation registered for GradientMethod"):
        implementation(GradientMethod())


@pytest.mark.parametrize(
    "override, expected",
    [
        ("train.lr=inf", "train.lr=inf is not valid: it must be a finite number"),
        ("solver.rtol=inf", "solver.rtol=inf is not valid: it must be a finite number"),
        ("solver.atol=nan", "solver.atol=nan is not valid: it must be a finite number"),
        ("model.t1=-inf", "model.t1=-inf is not valid: it must be a finite number"),
        ("data.split=nan", "data.split=nan is not valid: it must be a finite number"),
        ("solver.step_size=inf", "solver.step_size=inf is not valid: it must be a finite number"),
        (
            "seed=18446744073709551616",
            "seed=18446744073709551616 is out of range: it must be at most",
        ),
        ("seed=-1", "seed=-1 is out of range: it must be >= 0"),
        ("train.lr=1e300", "train.lr=1e+300 is out of range: training runs in float32"),
        ("model.t1=1e39", "model.t1=1e+39 is out of range: training runs in float32"),
        ("solver.rtol=1e-300", "solver.rtol=1e-300 is out of range: training runs in float32"),
        ("train.lr=1e-40", "train.lr=1e-40 is out of range: training runs in float32"),
        ("hydra.mode=MULTIRUN", "hydra.mode=MULTIRUN is not supported"),
        (
            "train.batch_size=9223372036854775808",
            "train.batch_size=9223372036854775808 is out of range: at most 2**63 - 1",
        ),
        ("model.hidden=9223372036854775808", "model.hidden=9223372036854775808 is out of range"),
        ("model.latent=99999999999999999999", "model.latent=99999999999999999999 is out of"),
        ("solver.max_steps=9223372036854775808", "solver.max_steps=9223372036854775808 is out"),
    ],
)
def test_values_that_cannot_work_are_one_line_config_errors(override: str, expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        compose_config([override])
    assert str(err.value).startswith(expected)
    assert "\n" not in str(err.value)


def test_conv_width_must_split_into_its_32_norm_groups() -> None:
    for hidden in (48, 100, 1000):
        with pytest.raises(
            ConfigError, match=f"model.hidden={hidden} is not valid with model=conv"
        ):
            compose_config(["model=conv", f"model.hidden={hidden}"])
    for fine in (1, 16, 32, 64, 1024):
        compose_config(["model=conv", f"model.hidden={fine}"])


def test_sensealg_tolerances_must_be_finite() -> None:
    with pytest.raises(ConfigError, match="sensealg.adjoint_atol=inf is not valid"):
        compose_config(["sensealg=gauss", "sensealg.adjoint_atol=inf"])


def test_largest_seed_torch_accepts_is_valid() -> None:
    import torch

    seed = compose_config(["seed=18446744073709551615"]).seed
    torch.Generator().manual_seed(seed)  # the run would seed exactly this


def test_gradcheck_gives_each_method_only_the_sensealg_keys_it_accepts() -> None:
    from nodecli.gradcheck import method_overrides

    base = ["solver.rtol=1e-6", "sensealg.adjoint_rtol=1e-9", "sensealg.seminorm=true"]
    assert method_overrides(base, "direct") == ["solver.rtol=1e-6", "sensealg=direct"]
    assert method_overrides(base, "gauss") == [
        "solver.rtol=1e-6",
        "sensealg.adjoint_rtol=1e-9",
        "sensealg=gauss",
    ]
    for method in SENSEALGS:  # every combination composes
        compose_config(method_overrides(base, method))


@pytest.mark.parametrize(
    "override, group",
    [
        ("solver=[rk4,tsit5]", "solver"),
        ("sensealg=[direct,adjoint]", "sensealg"),
        ("device=[cpu]", "device"),
        ("dataset=[]", "dataset"),
    ],
)
def test_a_list_for_a_single_choice_group_is_refused_naming_the_options(
    override: str, group: str
) -> None:
    with pytest.raises(ConfigError) as err:
        compose_config([override])
    options = ", ".join(group_options(conf_dir())[group])
    assert str(err.value).startswith(
        f"{override} is a list, but {group} takes one option; valid {group} options: {options}"
    )


def test_logger_takes_a_list_and_a_bad_entry_names_the_options() -> None:
    assert compose_config(["logger=[tensorboard,mlflow]"]).logger.names() == [
        "tensorboard",
        "mlflow",
    ]
    with pytest.raises(ConfigError) as err:
        compose_config(["logger=[tensorboard,nope]"])
    assert str(err.value) == (
        "logger=nope is not an option; valid logger options: mlflow, none, tensorboard"
    )


def test_cfg_and_info_refuse_bad_overrides_in_one_line(capsys) -> None:
    from nodecli import cli

    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "--cfg", "job", "sensealg=[direct,adjoint]"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and len(err.strip().splitlines()) == 1
    assert "valid sensealg options: adjoint, checkpoint" in err


@pytest.mark.parametrize(
    "overrides, suggestion",
    [
        (["logger=mlflow", "logger.mlflow.experimnt=x"], "logger.mlflow.experiment"),
        (["logger=tensorboard", "logger.tensorboard.logdir=x"], "logger.tensorboard.log_dir"),
    ],
)
def test_tracker_key_typos_get_did_you_mean(overrides: list[str], suggestion: str) -> None:
    with pytest.raises(ConfigError, match=f"did you mean '{suggestion}'"):
        compose_config(overrides)


@pytest.mark.parametrize("override", ["~sensealg", "~train.epochs", "~seed=0", "~solver"])
def test_deleting_a_config_entry_is_refused(override: str) -> None:
    # `~sensealg` used to compose to no gradient method at all and fail mid-run (exit 1).
    with pytest.raises(ConfigError) as err:
        compose_config([override])
    key = override.lstrip("~").split("=")[0]
    assert str(err.value).startswith(f"{override} deletes a config entry")
    assert f"({key}=…;" in str(err.value)


@pytest.mark.parametrize(
    "override, expected",
    [
        ("+train.epochs=3", "+train.epochs=… adds a key the config already has; set it without"),
        ("+sensealg=adjoint", "+sensealg=… adds the group sensealg, which the config already"),
        ("++sensealg=adjoint", "+sensealg=… adds the group sensealg, which the config already"),
    ],
)
def test_adding_what_the_config_has_says_to_drop_the_plus(override: str, expected: str) -> None:
    # Hydra's "Could not append to config" / "Multiple values for" named no fix.
    with pytest.raises(ConfigError) as err:
        compose_config([override])
    assert str(err.value).startswith(expected)


def test_hydra_job_chdir_is_refused() -> None:
    # With it the default MLflow store was written to <run folder>/outputs/mlflow.db.
    with pytest.raises(ConfigError, match=r"^hydra.job.chdir=true is not supported"):
        compose_config(["hydra.job.chdir=true"])
    compose_config(["hydra.job.chdir=false"])


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["solver=rk4", "solver.step_size=1e-30"], "needs 1e+30 steps over [0, 1]"),
        (["solver=rk4", "solver.step_size=0.01", "model.t1=1000"], "needs 100000 steps"),
        (["device.threads=100000"], "device.threads=100000 is out of range: at most 1024"),
    ],
)
def test_values_that_can_only_fail_later_are_refused_up_front(
    overrides: list[str], message: str
) -> None:
    """A tiny fixed step failed at epoch 1 with a `failed` record; 100000 threads ended
    the process with a segmentation fault."""
    with pytest.raises(ConfigError, match=re.escape(message)):
        compose_config(overrides)


def test_a_fixed_step_count_at_max_steps_is_allowed() -> None:
    compose_config(["solver=rk4", "solver.step_size=1e-4"])  # exactly 10000 steps
