"""Shared fixtures: one deployment per session; Ape's isolation reverts each test's changes.

Block timestamps never follow the wall clock (tests/helpers/clock.py): on the embedded chain the clock
is frozen as soon as this file is imported, before Ape creates the chain; on Anvil the session starts
by making every block exactly one second after the last. A test that needs time to pass sets
`chain.pending_timestamp`.

`./run.sh test` runs the files on pytest-xdist workers (one per core, a file stays on one worker); the fuzz
modules' reports, which a worker cannot print, are written to a folder and printed at the end.

With VPERP_COVERAGE=<file> (`./run.sh coverage`, one process), every call frame the embedded chain's EVM runs is
recorded (devtools.fncoverage) and the external-function coverage report is written to <file> at the end.
"""
import os
import sys
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import settings

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's devtools/ (not an installed package)
pytest.register_assert_rewrite("helpers")  # the helpers' checks (kick_checked, ...) report like the tests' own

from helpers.clock import install_embedded_clock, pin_block_time  # noqa: E402
from helpers.trading import funding_off, prepare_actors  # noqa: E402
from devtools import fncoverage, srccoverage  # noqa: E402 - a checkout's tooling (the repository root is on sys.path)
from vperp import chain_io, deploy  # noqa: E402
from vperp.config import lagging_peg_config  # noqa: E402

install_embedded_clock()

# Work Ape and web3 do around every transaction and call that no test reads (vperp/chain_io.py has the figures).
chain_io.skip_console_log_traces()
chain_io.cache_default_sender()
chain_io.cache_default_transaction_type()
chain_io.cache_code_checks()

if os.environ.get("VPERP_COVERAGE"):
    fncoverage.install()
    srccoverage.install()

# Hypothesis: the default run (CI's) is derandomized, so it explores the same examples every time and a
# green run on one machine is a green run on the next; the long fuzz profile (VPERP_FUZZ=long) or
# VPERP_FUZZ_RANDOM=1 draws fresh examples on every run, which is where new counterexamples come from.
settings.register_profile("vperp-default", derandomize=True, database=None)
settings.register_profile("vperp-explore", derandomize=False)
settings.load_profile(
    "vperp-explore" if os.environ.get("VPERP_FUZZ", "").lower() == "long" or os.environ.get("VPERP_FUZZ_RANDOM")
    else "vperp-default"
)


# The files that take longest, longest first, in seconds of a whole run on two loaded workers (the sum of each
# file's setup, call and teardown in `--durations=0`, on 3808c0d with this session's cuts). On xdist workers
# the files go out in this order, then the rest by their number of tests (xdist's own default): the long
# files start first and the short ones fill the end, so the two workers finish within seconds of each other
# (longest-first scheduling). An unlisted or renamed file only loses its place in the queue.
LONGEST_FIRST = {
    "tests/test_sim.py": 95, "tests/test_economics.py": 60, "tests/liquidation/test_liquidation.py": 47,
    "tests/fast/test_fast_differential.py": 44, "tests/test_gas_table.py": 40,
    "tests/governance/test_governance.py": 40, "tests/fast/test_erc4626_properties.py": 39,
    "tests/model/test_differential.py": 34, "tests/fast/test_fast_stateful.py": 32,
    "tests/orders/test_order_router.py": 30, "tests/sdk/test_integrator_path.py": 28,
    "tests/clearinghouse/test_funding.py": 25, "tests/value_safety/test_value_safety_pool_nav.py": 24,
    "tests/model/test_stateful.py": 24, "tests/clearinghouse/test_trading_errors.py": 24,
}


def pytest_configure(config):
    """On the xdist controller: a folder for the workers' fuzz reports (chain_harness.print_report), named
    in the environment the workers inherit (they start after this hook); and the files handed out in the
    workers' collection order (`pytest_collection_modifyitems`), not re-sorted by test count."""
    if not hasattr(config, "workerinput") and getattr(config.option, "numprocesses", None):
        config._vperp_reports = tempfile.mkdtemp(prefix="vperp-reports-")
        os.environ["VPERP_REPORT_DIR"] = config._vperp_reports
        if getattr(config.option, "dist", None) == "loadfile":
            config.option.loadscopereorder = False
            os.environ["VPERP_LONGEST_FIRST"] = "1"  # the workers (which see dist "no") sort their collection


def pytest_collection_modifyitems(session, config, items):
    """On an xdist worker under --dist loadfile: the files in LONGEST_FIRST's order, then the others by their
    number of tests, most first; within a file the tests keep their order. Every worker sorts alike (the
    controller checks that they collected the same list)."""
    if not hasattr(config, "workerinput") or os.environ.get("VPERP_LONGEST_FIRST") != "1":
        return
    files: dict[str, list] = {}
    for item in items:
        files.setdefault(item.nodeid.split("::", 1)[0], []).append(item)
    order = sorted(files, key=lambda f: (-LONGEST_FIRST.get(f, 0), -len(files[f]), f))
    items[:] = [item for f in order for item in files[f]]


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    folder = getattr(config, "_vperp_reports", None)
    if folder:
        for f in sorted(Path(folder).glob("*.txt")):
            terminalreporter.write_line("")
            terminalreporter.write_line(f.read_text().rstrip("\n"))
        shutil.rmtree(folder, ignore_errors=True)


def pytest_sessionfinish(session, exitstatus):
    out = os.environ.get("VPERP_COVERAGE")
    if out:
        root = Path(session.config.rootpath)
        text, figures = fncoverage.report(root / ".build" / "__local__.json")
        srccoverage.save(root / ".build" / "coverage-data.json")
        src_text, totals = srccoverage.run(root)
        Path(out).write_text(fncoverage.document(text, src_text))
        total = sum(f["functions"] for f in figures.values())
        hit = sum(f["reached"] for f in figures.values())
        print(f"\nexternal-function coverage: {hit}/{total} reached; statements {totals['sh']}/{totals['s']}, "
              f"lines {totals['lh']}/{totals['l']}, branches {totals['bh']}/{totals['b']} "
              f"({totals['u']} unresolved); report written to {out}")


@pytest.fixture(scope="session", autouse=True)
def _deterministic_block_time(chain):
    """Before any session fixture mines a block: each block one second after the last (see above)."""
    pin_block_time(chain)


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


@pytest.fixture(scope="module")
def dave(accounts):
    return accounts[4]


@pytest.fixture(scope="module")
def erin(accounts):
    return accounts[5]


@pytest.fixture(scope="session")
def system(deployer):
    return deploy(deployer, lagging_peg_config())


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


@pytest.fixture(scope="module")
def batcher(project, system, deployer, alice, bob, carol, vault, ch, usdc, engine, pool):
    """One eth_call for many views (the BatchCaller mock): helpers.liquidation's `read`, `frozen` and
    `reverts_unchanged` find it in system.extra. A module whose helpers read through it without asking for it
    sets `pytestmark = pytest.mark.usefixtures("batcher")`. (It asks for the session accounts and contracts so
    they exist before any module fixture: Ape's isolation wants that order.)"""
    b = project.BatchCaller.deploy(sender=deployer)
    system.extra["batcher"] = b
    return b


@pytest.fixture(scope="module")
def no_funding(system):
    """Funding switched off in every market of the session deployment for the module
    (`helpers.trading.funding_off`): health and PnL have no time term. A module asks for it with
    `pytestmark = pytest.mark.usefixtures("no_funding")`, a test with the same mark."""
    funding_off(system)


@pytest.fixture
def actors_no_funding(system, accounts):
    """For one test (Ape's isolation reverts it after): funding off and collateral for accounts[1..7]
    (`helpers.trading.prepare_actors`)."""
    prepare_actors(system, accounts)
