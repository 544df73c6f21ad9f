"""Developer tooling of the repository, outside the installed `vperp` package: the gas table (`devtools.gas`),
statement/branch and external-function coverage (`devtools.srccoverage`, `devtools.fncoverage`), the Slither gate
(`devtools.slither_check`) and mutation testing (`devtools.mutation`). They run from a checkout (`./run.sh gas`,
`./run.sh coverage`, `./run.sh slither`, `./run.sh ape run mutate`) with the `dev` extra installed; an integrator's
`pip install vperp` brings none of them.
"""
