"""Structured config schema and validation.

Hydra composes conf/ onto the dataclasses below, so a wrong type or an unknown key is
rejected while composing; `validate` then checks ranges and cross-field rules. Both
happen before any work starts, and every failure becomes a `ConfigError` whose message
is one line saying what is wrong and what is valid.

The `solver` and `sensealg` sections are the ode package's own types: `SolverSettings`,
and per gradient method its options class (nodecli.ode.methods), each stored in Hydra's
ConfigStore for its conf/sensealg/<name>.yaml, so a key another method uses is rejected.
Solver names come from `tableaus.TABLEAUS`, sensealg names from `methods.METHODS`.
"""

from __future__ import annotations

import math
import sys
import typing
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any

from hydra.core.config_store import ConfigStore

from nodecli.backends.registry import BACKENDS, BackendConfig, check_combination
from nodecli.errors import ConfigError
from nodecli.experiment.trackers import LoggerConfig
from nodecli.ode.methods import METHODS, SENSEALGS, GradientMethod, schema_name
from nodecli.ode.settings import SolverSettings, fixed_step_count
from nodecli.ode.tableaus import TABLEAUS

__all__ = ["SENSEALGS", "SOLVERS", "Config", "register_schema", "validate"]

SOLVERS: tuple[str, ...] = tuple(TABLEAUS)
DEVICES = ("auto", "cpu", "cuda", "mps")
LAYER_STYLES = ("module", "functional", "compiled")
DATASETS = ("mnist_bundled", "mnist_bundled_repeated", "mnist")


@dataclass
class DeviceConfig:
    name: str = "auto"
    threads: int | None = 1


@dataclass
class LayerStyleConfig:
    name: str = "module"


@dataclass
class DatasetConfig:
    name: str = "mnist_bundled"
    root: str | None = None
    download: bool = False


@dataclass
class DataConfig:
    n: int | None = 1500
    split: float = 0.9


MODELS = ("mlp", "conv", "custom")  # nodecli.experiment.model.MODELS, without torch


@dataclass
class ModelConfig:
    """The `model` group (conf/model/): which network the ODE block integrates.

    `latent` is the ODE state's width (mlp, custom); `hidden` the width of the field's
    hidden layers (mlp) or of the convolutional feature map (conv); `field` (custom only)
    the user's field as a Hydra `_target_` plus constructor keys, checked by
    nodecli.config.fields before any work starts.
    """

    name: str = "mlp"
    latent: int = 20
    hidden: int = 10
    t1: float = 1.0
    field: dict[str, Any] = field(default_factory=dict)  # noqa: RUF009 - the dataclass helper


@dataclass
class TrainConfig:
    epochs: int = 9
    batch_size: int = 128
    lr: float = 1e-3


@dataclass
class Config:
    seed: int = 0
    resume: str | None = None
    solver: SolverSettings = field(default_factory=SolverSettings)
    # The base class: the chosen option's schema (a subclass, from conf/sensealg/) replaces
    # it while composing; a subclass default would refuse every other method's class.
    sensealg: GradientMethod = field(default_factory=GradientMethod)
    backend: BackendConfig = field(default_factory=BackendConfig)
    device: DeviceConfig = field(default_factory=DeviceConfig)
    layer_style: LayerStyleConfig = field(default_factory=LayerStyleConfig)
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)


SWEEPER = {"_target_": "hydra_plugins.nodecli_sweeper.ValidatedSweeper", "max_batch_size": None}


def register_schema() -> None:
    """Make the schema available to conf/config.yaml's defaults list as `nodecli_schema`,
    and each gradient method's options class to its conf/sensealg/<name>.yaml."""
    store = ConfigStore.instance()
    store.store(name="nodecli_schema", node=Config)
    for name, cls in METHODS.items():
        store.store(name=schema_name(name), node=cls)
    # conf/config.yaml's sweeper: Hydra's BasicSweeper minus the batch composition that
    # `nodecli sweep` has already done (hydra_plugins/nodecli_sweeper says why).
    store.store(group="hydra/sweeper", name="nodecli", node=SWEEPER, provider="nodecli")


def _positive(name: str, value: float | int | None, kind: str = "number") -> None:
    if value is not None and not value > 0:
        raise ConfigError(f"{name}={value} is out of range: it must be a positive {kind}")


def _choice(name: str, value: str, valid: tuple[str, ...]) -> None:
    if value not in valid:
        raise ConfigError(f"{name}={value} is not valid; valid: {', '.join(valid)}")


# torch.set_num_threads(100000) ends the process with a segmentation fault.
MAX_THREADS = 1024

# torch.manual_seed and torch.Generator.manual_seed take at most an unsigned 64-bit int.
MAX_SEED = 2**64 - 1


# Integers a run passes to torch (tensor sizes, counts) must fit a signed 64-bit int.
MAX_INT64 = 2**63 - 1

# model=conv normalises with GroupNorm(min(32, width), width) (experiment/conv.py, as
# torchdiffeq's example): a width above 32 must split into 32 equal groups.
CONV_NORM_GROUPS = 32

FLOAT32_MAX = 3.4028234663852886e38  # torch.finfo(torch.float32).max, without torch
FLOAT32_TINY = 1.1754943508222875e-38  # torch.finfo(torch.float32).tiny (smallest normal)
# The largest and the smallest normal number of each float type a config's numbers are
# used in: training runs in float32; `nodecli gradcheck --dtype=float64` in float64.
FLOAT_LIMITS = {
    "float32": (FLOAT32_MAX, FLOAT32_TINY),
    "float64": (sys.float_info.max, sys.float_info.min),
}


def _finite_floats(
    node: object, prefix: str = "", dtype: str = "float32", user: str = "training"
) -> None:
    """Every float in the config must be a number representable in DTYPE (what USER runs
    in): nan and ±inf pass the type check (and `inf > 0`), then fail at run time or
    silently mean 'no limit'; a number beyond DTYPE's range overflows or rounds to 0."""
    largest, tiny = FLOAT_LIMITS[dtype]
    for f in fields(node):  # type: ignore[arg-type]
        value = getattr(node, f.name)
        if is_dataclass(value):
            _finite_floats(value, f"{prefix}{f.name}.", dtype, user)
        elif isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{prefix}{f.name}={value} is not valid: it must be a finite number")
        elif isinstance(value, float) and abs(value) > largest:
            raise ConfigError(
                f"{prefix}{f.name}={value} is out of range: {user} runs in {dtype}, "
                f"whose largest number is {largest:.4g}"
            )
        elif isinstance(value, float) and 0.0 < abs(value) < tiny:
            raise ConfigError(
                f"{prefix}{f.name}={value} is out of range: {user} runs in {dtype}, where "
                f"it rounds to 0 (or loses precision); use at least {tiny:.4g}"
            )


def _int64_ints(node: object, prefix: str = "") -> None:
    """Every integer in the config (the seed apart: checked against torch's own bound)
    must fit int64: a larger one passes the type and range checks, then fails inside
    torch ("Overflow when unpacking long long") after the run record is written."""
    for f in fields(node):  # type: ignore[arg-type]
        value = getattr(node, f.name)
        name = f"{prefix}{f.name}"
        if is_dataclass(value):
            _int64_ints(value, f"{name}.")
        elif (
            isinstance(value, int)
            and not isinstance(value, bool)
            and name != "seed"
            and abs(value) > MAX_INT64
        ):
            raise ConfigError(f"{name}={value} is out of range: at most 2**63 - 1 = {MAX_INT64}")


def validate(cfg: Config, dtype: str = "float32", user: str = "training") -> None:
    """Check ranges and cross-field rules that types alone cannot express; the config's
    floats must be representable in DTYPE, the float type USER runs in."""
    _finite_floats(cfg, dtype=dtype, user=user)
    _int64_ints(cfg)
    _choice("solver.method", cfg.solver.method, SOLVERS)
    _choice("sensealg.name", cfg.sensealg.name, SENSEALGS)
    _choice("device.name", cfg.device.name, DEVICES)
    _choice("layer_style.name", cfg.layer_style.name, LAYER_STYLES)
    _choice("dataset.name", cfg.dataset.name, DATASETS)
    _choice("backend.name", cfg.backend.name, BACKENDS)
    unsupported = check_combination(
        cfg.backend.name,
        cfg.sensealg.name,
        {f.name: getattr(cfg.sensealg, f.name) for f in fields(cfg.sensealg)},
        cfg.solver.method,
        cfg.layer_style.name,
        cfg.solver.step_size,
    )
    if unsupported:
        raise ConfigError(unsupported)
    _positive("solver.rtol", cfg.solver.rtol)
    _positive("solver.atol", cfg.solver.atol)
    _positive("solver.step_size", cfg.solver.step_size)
    _positive("solver.max_steps", cfg.solver.max_steps, "integer")
    for f in fields(cfg.sensealg):  # every method's numbers are tolerances
        value = getattr(cfg.sensealg, f.name)
        if isinstance(value, float):
            _positive(f"sensealg.{f.name}", value)
    if not TABLEAUS[cfg.solver.method].adaptive and cfg.solver.step_size is None:
        raise ConfigError(
            f"solver={cfg.solver.method} is a fixed-step method and needs solver.step_size "
            "(for example solver.step_size=0.1)"
        )
    _positive("device.threads", cfg.device.threads, "integer")
    if cfg.device.threads is not None and cfg.device.threads > MAX_THREADS:
        raise ConfigError(
            f"device.threads={cfg.device.threads} is out of range: at most {MAX_THREADS} "
            "(more than any CPU runs at once; PyTorch crashes on 100000)"
        )
    _positive("train.epochs", cfg.train.epochs, "integer")
    _positive("train.batch_size", cfg.train.batch_size, "integer")
    _positive("train.lr", cfg.train.lr)
    _choice("model.name", cfg.model.name, MODELS)
    _check_field_keys(cfg.model)
    if (
        cfg.model.name == "conv"
        and cfg.backend.name == "torchode"
        and cfg.sensealg.name != "direct"
    ):
        # torchode's BacksolveAdjoint integrates (y, λ, μ) as one flat vector per sample.
        raise ConfigError(
            f"backend=torchode with sensealg={cfg.sensealg.name} solves flat (batch, n) "
            "states only, not model=conv's feature maps; use sensealg=direct or another backend"
        )
    _positive("model.latent", cfg.model.latent, "integer")
    _positive("model.hidden", cfg.model.hidden, "integer")
    _positive("model.t1", cfg.model.t1)
    hidden = cfg.model.hidden
    if cfg.model.name == "conv" and hidden > CONV_NORM_GROUPS and hidden % CONV_NORM_GROUPS:
        raise ConfigError(
            f"model.hidden={hidden} is not valid with model=conv: its GroupNorm splits the "
            f"channels into {CONV_NORM_GROUPS} groups; use at most {CONV_NORM_GROUPS} or a "
            f"multiple of {CONV_NORM_GROUPS} (e.g. {hidden // CONV_NORM_GROUPS * CONV_NORM_GROUPS})"
        )
    if cfg.solver.step_size is not None:
        steps = fixed_step_count(cfg.model.t1, cfg.solver.step_size)
        if steps > cfg.solver.max_steps:
            raise ConfigError(
                f"solver.step_size={cfg.solver.step_size:g} needs {steps:g} steps over "
                f"[0, {cfg.model.t1:g}], more than solver.max_steps={cfg.solver.max_steps}: "
                "raise solver.max_steps or solver.step_size"
            )
    if not 0.0 < cfg.data.split < 1.0:
        raise ConfigError(f"data.split={cfg.data.split} is out of range: it must be in (0, 1)")
    if cfg.data.n is not None and cfg.data.n < 2:
        raise ConfigError(f"data.n={cfg.data.n} is out of range: it must be at least 2 (or null)")
    if cfg.seed < 0:
        raise ConfigError(f"seed={cfg.seed} is out of range: it must be >= 0")
    if cfg.seed > MAX_SEED:
        raise ConfigError(
            f"seed={cfg.seed} is out of range: it must be at most 2**64 - 1 = {MAX_SEED}"
        )


def _check_field_keys(model: ModelConfig) -> None:
    """model.field belongs to model=custom, which needs its `_target_`."""
    if model.name != "custom":
        if model.field:
            raise ConfigError(
                f"model.field is only for model=custom (this is model={model.name}); "
                "use model=custom model.field._target_=<module.Class>"
            )
        return
    target = (model.field or {}).get("_target_")
    if not isinstance(target, str) or not target.strip():
        raise ConfigError(
            "model=custom needs model.field._target_=<module.Class>, the import path of an "
            "nn.Module field (docs/models.md)"
        )


def config_from_tree(tree: dict) -> Config:
    """A stored config (a run's .hydra/config.yaml, as a dict) checked as a fresh one is:
    the schema (its sensealg's own options class) and `validate`; ConfigError if not."""
    from omegaconf import OmegaConf  # here: only resume reads a stored config

    sensealg = tree.get("sensealg")
    name = sensealg.get("name") if isinstance(sensealg, dict) else None
    schema = Config(sensealg=METHODS[name]() if name in METHODS else GradientMethod())
    try:
        config = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), tree))
    except Exception as exc:  # noqa: BLE001 - OmegaConf's many error types: a bad value
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        where = next((line for line in lines if line.startswith("full_key:")), "")
        raise ConfigError("; ".join(part for part in (lines[0], where) if part)) from exc
    assert isinstance(config, Config)
    validate(config)
    return config


def unknown_keys(cfg: object, schema: type = Config, prefix: str = "") -> list[str]:
    """Keys in a composed config that the schema does not define (e.g. added with +key=)."""
    from omegaconf import DictConfig, OmegaConf

    known = {f.name: f for f in fields(schema)} if is_dataclass(schema) else {}
    found: list[str] = []
    assert isinstance(cfg, DictConfig)
    for key in cfg.keys():
        name = f"{prefix}{key}"
        if key not in known:
            found.append(name)
            continue
        node = cfg[key]
        if isinstance(node, DictConfig) and OmegaConf.get_type(node) is dict:
            continue  # a free-form mapping of the schema (model.field): its keys are the user's
        if isinstance(node, DictConfig):  # a section: its own (option's) schema
            found.extend(unknown_keys(node, OmegaConf.get_type(node) or dict, f"{name}."))
    return found


def all_keys(schema: type = Config, prefix: str = "") -> list[str]:
    """Every dotted key of the schema, for 'did you mean' suggestions (sensealg: the keys
    of every method)."""
    keys: list[str] = []
    hints = typing.get_type_hints(schema)
    for f in fields(schema):
        name = f"{prefix}{f.name}"
        default = f.default_factory() if callable(f.default_factory) else f.default  # type: ignore[misc]
        # An optional section (logger.tensorboard: TensorBoardConfig | None) has its keys too.
        section = [t for t in typing.get_args(hints[f.name]) if is_dataclass(t)]
        if isinstance(default, GradientMethod):
            for cls in METHODS.values():
                keys.extend(k for k in all_keys(cls, f"{name}.") if k not in keys)
        elif is_dataclass(default):
            keys.extend(all_keys(type(default), f"{name}."))
        elif section:
            keys.extend(all_keys(section[0], f"{name}."))
        else:
            keys.append(name)
    return keys
