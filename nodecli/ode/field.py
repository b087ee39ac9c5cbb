"""The one type of a vector field as the integrator sees it: f(t, y) -> dy/dt.

The integrator keeps times as Python floats (solver.py says why); a field that needs t as
a tensor gets one from `counting.CountingField`, which every solve goes through.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

#: f(t, y) -> dy/dt with y's shape; t a Python float (the integrator's time).
VectorField = Callable[[float, Tensor], Tensor]
