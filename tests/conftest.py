"""Shared fixtures: one deployment per session; Ape's isolation reverts each test's changes."""
import pytest

from vperp import deploy


@pytest.fixture(scope="session")
def deployer(accounts):
    return accounts[0]


@pytest.fixture(scope="session")
def alice(accounts):
    return accounts[1]


@pytest.fixture(scope="session")
def bob(accounts):
    return accounts[2]


@pytest.fixture(scope="session")
def carol(accounts):
    return accounts[3]


@pytest.fixture(scope="session")
def system(deployer):
    return deploy(deployer)


@pytest.fixture(scope="session")
def vault(system):
    return system.vault


@pytest.fixture(scope="session")
def ch(system):
    return system.clearing_house


@pytest.fixture(scope="session")
def usdc(system):
    return system.collateral


@pytest.fixture(scope="session")
def eth(system):
    return system.markets["ETH"]


@pytest.fixture(scope="session")
def btc(system):
    return system.markets["BTC"]


@pytest.fixture(scope="session")
def engine(system):
    return system.liquidation


@pytest.fixture(scope="session")
def pool(system):
    return system.pool
