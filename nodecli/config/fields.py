"""model=custom: the user's field, instantiated by Hydra and checked before any work starts.

The contract (docs/models.md): `model.field._target_` is the import path of an nn.Module
class; nodecli calls it with `latent=<model.latent>` plus the user's other `model.field`
keys; its `forward(t, y)` takes t as a 0-d tensor of y's dtype and a (batch, latent)
state y, and returns a tensor of y's shape and dtype. `check_field` refuses, in one line,
a target that does not import (or exits the process on import, as a script that parses
the command line does) or is not an nn.Module, constructor arguments it rejects, a field
whose output on one probe batch has another shape or dtype or is not finite, and a field
that torchdyn's adjoints cannot differentiate.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from nodecli.config.schema import Config, ModelConfig
from nodecli.errors import ConfigError

if TYPE_CHECKING:
    from torch import nn

#: torchdyn's adjoints differentiate the field's output with respect to y and to every
#: parameter, frozen ones included, and fail at the first backward pass when one of them
#: takes no part ("One of the differentiated Tensors does not require grad").
TORCHDYN_ADJOINTS: tuple[str, ...] = ("adjoint", "interpolating")

#: Batch size of the probe that checks the field's output.
PROBE_BATCH = 2


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def check_target_found(model: ModelConfig) -> None:
    """A `_target_` whose top-level package is not on the path is refused before torch is
    imported (seconds), so a typo gets its one line at once."""
    import importlib.util

    target = str((model.field or {}).get("_target_"))
    top = target.split(".")[0]
    try:
        found = "." in target and importlib.util.find_spec(top) is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise ConfigError(
            f"model.field._target_={target} does not import (no module named {top!r}); it must "
            "be the import path of an nn.Module class on PYTHONPATH, e.g. my_pkg.fields.MyField"
        )


def instantiate_field(model: ModelConfig) -> nn.Module:
    """The user's field module: `_target_(latent=model.latent, **keys)`; ConfigError (one
    line) if it does not import, rejects the arguments or is not an nn.Module."""
    # Imported here: Hydra's instantiate and torch are needed only for model=custom.
    from hydra.errors import InstantiationException
    from hydra.utils import get_object, instantiate
    from torch import nn

    spec: dict[str, Any] = dict(model.field or {})
    target = spec.get("_target_")
    # get_object logs its error at ERROR level too; the one line below says it all.
    hydra_utils_log = logging.getLogger("hydra.utils")
    disabled, hydra_utils_log.disabled = hydra_utils_log.disabled, True
    try:
        cls = get_object(str(target))
    except SystemExit as exc:
        raise ConfigError(
            f"model.field._target_={target}: importing it exited (SystemExit: {exc.code}); "
            "a field module must not parse the command line or exit when imported (move "
            "that code under `if __name__ == '__main__':`)"
        ) from None
    except Exception as exc:  # noqa: BLE001 - import errors of the user's module, any type
        why = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
        raise ConfigError(
            f"model.field._target_={target} does not import ({why}); it must "
            "be the import path of an nn.Module class on PYTHONPATH, e.g. my_pkg.fields.MyField"
        ) from None
    finally:
        hydra_utils_log.disabled = disabled
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise ConfigError(
            f"model.field._target_={target} is not an nn.Module class; a field is an "
            "nn.Module with forward(t, y) (docs/models.md)"
        )
    keys = ", ".join(["latent", *(k for k in spec if k != "_target_")])
    try:
        field = instantiate({**spec, "latent": model.latent, "_convert_": "all"})
    except InstantiationException as exc:
        cause = exc.__cause__ or exc
        raise ConfigError(
            f"model.field: {target}({keys}) failed: {_first_line(cause)}; nodecli passes "
            "latent=<model.latent> and your +model.field.<key> values"
        ) from None
    except Exception as exc:  # noqa: BLE001 - the user's constructor may raise anything
        raise ConfigError(f"model.field: {target}({keys}) failed: {_first_line(exc)}") from None
    return field


def check_field(config: Config) -> None:
    """model=custom: build the field once (RNG untouched) and probe it on one batch."""
    if config.model.name != "custom":
        return
    import torch

    target = (config.model.field or {}).get("_target_")
    method, backend = config.sensealg.name, config.backend.name
    torchdyn_adjoint = backend == "torchdyn" and method in TORCHDYN_ADJOINTS
    with torch.random.fork_rng(devices=[]):
        field = instantiate_field(config.model)
        y = torch.rand(PROBE_BATCH, config.model.latent).requires_grad_(torchdyn_adjoint)
        t = torch.zeros((), dtype=y.dtype)
        try:
            out = field(t, y)
        except Exception as exc:  # noqa: BLE001 - the user's forward may raise anything
            raise ConfigError(
                f"model.field: {target}.forward(t, y) raised {type(exc).__name__} on a "
                f"{tuple(y.shape)} float32 state: {_first_line(exc)}"
            ) from None
    if not isinstance(out, torch.Tensor) or out.shape != y.shape or out.dtype != y.dtype:
        got = (
            f"shape {tuple(out.shape)} {str(out.dtype).removeprefix('torch.')}"
            if isinstance(out, torch.Tensor)
            else type(out).__name__
        )
        raise ConfigError(
            f"model.field: {target}.forward(t, y) returned {got} for a state y of shape "
            f"{tuple(y.shape)} float32; it must return y's shape and dtype"
        )
    if not bool(torch.isfinite(out).all()):
        raise ConfigError(
            f"model.field: {target}.forward(t, y) returned NaN or inf for a random state y "
            f"of shape {tuple(y.shape)}; no solver can step a field that is not finite"
        )
    if torchdyn_adjoint:
        how = f"which backend=torchdyn sensealg={method} cannot differentiate"
        other = "use sensealg=direct or backend=nodecli or torchdiffeq"
        if any(not p.requires_grad for p in field.parameters()):
            raise ConfigError(
                f"model.field: {target} has frozen parameters, {how} (torchdyn takes the "
                f"gradient of every parameter); {other}"
            )
        (dy,) = torch.autograd.grad(out.sum(), y, allow_unused=True)
        if dy is None:
            raise ConfigError(
                f"model.field: {target}.forward(t, y) does not depend on y, {how}; {other}"
            )
