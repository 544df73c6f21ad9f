"""GMX v1, July 2025 (~$42M).

What happened: GMX v1 kept global aggregates next to the positions: per-token global short size and average
short price, used to value the GLP pool. One code path (order execution through the position manager,
re-entered from a keeper callback) changed positions without updating the global average short price. The
attacker opened and closed shorts through that path until the aggregate was far off, so GLP's value was
computed wrong; it minted GLP cheap and redeemed it dear.

The shape: an aggregate that values the pool drifts from the sum of the positions it summarizes, because
one path forgets to update it.

What stops it in vPerp (invariant 2 of docs/specification.md; docs/pool.md): every path that changes a position
(open, increase, reduce, flip, close, isolated sub-accounts, liquidation kick/take/redo/backstop, bad debt,
funding pokes, depth changes, LP deposits) goes through the same aggregate update, and after every action on every
path the ClearingHouse's aggregates equal the sum over the accounts, computed here in Python from the position
views and the positions' stored funding basis:
- per market: long and short open interest == sum of long sizes / of |short sizes|;
- `sumOpenNotional` == sum of open notionals; `sumFundingBasis` == sum of floor(size x lastFunding);
- `tradersPnl()` == sum over markets of floor(net x index) - sumOpenNotional - (floor(net x F) - sumFundingBasis)
  to the wei, and within a few wei per position of the sum of each position's own PnL less funding;
  its net exposure == sum of ceil(|net| x index);
- the pool's NAV == poolBalance - tradersPnl; each account's market bitmap == the markets it holds;
- the engine's live-auction notional and each position's auctioned size == the sums over live auctions.

The two aggregate slots are internal (they feed `tradersPnl`), so they are read from storage: the test finds
the `_markets` and `_positions` mapping slots by matching known values, then decodes the documented layout.
Funding is left on (the default parameters), so the funding terms are live.
"""
from __future__ import annotations

from eth_utils import keccak

import ape

from helpers.incidents import BTC, ETH, WAD, ceil_div, exit_value, read, set_liquidation_params, trade, vamm_base_to

U128 = 2**128


def _h(key: int, slot: int) -> int:
    return int.from_bytes(keccak(key.to_bytes(32, "big") + slot.to_bytes(32, "big")), "big")


def _halves(word: bytes) -> tuple[int, int]:
    v = int.from_bytes(bytes(word), "big")
    lo, hi = v % U128, v // U128
    return (lo - U128 if lo >= 2**127 else lo), (hi - U128 if hi >= 2**127 else hi)


class Storage:
    """ClearingHouse storage: `_markets[id]` (struct slot 3 = reserves, slot 5 = the two aggregates) and
    `_positions[id][owner][sub]` (slot 0 = size | openNotional, slot 1 = lastCumulativeFunding | auctioned)."""

    def __init__(self, chain, ch):
        self.provider, self.ch = chain.provider, ch
        self.markets_slot = self.positions_slot = None

    def word(self, slot: int) -> bytes:
        return bytes(self.provider.get_storage(self.ch.address, slot))

    def find_markets(self):
        s = self.ch.marketState(ETH)
        for p in range(64):
            if _halves(self.word(_h(ETH, p) + 3)) == (s.baseReserve, s.quoteReserve):
                self.markets_slot = p
                return
        raise AssertionError("_markets slot not found")

    def pos_slot(self, mid, owner, sub, p=None) -> int:
        p = self.positions_slot if p is None else p
        return _h(sub, _h(int(owner, 16), _h(mid, p)))

    def find_positions(self, owner, sub, mid):
        size, on, _ = self.ch.position(owner, sub, mid)
        assert size != 0
        for p in range(64):
            if _halves(self.word(self.pos_slot(mid, owner, sub, p))) == (size, on):
                self.positions_slot = p
                return
        raise AssertionError("_positions slot not found")

    def aggregates(self, mid) -> tuple[int, int]:
        return _halves(self.word(_h(mid, self.markets_slot) + 5))

    def last_funding(self, mid, owner, sub) -> int:
        return _halves(self.word(self.pos_slot(mid, owner, sub) + 1))[0]


def check_aggregates(system, store, accounts):
    ch, vault, engine = system.clearing_house, system.vault, system.liquidation
    mids = (ETH, BTC)
    calls = {"pnl": (ch, "tradersPnl"), "exit": (ch, "tradersExitPnl"), "pool": (vault, "poolBalance"),
             "nav": (system.pool, "navWad"), "uncovered": (system.pool, "uncoveredBadDebt"),
             "live": (engine, "liveNotional"), "count": (engine, "auctionCount")}
    for mid in mids:
        calls[f"st{mid}"] = (ch, "marketState", mid)
        calls[f"idx{mid}"] = (ch, "indexPrice", mid)
    for i, (o, sub) in enumerate(accounts):
        calls[f"om{i}"] = (vault, "openMarkets", o.address, sub)
        for mid in mids:
            calls[f"p{i}_{mid}"] = (ch, "position", o.address, sub, mid)
            calls[f"a{i}_{mid}"] = (ch, "auctionedSize", o.address, sub, mid)
    for i in range(1, engine.auctionCount() + 1):
        calls[f"auc{i}"] = (engine, "auction", i)
    r = read(system, **calls)
    auctions = [r[f"auc{i}"] for i in range(1, r["count"] + 1)]
    live = [a for a in auctions if a.size != 0]

    expected_pnl, exposure, per_position, n_positions = 0, 0, 0, 0
    expected_exit, exit_exposure, exit_per_position = 0, 0, 0
    for mid in mids:
        st, idx = r[f"st{mid}"], r[f"idx{mid}"]
        longs = shorts = sum_on = sum_basis = 0
        for i, (o, sub) in enumerate(accounts):
            size, on, pf = r[f"p{i}_{mid}"]
            assert r[f"a{i}_{mid}"] == sum(a.size for a in live
                                           if (a.owner, a.subaccount, a.marketId) == (o.address, sub, mid))
            if size == 0:
                continue
            n_positions += 1
            longs += max(size, 0)
            shorts += max(-size, 0)
            sum_on += on
            sum_basis += size * store.last_funding(mid, o.address, sub) // WAD
            per_position += size * idx // WAD - on - pf
            exit_per_position += -on - pf
        assert (st.longOpenInterest, st.shortOpenInterest) == (longs, shorts), f"open interest of market {mid}"
        assert store.aggregates(mid) == (sum_on, sum_basis), f"aggregates of market {mid}"
        net = longs - shorts
        expected_pnl += net * idx // WAD - sum_on - (net * st.cumulativeFunding // WAD - sum_basis)
        exposure += ceil_div(abs(net) * idx, WAD)
        # The pool's valuation: the same aggregates, with the net position closed on the vAMM.
        exit_now = exit_value(st.baseReserve, st.quoteReserve, net)
        expected_exit += exit_now - sum_on - (net * st.cumulativeFunding // WAD - sum_basis)
        exit_per_position += exit_now
        exit_exposure += ceil_div(abs(net) * st.spotPrice, WAD)
    pnl, net_exposure = r["pnl"]
    assert (pnl, net_exposure) == (expected_pnl, exposure)
    assert abs(pnl - per_position) <= 2 * n_positions + 2
    exit_pnl, exit_net_exposure, _, _ = r["exit"]
    assert (exit_pnl, exit_net_exposure) == (expected_exit, exit_exposure)
    assert abs(exit_pnl - exit_per_position) <= 2 * n_positions + 2
    assert r["nav"] == r["pool"] - exit_pnl - r["uncovered"]
    for i, (o, sub) in enumerate(accounts):
        held = sum(1 << (mid - 1) for mid in mids if r[f"p{i}_{mid}"][0] != 0)
        assert r[f"om{i}"] == held, f"bitmap of {o.address}/{sub}"
    assert r["live"] == sum(ceil_div(abs(a.size) * a.startIndex, WAD) for a in live)


def test_aggregates_equal_the_sum_over_accounts_after_every_action_on_every_path(
        system, ch, vault, engine, chain, deployer, alice, bob, carol, crowd):
    dave, erin, keeper = crowd[0], crowd[1], crowd[2]
    accounts = [(alice, 0), (alice, 1), (bob, 0), (carol, 0), (dave, 0), (erin, 0), (keeper, 0)]
    set_liquidation_params(system, maxRedos=1)
    for who, amount in ((alice, 100_000), (bob, 100_000), (carol, 2_000_000), (dave, 7_400), (erin, 7_800)):
        system.fund(who, amount)
    system.fund(alice, 20_000, subaccount=1)
    store = Storage(chain, ch)
    store.find_markets()
    steps = 0

    def check():
        nonlocal steps
        check_aggregates(system, store, accounts)
        steps += 1

    trade(ch, alice, ETH, 50 * WAD)  # open
    store.find_positions(alice.address, 0, ETH)
    check()
    for who, mid, base, sub in ((bob, ETH, -30 * WAD, 0),  # the other side
                                (alice, ETH, 10 * WAD, 0),  # increase
                                (alice, BTC, WAD, 1),  # isolated sub-account
                                (carol, BTC, -WAD // 2, 0)):
        trade(ch, who, mid, base, sub=sub)
        check()
    chain.pending_timestamp += 7200  # funding accrues
    for mid in (ETH, BTC):
        ch.pokeFunding(mid, sender=keeper)
        check()
    assert ch.marketState(ETH).cumulativeFunding != 0  # the funding terms are live, not zero
    trade(ch, bob, ETH, 10 * WAD)  # reduce
    check()
    trade(ch, bob, ETH, 40 * WAD)  # flip short -> long
    check()
    ch.closePosition(0, BTC, 2**255, 2**64, sender=carol)  # close a short
    check()
    trade(ch, dave, ETH, 20 * WAD)
    trade(ch, erin, ETH, 20 * WAD)
    check()

    # Liquidation paths: kick, partial take, final take; kick, expire, redo, backstop (and bad debt).
    system.set_price("ETH", 2760)
    assert vault.isLiquidatable(dave, 0) and vault.isLiquidatable(erin, 0)
    engine.kick(dave, 0, ETH, keeper, sender=keeper)
    check()
    a1 = engine.auction(1)
    engine.take(1, abs(a1.size) // 2, 2**255, 0, sender=carol)
    check()
    engine.take(1, 2**255, 2**255, 0, sender=carol)
    check()
    engine.kick(erin, 0, ETH, keeper, sender=keeper)
    check()
    duration = engine.auctionParams(ETH).duration
    chain.pending_timestamp += duration + 1
    system.set_price("ETH", 2700)
    engine.redo(2, keeper, sender=keeper)
    check()
    chain.pending_timestamp += duration + 1
    system.set_price("ETH", 2500)  # erin is now under water: the backstop leaves bad debt
    if vault.isLiquidatable(erin, 0) and engine.bestMarketToKick(erin, 0) == ETH:
        engine.kick(erin, 0, ETH, keeper, sender=keeper)  # the rest of the position into an auction too
        check()
    engine.backstop(2, sender=keeper)
    check()

    # Pool-side paths: an LP deposit, a depth change (the controller rewrites the reserves), a poke.
    usdc, pool = system.collateral, system.pool
    usdc.mint(deployer, 2_000_000 * 10**6, sender=deployer)
    usdc.approve(pool, 2_000_000 * 10**6, sender=deployer)
    if pool.lpFlowsSuspended()[0]:  # the crash left the vAMM outside its band: LP flows wait for it
        with ape.reverts(pool.LpFlowsSuspended):
            pool.deposit(2_000_000 * 10**6, deployer, sender=deployer)
        trade(ch, carol, ETH, vamm_base_to(system, ETH, 2500 * WAD))  # an arbitrageur brings it back
        check()
        # ... and a TWAP window after the block that found the gap, LP flows resume.
        chain.pending_timestamp += ch.marketParams(ETH).twapWindow
        for m in system.markets.values():
            m.oracle.updateAnswer(m.oracle.latestRoundData()[1], sender=deployer)
    assert not pool.lpFlowsSuspended()[0]
    pool.deposit(2_000_000 * 10**6, deployer, sender=deployer)
    check()
    system.amm.syncDepth(ETH, sender=keeper)
    check()
    chain.pending_timestamp += 3600
    system.set_price("ETH", 2600)
    ch.pokeFunding(ETH, sender=keeper)
    check()

    # The last of it: a close of a flipped position and of an isolated sub-account's.
    ch.closePosition(0, ETH, 0, 2**64, sender=bob)
    check()
    ch.closePosition(1, BTC, 0, 2**64, sender=alice)
    check()
    assert steps >= 20
