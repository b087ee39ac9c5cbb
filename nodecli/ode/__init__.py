"""ODE solving for nodecli: Runge–Kutta tableaus, a lean integrator and torchdiffeq glue.

Kept import-light: submodules are imported where used (`nodecli.ode.solver`,
`nodecli.ode.tableaus`, `nodecli.ode.torchdiffeq_tsit5`), so importing the package does
not pull in torchdiffeq.
"""
