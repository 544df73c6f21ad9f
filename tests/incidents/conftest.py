"""Fixtures of the incident regression suite (tests/incidents/): the session deployment of tests/conftest.py
plus a batching helper contract and a crowd of funded accounts. Helpers are in `incident_helpers`."""
import pytest

from trading_helpers import funded_crowd, funding_off


@pytest.fixture(scope="module", autouse=True)
def batcher(project, system, deployer, alice, bob, carol, vault, ch, usdc, engine, pool):
    """One eth_call for many views (the BatchCaller mock); `read`/`reverts_unchanged` find it in system.extra.
    (Asks for the session accounts and contracts so they exist before any module fixture: Ape isolation wants that order.)"""
    b = project.BatchCaller.deploy(sender=deployer)
    system.extra["batcher"] = b
    return b


@pytest.fixture(scope="module")
def no_funding(system):
    """Funding switched off in every market of the session deployment for the module (`trading_helpers.funding_off`);
    a module asks for it with `pytestmark = pytest.mark.usefixtures("no_funding")`."""
    funding_off(system)


@pytest.fixture(scope="module")
def crowd(accounts, deployer):
    """accounts[4..] and, past the ten configured test accounts, generated ones with gas money."""
    return funded_crowd(accounts, deployer)


@pytest.fixture(scope="module")
def uninsured(system, batcher, deployer):
    """The default deployment minus its insurance seed, for incidents whose point is a loss larger than
    the insurance fund (the seed would cover it). It asks for the session deployment first: Ape's
    isolation wants session fixtures created before any module fixture."""
    from dataclasses import replace

    from vperp import deploy
    from vperp.config import default_config

    s = deploy(deployer, replace(default_config(), insurance_seed=0))
    s.extra["batcher"] = batcher  # a plain multicall: it reads any deployment
    return s
