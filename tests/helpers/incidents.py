"""Helpers shared by the incident regression files (tests/incidents/test_*.py).

The integer formulas are the documented ones (docs/design.md, docs/liquidation.md), taken
from tests/helpers/trading.py and tests/helpers/liquidation.py so every file computes its expectations the
same way; this module adds the ledger identities the incidents are about, and the keeper, taker and ledger
helpers of the crowd scenarios (a keeper pass, a checked backstop, the live auctions' prices).
"""
from __future__ import annotations

import math

from helpers.liquidation import (  # noqa: F401  (re-exported for the incident files)
    MIN_ETH,
    auction_price,
    backstop_edge,
    backstop_fit,
    discount_linear,
    discount_of,
    events,
    expected_redo_tip,
    fill_quotes,
    model_slice,
    mul_up,
    one_event,
    push_vamm_to,
    read,
    requirement,
    reverts_unchanged,
    set_price,
)
from helpers.trading import (  # noqa: F401
    BTC_ID,
    ETH_ID,
    HEARTBEAT,
    MAX_UINT,
    WAD,
    Amm,
    apply_trade,
    ceil_div,
    deadline,
    exit_value,
    expect_revert,
    fee_of,
    funding_off,
    insurance_part,
    snapshot,
    swap,
    trade,
    upnl,
)

SCALE = 10**12  # WAD per unit of the 6-decimal mock collateral
ETH, BTC = ETH_ID, BTC_ID
IMR, MMR = 10**17, 5 * 10**16




def set_index(system, symbol: str, human):
    """Post a new answer (human units) on the market's mock feed, stamped now."""
    system.set_price(symbol, human)


def amm_of(system, market_id: int) -> Amm:
    """A Python copy of the market's virtual reserves as they are now (an input, not an expectation)."""
    s = system.clearing_house.marketState(market_id)
    return Amm(s.baseReserve, s.quoteReserve)


def market_params_tuple(p, **changes) -> tuple:
    d = {k: getattr(p, k) for k in ("oracle", "heartbeat", "twapWindow", "imr", "mmr", "takerFee", "maxSpread",
                                     "maxOiPoolRatio", "maxOpenInterest", "minPositionSize")}
    d.update(changes)
    return tuple(d.values())


def set_market_params(system, market_id: int, **changes):
    ch = system.clearing_house
    ch.setMarketParams(market_id, market_params_tuple(ch.marketParams(market_id), **changes),
                       ch.insuranceFeeShare(market_id), sender=system.deployer)


def set_liquidation_params(system, **changes):
    engine = system.liquidation
    p = engine.liquidationParams()
    d = {k: getattr(p, k) for k in ("targetHealth", "chip", "penalty", "maxRedos", "tip", "maxKeeperReward",
                                     "maxAuctionNotional")}
    d.update(changes)
    engine.setLiquidationParams(tuple(d.values()), sender=system.deployer)


def free_collateral(collateral: int, positions, pending_funding: int = 0) -> int:
    """docs/design.md#accounts-and-margin: min(collateral - funding, accountValue) - initial; `positions` =
    [(size, openNotional, index, imr)]."""
    pnl = sum(upnl(s, on, idx) for s, on, idx, _ in positions)
    initial = sum(requirement(s, idx, imr) for s, _, idx, imr in positions if s)
    return min(collateral - pending_funding, collateral + pnl - pending_funding) - initial


def ledger_total(system, owners, subs=(0,)) -> tuple[int, int]:
    """(sum of the owners' collateral + pool balance + insurance fund, the Vault's token balance in WAD)."""
    vault, usdc = system.vault, system.collateral
    calls = {f"c{i}_{s}": (vault, "collateral", o.address, s) for i, o in enumerate(owners) for s in subs}
    calls.update(pool=(vault, "poolBalance"), ins=(vault, "insuranceFund"), bal=(usdc, "balanceOf", vault.address))
    r = read(system, **calls)
    total = sum(v for k, v in r.items() if k.startswith("c")) + r["pool"] + r["ins"]
    return total, r["bal"] * system.token_scale


def assert_backed(system, owners, subs=(0,), surplus: int = 0):
    """Invariant 1 (docs/specification.md): every claim on the Vault is backed by its tokens. With `owners`
    covering every account holding collateral, the ledger equals the token balance exactly (less any `surplus`
    donated outside it)."""
    total, bal = ledger_total(system, owners, subs)
    positive = total  # collateral can be negative only transiently; `total` already nets it
    assert bal >= positive, f"Vault short: tokens {bal} < claims {positive}"
    assert bal == total + surplus, (bal, total, surplus)


def vamm_base_to(system, market_id: int, target: int) -> int:
    """Base to buy (> 0) or sell (< 0) to bring the vAMM price to about `target` (WAD)."""
    s = system.clearing_house.marketState(market_id)
    x1 = math.isqrt(s.baseReserve * s.quoteReserve * WAD // target)
    return (s.baseReserve - x1) // 10**16 * 10**16  # whole hundredths of a base unit


# ---------------------------------------------------------------------------- an ETH-only model


def eth_equity(coll: int, size: int, on: int, index: int) -> int:
    return coll + (upnl(size, on, index) if size else 0)


class EthModel:
    """Accounts trading ETH (cross sub-account 0) against the vAMM at a constant index, advanced with the
    documented formulas: vAMM swap, price band (not on a reduce), pro-rata PnL, fee, initial margin on
    opens/increases/flips, and a reduce's floor: one filled worse than the index (quote + base x index < 0), or a close leaving negative
    collateral, must leave the account at or above maintenance (`ReduceBelowMaintenance`)."""

    def __init__(self, owners, deposits, index, x=10_000 * WAD, y=30_000_000 * WAD, max_spread=10**17):
        self.amm = Amm(x, y)
        self.index, self.max_spread = index, max_spread
        self.pos = {o.address: (0, 0) for o in owners}
        self.coll = {o.address: d * 10**6 * SCALE for o, d in zip(owners, deposits)}
        self.deposited = sum(self.coll.values())
        self.fees = 0

    def predict(self, who, base):
        """(error name, kwargs) the trade must revert with, or (None, new state)."""
        size, on = self.pos[who]
        index = self.index
        before = self.amm.price
        q, after = self.amm.peek(base)
        ns, non, realized = apply_trade(size, on, base, q)
        reducing = (size > 0 and 0 <= ns < size) or (size < 0 and size < ns <= 0)
        band = index * self.max_spread // WAD
        if not reducing and abs(after - index) > band and abs(after - index) > abs(before - index):
            return "PriceBandExceeded", dict(marketId=ETH, priceAfter=after, indexPrice=index, maxSpread=self.max_spread)
        fee = fee_of(q)
        coll = self.coll[who] + realized - fee
        if not reducing:
            free = free_collateral(coll, [(ns, non, index, IMR)])
            if free < 0:
                return "InsufficientMargin", dict(owner=who, subaccount=0, freeCollateral=free)
        elif (coll < 0) if ns == 0 else q + base * index // WAD < 0:
            excess = eth_equity(coll, ns, non, index) - (requirement(ns, index, MMR) if ns else 0)
            if excess < 0:
                return "ReduceBelowMaintenance", dict(owner=who, subaccount=0, excess=excess)
        return None, (q, ns, non, coll, fee)

    def apply(self, who, base, result):
        q, ns, non, coll, fee = result
        self.amm.trade(base)
        self.pos[who] = (ns, non)
        self.coll[who] = coll
        self.fees += fee

    def free(self, who) -> int:
        size, on = self.pos[who]
        return free_collateral(self.coll[who], [(size, on, self.index, IMR)] if size else [])

    def liquidatable(self, who) -> bool:
        size, on = self.pos[who]
        return size != 0 and eth_equity(self.coll[who], size, on, self.index) < requirement(size, self.index, MMR)


# ---------------------------------------------------------------------------- crowd scenarios
# Keepers, takers and ledgers of the crowd scenarios (the Black Thursday crash, the Perp v1 cascade).


def fund_many(system, funder, amounts) -> int:
    """Deposit each (account, human amount) into its cross account through `depositFor` from one funder
    (one mint, one approval); returns the total deposited in WAD."""
    units = [system.units(x) for _, x in amounts]
    system.collateral.mint(funder, sum(units), sender=funder)
    system.collateral.approve(system.vault, sum(units), sender=funder)
    for (who, _), u in zip(amounts, units):
        system.vault.depositFor(who, 0, u, sender=funder)
    return sum(units) * system.token_scale


def ledger(system, owners):
    """(sum of the owners' collateral + pool + insurance, the Vault's token balance in WAD, insurance)."""
    vault, usdc = system.vault, system.collateral
    calls = {f"c{i}": (vault, "collateral", o.address, 0) for i, o in enumerate(owners)}
    calls.update(pool=(vault, "poolBalance"), ins=(vault, "insuranceFund"), bal=(usdc, "balanceOf", vault.address))
    r = read(system, **calls)
    total = sum(r[f"c{i}"] for i in range(len(owners))) + r["pool"] + r["ins"]
    return total, r["bal"] * system.token_scale, r["ins"]


def live_auctions(system):
    """Ids of the auctions with something left (one batched read)."""
    engine = system.liquidation
    n = engine.auctionCount()
    if n == 0:
        return []
    r = read(system, **{f"a{i}": (engine, "auction", i) for i in range(1, n + 1)})
    return [i for i in range(1, n + 1) if r[f"a{i}"].size != 0]


def liquidatable(system, owners):
    """The owners that are liquidatable now (one batched read)."""
    r = read(system, **{f"o{i}": (system.vault, "isLiquidatable", o.address, 0) for i, o in enumerate(owners)})
    return [o for i, o in enumerate(owners) if r[f"o{i}"]]


def keeper_pass(system, keeper, owners, stats):
    """What a keeper does: redo (or, after maxRedos, backstop) every expired auction, then kick every
    liquidatable account in its best market until it is not liquidatable or has nothing free."""
    engine, ch, vault = system.liquidation, system.clearing_house, system.vault
    max_redos = engine.liquidationParams().maxRedos
    for aid in live_auctions(system):
        if engine.isExpired(aid):
            a = engine.auction(aid)
            if a.redos < max_redos:
                engine.redo(aid, keeper, sender=keeper)
                stats["redos"] += 1
            else:
                backstop_checked(system, aid, keeper, stats)
    for o in liquidatable(system, owners):
        while vault.isLiquidatable(o, 0):
            mid = engine.bestMarketToKick(o, 0)
            if mid == 0:
                break
            engine.kick(o, 0, mid, keeper, sender=keeper)
            stats["kicks"] += 1


def backstop_checked(system, aid, caller, stats):
    """backstop: the remainder is swapped against the vAMM exactly as VAmmMath.swap; any bad debt runs
    through the waterfall (insurance first, then the pool) and leaves the account at zero."""
    engine, ch, vault = system.liquidation, system.clearing_house, system.vault
    a = engine.auction(aid)
    s0 = ch.marketState(a.marketId)
    ins0 = vault.insuranceFund()
    q, x1, y1 = swap(s0.baseReserve, s0.quoteReserve, -a.size)
    tx = engine.backstop(aid, sender=caller)
    ev = one_event(engine, "Backstop", tx)
    assert (ev.size, ev.quote) == (a.size, q)
    s1 = ch.marketState(a.marketId)
    assert (s1.baseReserve, s1.quoteReserve) == (x1, y1)
    stats["backstops"] += 1
    for bd in events(vault, "BadDebt", tx):
        assert bd.fromInsurance == min(bd.amount, ins0) and bd.fromInsurance + bd.fromPool == bd.amount
        assert vault.collateral(bd.owner, bd.subaccount) == 0
        stats["bad_debt"] += bd.amount
        stats["bad_debt_from_insurance"] += bd.fromInsurance
        stats["bad_debt_from_pool"] += bd.fromPool
    return tx


def favourable_move(size: int, start: int, index: int) -> int:
    """How far the index moved in the auctioned account's favour since its (re)start (0 if against it)."""
    return max(index - start, 0) if size > 0 else max(start - index, 0)


def check_auction_prices(system, chain):
    """Every live auction: expired ones cannot be priced (nor taken); the others are priced at the live
    index less the curve's discount for their age -- never zero, never an old index."""
    engine, ch = system.liquidation, system.clearing_house
    head = chain.blocks.head.timestamp
    for aid in live_auctions(system):
        a = engine.auction(aid)
        ap = engine.auctionParams(a.marketId)
        index = ch.indexPrice(a.marketId)
        expired = head - a.startTime > ap.duration or favourable_move(a.size, a.startIndex, index) > a.startIndex * ap.resetDrop // WAD
        assert engine.isExpired(aid) == expired
        if expired:
            with expect_revert(engine.AuctionExpired, auctionId=aid):
                engine.auctionPrice(aid)
            continue
        p = engine.auctionPrice(aid)
        sign = 1 if a.size > 0 else -1
        assert p == auction_price(sign, index, discount_of(ap, head - a.startTime))
        assert p >= index * (WAD - ap.maxDiscount) // WAD > 0
