"""Helpers shared by the incident regression files (tests/incidents/test_*.py).

The integer formulas are the documented ones (docs/design.md, docs/liquidation.md), taken
from tests/trading_helpers.py and tests/test_liquidation.py so every file computes its expectations the
same way; this module adds the ledger identities the incidents are about.
"""
from __future__ import annotations

import math

from test_liquidation import (  # noqa: F401  (re-exported for the incident files)
    MIN_ETH,
    auction_price,
    backstop_edge,
    backstop_fit,
    discount_linear,
    discount_of,
    expected_redo_tip,
    fill_quotes,
    model_slice,
    mul_up,
    read,
    requirement,
    reverts_unchanged,
)
from trading_helpers import (  # noqa: F401
    funding_off,
    BTC_ID,
    ETH_ID,
    MAX_UINT,
    WAD,
    Amm,
    apply_trade,
    ceil_div,
    deadline,
    exit_value,
    expect_revert,
    fee_of,
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
    documented formulas: vAMM swap, price band, pro-rata PnL, fee, initial margin on opens/increases/flips."""

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
        band = index * self.max_spread // WAD
        if abs(after - index) > band and abs(after - index) > abs(before - index):
            return "PriceBandExceeded", dict(marketId=ETH, priceAfter=after, indexPrice=index, maxSpread=self.max_spread)
        ns, non, realized = apply_trade(size, on, base, q)
        fee = fee_of(q)
        coll = self.coll[who] + realized - fee
        reducing = (size > 0 and 0 <= ns < size) or (size < 0 and size < ns <= 0)
        if not reducing:
            free = free_collateral(coll, [(ns, non, index, IMR)])
            if free < 0:
                return "InsufficientMargin", dict(owner=who, subaccount=0, freeCollateral=free)
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

