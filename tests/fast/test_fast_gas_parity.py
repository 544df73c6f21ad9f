"""Gas parity: the fast chain (pyrevm, `exact_gas=True`) and Anvil report the same gasUsed for the same
transaction, one by one: the whole deployment (`vperp.deploy` through vperp.fast.deploy: 25
transactions), then deposits, an open, a close, a levered open, an oracle move, a funding poke, a kick,
a take after ten minutes, a reverting withdrawal, an LP deposit and withdrawal request, a depth sync and
a refused repeg. Both chains get the same calldata from the same senders at the same block timestamps
(a private Anvil started by the test, tests/helpers/fast_anvil.py), so the addresses, the code paths and
so the gas must agree to the unit.

Anvil runs with `--hardfork cancun`, the build's evm_version (ape-config.yaml), and pyrevm with spec
"Cancun" (spelled as revm spells it: pyrevm maps an unknown name such as "CANCUN" to its latest spec).
The same sequence also agrees with Anvil's default hardfork (Osaka for Anvil 1.7), which is what Ape
starts for `--network ethereum:local:foundry`: nothing in these contracts is priced differently there.

The fast chain's default mode (`exact_gas=False`) does not agree, and the test shows it: pyrevm 0.3.7
never ends its journal between transactions, so a slot another transaction touched earlier is warm and
an SSTORE is priced against its value at first load (vperp/fast/chain.py).
"""
from __future__ import annotations

import pytest

from helpers.fast_anvil import AnvilChain
from vperp.config import plain_config
from vperp.fast import Account, Artifacts, FastChain, fast_deploy, mnemonic_accounts

PREFERRED = ("Vault", "ClearingHouse", "LiquidationEngine", "LiquidityPool", "AmmController", "MockERC20",
             "MockAggregator")
MAX_UINT = 2**256 - 1
from vperp.units import WAD


def _recording(chain):
    """Wrap the chain's transact/deploy so every transaction is logged as (label, receipt)."""
    log, transact, deploy = [], chain.transact, chain.deploy
    # label a selector by the contract that declares it, the production contracts winning over the
    # interfaces and mocks that share their selectors
    order = sorted(chain.artifacts.types.values(), key=lambda ct: (ct.name in PREFERRED, ct.name))
    names = {fn.selector: f"{ct.name}.{fn.name}" for ct in order for fn in ct.functions.values()}

    def _transact(sender, to, data, **kw):
        r = transact(sender, to, data, **kw)
        log.append((names.get(bytes(data[:4]), data[:4].hex()), r))
        return r

    def _deploy(sender, contract, *args, **kw):
        address, r = deploy(sender, contract, *args, **kw)
        log.append((f"deploy {contract}", r))
        return address, r

    chain.transact, chain.deploy = _transact, _deploy
    return log


def scenario(chain) -> list:
    """The deployment and the sequence on `chain`; returns [(label, receipt)] of every transaction."""
    log = _recording(chain)
    addrs = mnemonic_accounts(6)
    for a in addrs:
        chain.add_account(a)
    deployer, alice, bob, keeper, taker, lp = addrs
    s = fast_deploy(chain, Account(chain, deployer), plain_config())
    a = chain.artifacts
    ch, vault, engine, pool, amm, usdc = (s.clearing_house.address, s.vault.address, s.liquidation.address,
                                          s.pool.address, s.amm.address, s.collateral.address)
    eth = s.markets["ETH"]

    def tx(sender, target, contract, fn, *args):
        return chain.transact(sender, target, a[contract].function(fn).encode(list(args)))

    for who, units in ((alice, 10_000 * 10**6), (bob, 50_000 * 10**6), (taker, 200_000 * 10**6),
                       (lp, 1_000_000 * 10**6)):
        tx(who, usdc, "MockERC20", "mint", who, units)
        tx(who, usdc, "MockERC20", "approve", vault, MAX_UINT)
        tx(who, usdc, "MockERC20", "approve", pool, MAX_UINT)
        if who != lp:
            tx(who, vault, "Vault", "deposit", 0, units)
    tx(lp, pool, "LiquidityPool", "deposit", 500_000 * 10**6, lp)
    tx(lp, pool, "LiquidityPool", "requestWithdraw", 10**17)
    T = chain.pending_timestamp
    tx(bob, ch, "ClearingHouse", "openPosition", 0, eth.id, 2 * WAD, MAX_UINT, T + 600)
    tx(bob, ch, "ClearingHouse", "closePosition", 0, eth.id, 0, T + 600)
    tx(alice, ch, "ClearingHouse", "openPosition", 0, eth.id, 30 * WAD, MAX_UINT, T + 600)
    tx(deployer, eth.oracle.address, "MockAggregator", "updateAnswer", 2_700 * 10**8)
    tx(keeper, ch, "ClearingHouse", "pokeFunding", eth.id)
    tx(keeper, engine, "LiquidationEngine", "kick", alice, 0, eth.id, keeper)
    chain.advance(600)
    tx(taker, engine, "LiquidationEngine", "take", 1, MAX_UINT, MAX_UINT, 0)
    tx(alice, vault, "Vault", "withdraw", 0, 10**15)  # more than alice has: reverts
    chain.advance(3_600)
    tx(keeper, amm, "AmmController", "syncDepth", eth.id)
    tx(keeper, amm, "AmmController", "repeg", eth.id)
    return log


@pytest.fixture(scope="module")
def artifacts():
    return Artifacts()


def _table(fast, anvil) -> str:
    rows = [f"{'transaction':44s} {'pyrevm':>9s} {'anvil':>9s}"]
    rows += [f"{label:44s} {f.gas_used:9d} {n.gas_used:9d}{'' if f.status else '  (reverted)'}"
             for (label, f), (_, n) in zip(fast, anvil)]
    return "\n".join(rows)


@pytest.mark.parametrize("hardfork", ["cancun", None])  # None: Anvil's default (what Ape starts)
def test_gas_per_transaction_equals_anvil(artifacts, hardfork):
    anvil = AnvilChain(artifacts, hardfork=hardfork)
    try:
        on_anvil = scenario(anvil)
    finally:
        anvil.close()
    on_fast = scenario(FastChain(artifacts, exact_gas=True, tx_gas=anvil.tx_gas))
    assert [label for label, _ in on_fast] == [label for label, _ in on_anvil]
    assert len(on_fast) >= 50
    print(f"\n[anvil --hardfork {hardfork or '(default)'}]\n" + _table(on_fast, on_anvil))
    for (label, f), (_, n) in zip(on_fast, on_anvil):
        assert f.status == n.status, f"{label}: status {f.status} on pyrevm, {n.status} on anvil"
        assert f.gas_used == n.gas_used, f"{label}: gasUsed {f.gas_used} on pyrevm, {n.gas_used} on anvil"
        assert [(lg.address, lg.topics, lg.data) for lg in f.logs] == [(lg.address, lg.topics, lg.data)
                                                                      for lg in n.logs], f"{label}: logs differ"
    # What the scenario must have exercised: a kick and a take that went through, one revert.
    ok = {label for label, r in on_fast if r.status}
    assert {"LiquidationEngine.kick", "LiquidationEngine.take", "ClearingHouse.closePosition",
            "LiquidityPool.deposit", "LiquidityPool.requestWithdraw", "AmmController.syncDepth", "AmmController.repeg"} <= ok
    assert [label for label, r in on_fast if not r.status] == ["Vault.withdraw"]


def test_default_mode_gas_is_not_a_nodes(artifacts):
    """Why `exact_gas` exists: without it, later transactions find their slots warm (and pay less)."""
    exact = scenario(FastChain(artifacts, exact_gas=True))
    warm = scenario(FastChain(artifacts, exact_gas=False))
    assert [r.status for _, r in warm] == [r.status for _, r in exact]
    lower = [label for (label, w), (_, e) in zip(warm, exact) if w.gas_used < e.gas_used]
    higher = [label for (label, w), (_, e) in zip(warm, exact) if w.gas_used > e.gas_used]
    assert lower and not higher, (lower, higher)
