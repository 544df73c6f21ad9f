"""Regression suite: a reduce or close into a vAMM a partner pushed to the edge of the band, around liquidations.

The attacker has a flash loan and many accounts, trades against the vAMM, and does not control the oracle. Found in
the attacker review of 2026-12-07: a reduce or close was held by neither the price band nor any margin floor, so an
account could close (or close its free part while in auction) into a vAMM its partner had pushed to the band edge,
end below zero, and the pair kept the loss as profit, paid by the insurance fund and the pool; also through the
OrderRouter on the shipped markets.

The fix (ClearingHouse._trade, ClearingHouseMargin._checkReduce): a reduce or close without a builder fee that fills
worse than the index (quote + base x index < 0), or a close that leaves the account with no open market and
negative collateral, must leave the account at or above maintenance (free and auctioned parts; with no position:
collateral >= 0), else it reverts `ReduceBelowMaintenance(owner, subaccount, excess)`. A reduce filled at or better
than the index is not checked. Through the OrderRouter the refusal uses the order up: `OrderFailed(orderId, keeper,
reason, keeperFee)` with that error as its reason.

Each attack test runs the attack end to end (every block time set explicitly, funding off) and asserts:
    refused       the harmful step reverts ReduceBelowMaintenance with the account's owner and subaccount, and an
                  `excess` equal to the account's value after the would-be trade minus its maintenance (free and
                  auctioned parts), computed here from the pre-trade state to the wei (`_excess_after`)
    no effect     the refused step changed nothing observable (`_ledger`: reserves, open interest, pool cash,
                  insurance fund, the Vault's tokens, NAV, pending bad debt, the accounts' collateral, open markets,
                  positions, auctioned parts and shortfall estimates; through the router only the order is gone and
                  the keeper fee paid)
    pair          the attacker accounts' wealth (tokens + each account's worth floored at zero, so an abandoned
                  account's negative equity counts as zero + pool shares; tests/helpers/value_safety.wealth) gains
                  nothing against the start, nor (the tests in auction) against a control run from the kick that
                  ends with the same positions on the same vAMM (`_same_vamm`)
    backing       the pool's NAV (`navWad`: cash minus the traders' exit PnL minus the uncovered bad-debt
                  estimate) plus the insurance fund loses nothing, against the start and (where run) the control
The honest tests check that the fix does not refuse what it must let through.
"""
from __future__ import annotations

import pytest
from eth_abi import decode as abi_decode
from eth_utils import keccak

from helpers.reverts import revert_data
from helpers.trading import apply_trade, expect_revert, fee_of, funding_off, requirement, snapshot
from helpers.value_safety import (  # noqa: F401 - crew is a fixture
    DUST,
    ETH,
    MAX_UINT,
    at,
    attempt,
    band_room,
    cash_out,
    close,
    crew,
    deposit,
    fund,
    mint,
    nav_plus_insurance,
    refused,
    set_index,
    start,
    trade,
    usd,
    wealth,
)
from vperp import deploy
from vperp.config import default_config
from vperp.units import WAD

pytestmark = pytest.mark.usefixtures("no_funding")  # tests/conftest.py: funding off for the module


# ---------------------------------------------------------------------------- measures


def _ledger(s, owners) -> dict:
    """Everything a refused trade must leave as it was (helpers.trading.snapshot: pool cash, insurance fund, the
    Vault's tokens, every market's reserves and open interest, the owners' collateral, open markets and positions),
    plus the pool's NAV, the pending bad debt, the live auction notional, and each owner's auctioned parts and
    shortfall estimate."""
    ch, vault = s.clearing_house, s.vault
    out = snapshot(s, owners)
    out.update(nav=s.pool.navWad(), pending=vault.pendingBadDebt(), live=s.liquidation.liveNotional())
    for o in owners:
        out[("auctioned", o.address)] = tuple(ch.auctionedSize(o, 0, m.id) for m in s.markets.values())
        out[("shortfall", o.address)] = vault.shortfallOf(o, 0)
    return out


def _excess_after(s, who, base: int, mid: int = ETH) -> int:
    """`excess` of ReduceBelowMaintenance for `who` (subaccount 0, positions in `mid` only, funding off) trading
    `base` now: collateral + realized PnL - fee, plus floor(size' x index) - openNotional' less the maintenance of
    the free part and the backing of the auctioned part (max(mmr, maxDiscount)), each rounded up
    (ClearingHouseMargin._marginSummary); with no position left, the collateral alone."""
    ch, vault = s.clearing_house, s.vault
    assert vault.openMarkets(who, 0) == 1 << (mid - 1), "the helper reads one market"
    size, on, pending = ch.position(who, 0, mid)
    assert pending == 0, "funding is off"
    auctioned, index, mp = ch.auctionedSize(who, 0, mid), ch.indexPrice(mid), ch.marketParams(mid)
    q = ch.quote(mid, base)[0]
    new_size, new_on, realized = apply_trade(size, on, base, q)
    coll = vault.collateral(who, 0) + realized - fee_of(q, mp.takerFee)
    if new_size == 0:
        return coll
    ratio = max(mp.mmr, s.liquidation.auctionParams(mid).maxDiscount)
    return (coll + new_size * index // WAD - new_on - requirement(new_size - auctioned, index, mp.mmr)
            - requirement(auctioned, index, ratio))


def _excess_now(s, who) -> int:
    """The account's value over its maintenance now (free and auctioned parts), from the chain's views."""
    sm = s.clearing_house.marginSummary(who, 0, s.vault.openMarkets(who, 0))
    return s.vault.accountValue(who, 0) - (sm.maintenance + sm.auctionedMaintenance)


def _refuse(s, fn, who, expected: int, owners, label: str) -> int:
    """`fn` must revert ReduceBelowMaintenance(who, 0, expected) and change nothing; returns the excess."""
    before = _ledger(s, owners)
    with expect_revert(s.clearing_house.ReduceBelowMaintenance, owner=who, subaccount=0) as info:
        fn()
    exc = info.value
    excess = dict(exc.inputs)["excess"] if hasattr(exc, "inputs") and exc.inputs else _reason_excess(exc)
    assert excess == expected < 0, f"{label}: excess {excess}, expected {expected}"
    assert _ledger(s, owners) == before, f"{label}: the refused step changed state"
    return excess


def _reason_excess(exc) -> int:
    """`excess` from the revert data of a ReduceBelowMaintenance Ape did not decode."""
    return abi_decode(["address", "uint32", "int256"], revert_data(exc)[4:])[2]


def _same_vamm(attack: tuple[int, int], control: tuple[int, int]) -> None:
    """Both runs end on the same vAMM: the same base reserve, and the quote reserve of the attack run at most a few
    wei above the control's (the partner's round trip rounds in the pool's favour: a sell's quote down, a buy's
    up)."""
    assert attack[0] == control[0], f"base reserve {attack[0]} != {control[0]}"
    assert 0 <= attack[1] - control[1] <= 10, f"quote reserve {attack[1]} vs {control[1]}"


def _fill_vs_index(s, receipt, mid: int = ETH) -> int:
    """quote + floor(base x index) of the receipt's one PositionChanged: < 0 is a fill worse than the index."""
    (ev,) = s.clearing_house.PositionChanged.from_receipt(receipt)
    return ev.quoteDelta + ev.baseDelta * s.clearing_house.indexPrice(mid) // WAD


# ---------------------------------------------------------------------------- the lagging-peg markets


def _kicked_pair(s, chain, crew, long_who, short_who, t: int, answer: int = 2_820 * 10**8):
    """A hedged pair on the session deployment, each with 140,000 USD deposited: `long_who` long 333 ETH,
    `short_who` short 333 ETH at t + 20 and t + 40 (the vAMM back at the index); at t + 60 the index falls from
    3,000 to `answer` (8 decimals; by default 2,820, 6 %; the peg lags: nobody repegs); at t + 80 a keeper kicks
    the long, which must leave a free part beside the auction. Returns (auction id, free part, auctioned part)."""
    engine = s.liquidation
    at(chain, t + 20)
    trade(s, long_who, ETH, 333 * WAD)
    at(chain, t + 40)
    trade(s, short_who, ETH, -333 * WAD)
    at(chain, t + 60)
    set_index(s, "ETH", answer)
    at(chain, t + 80)
    engine.kick(long_who, 0, ETH, crew.keeper, sender=crew.keeper)
    aid = engine.auctionCount()
    size = s.clearing_house.position(long_who, 0, ETH)[0]
    auctioned = s.clearing_house.auctionedSize(long_who, 0, ETH)
    assert 0 < auctioned < size, "set-up: the kick leaves a free part"
    return aid, size - auctioned, auctioned


def test_partner_pushes_the_vamm_and_a_levered_account_cannot_close_into_it_below_zero(system, chain, crew):
    """Attack (constant index, no liquidation): A opens a 10x long of 333 ETH (140,000 USD); partner B shorts the
    vAMM to the edge of the band below the index; A closes its whole long into it. Before the fix the close realized
    more loss than A held, B bought back at the depressed price and kept it, and the loss waterfall paid A's negative
    collateral. Now the close is refused: ReduceBelowMaintenance(A, 0, A's collateral after the close), nothing
    changed. The attacker then unwinds: B buys back (a fill better than the index: not checked), A closes on the
    restored vAMM (better than the index), the waterfall finds no bad debt (NoBadDebt), both withdraw. The pair
    loses (fees) and the pool's NAV plus the insurance fund lose nothing against the start."""
    s, vault = system, system.vault
    a, b = crew.atk[0], crew.atk[1]
    t = start(chain)
    mint(s, a, 140_000)
    mint(s, b, 600_000)
    holders = [(a, [0]), (b, [0])]
    w0, k0 = wealth(s, holders), nav_plus_insurance(s)

    deposit(s, a, 140_000)
    deposit(s, b, 600_000)
    at(chain, t + 20)
    trade(s, a, ETH, 333 * WAD)  # ~1M USD long at 10x (initial margin met after its slippage)
    at(chain, t + 40)
    short = band_room(s, ETH, buy=False)
    trade(s, b, ETH, -short)  # the push to the band edge
    at(chain, t + 60)
    size = s.clearing_house.position(a, 0, ETH)[0]
    expected = _excess_after(s, a, -size)
    excess = _refuse(s, lambda: close(s, a, ETH), a, expected, [a, b], "A's close into the push")

    at(chain, t + 80)
    assert _fill_vs_index(s, trade(s, b, ETH, short)) >= 0  # B's buy-back: not checked
    at(chain, t + 100)
    assert _fill_vs_index(s, close(s, a, ETH)) >= 0  # A's close on the restored vAMM: not checked
    assert vault.openMarkets(a, 0) == 0 and vault.collateral(a, 0) >= 0
    at(chain, t + 120)
    with expect_revert(vault.NoBadDebt, owner=a, subaccount=0):
        vault.resolveBadDebt(a, 0, sender=b)
    at(chain, t + 140)
    cash_out(s, a, [0])
    cash_out(s, b, [0])

    gain, loss = wealth(s, holders) - w0, k0 - nav_plus_insurance(s)
    print(f"\nclose-into-push: partner short {short / WAD:.2f} ETH; refused with excess {usd(excess)} USD; "
          f"gain {usd(gain)} USD; NAV + insurance loss {usd(loss)} USD (other refusals: {refused()})")
    assert gain <= 0, f"the pair gained {usd(gain)} USD"
    assert loss <= DUST, f"NAV + insurance lost {usd(loss)} USD"


def test_owner_cannot_close_the_free_part_of_an_account_in_auction_into_a_pushed_vamm(system, chain, crew):
    """Attack on an account in auction: a hedged pair (A long, C short, 333 ETH each); the index falls 6 % (not the
    attacker's doing) and a keeper kicks A, leaving a free part beside the auction. Partner B shorts the vAMM to the
    band; A closes its free part into it. Before the fix the close went through (the auctioned part's backing was
    not protected against the owner's own reduce), and once the auction was taken A was left with no position and
    negative collateral, paid by the insurance fund, while B kept A's loss. Now it is refused:
    ReduceBelowMaintenance(A, 0, excess), the excess of the free part closed with the auctioned part's backing
    kept; nothing changed. The attacker unwinds: B buys back, A closes its free part on the restored vAMM (better
    than the index: accepted), an honest taker takes the auction ten minutes in (no bad debt), B and A withdraw.
    Control, from the same kick: no push, A closes its free part at the same time, the same take: both runs end
    with the same positions (A and B flat, C short, the taker long the auctioned part) on the same vAMM reserves
    (`_same_vamm`). Against the control and against the start, the pair gains nothing and the pool's NAV plus
    the insurance fund lose nothing."""
    s, engine = system, system.liquidation
    a, b, c = crew.atk[0], crew.atk[1], crew.atk[2]
    taker = crew.taker
    t = start(chain)
    fund(s, taker, 300_000)
    for who, amount in ((a, 140_000), (b, 600_000), (c, 140_000)):
        mint(s, who, amount)
    holders = [(a, [0]), (b, [0]), (c, [0])]
    w0, k0 = wealth(s, holders), nav_plus_insurance(s)
    for who, amount in ((a, 140_000), (b, 600_000), (c, 140_000)):
        deposit(s, who, amount)
    aid, free, auctioned = _kicked_pair(s, chain, crew, a, c, t)

    def finish():
        at(chain, t + 680)  # ten minutes into the auction
        tx = engine.take(aid, MAX_UINT, MAX_UINT, 0, sender=taker)
        assert not list(s.vault.BadDebt.from_receipt(tx))
        at(chain, t + 700)
        cash_out(s, b, [0])
        cash_out(s, a, [0])
        assert s.clearing_house.position(a, 0, ETH)[0] == 0 and s.clearing_house.position(b, 0, ETH)[0] == 0
        st = s.clearing_house.marketState(ETH)
        return (st.baseReserve, st.quoteReserve), wealth(s, holders), nav_plus_insurance(s)

    snap = chain.snapshot()
    at(chain, t + 160)
    assert _fill_vs_index(s, close(s, a, ETH)) >= 0, "control: A's free-part close fills at or above the index"
    amm_control, w_control, k_control = finish()
    chain.restore(snap)

    at(chain, t + 100)
    short = band_room(s, ETH, buy=False)
    trade(s, b, ETH, -short)
    at(chain, t + 120)
    expected = _excess_after(s, a, -free)
    excess = _refuse(s, lambda: close(s, a, ETH), a, expected, [a, b, c], "A's free-part close into the push")
    at(chain, t + 140)
    assert _fill_vs_index(s, trade(s, b, ETH, short)) >= 0  # B's buy-back
    at(chain, t + 160)
    assert _fill_vs_index(s, close(s, a, ETH)) >= 0  # A's free part on the restored vAMM
    amm, w, k = finish()
    _same_vamm(amm, amm_control)

    print(f"\nfree-part close: free {free / WAD:.2f} ETH, auctioned {auctioned / WAD:.2f} ETH; partner short "
          f"{short / WAD:.2f} ETH; refused with excess {usd(excess)} USD")
    print(f"gain vs control {usd(w - w_control)}, vs start {usd(w - w0)} USD; NAV + insurance loss vs control "
          f"{usd(k_control - k)}, vs start {usd(k0 - k)} USD (other refusals: {refused()})")
    assert w - w_control <= DUST, f"the pair gained {usd(w - w_control)} USD against the control"
    assert w - w0 <= 0, f"the pair gained {usd(w - w0)} USD against the start"
    assert k_control - k <= DUST, f"NAV + insurance lost {usd(k_control - k)} USD against the control"
    assert k0 - k <= DUST, f"NAV + insurance lost {usd(k0 - k)} USD against the start"


def test_account_in_auction_closes_its_free_part_at_or_above_the_index_and_the_take_finishes_it(system, chain, crew):
    """Honest path the fix must keep: an honest hedged pair (the victim long, the honest LP short, 333 ETH each);
    the index falls 7.3 % (3,000 to 2,780) and a keeper kicks the victim, which leaves a free part of about 30 ETH
    beside the auction and the account below maintenance. With the peg lagging, the vAMM still stands above the
    index, so the victim's close of its free part (a sell) fills above the index: not checked, and accepted,
    although it leaves the account below maintenance (its excess after, read from the chain, is the one
    `_excess_after` predicted, and negative: the check, had it run, would have refused it). Only the auctioned
    part is left. An honest taker takes the auction ten minutes in, the index unchanged since the kick, so by the
    rules (LiquidationEngine._slice: a kick never creates bad debt at an unchanged index) there is none: no
    BadDebt event, the victim flat with collateral >= 0, no shortfall estimate, no pending bad debt; and the pool's
    NAV plus the insurance fund did not fall from before the close to after the take."""
    s, vault, engine = system, system.vault, system.liquidation
    a, hedge, taker = crew.victim, crew.honest_lp, crew.taker
    t = start(chain)
    fund(s, taker, 300_000)
    for who in (a, hedge):
        fund(s, who, 140_000)
    aid, free, auctioned = _kicked_pair(s, chain, crew, a, hedge, t, 2_780 * 10**8)
    assert _excess_now(s, a) < 0, "set-up: the victim is below maintenance after the kick"

    at(chain, t + 120)
    k_before = nav_plus_insurance(s)
    expected = _excess_after(s, a, -free)
    tx = close(s, a, ETH)
    fill = _fill_vs_index(s, tx)
    assert fill >= 0, "the free-part close fills at or above the index"
    assert s.clearing_house.position(a, 0, ETH)[0] == s.clearing_house.auctionedSize(a, 0, ETH) == auctioned
    after = _excess_now(s, a)
    assert after == expected < 0, f"excess after the close {after}, predicted {expected}"

    at(chain, t + 680)
    tx = engine.take(aid, MAX_UINT, MAX_UINT, 0, sender=taker)
    assert not list(vault.BadDebt.from_receipt(tx))
    assert s.clearing_house.position(a, 0, ETH)[0] == 0 and vault.openMarkets(a, 0) == 0
    assert vault.collateral(a, 0) >= 0 and vault.shortfallOf(a, 0) == 0 and vault.pendingBadDebt() == 0
    k_loss = k_before - nav_plus_insurance(s)
    print(f"\nhonest free-part close: free {free / WAD:.2f} ETH, fill - index x base {usd(fill)} USD, excess after "
          f"{usd(after)} USD; victim's collateral after the take {usd(vault.collateral(a, 0))} USD; NAV + insurance "
          f"loss {usd(k_loss)} USD")
    assert k_loss <= DUST, f"NAV + insurance lost {usd(k_loss)} USD"


# ---------------------------------------------------------------------------- the shipped markets, through the router


@pytest.fixture(scope="module")
def shipped(deployer):
    """The shipped deployment (`default_config()`: the concentrated curve at 15 bps, delayed orders on), funding
    off (maxFundingRate 0, within bounds)."""
    s = deploy(deployer, default_config())
    funding_off(s)
    return s


def _commit(s, chain, who, base: int, when: int) -> int:
    """`who` commits a delayed order of `base` in ETH at `when` (0: close the free part), no price limit."""
    at(chain, when)
    oid = s.router.nextOrderId()
    s.router.commitOrder(0, ETH, base, MAX_UINT if base > 0 else 0, when + 3_000, value=s.router.minKeeperFee(),
                         sender=who)
    return oid


def _round(s, chain, answer: int, when: int) -> None:
    """A new oracle round at `when` (what makes the orders committed before it executable)."""
    at(chain, when)
    set_index(s, "ETH", answer)


def _repeg(s, chain, keeper, when: int) -> None:
    """Anyone repegs the vAMM to the index, in three blocks from `when` (as many as a 6 % move needs)."""
    for i in range(3):
        at(chain, when + i)
        attempt(lambda: s.amm.repeg(ETH, sender=keeper), f"repeg {i + 1}")


def _executed(s, chain, keeper, oid: int, when: int):
    """The keeper executes order `oid` at `when` and the trade goes through (OrderExecuted, no OrderFailed)."""
    at(chain, when)
    tx = s.router.executeOrder(oid, sender=keeper)
    assert not tx.decode_logs(s.router.OrderFailed), f"order {oid} failed"
    (ev,) = tx.decode_logs(s.router.OrderExecuted)
    assert ev.orderId == oid
    return tx


def _failed(s, chain, keeper, oid: int, when: int, who, expected: int, owners) -> int:
    """The keeper executes order `oid` at `when`; the ClearingHouse refuses the trade, which uses the order up:
    OrderFailed(oid, keeper, reason, keeperFee), the reason ReduceBelowMaintenance(who, 0, expected) with
    expected < 0, no OrderExecuted or PositionChanged; the keeper's ETH rises by the fee less its gas and the
    router's falls by the fee, the order is gone (status None); nothing else moved (`_ledger`). Returns the
    excess."""
    router, ch = s.router, s.clearing_house
    fee = router.order(oid).keeperFee
    before, kb, rb = _ledger(s, owners), keeper.balance, router.balance
    at(chain, when)
    tx = router.executeOrder(oid, sender=keeper)
    assert not tx.decode_logs(router.OrderExecuted) and not tx.decode_logs(ch.PositionChanged)
    (ev,) = tx.decode_logs(router.OrderFailed)
    assert (ev.orderId, ev.keeper, ev.keeperFee) == (oid, keeper.address, fee)
    abi = ch.ReduceBelowMaintenance.abi
    types = [i.canonical_type for i in abi.inputs]
    reason = bytes(ev.reason)
    assert reason[:4] == keccak(text=f"{abi.name}({','.join(types)})")[:4], f"reason {reason[:4].hex()}"
    owner, sub, excess = abi_decode(types, reason[4:])
    assert (owner.lower(), sub) == (who.address.lower(), 0)
    assert excess == expected < 0, f"excess {excess}, expected {expected}"
    assert keeper.balance == kb + fee - tx.gas_used * tx.gas_price and router.balance == rb - fee
    assert router.orderStatus(oid)[0] == 0, "the refused order is used up"
    assert _ledger(s, owners) == before, "the refused order changed state"
    return excess


def test_the_free_part_close_into_a_push_is_refused_through_the_router_on_the_shipped_markets(shipped, chain, crew):
    """The previous attack on the shipped deployment, every trade a delayed order through the OrderRouter (FIFO,
    executable after the next oracle round; the peg repegged to the index by anyone). A hedged pair (A long, C
    short, 1,500 ETH each); the index falls 6 %; the peg is repegged (no net position: free); a keeper kicks A. In
    one oracle round the attacker commits, in this order, B's short to the band (as far as the open-interest cap
    lets it), A's close of its free part and B's buy-back; the next round (same price) makes them executable and
    they execute first in, first out. Before the fix A's close executed and the pair kept A's loss beyond its
    value, paid by the pool and the insurance fund. Now A's order fails
    (`_failed`: ReduceBelowMaintenance(A, 0, excess) as the reason, the order used up, nothing else moved); B's
    push and buy-back execute. A then closes its free part with a new order, on the restored vAMM (a fill worse
    than the index, checked, and accepted: A stays at or above maintenance); an honest taker takes the auction
    ten minutes in. Control, from the same kick: no push, the same rounds, A's close order executed at the same
    time, the same take: both runs end with the same positions (A and B flat, C short, the taker long the
    auctioned part) on the same vAMM reserves (`_same_vamm`). Against the control and against the start, the pair
    gains nothing and the pool's NAV plus the insurance fund lose nothing (NAV values C's and the taker's open
    positions)."""
    s, vault, engine, router = shipped, shipped.vault, shipped.liquidation, shipped.router
    a, b, c = crew.atk[0], crew.atk[1], crew.atk[2]
    keeper, taker = crew.keeper, crew.taker
    n = 1_500 * WAD
    t = start(chain)
    fund(s, taker, 1_000_000)
    for who, amount in ((a, 540_000), (b, 3_000_000), (c, 540_000)):
        mint(s, who, amount)
    holders = [(a, [0]), (b, [0]), (c, [0])]
    w0, k0 = wealth(s, holders), nav_plus_insurance(s)
    for who, amount in ((a, 540_000), (b, 3_000_000), (c, 540_000)):
        deposit(s, who, amount)
        vault.setOperator(router, True, sender=who)

    oa, oc = _commit(s, chain, a, n, t + 20), _commit(s, chain, c, -n, t + 21)
    _round(s, chain, 3_000 * 10**8, t + 30)
    _executed(s, chain, keeper, oa, t + 31)
    _executed(s, chain, keeper, oc, t + 32)
    _round(s, chain, 2_820 * 10**8, t + 40)
    _repeg(s, chain, keeper, t + 41)
    at(chain, t + 50)
    engine.kick(a, 0, ETH, keeper, sender=keeper)
    aid = engine.auctionCount()
    size = s.clearing_house.position(a, 0, ETH)[0]
    auctioned = s.clearing_house.auctionedSize(a, 0, ETH)
    free = size - auctioned
    assert 0 < auctioned < size, "set-up: the kick leaves a free part"

    def close_and_finish():
        """A's close of its free part committed at t + 80, executed at t + 91 after the round at t + 90; the take
        ten minutes into the auction."""
        oid = _commit(s, chain, a, 0, t + 80)
        _round(s, chain, 2_820 * 10**8, t + 90)
        fill = _fill_vs_index(s, _executed(s, chain, keeper, oid, t + 91))
        assert s.clearing_house.position(a, 0, ETH)[0] == auctioned
        at(chain, t + 650)
        tx = engine.take(aid, MAX_UINT, MAX_UINT, 0, sender=taker)
        assert not list(vault.BadDebt.from_receipt(tx))
        assert s.clearing_house.position(a, 0, ETH)[0] == 0 == s.clearing_house.position(b, 0, ETH)[0]
        st = s.clearing_house.marketState(ETH)
        return fill, (st.baseReserve, st.quoteReserve), wealth(s, holders), nav_plus_insurance(s)

    snap = chain.snapshot()
    _round(s, chain, 2_820 * 10**8, t + 70)
    _, amm_control, w_control, k_control = close_and_finish()
    chain.restore(snap)

    mp = s.clearing_house.marketParams(ETH)
    index = s.clearing_house.indexPrice(ETH)
    short_oi = s.clearing_house.marketState(ETH).shortOpenInterest
    oi_room = min(mp.maxOpenInterest, vault.poolBalance() * mp.maxOiPoolRatio // index) - short_oi
    short = min(band_room(s, ETH, buy=False), oi_room * 99 // 100 // mp.minPositionSize * mp.minPositionSize)
    ob = _commit(s, chain, b, -short, t + 60)
    oa = _commit(s, chain, a, 0, t + 61)
    ob2 = _commit(s, chain, b, short, t + 62)
    _round(s, chain, 2_820 * 10**8, t + 70)
    _executed(s, chain, keeper, ob, t + 71)
    at(chain, t + 72)
    expected = _excess_after(s, a, -free)
    excess = _failed(s, chain, keeper, oa, t + 72, a, expected, [a, b, c])
    _executed(s, chain, keeper, ob2, t + 73)
    fill, amm, w, k = close_and_finish()
    _same_vamm(amm, amm_control)

    print(f"\nshipped: free {free / WAD:.2f} ETH, auctioned {auctioned / WAD:.2f} ETH; B's push {short / WAD:.2f} ETH; "
          f"A's order failed with excess {usd(excess)} USD; A's later close: fill - index x base {usd(fill)} USD")
    print(f"gain vs control {usd(w - w_control)}, vs start {usd(w - w0)} USD; NAV + insurance loss vs control "
          f"{usd(k_control - k)}, vs start {usd(k0 - k)} USD (other refusals: {refused()})")
    assert fill < 0, "A's later close fills worse than the index (the check ran and let it through)"
    assert w - w_control <= DUST, f"the pair gained {usd(w - w_control)} USD against the control"
    assert w - w0 <= 0, f"the pair gained {usd(w - w0)} USD against the start"
    assert k_control - k <= DUST, f"NAV + insurance lost {usd(k_control - k)} USD against the control"
    assert k0 - k <= DUST, f"NAV + insurance lost {usd(k0 - k)} USD against the start"


def test_healthy_account_reduces_through_the_router_after_an_index_move_with_a_fill_worse_than_the_index(
        shipped, chain, crew):
    """Honest path the fix must keep, on the shipped markets through the OrderRouter: the victim (1,000,000 USD)
    opens a long of 1,000 ETH at 3,000, an honest short (the honest LP) the same size, so the market has no net
    position; the index falls 4 % to 2,880 and anyone repegs the vAMM to it; no auction. The victim commits a
    reduce of half its long; the next round makes it executable and it executes: the sell fills worse than the
    index (quote + floor(base x index) < 0, so the check runs) and leaves the account above maintenance (its excess
    after, read from the chain, is the one `_excess_after` predicted, and positive): OrderExecuted, no OrderFailed,
    the position halved, the loss realized on the half and the fee charged to the collateral."""
    s, vault, router = shipped, shipped.vault, shipped.router
    a, hedge, keeper = crew.victim, crew.honest_lp, crew.keeper
    t = start(chain)
    for who in (a, hedge):
        fund(s, who, 1_000_000)
        vault.setOperator(router, True, sender=who)
    oid, oh = _commit(s, chain, a, 1_000 * WAD, t + 20), _commit(s, chain, hedge, -1_000 * WAD, t + 21)
    _round(s, chain, 3_000 * 10**8, t + 30)
    _executed(s, chain, keeper, oid, t + 31)
    _executed(s, chain, keeper, oh, t + 32)
    _round(s, chain, 2_880 * 10**8, t + 40)
    _repeg(s, chain, keeper, t + 41)
    oid = _commit(s, chain, a, -500 * WAD, t + 50)
    _round(s, chain, 2_880 * 10**8, t + 60)
    at(chain, t + 61)
    assert s.clearing_house.auctionedSize(a, 0, ETH) == 0
    coll, expected = vault.collateral(a, 0), _excess_after(s, a, -500 * WAD)
    tx = _executed(s, chain, keeper, oid, t + 61)
    fill = _fill_vs_index(s, tx)
    (ev,) = s.clearing_house.PositionChanged.from_receipt(tx)
    after = _excess_now(s, a)
    print(f"\nhonest router reduce: fill - index x base {usd(fill)} USD, realized {usd(ev.realizedPnl)} USD, "
          f"excess after {usd(after)} USD (refusals: {refused()})")
    assert fill < 0, "the reduce fills worse than the index"
    assert s.clearing_house.position(a, 0, ETH)[0] == 500 * WAD
    assert ev.realizedPnl < 0 and vault.collateral(a, 0) == coll + ev.realizedPnl - ev.fee
    assert after == expected >= 0, f"excess after the reduce {after}, predicted {expected}"

