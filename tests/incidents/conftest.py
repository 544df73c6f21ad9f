"""Fixtures of the incident regression suite (tests/incidents/): the session deployment of tests/conftest.py,
its batching helper contract (`batcher`) in every module, and a crowd of funded accounts. A test that wants
funding off asks for tests/conftest.py's `no_funding`. Helpers are in tests/helpers/incidents.py."""
import pytest

from helpers.trading import funded_crowd


@pytest.fixture(scope="module", autouse=True)
def _batcher(batcher):
    """Every incident module reads through the BatchCaller (`batcher`, tests/conftest.py): `read` and
    `reverts_unchanged` find it in system.extra."""
    return batcher


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
    from vperp.config import lagging_peg_config

    s = deploy(deployer, replace(lagging_peg_config(), insurance_seed=0))
    s.extra["batcher"] = batcher  # a plain multicall: it reads any deployment
    return s
