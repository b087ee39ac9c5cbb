"""nodecli: a command-line experiment runner for Neural ODE classifiers."""

__version__ = "0.1.0"
