"""Liquidation helpers shared by the liquidation tests (tests/liquidation/test_liquidation.py and the modules that drive
auctions: scenarios, incidents, trading paths): the documented formulas in Python integers and the chain
helpers that read and check the LiquidationEngine.

    health (margin)   V = collateral + floor(size x index) - openNotional
                      M = sum ceil(ceil(|size - auctioned| x index) x mmr)
    slice  (kick)     n >= (h x M - V + tip) / (h x mmr - chip - penalty - maxDiscount)
                      (ceil at each division, then ceil to base; at least minPositionSize; the whole free
                      position when that is more, leaves dust, or the denominator is not positive)
    keeper reward     min(tip + ceil(notional x chip), maxKeeperReward);  penalty min(ceil(notional x
                      penalty), V - reward) (0 when nothing is left)
    auction price     long slice ceil(index x (1 - d)), short slice floor(index x (1 + d)); d by the curve
    fills             the owner realizes PnL at the auction price (VAmmMath.applyTrade rules, mirrored in
                      helpers.trading.apply_trade); the vAMM is untouched; the backstop is a vAMM swap.

`read` and `reverts_unchanged` read many views in one eth_call through the BatchCaller mock that the
`batcher` fixture (tests/conftest.py) deploys and stores in `system.extra["batcher"]`.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass

from helpers.trading import (
    BTC_ID,
    ETH_ID,
    WAD,
    ceil_div,
    expect_revert,
    requirement,
    trade,
)
from vperp.model import AuctionParams as ModelAuctionParams, Model

ETH = ETH_ID
BTC = BTC_ID
MIN_ETH = 10**16  # ETH minPositionSize (0.01)
MIN_BTC = 10**15  # BTC minPositionSize (0.001)
ORACLE_UNIT = 10**10  # one unit of the 8-decimal mock feed, in WAD
SCALE_UNIT = 10**12  # one unit of the 6-decimal mock collateral, in WAD
LINEAR, EXPONENTIAL, STAIRSTEP = 0, 1, 2
# LiquidationEngine._slice (NatSpec @dev): the slice also covers the worst fill the auction allows
# (the full discount at an unchanged index), so maxDiscount joins the denominator (below, twice).


# ---------------------------------------------------------------------------- integer math


def mul_up(a: int, b: int) -> int:
    return ceil_div(a * b, WAD)


def mul_down(a: int, b: int) -> int:
    return a * b // WAD


def div_up(a: int, b: int) -> int:
    return ceil_div(a * WAD, b)


@dataclass
class SliceModel:
    size: int  # signed like the position
    notional: int
    reward: int
    penalty: int
    restores: bool
    raw_base: int  # the formula's base before the whole-position rules
    bounty: int = 0  # paid by the insurance fund when the account pays its keeper nothing
    shortfall: int = 0  # the bad-debt estimate recorded: what the account lacks at the worst fill, after its costs


def model_slice(value: int, maintenance: int, available: int, index: int, mmr: int, min_size: int, lp, max_discount: int,
                auctioned_notional: int = 0, insurance: int = 10**40):
    """What `kick` must do (ILiquidationEngine.kick, LiquidationEngine._slice NatSpec), from scratch.
    Costs come out of what the account keeps after the worst fill of everything it will have in auction
    (`auctioned_notional` already in auction plus this slice, at the full discount): reward first, then
    penalty, each capped there, so a kick never creates bad debt at an unchanged index. An account that
    pays its keeper nothing earns the keeper a bounty from the insurance fund: chip x notional, capped at
    maxKeeperReward and at the fund."""
    sign = 1 if available > 0 else -1
    avail = abs(available)
    base, restores, raw = avail, False, None
    denom = lp.targetHealth * mmr // WAD - lp.chip - lp.penalty - max_discount
    if denom > 0:
        need = mul_up(maintenance, lp.targetHealth) - value + lp.tip
        raw = 0 if need <= 0 else div_up(div_up(need, denom), index)
        b = max(raw, min_size)
        if b < avail and avail - b >= min_size:
            base, restores = b, True
    notional = mul_up(base, index)
    room = value - mul_up(auctioned_notional + notional, max_discount)
    reward = min(lp.tip + mul_up(notional, lp.chip), lp.maxKeeperReward)
    reward = 0 if room <= 0 else min(reward, room)
    room -= reward
    penalty = 0 if room <= 0 else min(mul_up(notional, lp.penalty), room)
    bounty = min(mul_up(notional, lp.chip), lp.maxKeeperReward, insurance) if reward == 0 else 0
    return SliceModel(sign * base, notional, reward, penalty, restores, raw, bounty, max(0, penalty - room))


def backstop_edge(index: int, size: int, max_d: int, max_spread: int) -> int:
    """How far a backstop may move the vAMM price (IClearingHouse.backstopClose): no worse for the owner
    than the auction's price at its full discount, nor outside the band around the index."""
    band = index * max_spread // WAD
    return max(auction_price(1, index, max_d), index - band) if size > 0 else min(auction_price(-1, index, max_d), index + band)


def backstop_fit(x: int, y: int, size: int, edge: int, min_size: int) -> int:
    """The part of `size` a backstop closes on the curve (x, y) without passing `edge` (ClearingHouse
    _backstopFit): x' = sqrt(x y / edge) rounded toward the inside with a 1e-12 margin, no dust left."""
    def edge_reserve(price):
        q = x * y // price
        return math.isqrt(q * WAD) if q <= (2**256 - 1) // WAD else math.isqrt(q) * 10**9
    want = abs(size)
    if size > 0:
        x_max = edge_reserve(edge)
        x_max -= x_max // 10**12
        fit = x_max - x if x_max > x else 0
    else:
        x_min = edge_reserve(edge)
        x_min += x_min // 10**12 + 2
        fit = x - x_min if x > x_min else 0
    if fit >= want:
        return size
    if want - fit < min_size:
        fit = want - min_size if want > min_size else 0
    return fit if size > 0 else -fit


def discount_linear(max_d: int, duration: int, t: int) -> int:
    return max_d if t >= duration else max_d * t // duration


def discount_of(ap, t: int) -> int:
    """The discount `t` seconds into an auction with the engine's params `ap` (an `auctionParams` struct),
    whatever its curve: linear and stairstep by the formulas here, exponential by the model's integer
    kernel (itself checked against the real curve in test_discount_curves)."""
    if ap.curve == LINEAR:
        return discount_linear(ap.maxDiscount, ap.duration, t)
    if ap.curve == STAIRSTEP:
        return discount_stairstep(ap.maxDiscount, ap.duration, ap.step, t)
    return Model.discount(ModelAuctionParams(ap.curve, ap.duration, ap.step, ap.maxDiscount, ap.resetDrop), t)


def discount_stairstep(max_d: int, duration: int, step: int, t: int) -> int:
    return max_d if t >= duration else max_d * (t // step) // (duration // step)


def discount_exponential_float(max_d: int, duration: int, t: int) -> float:
    """maxDiscount x (1 - e^(-4 t / duration)) / (1 - e^-4), in floating point (expm1 keeps small t exact)."""
    if t >= duration:
        return float(max_d)
    return max_d * (-math.expm1(-4.0 * t / duration)) / (-math.expm1(-4.0))


def auction_price(sign: int, index: int, d: int) -> int:
    """Long slice: the taker buys at index x (1 - d) rounded up; short: sells at index x (1 + d) rounded down."""
    return ceil_div(index * (WAD - d), WAD) if sign > 0 else index * (WAD + d) // WAD


def fill_quotes(sign: int, amount: int, p: int) -> tuple[int, int]:
    """(owner quote, taker quote) of a fill of `amount` base at `p`: receivers round down, payers up."""
    down, up = amount * p // WAD, ceil_div(amount * p, WAD)
    return (down, -up) if sign > 0 else (-up, down)



# ---------------------------------------------------------------------------- chain helpers


def deposit(system, who, amount, sub: int = 0):
    system.vault.deposit(sub, system.units(amount), sender=who)


def set_price(system, symbol: str, answer_8dec: int):
    system.markets[symbol].oracle.updateAnswer(answer_8dec, sender=system.deployer)


def open_long(system, who, base=10 * WAD, margin=3100, market=ETH):
    deposit(system, who, margin)
    trade(system.clearing_house, who, market, base)


def lparams(engine):
    return engine.liquidationParams()


def lp_tuple(p, **changes) -> tuple:
    d = {k: getattr(p, k) for k in ("targetHealth", "chip", "penalty", "maxRedos", "tip", "maxKeeperReward", "maxAuctionNotional")}
    d.update(changes)
    return tuple(d.values())


def ap_tuple(p, **changes) -> tuple:
    d = {k: getattr(p, k) for k in ("curve", "duration", "step", "maxDiscount", "resetDrop")}
    d.update(changes)
    return tuple(d.values())


def read(system, **calls):
    """Several views in one eth_call through the BatchCaller: label=(contract, "method", *args) -> value
    (one output unwrapped, several as a tuple, structs as Ape structs)."""
    from ape import chain

    labels = list(calls)
    items = [calls[k] for k in labels]
    res = system.extra["batcher"].batch.call(
        [c.address for c, *_ in items], [getattr(c, m).encode_input(*args) for c, m, *args in items])
    eco = chain.provider.network.ecosystem
    out = {}
    for k, (c, m, *args), r in zip(labels, items, res):
        vals = eco.decode_returndata(getattr(c, m).abis[0], bytes(r))
        out[k] = vals[0] if len(vals) == 1 else tuple(vals)
    return out


def _account_calls(system, who, sub, markets):
    ch, vault = system.clearing_house, system.vault
    calls = {"coll": (vault, "collateral", who.address, sub)}
    for mid in markets:
        calls[f"pos{mid}"] = (ch, "position", who.address, sub, mid)
        calls[f"auc{mid}"] = (ch, "auctionedSize", who.address, sub, mid)
        calls[f"idx{mid}"] = (ch, "indexPrice", mid)
        calls[f"mp{mid}"] = (ch, "marketParams", mid)
    return calls


def _health_from(r, markets, with_auctioned=False):
    """(V, M) and, with `with_auctioned`, the auctioned notional sum |auctioned| x index (rounded up)."""
    value, maint, auctioned = r["coll"], 0, 0
    for mid in markets:
        size, on, pf = r[f"pos{mid}"]
        if size == 0:
            continue
        value += size * r[f"idx{mid}"] // WAD - on - pf
        maint += requirement(size - r[f"auc{mid}"], r[f"idx{mid}"], r[f"mp{mid}"].mmr)
        auctioned += mul_up(abs(r[f"auc{mid}"]), r[f"idx{mid}"])
    return (value, maint, auctioned) if with_auctioned else (value, maint)


def health_of(system, who, sub=0, markets=(ETH, BTC)):
    """(V, M) from docs/design.md#accounts-and-margin with the chain's collateral, positions, auctioned sizes and
    index."""
    return _health_from(read(system, **_account_calls(system, who, sub, markets)), markets)


def _kick_calls(system, who, mid, sub, markets):
    engine = system.liquidation
    calls = _account_calls(system, who, sub, markets)
    calls.update(lp=(engine, "liquidationParams"), ap=(engine, "auctionParams", mid), ins=(system.vault, "insuranceFund"))
    return calls


def _model_from(r, mid, markets):
    value, maint, auctioned = _health_from(r, markets, with_auctioned=True)
    size = r[f"pos{mid}"][0]
    mp = r[f"mp{mid}"]
    m = model_slice(value, maint, size - r[f"auc{mid}"], r[f"idx{mid}"], mp.mmr, mp.minPositionSize, r["lp"],
                    r["ap"].maxDiscount, auctioned, r["ins"])
    return m, value, maint, r[f"idx{mid}"]


def expected_kick(system, who, mid, sub=0, markets=(ETH, BTC)):
    return _model_from(read(system, **_kick_calls(system, who, mid, sub, markets)), mid, markets)


def as_tuple(x) -> tuple:
    return tuple(x.values()) if isinstance(x, dict) else tuple(x)


def events(contract, name, tx):
    return list(getattr(contract, name).from_receipt(tx))


def one_event(contract, name, tx):
    logs = events(contract, name, tx)
    assert len(logs) == 1, logs
    return logs[0]


def head_ts(chain) -> int:
    return chain.blocks.head.timestamp


def at_time(chain, ts: int):
    """Make `ts` the head block's time (views run at the head) and the next block ts + 1."""
    chain.pending_timestamp = ts
    chain.mine()
    assert head_ts(chain) == ts


def frozen(system, batcher, owners=(), subs=(0,), markets=(ETH, BTC)):
    """Everything a reverted liquidation call must leave as it was, read in one eth_call. Values that move
    with the clock alone (a market's funding index accrued to now, a position's pending funding) are left
    out: a reverted transaction still takes a block."""
    ch, vault, engine, usdc = system.clearing_house, system.vault, system.liquidation, system.collateral
    calls = [
        (vault, vault.poolBalance.encode_input(), ()),
        (vault, vault.insuranceFund.encode_input(), ()),
        (vault, vault.pauseLevel.encode_input(), ()),
        (usdc, usdc.balanceOf.encode_input(vault.address), ()),
        (engine, engine.auctionCount.encode_input(), ()),
        (engine, engine.liveNotional.encode_input(), ()),
        (engine, engine.liquidationParams.encode_input(), ()),
    ]
    for mid in markets:
        calls += [(ch, ch.marketState.encode_input(mid), (5,)),  # word 5: cumulativeFunding accrued to now
                  (ch, ch.marketParams.encode_input(mid), ()),
                  (engine, engine.auctionParams.encode_input(mid), ())]
    for i in range(1, engine.auctionCount() + 1):
        calls.append((engine, engine.auction.encode_input(i), ()))
    for o in owners:
        for sub in subs:
            calls += [(vault, vault.collateral.encode_input(o.address, sub), ()),
                      (vault, vault.openMarkets.encode_input(o.address, sub), ())]
            for mid in markets:
                calls += [(ch, ch.position.encode_input(o.address, sub, mid), (2,)),  # word 2: pending funding
                          (ch, ch.auctionedSize.encode_input(o.address, sub, mid), ())]
    res = batcher.batch.call([c.address for c, _, _ in calls], [d for _, d, _ in calls])
    out = []
    for (_, _, drop), r in zip(calls, res):
        r = bytes(r)
        out.append(b"".join(r[i:i + 32] for i in range(0, len(r), 32) if i // 32 not in drop))
    return out


@contextmanager
def reverts_unchanged(system, batcher, error_cls, owners=(), subs=(0,), **inputs):
    before = frozen(system, batcher, owners, subs)
    with expect_revert(error_cls, **inputs) as info:
        yield info
    assert frozen(system, batcher, owners, subs) == before, "a reverted call changed state"


def kick_checked(system, chain, who, mid, keeper, caller, sub=0, markets=(ETH, BTC)):
    """kick and check it against the model to the wei: preview, event, auction record, auctioned size,
    ledger moves (owner, keeper's cross account, insurance, pool), reserves and open interest untouched,
    and the account's health right after. Returns (auction id, model, tx)."""
    ch, vault, engine = system.clearing_house, system.vault, system.liquidation
    keeper_addr = getattr(keeper, "address", keeper)
    same = keeper_addr == who.address and sub == 0
    calls = _kick_calls(system, who, mid, sub, markets)
    calls.update(preview=(engine, "kickPreview", who.address, sub, mid), kcoll=(vault, "collateral", keeper_addr, 0),
                 ins=(vault, "insuranceFund"), pool=(vault, "poolBalance"), live=(engine, "liveNotional"),
                 count=(engine, "auctionCount"), st=(ch, "marketState", mid),
                 sf=(vault, "shortfallOf", who.address, sub), pending=(vault, "pendingBadDebt"))
    r0 = read(system, **calls)
    m, value, maint, index = _model_from(r0, mid, markets)
    assert tuple(r0["preview"]) == (m.size, m.notional, m.reward + m.bounty, m.penalty)

    tx = engine.kick(who, sub, mid, keeper, sender=caller)

    aid = r0["count"] + 1
    ev = one_event(engine, "Kick", tx)
    assert (ev.auctionId, ev.owner, ev.subaccount, ev.marketId, ev.size, ev.startIndex, ev.keeper, ev.keeperReward, ev.penalty) == (
        aid, who.address, sub, mid, m.size, index, keeper_addr, m.reward + m.bounty, m.penalty)
    charged = one_event(vault, "LiquidationCharged", tx)
    assert (charged.keeperReward, charged.penalty) == (m.reward, m.penalty)
    assert [e.amount for e in events(vault, "KeeperBounty", tx)] == ([m.bounty] if m.bounty else [])
    # The estimate: recorded with its event when it changes; an unchanged one (0 over 0 above water) writes and
    # emits nothing.
    pending = r0["pending"] - r0["sf"] + m.shortfall
    assert [(e.owner, e.subaccount, e.shortfall, e.total) for e in events(vault, "ShortfallRecorded", tx)] == (
        [(who.address, sub, m.shortfall, pending)] if m.shortfall != r0["sf"] else [])
    assert (vault.shortfallOf(who, sub), vault.pendingBadDebt()) == (m.shortfall, pending)
    r1 = read(system, auction=(engine, "auction", aid), count=(engine, "auctionCount"), live=(engine, "liveNotional"),
              auc=(ch, "auctionedSize", who.address, sub, mid), coll=(vault, "collateral", who.address, sub),
              kcoll=(vault, "collateral", keeper_addr, 0), ins=(vault, "insuranceFund"), pool=(vault, "poolBalance"),
              st=(ch, "marketState", mid), health=(vault, "health", who.address, sub))
    assert tuple(r1["auction"]) == (who.address, sub, mid, 0, m.size, index, tx.timestamp, m.notional)
    assert r1["count"] == aid
    assert r1["live"] == r0["live"] + m.notional
    assert r1["auc"] == r0[f"auc{mid}"] + m.size
    # Vault ledger: reward owner -> keeper's cross account, penalty owner -> insurance; pool untouched.
    if same:
        assert r1["coll"] == r0["coll"] - m.penalty + m.bounty
    else:
        assert r1["coll"] == r0["coll"] - m.reward - m.penalty
        assert r1["kcoll"] == r0["kcoll"] + m.reward + m.bounty
    assert r1["ins"] == r0["ins"] + m.penalty - m.bounty
    assert r1["pool"] == r0["pool"]
    # The vAMM and open interest do not move on a kick.
    st0, st1 = r0["st"], r1["st"]
    assert (st1.baseReserve, st1.quoteReserve, st1.longOpenInterest, st1.shortOpenInterest) == (
        st0.baseReserve, st0.quoteReserve, st0.longOpenInterest, st0.shortOpenInterest)
    # Health right after: value less the costs; maintenance no longer counts the slice.
    avail0 = r0[f"pos{mid}"][0] - r0[f"auc{mid}"]
    mmr = r0[f"mp{mid}"].mmr
    exp_value = value - m.reward - m.penalty + (m.reward + m.bounty if same else 0)
    exp_maint = maint - requirement(avail0, index, mmr) + requirement(avail0 - m.size, index, mmr)
    assert (r1["health"][0], r1["health"][3]) == (exp_value, exp_maint)
    return aid, m, tx


def expected_redo_tip(system, who, mid, sub=0, markets=(ETH, BTC)) -> tuple[int, int]:
    """(tip, shortfall) a redo of `who`'s auction in `mid` must pay and record now (ILiquidationEngine.redo):
    the tip is capped at what the account keeps after the worst fill of its auctioned parts, and what
    would still be missing after it is the recorded bad-debt estimate."""
    engine = system.liquidation
    r = read(system, **_account_calls(system, who, sub, markets))
    value, maint, auctioned = _health_from(r, markets, with_auctioned=True)
    backing = sum(mul_up(mul_up(abs(r[f"auc{m}"]), r[f"idx{m}"]),
                         max(r[f"mp{m}"].mmr, engine.auctionParams(m).maxDiscount)) for m in markets)
    room = value - mul_up(auctioned, engine.auctionParams(mid).maxDiscount)
    # No tip once the account covers its free maintenance and its auctions' backing again.
    tip = 0 if room <= 0 or value >= maint + backing else min(lparams(engine).tip, room)
    return tip, max(0, -(room - tip))


def worst_fill_value_change(sign: int, size: int, amount: int, index: int, max_d: int) -> int:
    """Change of the owner's accountValue when `amount` of its slice fills at the full discount, index
    unchanged: owner quote + floor(newSize x index) - floor(size x index) (the basis cancels)."""
    p = auction_price(sign, index, max_d)
    owner_q, _ = fill_quotes(sign, amount, p)
    return owner_q + (size - sign * amount) * index // WAD - size * index // WAD


def push_vamm_to(system, who, target_price_wad: int):
    """`who` (an arbitrageur) sells or buys ETH base until the vAMM price is about `target_price_wad`; no
    trade when that is less than the minimum position (0.01 ETH)."""
    ch = system.clearing_house
    st = ch.marketState(ETH)
    x1 = math.isqrt(st.baseReserve * st.quoteReserve * WAD // target_price_wad)
    base = st.baseReserve - x1  # > 0 buys, < 0 sells
    if abs(base) >= MIN_ETH:
        trade(ch, who, ETH, base)
