"""The suite's clock: no test depends on wall-clock time (docs/testing.md, "Rules the suite keeps").

Every new block is exactly BLOCK_TIME after the previous one, whatever the wall clock says, unless a
test sets `chain.pending_timestamp` (or calls `chain.mine(timestamp=..., deltatime=...)`). A test that
needs time to pass sets the timestamp it needs; it never sleeps.

Why this takes a patch on the embedded chain (py-evm 0.12 under eth-tester 0.13, Ape's
`ethereum:local:test`):
- py-evm gives a new pending header `max(parent.timestamp + 1, eth_now())`
  (`eth/_utils/headers.py: new_timestamp_from_parent`, called through the forks'
  `create_*_header_from_parent`), where `eth_now()` reads the wall clock. The pending header is made
  when the previous block is mined (`MiningChain.mine_block_extended` / `mine_all` /
  `import_block`), so the wall-clock time spent between two blocks becomes chain time as soon as the
  wall clock is ahead of the chain.
- eth-tester's genesis block takes `int(time.time())`
  (`eth_tester/backends/pyevm/main.py: get_default_genesis_params`), and Ape passes no genesis
  parameters (`ape_test/provider.py: ApeEVMBackend._setup_tester_chain`).
- `chain.pending_timestamp = T` does not pin T by itself: Ape calls eth-tester's `time_travel(T)`,
  which sets the pending header to T - 1, mines that (empty) block and lets py-evm make the next
  pending header, `max(T, eth_now())`: the wall clock again whenever T is behind it.
`install_embedded_clock` freezes `eth_now` at GENESIS_TIMESTAMP and gives the genesis block that
timestamp. Chain time never falls behind genesis, so `max(parent + 1, eth_now())` is always
`parent + 1`: every block is one second after its parent, and `time_travel(T)` leaves exactly T
pending. BLOCK_TIME is therefore py-evm's own minimum step, 1 s (eth-tester's `time_travel` relies
on it too).

Anvil (`--network ethereum:local:foundry`) keeps its own clock: a block takes the wall clock plus an
offset, and blocks mined in the same second share a timestamp. `anvil_setBlockTimestampInterval`
makes every block exactly `interval` after the last one instead; `evm_setNextBlockTimestamp` (Ape's
`set_timestamp`) still wins for the next block, and `evm_revert` (Ape's isolation) keeps the
interval. Ape's foundry plugin starts Anvil without `--timestamp`, so there the genesis block (and
so the absolute timestamps) follow the wall clock at Anvil's start; only the steps are fixed.
"""
from __future__ import annotations

from vperp.units import HOUR

GENESIS_TIMESTAMP = 1_767_225_600  # 2026-01-01 00:00:00 UTC: the embedded chain's genesis block
BLOCK_TIME = 1  # seconds between two blocks unless a test sets chain.pending_timestamp


def next_hour(timestamp: int) -> int:
    """The first second of the hour after the one `timestamp` falls in (`(timestamp // HOUR + 1) * HOUR`).

    A market's funding target is re-sampled by its first update in a new hour (`timestamp // 3600` differs
    from the last update's, ClearingHouseAccrual._accrue), so a test that needs a sample sets the next block
    there (or later in that hour): `chain.pending_timestamp = next_hour(chain.pending_timestamp)`. Absolute
    timestamps follow the genesis block (fixed on the embedded chain, the wall clock at Anvil's start), so a
    test computes hour boundaries from the chain's time, never assumes where they fall."""
    return (timestamp // HOUR + 1) * HOUR


def install_embedded_clock() -> None:
    """Freeze the embedded chain's clock (py-evm's `eth_now`, eth-tester's genesis timestamp).

    Must run before the provider connects (Ape creates the chain lazily, after collection):
    tests/conftest.py calls it when it is imported. Fails loudly if py-evm or eth-tester moved the
    functions patched here, rather than letting the wall clock back in silently."""
    from eth._utils import headers
    from eth_tester.backends.pyevm import main as pyevm_main

    for module, name in ((headers, "eth_now"), (headers, "new_timestamp_from_parent"),
                         (pyevm_main, "get_default_genesis_params")):
        assert callable(getattr(module, name, None)), (
            f"{module.__name__}.{name} is gone: update tests/helpers/clock.py to the new py-evm/eth-tester")
    if getattr(pyevm_main.get_default_genesis_params, "vperp_fixed", False):
        return  # already installed
    headers.eth_now = lambda: GENESIS_TIMESTAMP

    default_genesis_params = pyevm_main.get_default_genesis_params

    def genesis_params(overrides=None):
        return {**default_genesis_params(overrides=overrides), "timestamp": GENESIS_TIMESTAMP}

    genesis_params.vperp_fixed = True
    pyevm_main.get_default_genesis_params = genesis_params

    class Parent:  # what new_timestamp_from_parent reads of a parent header
        timestamp = GENESIS_TIMESTAMP + 5

    assert headers.new_timestamp_from_parent(Parent()) == GENESIS_TIMESTAMP + 5 + BLOCK_TIME


def provider_kind(provider) -> str:
    """'embedded' (Ape's eth-tester), 'anvil' or 'other'."""
    name = provider.name
    if name == "test":
        return "embedded"
    if "foundry" in name or "anvil" in name:
        return "anvil"
    return "other"


def pin_block_time(chain) -> None:
    """At the start of a session: check the embedded chain's clock is frozen, or make Anvil step by
    BLOCK_TIME. On any other network nothing is pinned (the suite only runs on these two)."""
    kind = provider_kind(chain.provider)
    if kind == "embedded":
        genesis = chain.blocks[0].timestamp
        assert genesis == GENESIS_TIMESTAMP, (
            f"the embedded chain's genesis is at {genesis}, not {GENESIS_TIMESTAMP}: it was created "
            "before install_embedded_clock() ran, so its blocks follow the wall clock")
    elif kind == "anvil":
        chain.provider.make_request("anvil_setBlockTimestampInterval", [BLOCK_TIME])
    if kind != "other":
        head = chain.blocks.head.timestamp
        assert chain.pending_timestamp == head + BLOCK_TIME, (chain.pending_timestamp, head)
