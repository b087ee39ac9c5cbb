"""nodecli: a command-line experiment runner for Neural ODE classifiers.

`from nodecli import odeint, odeint_adjoint` gives the ODE core with torchdiffeq's calling
convention (nodecli.ode.odeint). They are exported lazily, by module `__getattr__`, so
that `import nodecli` (every command's start) imports neither torch nor Hydra.
"""

__version__ = "0.1.0"

__all__ = ["__version__", "odeint", "odeint_adjoint"]


def __getattr__(name: str):
    if name in ("odeint", "odeint_adjoint"):
        # import_module, not an import statement: every module reads `nodecli.__version__`
        # (the record too), and import-linter would count a static import here as each
        # of them importing the ode core.
        import importlib

        return getattr(importlib.import_module("nodecli.ode.odeint"), name)
    raise AttributeError(f"module 'nodecli' has no attribute {name!r}")
