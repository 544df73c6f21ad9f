"""The peg follows the index; trades do not move it (AmmController.pegPrice / repeg / setConcentration).

On the concentrated deployment (`vperp.config.concentrated_config()`, deployments/config/concentrated.yaml:
ETH 100,000 x 300M at 3,000, taker fee 0.1 %, band 10 %, repegThreshold 0.1 %, maxRepegStep 5 %,
maxRepegCost 1 % of NAV, repeg once per block, depth concentrated 10x on a 10 % range), deployed once for
this module. Every action runs on the chain and in `vperp.model.Model` (built by
`chain_harness.deployment_model`) at the same explicit block time, and the two are compared to the wei;
expected values that state a rule are recomputed here from the rule (IAmmController's NatSpec):

    peg      P = x y / (x + net)^2, rounded down twice; a trade keeps x + net and (up to rounding) x y
    repeg    move = min(|index - P|, P x maxRepegStep, floor(NAV x maxRepegCost) x x / (x + net) / |net|),
             y1 = y +- floor(floor(move (x + net) / x) (x + net) / 1e18), x kept; refused when
             |P - index| / index <= repegThreshold (RepegNotNeeded) and a second time in a block (RepegTooSoon)
    cost     exitValue(x, y1, net) - exitValue(x, y, net); the pool's NAV moves by exactly -cost
    spot / P = ((x + net) / x)^2 before and after a repeg: the premium the traders' skew puts on the mark stays

Attacks (end to end; the attacker's gain is the change of its Vault collateral, everything closed):
  oracle front-running (`test_front_running_an_index_update`): a long opened before an index update of
  +j, a repeg, the close in the next block. With j below twice the taker fee the attacker loses; above, it
  gains what the peg move pays its position less the two fees: at most the quote it paid x (j - 2 x fee), which
  is <= size x index x (j - 2 x fee) only while the position is small against the reserve (1M USD: yes).
  Sandwiching a public repeg (`test_sandwiching_a_repeg_is_refused_at_the_stale_peg`): once the index has moved,
  an increase reverts PegStale until the repeg (the stale-peg rule, 11 bps here); the round trip after it pays
  the two fees. Before the rule it took up to maxRepegCost x NAV (+93,864 USD to a 3M long at +4 %).
  A depth sync and a repeg around a large long with no index move (`test_a_buy_cannot_make_a_depth_shrink_due_...`):
  syncDepth measures depth at zero net position, so the long's own buy cannot make a shrink due (it used to: the
  shrink kept the spot, lowered the peg, and the repeg paid the long +30,053 USD of the pool's money). What is
  left was an LP's own redemption moving the NAV (`test_an_lp_redemption_under_its_own_large_long_...`): the sync
  that followed shrank keeping the spot, and the repeg paid the long +26,641 USD. A shrink under a net position
  now keeps the peg and charges the net side its exit gain: the same sequence loses its fees.
The measured figures are printed after the run (`peg-follow: ...`).
"""
from __future__ import annotations

import copy
from decimal import Decimal, localcontext

import pytest
from ape.exceptions import CustomError
from eth_abi import decode as abi_decode

from helpers.chain_harness import Errors, deployment_model, print_report
from helpers.reverts import revert_data
from helpers.trading import b32, exit_value, expect_revert
from vperp.config import concentrated_config, max_amplification
from vperp.deployment import deploy
from vperp.keeper import repeg_due
from vperp.model import ModelRevert

from vperp.units import WAD
MAX_UINT = 2**256 - 1
ETH = 1
BTC = 2
FEED = 10**10  # WAD per unit of the 8-decimal feed's answer


def ceil_div(a: int, b: int) -> int:
    return -((-a) // b)


def usd(v: int) -> str:
    return f"{v / WAD:,.2f}"


class Mirror:
    """The chain and the model side by side. Every transaction goes into a block whose time is set
    explicitly (`at`), and the model applies the same action at that time."""

    def __init__(self, system, deployer, chain):
        self.s, self.chain, self.deployer = system, chain, deployer
        self.ch, self.amm, self.pool, self.vault = system.clearing_house, system.amm, system.pool, system.vault
        self.model = deployment_model(system, deployer)
        self.check()

    # -------------------------------------------------------------- time
    def at(self, gap: int = 1) -> int:
        """Pin the next block `gap` seconds after the head block; return its time."""
        t = self.chain.blocks.head.timestamp + gap
        self.chain.pending_timestamp = t
        return t

    @property
    def now(self) -> int:
        return self.chain.blocks.head.timestamp

    # -------------------------------------------------------------- actions
    def fund(self, who, amount) -> None:
        units = self.s.fund(who, amount)
        self.model.deposit(who.address, 0, units)

    def trade(self, who, base: int, gap: int = 1):
        t = self.at(gap)
        limit = MAX_UINT if base > 0 else 0
        tx = self.ch.openPosition(0, ETH, base, limit, t + 60, sender=who)
        assert tx.timestamp == t
        want = self.model.open_position(who.address, 0, ETH, base, limit, t, t + 60)
        return tx, self._position_changed(tx, want)

    def close(self, who, gap: int = 1):
        t = self.at(gap)
        size = self.ch.position(who, 0, ETH).size
        limit = 0 if size > 0 else MAX_UINT
        tx = self.ch.closePosition(0, ETH, limit, t + 60, sender=who)
        assert tx.timestamp == t
        want = self.model.close_position(who.address, 0, ETH, limit, t, t + 60)
        return tx, self._position_changed(tx, want)

    def _position_changed(self, tx, want):
        (ev,) = tx.decode_logs(self.ch.PositionChanged)
        got = (ev.baseDelta, ev.quoteDelta, ev.fee, ev.realizedPnl, ev.fundingPaid, ev.newSize, ev.newOpenNotional,
               ev.priceAfter)
        assert got == (want.base, want.quote, want.fee, want.realized_pnl, want.funding, want.new_size,
                       want.new_open_notional, want.price_after)
        return ev

    def lp_deposit(self, who, amount) -> int:
        """`amount` USD of fresh tokens from `who`'s wallet into the pool; returns the shares."""
        assets = self.s.units(amount)
        self.s.collateral.mint(who, assets, sender=who)
        self.s.collateral.approve(self.pool, assets, sender=who)
        t = self.at()
        tx = self.pool.deposit(assets, who, sender=who)
        assert tx.timestamp == t
        shares = self.model.pool_deposit(who.address, assets, who.address, t)
        assert self.pool.balanceOf(who) == shares
        return shares

    def lp_request(self, who, shares: int, gap: int = 1) -> int:
        t = self.at(gap)
        tx = self.pool.requestWithdraw(shares, sender=who)
        assert tx.timestamp == t
        return self.model.pool_request_withdraw(who.address, shares, t)

    def lp_redeem(self, who, shares: int, gap: int = 1) -> int:
        """Redeem to `who`'s wallet; returns the assets paid."""
        t = self.at(gap)
        before = self.s.collateral.balanceOf(who)
        tx = self.pool.redeem(shares, who, who, sender=who)
        assert tx.timestamp == t
        paid = self.model.pool_redeem(who.address, shares, t)
        assert self.s.collateral.balanceOf(who) - before == paid
        return paid

    def set_index(self, price_wad: int, gap: int = 1) -> int:
        assert price_wad % FEED == 0
        t = self.at(gap)
        tx = self.s.markets["ETH"].oracle.updateAnswer(price_wad // FEED, sender=self.deployer)
        assert tx.timestamp == t
        self.model.set_answer(ETH, price_wad // FEED, t)
        return t

    def repeg(self, who, gap: int = 1):
        t = self.at(gap)
        tx = self.amm.repeg(ETH, sender=who)
        assert tx.timestamp == t
        price1, cost = self.model.repeg(ETH, t)
        (ev,) = tx.decode_logs(self.amm.Repeg)
        assert (ev.marketId, ev.priceAfter, ev.cost) == (ETH, price1, cost)
        return tx, ev

    def sync_depth(self, who, gap: int = 1):
        t = self.at(gap)
        tx = self.amm.syncDepth(ETH, sender=who)
        assert tx.timestamp == t
        x1, y1, cost, _ = self.model.sync_depth(ETH, t)
        (ev,) = tx.decode_logs(self.amm.DepthSynced)
        assert (ev.baseAfter, ev.quoteAfter) == (x1, y1)
        return tx, ev

    # -------------------------------------------------------------- views
    def amm_state(self, mid: int = ETH) -> tuple:
        """What a refused repeg must leave alone."""
        st = self.ch.marketState(mid)
        return (st.baseReserve, st.quoteReserve, st.longOpenInterest, st.shortOpenInterest,
                self.amm.lastRepeg(mid), self.amm.repegCost(mid), self.amm.pegPrice(mid))

    def check(self, owners=()) -> None:
        """Chain equals model, to the wei, at the head block's time."""
        now, m, ch, amm = self.now, self.model, self.ch, self.amm
        for mid in (ETH, BTC):
            assert tuple(ch.marketState(mid)) == m.market_state(mid, now), mid
            assert amm.pegPrice(mid) == m.peg_price(mid)
            assert amm.netExitValue(mid) == m.net_exit_value(mid)
            assert amm.repegCost(mid) == m.repeg_cost.get(mid, 0)
            assert amm.lastRepeg(mid) == m.last_repeg.get(mid, 0)
        assert self.pool.navWad() == m.pool_nav(now)
        assert self.vault.poolBalance() == m.pool_balance_wad
        assert self.vault.insuranceFund() == m.insurance_fund_wad
        for o in owners:
            assert self.vault.collateral(o, 0) == m.collateral(o.address, 0)
            assert tuple(self.ch.position(o, 0, ETH)) == m.position(o.address, 0, ETH, now)


@pytest.fixture(scope="module")
def deep(deployer):
    """The concentrated deployment, once for this module (each test runs on a snapshot of it)."""
    return deploy(deployer, concentrated_config())


@pytest.fixture
def mirror(deep, deployer, chain):
    return Mirror(deep, deployer, chain)


def expect_model_revert(fn, name: str, *args):
    with pytest.raises(ModelRevert) as info:
        fn()
    assert info.value.name == name, info.value
    if args:
        assert tuple(info.value.error_args) == args, info.value
    return info.value.error_args


def premium_rounding(x: int, x0: int) -> int:
    """Bound on |spot x^2 - peg x0^2| from the roundings alone (spot = floor(y 1e18 / x), peg rounded down
    twice): spot / peg = (x0 / x)^2 up to this."""
    return x * x + x0 * x0 + WAD * x0


def report(request, line: str) -> None:
    print_report(request, "peg-follow: " + line)


# ---------------------------------------------------------------------------- 1. trades do not move the peg


def test_trades_do_not_move_the_peg_and_cannot_make_the_pool_repeg(mirror, chain, alice, bob, carol):
    """A 3M USD buy, a 9M USD sell and a string of smaller trades leave the peg within a few wei of 3,000
    (k = x y only grows by the swaps' rounding, x + net is unchanged), while the mark moves by percents.
    With the index unchanged, a repeg is refused (RepegNotNeeded(0, 0.1 %)) right after the trades and an
    hour later, when the mark TWAP is far from the index TWAP: a trader cannot make the pool repeg by pushing
    the mark. The refused repegs change nothing. Chain equals model after every step."""
    m = mirror
    ch, amm = m.ch, m.amm
    peg0 = amm.pegPrice(ETH)
    assert peg0 == 3000 * WAD == ch.indexPrice(ETH) == ch.spotPrice(ETH)
    for who in (alice, bob, carol):
        m.fund(who, 2_000_000)
    drift = []
    m.trade(alice, 1000 * WAD)  # 3.03M USD: the mark +2.0 %
    drift.append(amm.pegPrice(ETH) - peg0)
    assert ch.spotPrice(ETH) * 100 > peg0 * 102
    m.trade(bob, -3000 * WAD)  # the net position -2,000: the mark -3.9 %
    drift.append(amm.pegPrice(ETH) - peg0)
    assert ch.spotPrice(ETH) * 100 < peg0 * 97
    for who, base in ((carol, 777 * WAD), (alice, -321 * WAD), (carol, -1234 * WAD), (bob, 250 * WAD),
                      (alice, 13 * WAD // 7)):
        m.trade(who, base)
        drift.append(amm.pegPrice(ETH) - peg0)
    m.check((alice, bob, carol))
    assert all(0 <= d <= 10 for d in drift), drift  # up only: the swaps round k up

    st = ch.marketState(ETH)
    net = st.longOpenInterest - st.shortOpenInterest
    assert (peg0 - ch.spotPrice(ETH)) * 100 > 4 * peg0  # a net short of 2,526: the mark 5 % below the index
    threshold = amm.ammParams(ETH).repegThreshold
    for gap in (1, 3600):
        before = m.amm_state()
        t = m.at(gap)
        divergence = expect_model_revert(lambda: m.model.repeg(ETH, t), "RepegNotNeeded")[0]
        assert divergence == abs(amm.pegPrice(ETH) - peg0) * WAD // peg0 == 0
        with expect_revert(amm.RepegNotNeeded, divergence=0, threshold=threshold):
            amm.repeg(ETH, sender=carol)
        assert m.amm_state() == before
        chain.mine()  # a block at t: the hour passes on chain too
    mark_twap, index_twap = ch.twaps(ETH)
    assert abs(mark_twap - index_twap) * 100 > index_twap  # the old TWAP rule would have repegged by now
    m.check((alice, bob, carol))
    st = ch.marketState(ETH)
    assert st.longOpenInterest - st.shortOpenInterest == net == -2528 * WAD + 13 * WAD // 7


# ---------------------------------------------------------------------------- 2. the peg follows the index


@pytest.mark.parametrize("side", [1, -1], ids=["net long, index +2%", "net short, index -2%"])
def test_repeg_moves_the_peg_to_the_index_and_keeps_the_skew_premium(mirror, alice, bob, side):
    """A net position of 1,000 ETH, the index 2 % away in its favour: one repeg moves the peg by
    min(gap, 5 % of the peg, the cost budget) = the whole gap (to within 2 wei of the index), changing the quote
    reserve alone; the spot keeps its premium over the peg, spot / peg = ((x + net) / x)^2; the cost is the
    change of netExitValue and the pool's NAV moves by exactly -cost; chain equals model to the wei. The next
    block's repeg is refused: the peg is at the index."""
    m = mirror
    ch, amm = m.ch, m.amm
    m.fund(alice, 1_000_000)
    m.trade(alice, side * 1000 * WAD)
    index = 3000 * WAD * (100 + 2 * side) // 100
    m.set_index(index)
    st = ch.marketState(ETH)
    x, y, net = st.baseReserve, st.quoteReserve, st.longOpenInterest - st.shortOpenInterest
    x0 = x + net
    peg0, spot0, exit0 = amm.pegPrice(ETH), st.spotPrice, amm.netExitValue(ETH)
    assert net == side * 1000 * WAD and abs(peg0 - 3000 * WAD) <= 10
    assert abs(spot0 * x * x - peg0 * x0 * x0) < premium_rounding(x, x0)

    t = m.at()
    nav = m.model.pool_nav(t)  # NAV at the repeg's block time, before it
    p = amm.ammParams(ETH)
    gap = abs(index - peg0)
    by_step = peg0 * p.maxRepegStep // WAD
    by_cost = (nav * p.maxRepegCost // WAD) * x // x0 * WAD // abs(net)
    move = min(gap, by_step, by_cost)
    assert move == gap < by_cost < by_step  # here the gap binds
    dy = (move * x0 // x) * x0 // WAD
    y1 = y + side * dy
    cost = exit_value(x, y1, net) - exit_value(x, y, net)
    tx = amm.repeg(ETH, sender=bob)
    assert tx.timestamp == t
    assert m.model.repeg(ETH, t) == (y1 * WAD // x, cost)
    (ev,) = tx.decode_logs(amm.Repeg)
    assert (ev.marketId, ev.priceBefore, ev.priceAfter, ev.indexPrice, ev.cost) == (ETH, spot0, y1 * WAD // x, index,
                                                                                     cost)
    st1 = ch.marketState(ETH)
    assert (st1.baseReserve, st1.quoteReserve) == (x, y1)
    assert cost == amm.netExitValue(ETH) - exit0
    assert cost > 0  # the index moved in the net side's favour: its exit value rose, the pool pays
    assert cost == amm.repegCost(ETH) and amm.lastRepeg(ETH) == t
    assert m.pool.navWad() == nav - cost
    peg1, spot1 = amm.pegPrice(ETH), st1.spotPrice
    assert abs(peg1 - (peg0 + side * move)) <= 2 and abs(index - peg1) <= 2
    # The skew premium stays: spot / peg = (x0 / x)^2 after as before (the mark stays about 2 % beyond the index).
    assert abs(spot1 * x * x - peg1 * x0 * x0) < premium_rounding(x, x0)
    assert abs(spot1 * peg0 - spot0 * peg1) * 10**12 < spot0 * peg0
    assert side * (spot1 - index) * 1000 > 19 * index  # (x0 / x)^2 - 1: +2.03 % long, -1.97 % short
    m.check((alice,))
    before = m.amm_state()
    t = m.at()
    divergence = expect_model_revert(lambda: m.model.repeg(ETH, t), "RepegNotNeeded")[0]
    with expect_revert(amm.RepegNotNeeded, divergence=divergence, threshold=p.repegThreshold):
        amm.repeg(ETH, sender=bob)
    assert divergence <= 1 and m.amm_state() == before


# ---------------------------------------------------------------------------- 3. once per block


def test_a_second_repeg_in_the_same_block_is_refused_and_changes_nothing(mirror, chain, project, deployer, alice,
                                                                          bob, carol):
    """The index 8 % up under a 100 ETH net long: a repeg moves the peg by the 5 % step, so another is due.
    Two repeg transactions in one block (automine off): the first moves the peg one step, the second fails
    with RepegTooSoon(t + 1, t) (its replay on that block names the error) and the block leaves exactly what one
    repeg leaves (reserves, lastRepeg, repegCost, as the model says). Two repegs in one transaction (BatchCaller)
    revert as a whole with the second's RepegTooSoon. The next block may repeg again."""
    m = mirror
    ch, amm = m.ch, m.amm
    m.fund(alice, 1_000_000)
    m.trade(alice, 100 * WAD)
    index = 3240 * WAD
    m.set_index(index)
    peg0 = amm.pegPrice(ETH)
    step = peg0 * amm.ammParams(ETH).maxRepegStep // WAD
    assert index - peg0 > step

    t = m.at()
    w3 = chain.provider.web3
    data = amm.repeg.encode_input(ETH)
    chain.provider.auto_mine = False
    try:
        # Raw sends: they return at once with the transaction queued (explicit gas: nothing is estimated).
        hashes = [w3.eth.send_transaction({"from": who.address, "to": amm.address, "data": data, "gas": 2_000_000})
                  for who in (bob, carol)]
    finally:
        chain.provider.auto_mine = True  # the embedded chain mines the queue now, in one block at t
    if chain.blocks.head.timestamp < t:
        chain.mine()  # Anvil mines the pool on the next block
    r1, r2 = (chain.provider.get_receipt(h.hex() if isinstance(h, bytes) else h) for h in hashes)
    assert r1.block_number == r2.block_number == chain.blocks.head.number and chain.blocks.head.timestamp == t
    assert (r1.status, r2.status) == (1, 0)
    price1, cost1 = m.model.repeg(ETH, t)
    expect_model_revert(lambda: m.model.repeg(ETH, t), "RepegTooSoon", t + 1, t)
    (ev,) = r1.decode_logs(amm.Repeg)
    assert (ev.priceAfter, ev.cost) == (price1, cost1) and cost1 > 0
    assert r2.decode_logs(amm.Repeg) == []
    with expect_revert(amm.RepegTooSoon, nextAllowed=t + 1, timestamp=t):  # the replay on block t
        amm.repeg.call(ETH, sender=carol)
    assert amm.lastRepeg(ETH) == t and amm.repegCost(ETH) == cost1
    assert abs(amm.pegPrice(ETH) - (peg0 + step)) <= 2  # one step, not two
    m.check((alice,))

    # One transaction, two repegs: all or nothing.
    batch = project.BatchCaller.deploy(sender=deployer)
    m.at()
    before = m.amm_state()
    t = m.at()
    with expect_revert(batch.CallFailed, index=1) as info:
        batch.batch([amm.address, amm.address], [data, data], sender=carol)
    exc = info.value
    reason = dict(exc.inputs)["reason"] if isinstance(exc, CustomError) else \
        abi_decode(["uint256", "bytes"], revert_data(exc)[4:])[1]
    assert Errors(amm).decode(bytes(reason)) == ("RepegTooSoon", (t + 1, t))
    assert m.amm_state() == before
    m.check((alice,))
    # The next block: allowed, another step.
    m.repeg(bob)
    assert amm.pegPrice(ETH) > before[-1]
    m.check((alice,))


# ---------------------------------------------------------------------------- 4, 5. attacks


def _wealth(m, who) -> tuple[int, int, int]:
    return m.vault.collateral(who, 0), m.pool.navWad(), m.vault.insuranceFund()


def _measure(m, who, start, trades, repeg_ev) -> dict:
    """The attacker's gain and the pool's and fund's changes, with the identities that tie them to the events:
    gain = realized - fees - funding; the fund gets floor(fee x share) of each fee; with nothing left open the
    pool's NAV is its cash, so NAV change + fund change = -gain to the wei."""
    c1, nav1, ins1 = _wealth(m, who)
    c0, nav0, ins0 = start
    gain, d_nav, d_ins = c1 - c0, nav1 - nav0, ins1 - ins0
    share = m.ch.insuranceFeeShare(ETH)
    fees = sum(ev.fee for ev in trades)
    to_insurance = sum(ev.fee * share // WAD for ev in trades)
    realized = sum(ev.realizedPnl for ev in trades)
    funding = sum(ev.fundingPaid for ev in trades)
    assert gain == realized - fees - funding
    assert d_ins == to_insurance
    assert d_nav + d_ins == -gain
    assert d_nav == -realized + (fees - to_insurance) + funding
    # The round trip on the curve is free but for the swaps' rounding: what the position realized is the
    # repeg's cost to the pool (the change of its exit value) less a few wei.
    rounding = realized - (repeg_ev.cost if repeg_ev is not None else 0)
    assert -10 <= rounding <= 0, rounding
    st = m.ch.marketState(ETH)
    assert st.longOpenInterest == st.shortOpenInterest == 0
    return {"gain": gain, "d_nav": d_nav, "d_ins": d_ins, "fees": fees, "to_insurance": to_insurance,
            "funding": funding, "realized": realized, "cost": repeg_ev.cost if repeg_ev is not None else 0}


@pytest.mark.parametrize("j_bps", [15, 50], ids=["A: +0.15 %", "B: +0.5 %"])
def test_front_running_an_index_update(mirror, request, alice, bob, j_bps):
    """The attacker sees a pending index update of +j: it buys 1M USD of ETH before it, the feed updates,
    a keeper repegs (the peg moves the whole way to the new index: within the step and the cost budget), the
    attacker closes in the next block.
    A (j = 0.15 %, below 2 x takerFee): the attacker loses (-503.18 USD), and the pool (+101.54) and the
    insurance fund (+401.64) together gain exactly that; the pool's own share of the fees (1,606.6) exceeds the
    repeg's cost (1,505.0), so its NAV rises too.
    B (j = 0.5 %): the attacker gains +3,005.02 USD <= size x index x (j - 2 x fee) = 3,015.00 (the documented
    bound); the pool's NAV falls by the repeg's cost less its fee share and the funding it received
    (-3,407.36), which is the attacker's gain plus the insurance fund's fee share (+402.34)."""
    m = mirror
    m.fund(alice, 500_000)
    start = _wealth(m, alice)
    size = 1_000_000 * WAD // 3000
    index = 3000 * WAD * (10_000 + j_bps) // 10_000
    _, opened = m.trade(alice, size)
    m.set_index(index)
    _, ev = m.repeg(bob)
    assert abs(m.amm.pegPrice(ETH) - index) <= 2  # the peg went the whole way
    _, closed = m.close(alice)
    m.check((alice,))
    r = _measure(m, alice, start, [opened, closed], ev)
    fee = m.ch.marketParams(ETH).takerFee
    j = j_bps * 10**14
    if j < 2 * fee:
        assert r["gain"] < 0  # the attacker gains nothing
        assert r["d_nav"] > 0 and r["d_ins"] > 0  # neither the pool nor the fund loses
        assert r["fees"] - r["to_insurance"] > r["cost"]
    else:
        bound = (size * index // WAD) * (j - 2 * fee) // WAD
        assert 0 < r["gain"] <= bound
        # The pool's loss: the repeg's cost less its share of the fees and the funding it received.
        rounding = r["realized"] - r["cost"]  # the round trip's swap rounding, -10..0 wei
        assert -r["d_nav"] == r["gain"] + r["d_ins"] == r["cost"] + rounding - (r["fees"] - r["to_insurance"]) \
            - r["funding"]
    report(request, f"front-run +{j_bps / 100:.2f} % (1M USD long): attacker {usd(r['gain'])} USD, pool NAV "
                    f"{usd(r['d_nav'])}, insurance {usd(r['d_ins'])}, repeg cost {usd(r['cost'])}, fees "
                    f"{usd(r['fees'])}, funding paid {usd(r['funding'])}"
                    + (f"; bound size x index x (j - 2 fee) = "
                       f"{usd((size * index // WAD) * (j - 2 * fee) // WAD)}" if j >= 2 * fee else ""))


def _ledger(m, owners) -> tuple:
    """What a refused action must leave unchanged: the market, the pool, the fund, the accounts."""
    return (tuple(m.ch.marketState(ETH)), m.amm.pegPrice(ETH), m.pool.navWad(), m.vault.poolBalance(),
            m.vault.insuranceFund(), *(m.vault.collateral(o, 0) for o in owners),
            *(tuple(m.ch.position(o, 0, ETH)) for o in owners))


def _refused_increase(m, who, base: int, peg: int, index: int) -> None:
    """An increase at a stale peg: PegStale(market, peg, index) on the chain and in the model; nothing moves."""
    t = m.at()
    before = _ledger(m, (who,))
    limit = MAX_UINT if base > 0 else 0
    with expect_revert(m.ch.PegStale, marketId=ETH, peg=peg, indexPrice=index):
        m.ch.openPosition(0, ETH, base, limit, t + 60, sender=who)
    expect_model_revert(lambda: m.model.open_position(who.address, 0, ETH, base, limit, t, t + 60), "PegStale",
                        ETH, peg, index)
    assert _ledger(m, (who,)) == before


@pytest.mark.parametrize("j_bps,usd_size", [(50, 1_000_000), (50, 10_000_000), (400, 3_000_000)],
                         ids=["1M at +0.5 %", "10M at +0.5 %", "3M at +4 %"])
def test_sandwiching_a_repeg_is_refused_at_the_stale_peg(mirror, request, alice, bob, j_bps, usd_size):
    """The index update is public and a keeper's repeg pending: the attacker buys just before it to sell just
    after. Before the stale-peg rule (ClearingHouseTradeRules._checkPeg, 11 bps on this setting) this paid (USD): 1M at
    +0.5 % +3,005.02, 10M at +0.5 % +30,982.76, 3M at +4 % +93,863.61, each taken from the pool. Now the buy
    reverts PegStale(market, peg, index) while the peg is more than 11 bps below the index, and changes nothing;
    the honest path follows: the repeg brings the peg to the index, then the same round trip
    only pays the two fees (the attacker loses, the pool and the fund gain)."""
    m = mirror
    m.fund(alice, 2_000_000)
    index = 3000 * WAD * (10_000 + j_bps) // 10_000
    m.set_index(index)
    peg0 = m.amm.pegPrice(ETH)
    size = usd_size * WAD // 3000
    _refused_increase(m, alice, size, peg0, index)
    m.check((alice,))
    # The honest path: the repeg, then the round trip at the fresh peg.
    start = _wealth(m, alice)
    m.repeg(bob)
    assert abs(m.amm.pegPrice(ETH) - index) <= 2
    _, opened = m.trade(alice, size)
    _, closed = m.close(alice)
    m.check((alice,))
    r = _measure(m, alice, start, [opened, closed], None)
    assert r["gain"] < 0 and r["d_nav"] > 0 and r["d_ins"] > 0
    report(request, f"sandwich of a repeg, {usd_size / 1e6:g}M USD long at +{j_bps / 100:.2f} %: refused (PegStale, "
                    f"peg {usd(peg0)}, index {usd(index)}); the round trip after the repeg: attacker "
                    f"{usd(r['gain'])} USD, pool NAV {usd(r['d_nav'])}, insurance {usd(r['d_ins'])}")


@pytest.mark.parametrize("side", [1, -1], ids=["buy, index above the peg", "sell, index below the peg"])
def test_the_stale_peg_rule_is_exact_at_the_tolerance(mirror, alice, bob, side):
    """A buy is held while the peg is more than floor(index x 11 / 1e4) below the index, a sell while it is more
    above. At the last index the 8-decimal feed can post inside the tolerance the trade goes through; one feed unit
    further it is refused, a reduce and a close in that direction too (they would take the same stale price); the
    other direction trades (it pays the stale price's disadvantage); after a repeg (anyone's) the close trades.
    Chain and model alike."""
    m = mirror
    m.fund(alice, 2_000_000)
    m.fund(bob, 2_000_000)
    base = side * 100 * WAD
    tol = m.ch.pegTolerance(ETH)
    assert tol == 11

    def inside(peg: int, k: int) -> bool:
        index = k * FEED
        band = index * tol // 10**4
        return not (index > peg + band if side > 0 else peg > index + band)

    def edge(peg: int) -> int:
        """The index furthest from the peg (above it for a buy, below for a sell), in feed units, that passes."""
        lo, hi = peg // FEED, (2 * peg if side > 0 else peg // 2) // FEED  # lo passes, hi does not
        while abs(hi - lo) > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if inside(peg, mid) else (lo, mid)
        return lo * FEED

    m.trade(bob, -base)  # bob holds the other side, to be closed in the held direction below
    m.set_index(edge(m.amm.pegPrice(ETH)))
    m.trade(alice, base)  # at the boundary: accepted
    peg = m.amm.pegPrice(ETH)  # a trade moves it by a few wei of rounding at most
    stale = edge(peg) + side * FEED
    m.set_index(stale)
    _refused_increase(m, alice, base, peg, stale)  # an increase
    _refused_increase(m, bob, base, peg, stale)  # bob's reduce (his position is -base): the same trade direction
    m.trade(alice, -base // 2)  # the other direction trades: alice's reduce
    assert m.ch.position(bob, 0, ETH).size == -base
    t = m.at()
    with expect_revert(m.ch.PegStale, marketId=ETH, peg=peg, indexPrice=stale):
        m.ch.closePosition(0, ETH, MAX_UINT if side > 0 else 0, t + 60, sender=bob)  # bob's close: held
    m.repeg(alice)  # anyone's repeg
    m.close(bob)  # and bob leaves
    m.close(alice)
    m.check((alice, bob))


@pytest.mark.parametrize("j_bps", [50, 400], ids=["+0.5 %", "+4 %"])
def test_closing_one_leg_of_a_hedge_at_a_stale_peg_is_refused(mirror, request, alice, bob, j_bps):
    """The hedge-leg attack (found in review): with the peg fresh, the attacker opens a 10M short on one account and
    a 10M long on another (two fees; funding cancels). The index update is public: it buys back the short at the
    stale peg (a reduce), repegs, and sells the long after it. Without the rule applying to reduces the model
    measured +11,628 USD at +0.5 % and +373,335 at +4 % (repeated repegs), from the pool. The buy back is refused
    (PegStale), chain and model; after the repeg both legs close and the attacker has paid four fees."""
    m = mirror
    m.fund(alice, 3_000_000)
    m.fund(bob, 3_000_000)
    size = 10_000_000 * WAD // 3000
    start = (_wealth(m, alice), m.vault.collateral(bob, 0))
    _, open_a = m.trade(alice, -size)
    _, open_b = m.trade(bob, size)
    index = 3000 * WAD * (10_000 + j_bps) // 10_000
    m.set_index(index)
    peg = m.amm.pegPrice(ETH)
    t = m.at()
    before = _ledger(m, (alice, bob))
    with expect_revert(m.ch.PegStale, marketId=ETH, peg=peg, indexPrice=index):
        m.ch.closePosition(0, ETH, MAX_UINT, t + 60, sender=alice)
    expect_model_revert(lambda: m.model.close_position(alice.address, 0, ETH, MAX_UINT, t, t + 60), "PegStale",
                        ETH, peg, index)
    assert _ledger(m, (alice, bob)) == before
    # The honest end: repegs until the peg is within the tolerance, then both legs close.
    for _ in range(3):
        if abs(m.amm.pegPrice(ETH) - index) * 10**4 <= index * 11:
            break
        m.repeg(alice)
    _, close_a = m.close(alice)
    _, close_b = m.close(bob)
    m.check((alice, bob))
    gain = (m.vault.collateral(alice, 0) - start[0][0]) + (m.vault.collateral(bob, 0) - start[1])
    fees = sum(ev.fee for ev in (open_a, open_b, close_a, close_b))
    assert gain < 0 and -gain >= fees * 9 // 10
    assert m.pool.navWad() + m.vault.insuranceFund() >= start[0][1] + start[0][2]
    report(request, f"hedge legs around a repeg, 10M short + 10M long, index +{j_bps / 100:.2f} %: buy back at the "
                    f"stale peg refused; after the repeg the attacker {usd(gain)} USD (fees {usd(fees)})")


def test_the_stale_peg_rule_is_off_at_zero_and_bounded(mirror, deployer, alice):
    """setPegTolerance: owner only, 0..500 bps (ParameterOutOfBounds("pegToleranceBps", value), nothing changes),
    an event; at 0 the rule is off and an increase trades at any peg inside the band."""
    m = mirror
    ch = m.ch
    with expect_revert(ch.OwnableUnauthorizedAccount, account=alice.address):
        ch.setPegTolerance(ETH, 0, sender=alice)
    with expect_revert(ch.ParameterOutOfBounds, name=b32("pegToleranceBps"), value=501):
        ch.setPegTolerance(ETH, 501, sender=deployer)
    expect_model_revert(lambda: m.model.set_peg_tolerance(ETH, 501), "ParameterOutOfBounds", "pegToleranceBps", 501)
    with expect_revert(ch.UnknownMarket, marketId=9):
        ch.setPegTolerance(9, 0, sender=deployer)
    assert ch.pegTolerance(ETH) == 11
    tx = ch.setPegTolerance(ETH, 0, sender=deployer)
    m.model.set_peg_tolerance(ETH, 0)
    (ev,) = tx.decode_logs(ch.PegToleranceSet)
    assert (ev.marketId, ev.bps) == (ETH, 0) and ch.pegTolerance(ETH) == 0
    m.fund(alice, 2_000_000)
    m.set_index(3030 * WAD)  # 1 %: stale for the rule, inside the band
    m.trade(alice, 100 * WAD)
    m.check((alice,))


# ---------------------------------------------------------------------------- 6. setConcentration


def test_set_concentration_bounds_and_the_band_switch(mirror, deployer, alice, bob, chain):
    """Out-of-bounds ranges (below 1 %, above 50 %), amplifications below 1 and above maxAmplification(range)
    (exactly the maximum passes, one wei more fails), an unknown market and a non-owner: each reverts with its
    named error and leaves `concentration` (both markets) unchanged; the model refuses the same. maxAmplification
    is vperp.config.max_amplification (and 1 / (1 - (1 + r)^-1/2) to 1e-12). A band (maxSpread) one wei wider
    than the range turns the amplification off (effective 1e18): the next syncDepth then targets depthRatio x
    NAV unamplified and shrinks by the step, where with the band equal to the range it kept the depth."""
    m = mirror
    ch, amm = m.ch, m.amm
    rng, amp = 10**17, 10 * WAD
    assert tuple(amm.concentration(ETH)) == (rng, amp, amp)
    assert tuple(amm.concentration(BTC)) == (rng, amp, amp)
    for r in (10**16, 5 * 10**16, 10**17, 123_456_789_012_345_678, 25 * 10**16, 5 * 10**17):
        got = amm.maxAmplification(r)
        assert got == max_amplification(r)
        with localcontext() as ctx:
            ctx.prec = 60
            exact = Decimal(1) / (1 - 1 / (1 + Decimal(r) / WAD).sqrt())
            assert abs(Decimal(got) / WAD - exact) < Decimal("1e-12")
    top = amm.maxAmplification(rng)
    assert 21_488 * 10**15 < top < 21_489 * 10**15
    untouched = (tuple(amm.concentration(ETH)), tuple(amm.concentration(BTC)))
    bad = [
        ((ETH, 10**16 - 1, WAD), amm.ParameterOutOfBounds, {"name": b32("range"), "value": 10**16 - 1}),
        ((ETH, 5 * 10**17 + 1, WAD), amm.ParameterOutOfBounds, {"name": b32("range"), "value": 5 * 10**17 + 1}),
        ((ETH, 0, WAD), amm.ParameterOutOfBounds, {"name": b32("range"), "value": 0}),
        ((ETH, rng, WAD - 1), amm.ParameterOutOfBounds, {"name": b32("amplification"), "value": WAD - 1}),
        ((ETH, rng, 0), amm.ParameterOutOfBounds, {"name": b32("amplification"), "value": 0}),
        ((ETH, rng, top + 1), amm.ParameterOutOfBounds, {"name": b32("amplification"), "value": top + 1}),
        ((ETH, 5 * 10**17, max_amplification(5 * 10**17) + 1), amm.ParameterOutOfBounds,
         {"name": b32("amplification"), "value": max_amplification(5 * 10**17) + 1}),
        ((3, rng, 2 * WAD), amm.UnknownMarket, {"marketId": 3}),
        ((0, rng, 2 * WAD), amm.UnknownMarket, {"marketId": 0}),
    ]
    for args, error, inputs in bad:
        with expect_revert(error, **inputs):
            amm.setConcentration(*args, sender=deployer)
        expect_model_revert(lambda: m.model.set_concentration(*args), error.abi.name)
        assert (tuple(amm.concentration(ETH)), tuple(amm.concentration(BTC))) == untouched, args
    with expect_revert(amm.OwnableUnauthorizedAccount, account=alice.address):
        amm.setConcentration(ETH, rng, 2 * WAD, sender=alice)
    assert (tuple(amm.concentration(ETH)), tuple(amm.concentration(BTC))) == untouched
    for args in ((ETH, 10**16, WAD), (ETH, 5 * 10**17, max_amplification(5 * 10**17)), (ETH, rng, top)):
        tx = amm.setConcentration(*args, sender=deployer)
        m.model.set_concentration(*args)
        (ev,) = tx.decode_logs(amm.ConcentrationSet)
        assert (ev.marketId, ev.range, ev.amplification) == args
        # Effective only while the band (10 %) is within the range.
        assert tuple(amm.concentration(ETH)) == (args[1], args[2], args[2] if args[1] >= 10**17 else WAD)
        assert amm.concentration(ETH)[2] == m.model.effective_amplification(ETH)
    assert tuple(amm.concentration(BTC)) == untouched[1]

    # The band switch, at the shipped concentration (10 %, 10x).
    amm.setConcentration(ETH, rng, amp, sender=deployer)
    m.model.set_concentration(ETH, rng, amp)
    mp = ch.marketParams(ETH)
    assert mp.maxSpread == rng  # equal: amplified
    st0 = ch.marketState(ETH)
    _, ev = m.sync_depth(bob)
    nav = m.pool.navWad()
    assert ev.quoteAfter == ev.quoteBefore == st0.quoteReserve == 30 * nav  # the 10x target is today's depth
    share = ch.insuranceFeeShare(ETH)
    params = list(mp)
    params[6] = rng + 1  # maxSpread, one wei past the range
    t = m.at()
    ch.setMarketParams(ETH, tuple(params), share, sender=deployer)
    m.model.set_market_params(ETH, t, max_spread=rng + 1)
    assert tuple(amm.concentration(ETH)) == (rng, amp, WAD) and m.model.effective_amplification(ETH) == WAD
    p = amm.ammParams(ETH)
    st1 = ch.marketState(ETH)
    t = m.at(p.depthInterval)
    target = m.model.pool_nav(t) * p.depthRatio // WAD  # unamplified: 3 x NAV
    y1 = max(target, st1.quoteReserve - st1.quoteReserve * p.maxDepthChange // WAD)
    tx = amm.syncDepth(ETH, sender=bob)
    assert tx.timestamp == t
    x1m, y1m, _, _ = m.model.sync_depth(ETH, t)
    (ev,) = tx.decode_logs(amm.DepthSynced)
    assert (ev.baseAfter, ev.quoteAfter) == (x1m, y1m)
    assert y1m == y1 == st1.quoteReserve * 8 // 10  # the 20 % step toward 3 x NAV
    m.check()


# ---------------------------------------------------------------------------- 7. margin is at the index


def test_a_repeg_never_changes_a_margin_check(mirror, chain, project, deployer, alice, bob, carol):
    """Two accounts, a 1,000 ETH long and a 300 ETH short, the index +2 %: a repeg moves the vAMM (the net
    position's exit value and the pool's NAV change by its cost) but no account's margin views: read in one
    transaction before and after the repeg (BatchCaller, eth_call) they are identical, and after the real repeg
    they are what the model says they would be at that block time without it."""
    m = mirror
    vault, amm = m.vault, m.amm
    m.fund(alice, 400_000)
    m.fund(bob, 200_000)
    m.trade(alice, 1000 * WAD)
    m.trade(bob, -300 * WAD)
    m.set_index(3060 * WAD)
    views = []
    for who in (alice, bob):
        for fn in (vault.accountValue, vault.freeCollateral, vault.marginRequirements, vault.isLiquidatable,
                   vault.health, vault.liquidationState):
            views.append((fn, who))
    data = [fn.encode_input(who, 0) for fn, who in views]
    batch = project.BatchCaller.deploy(sender=deployer)
    # views, netExitValue, pegPrice, repeg, views, netExitValue, pegPrice: all in one block
    amm_views = [amm.netExitValue.encode_input(ETH), amm.pegPrice.encode_input(ETH)]
    targets = [vault.address] * len(data)
    calls_t = targets + [amm.address] * 3 + targets + [amm.address] * 2
    calls_d = data + amm_views + [amm.repeg.encode_input(ETH)] + data + amm_views
    res = batch.batch.call(calls_t, calls_d, sender=carol)
    n = len(data)
    before, after = [bytes(b) for b in res[:n]], [bytes(b) for b in res[n + 3:2 * n + 3]]
    assert before == after
    exit_b, peg_b = (abi_decode(["int256"], bytes(res[n]))[0], abi_decode(["uint256"], bytes(res[n + 1]))[0])
    exit_a, peg_a = (abi_decode(["int256"], bytes(res[2 * n + 3]))[0],
                     abi_decode(["uint256"], bytes(res[2 * n + 4]))[0])
    _, cost = abi_decode(["uint256", "int256"], bytes(res[n + 2]))
    assert exit_a - exit_b == cost > 0 and peg_a > peg_b  # the repeg did move the vAMM

    # For real: the views after the repeg are the no-repeg model's at that time.
    m.at()
    no_repeg = copy.deepcopy(m.model)
    _, ev = m.repeg(carol)
    t = m.now
    for who in (alice, bob):
        a = who.address
        want = no_repeg._health(a, 0, t)
        assert m.model._health(a, 0, t) == want
        assert (vault.accountValue(who, 0), vault.freeCollateral(who, 0)) == want[:2]
        assert tuple(vault.marginRequirements(who, 0)) == want[2:]
        assert vault.isLiquidatable(who, 0) == no_repeg.is_liquidatable(a, 0, t)
        assert tuple(vault.liquidationState(who, 0)) == no_repeg.liquidation_state(a, 0, t)
    assert m.pool.navWad() == no_repeg.pool_nav(t) - ev.cost != no_repeg.pool_nav(t)
    m.check((alice, bob))


# ---------------------------------------------------------------------------- found while writing these


class AttackerGains(Exception):
    """The safe property failed: the attacker ended with more than it started with."""


def test_a_buy_cannot_make_a_depth_shrink_due_and_the_sync_and_repeg_after_it_pay_the_long_nothing(
        mirror, request, alice, bob):
    """Found while writing these (a strict xfail until 2026-12-06). No index move at all. The attacker buys 4,500
    ETH (13.5M USD, inside the band), then calls syncDepth (permissionless, due: the deployment's first) and
    repeg, and closes. syncDepth used to compare the depth target (30 x NAV) with the live quote reserve, which
    the buy itself had lifted (y = k / x): it shrank both reserves by s = 0.956 keeping the spot, which lowered the
    peg x y / (x + n)^2 to 2,987.64 (-0.41 %), and the repeg lifted it back at the pool's cost: attacker +30,053.23
    USD after both fees, pool NAV -35,713.52, insurance +5,660.29. Depth is now the quote reserve at zero net
    position, x y / (x + net), which no trade moves: the sync sees the pool's own depth (its NAV grew by the fees,
    so it deepens a little), the peg stays within the tolerance, and the round trip pays its fees."""
    m = mirror
    m.fund(alice, 5_000_000)
    start = _wealth(m, alice)
    peg0 = m.amm.pegPrice(ETH)
    zero_skew_before = m.ch.marketState(ETH).quoteReserve  # no position yet: the live reserve is the zero-skew one
    m.trade(alice, 4500 * WAD)
    st = m.ch.marketState(ETH)
    net = st.longOpenInterest - st.shortOpenInterest
    assert st.baseReserve * st.quoteReserve // (st.baseReserve + net) in range(zero_skew_before - 2, zero_skew_before + 3)
    _, synced = m.sync_depth(bob)
    assert synced.quoteAfter >= synced.quoteBefore  # not a shrink: the buy did not make one due
    peg_synced = m.amm.pegPrice(ETH)
    assert m.ch.indexPrice(ETH) == peg0 == 3000 * WAD
    # The sync moved the peg by a hair (the fees' deepening), inside the threshold: nothing for a repeg to hand back.
    t = m.at()
    divergence = expect_model_revert(lambda: m.model.repeg(ETH, t), "RepegNotNeeded")[0]
    with expect_revert(m.amm.RepegNotNeeded, divergence=divergence):
        m.amm.repeg(ETH, sender=bob)
    m.close(alice)
    m.check((alice,))
    c1, nav1, ins1 = _wealth(m, alice)
    gain, d_nav, d_ins = c1 - start[0], nav1 - start[1], ins1 - start[2]
    assert d_nav + d_ins == -gain
    report(request, f"depth sync + repeg around a 13.5M USD long, index unchanged (before: attacker +30,053.23, "
                    f"pool NAV -35,713.52): peg {usd(peg0)} -> {usd(peg_synced)} after syncDepth -> "
                    f"{usd(m.amm.pegPrice(ETH))} (repeg not needed, divergence {divergence / 1e16:.4f} %); "
                    f"attacker {usd(gain)} USD, pool NAV {usd(d_nav)}, insurance {usd(d_ins)}")
    if gain > 0:
        raise AttackerGains(f"attacker +{usd(gain)} USD, pool NAV {usd(d_nav)}")
    assert d_nav + d_ins >= 0


def test_an_lp_redemption_under_its_own_large_long_then_a_sync_and_repeg(mirror, request, alice, bob):
    """The NAV itself moves (a strict xfail until 2026-12-07). The attacker is an LP (460,000 USD of shares, 4.4 % of
    the pool after its deposit) and a trader. It requests its withdrawal and waits the cooldown while the keeper
    feeds the index (unchanged) and syncs depth hourly (the pool's depth catches up with its deposit), then buys
    4,500 ETH (13.5M USD), redeems everything, calls syncDepth (due: the NAV fell by its redemption) and repeg if
    the keeper's rule says it acts, and closes. A shrink used to keep the spot: 4.3 % lowered the peg 0.39 %, the
    repeg lifted it back at the pool's cost (54,413 USD) and the attacker made +26,641.45 (trader +26,145.15 after
    its fees, LP +496.30), paid by the remaining LPs. A shrink under a net position now keeps the peg (the curve
    scaled about its zero-skew point) and charges the long what its steeper curve adds to its exit, within half a
    taker fee per unit per sync: no repeg is due and the round trip pays its fees and the charge; the remaining
    LPs' share price does not fall and the insurance fund loses nothing."""
    m = mirror
    m.fund(alice, 5_000_000)
    start_wallet = m.s.collateral.balanceOf(alice)
    shares = m.lp_deposit(alice, 460_000)
    put_in = m.s.units(460_000)
    # The deposit's own deepening happens first (the pool grew), so the attack starts from a synced market.
    m.sync_depth(bob, gap=3600)
    unlock = m.lp_request(alice, shares)
    while m.now < unlock:  # the keeper through the cooldown: the feed fresh at the same price, depth synced hourly
        m.set_index(3000 * WAD, gap=min(3600, unlock - m.now))
        if m.now < unlock:
            m.sync_depth(bob)
    c0 = m.vault.collateral(alice, 0)
    ins0 = m.vault.insuranceFund()
    peg0 = m.amm.pegPrice(ETH)
    m.trade(alice, 4500 * WAD)
    paid = m.lp_redeem(alice, shares)
    nav0, supply0 = m.pool.navWad(), m.pool.totalSupply()  # the other LPs' share price once the attacker is out
    tx, synced = m.sync_depth(bob, gap=3600)
    (charged,) = tx.decode_logs(m.amm.DepthCharged)
    m.set_index(3000 * WAD)
    shrink = synced.quoteAfter < synced.quoteBefore
    peg_synced = m.amm.pegPrice(ETH)
    assert shrink and 0 <= peg0 - peg_synced <= 1  # it shrank, and the peg is kept (to a wei)
    assert charged.exitChange > 0 and charged.chargePerBase > 0  # the long pays its exit gain
    cost = None
    ap = m.amm.ammParams(ETH)
    if repeg_due(peg_synced, m.ch.indexPrice(ETH), m.amm.lastRepeg(ETH), m.now + 1, ap.repegThreshold,
                 ap.repegInterval):  # the keeper's own test of whether a repeg acts
        _, ev = m.repeg(bob)
        cost = ev.cost
    m.close(alice)
    m.check((alice,))
    c1 = m.vault.collateral(alice, 0)
    assert m.s.collateral.balanceOf(alice) - start_wallet == paid  # the deposit's tokens were minted for it
    gain = (c1 - c0) + (paid - put_in) * m.s.token_scale  # [wad]: Vault collateral is in wad, tokens in units
    nav1, supply1 = m.pool.navWad(), m.pool.totalSupply()
    report(request, f"LP redemption under its own 13.5M USD long (LP 460,000 USD = 4.4 % of the pool), index unchanged "
                    f"(before: sync 4.3 % shrink, peg -0.39 %, repeg cost 54,413, attacker +26,641.45): sync "
                    f"{synced.quoteBefore / 1e18:,.0f} -> {synced.quoteAfter / 1e18:,.0f}, peg {usd(peg0)} -> "
                    f"{usd(peg_synced)}, charge {usd(charged.exitChange)} USD to the long"
                    f"{', repeg cost ' + usd(cost) if cost is not None else ', no repeg'}; trader "
                    f"{usd(c1 - c0)} USD, LP {usd(gain - (c1 - c0))} USD, together {usd(gain)} USD; the other LPs' "
                    f"NAV per share {nav1 * supply0 / (nav0 * supply1) - 1:+.4%}")
    if gain > 0:
        raise AttackerGains(f"attacker +{usd(gain)} USD")
    assert cost is None
    assert nav1 * supply0 >= nav0 * supply1  # the remaining LPs' share price did not fall
    assert m.vault.insuranceFund() >= ins0


def test_sdk_peg_concentration_and_repeg(mirror, chain, alice, bob, tmp_path):
    """The SDK's views and the repeg call: `peg_price`, `concentration` and `peg_tolerance` read what the contracts
    say, `peg_is_stale` turns true when the index moves 1 % (past the 11 bps tolerance), and `repeg` moves the peg
    to that index (no net position: no cost), matching the model, after which the peg is fresh again."""
    from decimal import Decimal

    from vperp.client import Client, build_record, write_record

    m = mirror
    path = tmp_path / "local.json"
    write_record(path, build_record(m.s, m.s.config, chain, 1))
    c = Client.from_deployment(path, account=bob)
    assert c.peg_price("ETH") == Decimal(3000)
    assert c.concentration("ETH") == (Decimal("0.1"), Decimal(10), Decimal(10))
    assert c.concentration("BTC") == (Decimal("0.1"), Decimal(10), Decimal(10))
    assert c.peg_tolerance("ETH") == 11 and not c.peg_is_stale("ETH")
    m.set_index(3030 * WAD)
    assert c.peg_is_stale("ETH")  # 1 % > 11 bps: an increase would revert PegStale
    t = m.at()
    tx = c.repeg("ETH")
    assert tx.timestamp == t
    price1, cost = m.model.repeg(ETH, t)
    (ev,) = tx.decode_logs(m.amm.Repeg)
    assert (ev.priceAfter, ev.cost) == (price1, cost) and cost == 0
    assert c.peg_price("ETH") == Decimal(3030) and not c.peg_is_stale("ETH")
    m.check()


def test_keeper_repegs_when_the_peg_is_past_the_threshold(mirror, chain, bob, caplog):
    """`Keeper._repeg_due`: nothing while the peg is within the threshold; a repeg (one `repeg` action, the model's
    move) once the index is 1 % away; nothing again in the next pass if the peg reached the index; and a market the
    contract refuses (here: the same block is impossible to reproduce, so a stale oracle) is logged and skipped,
    never raised."""
    import logging

    from vperp.keeper import Keeper

    m = mirror
    k = Keeper(m.s, bob)
    m.at()
    assert k._repeg_due(chain) == []
    m.set_index(3030 * WAD)
    t = m.at()
    actions = k._repeg_due(chain)
    assert [a.kind for a in actions] == ["repeg"] and actions[0].detail == {"market": "ETH"} and actions[0].gas > 0
    m.model.repeg(ETH, t)
    m.check()
    assert m.amm.pegPrice(ETH) == 3030 * WAD
    m.at()
    assert k._repeg_due(chain) == []
    # BTC's feed goes stale (heartbeat passed): its repeg reverts in the dry run; the keeper logs and moves on.
    btc = m.s.markets["BTC"]
    btc.oracle.updateAnswer(btc.oracle.latestRoundData()[1] * 102 // 100, sender=m.deployer)
    chain.pending_timestamp = chain.blocks.head.timestamp + btc.config.heartbeat + 10
    with caplog.at_level(logging.INFO, logger="vperp.keeper"):
        assert [a.detail for a in k._repeg_due(chain)] in ([], [{"market": "ETH"}])
    assert any("repeg of BTC skipped" in r.getMessage() for r in caplog.records)


def test_max_amplification_refuses_a_range_outside_its_bounds(mirror):
    """`maxAmplification` is a pure view; a range outside [1 %, 50 %] gets the setter's named error instead of a
    division by zero (range 0) or a figure no setter would accept; the Python mirror refuses the same."""
    amm = mirror.amm
    for r in (0, 10**16 - 1, 5 * 10**17 + 1):
        with expect_revert(amm.ParameterOutOfBounds, value=r):
            amm.maxAmplification(r)
        with pytest.raises(ValueError):
            max_amplification(r)
    assert amm.maxAmplification(10**16) == max_amplification(10**16)
    assert amm.maxAmplification(5 * 10**17) == max_amplification(5 * 10**17)
