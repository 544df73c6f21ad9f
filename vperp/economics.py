"""vPerp's economics in figures: the price-impact table and the report `ape run economics` writes
(docs/economics.md).

Pure Python: nothing here imports Ape or needs a chain.

- **Price impact at deployment** (`vperp_impact`): for each market of a deployment (the shipped one,
  `vperp.config.default_config()`, with its 10,000,000 USD pool seed), the all-in cost of a buy and a
  sell of 100k, 1M and 10M USD of notional at the index: price impact against the index plus the taker
  fee, in basis points. Every figure is a trade on the reference model (`vperp.model.Model.open_position`
  on a copy of the freshly deployed model), so it is the curve, the rounding, the fee and the price band
  the contracts apply, to the wei; nothing of the curve is re-implemented here. An order whose
  post-trade price would leave the band (`max_spread` around the index) reverts there
  (`PriceBandExceeded`); the table says so and gives the largest order inside the band, found by
  bisection over the model's own trade.
- **Comparison venues**, from their published parameters (`GmxV2Impact`, `PerpV1Amm`; the sources are
  in their docstrings and in docs/economics.md).
- **The report**: the issue's measure table (figures quoted for 4745643 next to figures computed from
  the runs' `summary.json`), the seed tables, the price-impact table and the LP share-price plots.
"""
from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterable, Sequence

from .config import DeployConfig, default_config, plain_config, wad
from .model import Model, ModelRevert, vamm_swap

from .units import WAD
NOTIONALS = (100_000, 1_000_000, 10_000_000)  # USD of notional at the index
POOL_SEED = 10_000_000  # USD: the shipped deployment's pool seed
T0 = 1_700_002_800  # [s] a fixed hour boundary: the tables never depend on the wall clock
TRADER = "trader"
MARGIN = 1_000_000_000  # USD deposited by the model's trader: margin never binds in the table


# =============================================================================== vPerp, on the model


@dataclass(frozen=True)
class Impact:
    """One order: `side` +1 buys, -1 sells `notional` USD at the index. `impact_bps` is the fill's
    distance from the index (what the curve costs), `fee_bps` the taker fee, both per notional at the
    index, `cost_bps` their sum; `move_pct` is the post-trade price against the index. `reverts` names
    the reason an order does not execute (then the cost fields are None)."""

    venue: str
    market: str
    side: int
    notional: float
    impact_bps: float | None
    fee_bps: float | None
    move_pct: float | None
    reverts: str | None = None
    paid: float | None = None  # USD of quote paid (buy) or received (sell), before the fee

    @property
    def cost_bps(self) -> float | None:
        return None if self.impact_bps is None else self.impact_bps + self.fee_bps


# The per-market thresholds' evidence lives in docs/governance.md (measured with the governed deployment).
PER_MARKET_NOTE = (
    "These runs apply the breakers' global parameters to every market. A market may carry its own move, d"
    'ivergence and skew thresholds (`CircuitBreaker.setMarketThresholds`); the governed deployment (deplo'
    'yments/config/governed.yaml) loosens them for ETH and BTC and keeps the global ones for any other ma'
    'rket. Measured with that file on the same scenarios (seeds 1-3, [governance.md](governance.md#per-ma'
    'rket-thresholds-riskgovernorsetbreakermarketthresholdsmarketid-t---circuitbreakersetmarketthresholds'
    '), on an earlier commit, before the keeper repegged after every index post, and not redone): crash an'
    'd squeeze LP returns back at the breakers-off figures of those runs (crash +0.20 % to +0.38 %, squeez'
    'e +0.18 % to +0.19 %) while the thin-market attacker keeps 6,800 to 8,200 USD instead of about 60,000'
    '.'
)


def deployed_model(config: DeployConfig | None = None, pool_seed: float = POOL_SEED) -> Model:
    """The reference model of `config` (default: the shipped deployment) right after `vperp.deploy`,
    with its pool seeded with `pool_seed` USD and a trader whose margin never binds."""
    config = config or default_config()
    config = DeployConfig(markets=config.markets, collateral=config.collateral,
                          collateral_decimals=config.collateral_decimals, pool_seed=pool_seed,
                          insurance_seed=config.insurance_seed)
    model = Model.from_config(config, T0)
    model.deposit(TRADER, 0, MARGIN * 10**config.collateral_decimals, T0)
    return model


PLAIN = "plain.yaml"  # the label of the rows of deployments/config/plain.yaml, the plain markets (before)


def _market_id(model: Model, symbol: str) -> int:
    return next(i for i, m in model.markets.items() if m.symbol == symbol)


def model_trade(model: Model, symbol: str, base: int) -> tuple[Any, str | None]:
    """`base` (signed WAD) traded on a copy of `model` one block after deployment: (TradeResult, None),
    or (None, the revert's name)."""
    trial = copy.deepcopy(model)
    market_id = _market_id(trial, symbol)
    limit = 2**255 if base > 0 else 0  # no slippage bound: the table measures the fill
    try:
        return trial.open_position(TRADER, 0, market_id, base, limit, T0 + 12, T0 + 120), None
    except ModelRevert as e:
        return None, e.name


def _index(model: Model, symbol: str) -> int:
    return model.index_price(_market_id(model, symbol), T0 + 12)


def _impact_of(model: Model, symbol: str, side: int, base: int, venue: str = "vPerp") -> Impact:
    index = _index(model, symbol)
    notional = base * index / WAD / WAD
    result, error = model_trade(model, symbol, side * base)
    if error is not None:
        reason = "reverts on the band" if error == "PriceBandExceeded" else f"reverts ({error})"
        return Impact(venue, symbol, side, notional, None, None, None, reason)
    at_index = base * index  # WAD^2
    paid = -result.quote if side > 0 else result.quote  # quote paid on a buy, received on a sell (WAD)
    impact = (paid * WAD - at_index) / at_index if side > 0 else (at_index - paid * WAD) / at_index
    fee = result.fee * WAD / at_index
    move = (result.price_after - index) / index
    return Impact(venue, symbol, side, notional, 10_000 * impact, 10_000 * fee, 100 * move, paid=paid / WAD)


def base_for(model: Model, symbol: str, notional: float) -> int:
    """The base (WAD) worth `notional` USD at the market's index, rounded down."""
    return int(Decimal(str(notional)) * WAD * WAD) // _index(model, symbol)


def vperp_impact(config: DeployConfig | None = None, notionals: Sequence[float] = NOTIONALS,
                 pool_seed: float = POOL_SEED) -> list[Impact]:
    """The buy and sell of every notional on every market of the deployment, in market order."""
    model = deployed_model(config, pool_seed)
    return [_impact_of(model, m.symbol, side, base_for(model, m.symbol, n))
            for m in model.markets.values() for n in notionals for side in (1, -1)]


def largest_inside_band(symbol: str, side: int, config: DeployConfig | None = None,
                        pool_seed: float = POOL_SEED) -> Impact:
    """The largest order (in the market's minimum-size lots) the model executes without reverting on
    the price band, by bisection on the model's own trade; that the next lot up reverts is checked."""
    model = deployed_model(config, pool_seed)
    m = model.markets[_market_id(model, symbol)]
    lot = m.min_position_size
    ok = lambda lots: model_trade(model, symbol, side * lots * lot)[1] != "PriceBandExceeded"  # noqa: E731
    lo, hi = 1, 1
    while ok(hi):
        lo, hi = hi, hi * 2
        if hi * lot >= m.x:
            break
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if ok(mid) else (lo, mid)
    assert ok(lo) and not ok(lo + 1), (symbol, side, lo)
    return _impact_of(model, symbol, side, lo * lot)


def depth_multiple_for(symbol: str, notional: float, target_bps: float, config: DeployConfig | None = None,
                       pool_seed: float = POOL_SEED) -> float:
    """How many times the market's listed virtual depth (`base_reserve`, the quote reserve following at
    the index) the same curve would need for a buy of `notional` to cost at most `target_bps` all in, on
    the model (bisection to 1 %); the fee alone is a floor no depth removes (then inf)."""
    from dataclasses import replace

    config = config or default_config()

    def cost(k: float) -> float:
        markets = tuple(replace(m, base_reserve=float(round(Decimal(str(m.base_reserve)) * Decimal(str(k)), 6)))
                        if m.symbol == symbol else m for m in config.markets)
        model = deployed_model(replace(config, markets=markets), pool_seed)
        i = _impact_of(model, symbol, 1, base_for(model, symbol, notional))
        return math.inf if i.reverts else i.cost_bps

    if cost(1e6) > target_bps:
        return math.inf
    lo, hi = 1.0, 2.0
    while cost(hi) > target_bps:
        lo, hi = hi, hi * 2
    while hi / lo > 1.01:
        mid = math.sqrt(lo * hi)
        lo, hi = (lo, mid) if cost(mid) <= target_bps else (mid, hi)
    return hi


# =============================================================================== comparison venues


@dataclass(frozen=True)
class GmxV2Impact:
    """GMX v2 (Synthetics) position price impact, from its published market parameters. The impact of a
    position change is `factor x (imbalance before^e - imbalance after^e)` in USD, where the imbalance is
    |long - short| open interest in USD, with the negative factor when the change widens the imbalance;
    the net negative impact is capped at `max_negative` of the size. The position fee is the one for a
    negative impact. Defaults: the ETH/USD [WETH-USDC] market on Arbitrum in gmx-io/gmx-synthetics
    `config/markets.ts` (stored copy at commit 00172c0): negativePositionImpactFactor 12e-11 per USD,
    positivePositionImpactFactor 6e-11, positionImpactExponentFactor 2 and
    negativeMaxPositionImpactFactor 0.5 % (the base config's, not overridden), positionFeeFactor 0.07 %
    for a negative impact (0.05 % for a positive one)."""

    negative_factor: float = 12e-11
    positive_factor: float = 6e-11
    exponent: float = 2.0
    max_negative: float = 0.005
    fee_negative: float = 0.0007
    source: str = ("gmx-io/gmx-synthetics config/markets.ts, ETH/USD [WETH-USDC] on Arbitrum (stored copy at "
                   "commit 00172c0)")

    def impact(self, notional: float, side: int, long_oi: float = 0.0, short_oi: float = 0.0) -> Impact:
        before = abs(long_oi - short_oi)
        after = abs(long_oi - short_oi + side * notional)
        if after <= before:  # a change that narrows the imbalance earns a (capped) rebate; not tabled here
            usd = -self.positive_factor * (before**self.exponent - after**self.exponent)
        else:
            usd = min(self.negative_factor * (after**self.exponent - before**self.exponent),
                      self.max_negative * notional)
        return Impact("GMX v2", "ETH", side, notional, 10_000 * usd / notional, 10_000 * self.fee_negative, None)


@dataclass(frozen=True)
class PerpV1Amm:
    """The first-generation Perpetual Protocol (v1) vAMM: constant product on virtual reserves, a
    `spread` fee on the notional, and a fluctuation limit: a trade may not move the price more than
    `fluctuation` from the previous block's (the contract's `fluctuationLimitRatio`, "the impact of the
    price MUST be less than" it on opening). Defaults: the ETH/USDC AMM of perpetual-protocol/
    perpetual-protocol `publish/contract/DeployConfig.ts` (stored copy at commit d7aba70, the xDai
    mainnet configuration that followed the December 2020 launch): quoteAssetReserve 10,000,000,
    baseAssetReserve 20,000 (a 500 USD price), spreadRatio 0.1 %, fluctuation 1.2 %. Only the quote
    reserve matters for the relative cost: an order of notional N moves along x.y = k by N / y of the
    reserve at any price, so the figures hold at today's prices for the same quote depth. The fills use
    the same constant-product swap as vPerp's (`vperp.model.vamm_swap`)."""

    quote_reserve: float = 10_000_000
    base_reserve: float = 20_000
    spread: float = 0.001
    fluctuation: float = 0.012
    source: str = ("perpetual-protocol/perpetual-protocol publish/contract/DeployConfig.ts, ETH_USD_AMM (stored copy "
                   "at commit d7aba70)")

    def impact(self, notional: float, side: int) -> Impact:
        x, y = wad(self.base_reserve), wad(self.quote_reserve)
        price = y * WAD // x
        base = int(Decimal(str(notional)) * WAD * WAD) // price
        if side > 0 and base >= x:  # the whole virtual base reserve: no price reaches it
            return Impact("Perp v1", "ETH", side, notional, None, None, None, "reverts on the fluctuation limit")
        quote, x1, y1 = vamm_swap(x, y, side * base)
        at_index = base * price  # WAD^2
        paid = -quote if side > 0 else quote
        impact = (paid * WAD - at_index) / at_index if side > 0 else (at_index - paid * WAD) / at_index
        move = (y1 * WAD // x1 - price) / price
        reverts = "reverts on the fluctuation limit" if abs(move) > self.fluctuation else None
        if reverts:
            return Impact("Perp v1", "ETH", side, notional, None, None, None, reverts)
        return Impact("Perp v1", "ETH", side, notional, 10_000 * impact, 10_000 * self.spread, 100 * move,
                      paid=paid / WAD)

    def largest_inside_limit(self, side: int) -> float:
        """The largest notional that keeps the move within the fluctuation limit: (x / (x -+ b))^2 = 1 +- L."""
        if side > 0:
            return self.quote_reserve * (1 - 1 / math.sqrt(1 + self.fluctuation))
        return self.quote_reserve * (1 / math.sqrt(1 - self.fluctuation) - 1)


# =============================================================================== the price-impact table


@dataclass
class ImpactTable:
    """Everything the price-impact section shows, computed."""

    vperp: list[Impact]
    vperp_largest: list[Impact]  # per market: the largest buy and sell inside the band
    gmx: list[Impact]
    perp_v1: list[Impact]
    perp_v1_largest: list[Impact]
    config: dict[str, Any] = field(default_factory=dict)  # the vPerp parameters the figures depend on
    plain: list[Impact] = field(default_factory=list)  # the same orders on `plain_config()`, the plain markets
    plain_largest: list[Impact] = field(default_factory=list)
    setting: str = "shipped"  # what `vperp` is: the shipped deployment, or the deployment file the report was run on


def compute_impact_table(config: DeployConfig | None = None, pool_seed: float = POOL_SEED,
                         notionals: Sequence[float] = NOTIONALS, gmx: GmxV2Impact = GmxV2Impact(),
                         perp: PerpV1Amm = PerpV1Amm(), setting: str = "shipped") -> ImpactTable:
    """The price-impact section's figures for `config` (default: the shipped deployment; `setting` names it in the
    rows and the text), next to the plain markets, GMX v2 and Perp v1."""
    config = config or default_config()
    largest = [largest_inside_band(m.symbol, side, config, pool_seed) for m in config.markets for side in (1, -1)]
    perp_largest = []
    for side in (1, -1):
        n = perp.largest_inside_limit(side) * (1 - 1e-9)  # just inside
        perp_largest.append(perp.impact(n, side))
    plain = plain_config()
    plain_largest = [largest_inside_band(m.symbol, side, plain, pool_seed) for m in plain.markets for side in (1, -1)]
    return ImpactTable(
        vperp=vperp_impact(config, notionals, pool_seed), vperp_largest=largest,
        plain=vperp_impact(plain, notionals, pool_seed), plain_largest=plain_largest,
        gmx=[gmx.impact(n, side) for n in notionals for side in (1, -1)],
        perp_v1=[perp.impact(n, side) for n in notionals for side in (1, -1)], perp_v1_largest=perp_largest, setting=setting,
        config={m.symbol: {"base_reserve": m.base_reserve, "price": m.price, "quote_reserve": m.base_reserve * m.price,
                           "taker_fee": m.taker_fee, "max_spread": m.max_spread,
                           "funding_period_hours": m.funding_period_hours,
                           "funding_smoothing_tau": m.funding_smoothing_tau,
                           "max_funding_rate": m.funding_cap_wad() / WAD} for m in config.markets})


def find(rows: Iterable[Impact], market: str, side: int, notional: float) -> Impact:
    """The row of `market`, `side` whose notional is `notional` to the dollar."""
    return next(r for r in rows if r.market == market and r.side == side and abs(r.notional - notional) < 1)


def _usd(x: float) -> str:
    if x >= 1_000_000:
        return f"{x / 1e6:.0f}M" if abs(x - round(x, -6)) < 1 else f"{x / 1e6:.2f}M"
    return f"{x / 1e3:.0f}k" if x >= 1_000 else f"{x:.0f}"


def _cell(i: Impact) -> str:
    if i.reverts:
        return i.reverts
    return f"**{i.cost_bps:.1f}** ({i.impact_bps:.1f} + {i.fee_bps:.1f})"


def _move(i: Impact) -> str:
    return "" if i.move_pct is None else f"{i.move_pct:+.2f} %"


def impact_markdown(t: ImpactTable) -> str:
    """The price-impact table: one row per venue, market and order size, buy and sell side by side."""
    lines = ["| venue | market | order (USD notional at the index) | buy: all-in bps (impact + fee) | "
             "sell: all-in bps (impact + fee) | price after (buy / sell) |", "|---|---|---|---|---|---|"]

    def pair(rows: list[Impact], venue: str, market: str, label: str, buy: Impact, sell: Impact) -> None:
        moves = " / ".join(m for m in (_move(buy), _move(sell)) if m) or "n/a"
        rows.append(f"| {venue} | {market} | {label} | {_cell(buy)} | {_cell(sell)} | {moves} |")

    out: list[str] = []
    for market in t.config:
        for venue, rows, largest in ((f"vPerp ({t.setting})", t.vperp, t.vperp_largest),
                                     (f"vPerp ({PLAIN})", t.plain, t.plain_largest)):
            if not rows:
                continue
            for n in sorted({round(i.notional, -3) for i in rows if i.market == market}):
                pair(out, venue, market, _usd(n), find(rows, market, 1, n), find(rows, market, -1, n))
            buy, sell = (next(i for i in largest if i.market == market and i.side == s) for s in (1, -1))
            out.append(f"| {venue} | {market} | largest inside the band: {_usd(buy.notional)} buy "
                       f"({_usd(buy.paid)} paid), {_usd(sell.notional)} sell ({_usd(sell.paid)} received) | "
                       f"{_cell(buy)} | {_cell(sell)} | {_move(buy)} / {_move(sell)} |")
    for n in sorted({i.notional for i in t.gmx}):
        pair(out, "GMX v2", "ETH", _usd(n), find(t.gmx, "ETH", 1, n), find(t.gmx, "ETH", -1, n))
    for n in sorted({i.notional for i in t.perp_v1}):
        pair(out, "Perp v1", "ETH", _usd(n), find(t.perp_v1, "ETH", 1, n), find(t.perp_v1, "ETH", -1, n))
    buy, sell = t.perp_v1_largest
    out.append(f"| Perp v1 | ETH | largest inside the fluctuation limit: {_usd(buy.notional)} buy, "
               f"{_usd(sell.notional)} sell | {_cell(buy)} | {_cell(sell)} | {_move(buy)} / {_move(sell)} |")
    return "\n".join(lines + out) + "\n"


# =============================================================================== the measure table


# The figures the issue (13) quotes for commit 4745643 from the independent economic review, copied
# from its table (quoted, not re-run here), and its goals.
REVIEW_4745643 = {
    "cost_1m": "355 bps (buy), 332 (sell); the order moves the price 7 %; 10M reverts on the band; largest "
               "order inside the band about 1.46M",
    "crash_pool_bad_debt": "57k-84k USD every seed (insurance fund 100k emptied)",
    "crash_share_drawdown": "24-25 % (bad debt is only 0.2-0.6 % of NAV: the rest is inventory the arbitrageur "
                            "leaves the pool, e.g. long 3,930 ETH)",
    "lp_return_trend": "-0.135 %",
    "lp_return_calm": "not quoted",
    "lp_return_squeeze": "-8.3 % (traders' PnL +25.7k, funding paid to the pool for carrying a 205 ETH net long: 46 USD)",
    "crash_takes": "0 takes in 4 of 5 seeds; every seed ends in 2 backstops",
    "funding_ratio": "0.18-0.40 (crash, squeeze); at the defaults the velocity limit never binds",
}
GOALS = {
    "cost_1m": "<= 50 bps for 1M; a 10M order executes",
    "crash_pool_bad_debt": "0 on every seed, with the shipped defaults",
    "crash_share_drawdown": "<= 8 %",
    "lp_return_trend": ">= 0 on every seed",
    "lp_return_calm": ">= 0 on every seed",
    "lp_return_squeeze": "loss halved (>= -4.15 %)",
    "crash_takes": "most liquidated size taken by keepers; backstops rare",
    "funding_ratio": "<= 0.10, with the time to converge to a held premium documented",
}
MEASURES = {
    "cost_1m": "cost of a 1M USD market order on ETH, incl. the taker fee (model, at deployment, 10M pool)",
    "crash_pool_bad_debt": "crash (-40 % in 1 h): bad debt paid by the pool",
    "crash_share_drawdown": "crash: LP share-price drawdown (peak to trough)",
    "lp_return_trend": "LP return, trend (share price end / start - 1)",
    "lp_return_calm": "LP return, calm",
    "lp_return_squeeze": "LP return, squeeze",
    "crash_takes": "auctions in the crash: takes vs backstops",
    "funding_ratio": "largest change of the applied hourly funding within 1 h, vs the unsmoothed rule (premium/24, no "
                     "cap) on the same path (on chain: the rate each run recorded, ETH and BTC)",
}


def load_runs(runs_dir: str | Path, scenarios: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
    """Each scenario's run summaries (`<runs_dir>/<scenario>/seed<S>/summary.json`), in seed order."""
    out = {}
    for sc in scenarios:
        agg = json.loads((Path(runs_dir) / sc / "aggregate.json").read_text())
        out[sc] = [dict(json.loads((Path(runs_dir) / sc / f"seed{s}" / "summary.json").read_text()),
                        _dir=str(Path(runs_dir) / sc / f"seed{s}")) for s in agg["seeds"]]
    return out


def funding_ratios(summaries: Sequence[dict[str, Any]], reference_period_hours: int = 24) -> list[float] | None:
    """The funding smoothing's ratio measured on chain in each run (`vperp.funding_compare.chain_ratio`, ETH and
    BTC: against the unsmoothed rule premium / `reference_period_hours`), from the runs' `steps.csv`; None when a
    run has no folder or was recorded before the columns it needs."""
    from dataclasses import replace

    from .funding_compare import Params, chain_ratio

    reference = replace(Params(), period_hours=reference_period_hours)
    out = []
    try:
        for s in summaries:
            if "_dir" not in s:
                return None
            out += [chain_ratio(s["_dir"], sym, reference) for sym in s.get("symbols", ("ETH", "BTC"))]
    except (OSError, ValueError):
        return None
    return out


def lp_return(summary: dict[str, Any]) -> float:
    """LP return over a run: the share price at the end over the start, less 1 (a fraction)."""
    return summary["lp_share_price_end"] / summary["lp_share_price_start"] - 1


def _pct(x: float, digits: int = 2) -> str:
    return f"{100 * x:+.{digits}f} %"


def _range(vals: Sequence[float], fmt) -> str:
    lo, hi = fmt(min(vals)), fmt(max(vals))
    return lo if lo == hi else f"{lo} to {hi}"


def measures_now(runs: dict[str, list[dict[str, Any]]], impact: ImpactTable) -> dict[str, str]:
    """The "now" column: each measure computed from the run summaries (and, for the order cost, the
    price-impact table). A scenario not run gives "not run"."""
    out: dict[str, str] = {}
    buy, sell = find(impact.vperp, "ETH", 1, 1_000_000), find(impact.vperp, "ETH", -1, 1_000_000)
    big = [find(impact.vperp, "ETH", s, 10_000_000) for s in (1, -1)]
    lb, ls = (next(i for i in impact.vperp_largest if i.market == "ETH" and i.side == s) for s in (1, -1))
    ten = ("10M executes" if not any(i.reverts for i in big) else
           "10M " + " / ".join(f"{'buy' if i.side > 0 else 'sell'} {i.reverts}" for i in big))
    out["cost_1m"] = (f"{buy.cost_bps:.1f} bps (buy), {sell.cost_bps:.1f} (sell); the order moves the price "
                      f"{buy.move_pct:+.2f} % / {sell.move_pct:+.2f} %; {ten}; largest order inside the band "
                      f"{_usd(lb.notional)} of notional (buy: {_usd(lb.paid)} paid), {_usd(ls.notional)} (sell)")
    crash = runs.get("crash")
    if crash:
        n = len(crash)
        pool = [s["bad_debt_from_pool"] for s in crash]
        paid = sum(1 for v in pool if v > 0)
        ins_min = min(s["insurance_min"] for s in crash)
        out["crash_pool_bad_debt"] = (f"{_range(pool, lambda v: f'{v:,.0f}')} USD over {n} seeds (the pool paid in "
                                      f"{paid} of {n}); total bad debt {_range([s['bad_debt'] for s in crash], lambda v: f'{v:,.0f}')} "
                                      f"USD; insurance fund lowest {ins_min:,.0f} USD")
        dd = [s["lp_share_price_drawdown"] for s in crash]
        out["crash_share_drawdown"] = f"{_range(dd, lambda v: f'{100 * v:.2f} %')} over {n} seeds"
        takes, backstops = sum(s["takes"] for s in crash), sum(s["backstops"] for s in crash)
        kicks, redos = sum(s["kicks"] for s in crash), sum(s["redos"] for s in crash)
        no_take = sum(1 for s in crash if s["takes"] == 0 and s["kicks"] > 0)
        out["crash_takes"] = (f"{takes} takes, {backstops} backstops ({kicks} kicks, {redos} redos) over {n} seeds; "
                              f"seeds with kicks and no take: {no_take}")
    else:
        for k in ("crash_pool_bad_debt", "crash_share_drawdown", "crash_takes"):
            out[k] = "not run"
    parts = []
    for sc in ("crash", "squeeze"):
        ratios = funding_ratios(runs.get(sc) or [])
        if ratios:
            parts.append(f"{_range(ratios, lambda v: f'{v:.3f}')} ({sc})")
    if parts:
        from dataclasses import replace

        from .funding_compare import PHASES, Params, hours_to_converge

        # As docs/funding.md's kernel table: the worst placement of the chain's hour boundaries, with the funding
        # period and time constant of the deployment measured (ETH's).
        eth = impact.config.get("ETH", {})
        base = replace(Params(), period_hours=eth.get("funding_period_hours", Params().period_hours),
                       tau=eth.get("funding_smoothing_tau", Params().tau),
                       max_rate=wad(eth["max_funding_rate"]) if "max_funding_rate" in eth else Params().max_rate)
        # A +0.05 % premium: its target stays under the shipped 0.025 %/h cap at a period of 2 hours or more, so the
        # figure is the kernel's (a premium whose target the cap clamps is met sooner, at the cap).
        hours = max(hours_to_converge(5 * 10**14, replace(base, phase=ph)) for ph in PHASES)
        setting = "" if (base.period_hours, base.tau) == (Params().period_hours, Params().tau) else (
            f" at this setting's {base.period_hours}-hour period and {base.tau / 3600:g}-hour time constant")
        own = ""
        if base.period_hours != 24:
            # The same runs against the deployment's own rule unsmoothed (premium / its period), and the closed form
            # on a held premium against premium / 24 (vperp.funding_compare.held_premium_ratio).
            from .funding_compare import held_premium_ratio

            mine = []
            for sc in ("crash", "squeeze"):
                ratios = funding_ratios(runs.get(sc) or [], base.period_hours)
                if ratios:
                    mine.append(f"{_range(ratios, lambda v: f'{v:.4f}')} ({sc})")
            held = held_premium_ratio(base.period_hours, base.window / 3600, base.tau / 3600)
            own = (f"; against this setting's own rule unsmoothed (premium / {base.period_hours}): " + ", ".join(mine)
                   + f"; on a held premium {held:.3f} against premium / 24")
        out["funding_ratio"] = (", ".join(parts) + own + f"; 95 % of a held +0.05 % premium's rate after {hours:.1f} h"
                                + setting + " (docs/funding.md)")
    else:
        out["funding_ratio"] = "not run (crash, squeeze)"
    for sc in ("trend", "calm", "squeeze"):
        rs = runs.get(sc)
        if not rs:
            out[f"lp_return_{sc}"] = "not run"
            continue
        rets = [lp_return(s) for s in rs]
        below = sum(1 for r in rets if r < 0)
        out[f"lp_return_{sc}"] = (f"{_range(rets, lambda v: _pct(v, 3))} over {len(rs)} seeds (mean "
                                  f"{_pct(sum(rets) / len(rets), 3)}; below 0 in {below})")
    return out


def measure_markdown(now: dict[str, str], config_label: str = "default config") -> str:
    lines = [f"| measure ({config_label}, 10M pool) | at 4745643 (independent review, quoted) | now | goal (issue 13) |",
             "|---|---|---|---|"]
    for k, label in MEASURES.items():
        lines.append(f"| {label} | {REVIEW_4745643[k]} | {now[k]} | {GOALS[k]} |")
    return "\n".join(lines) + "\n"


def lp_return_markdown(runs: dict[str, list[dict[str, Any]]]) -> str:
    """Per scenario and seed: the LP share price at the start and end and the return."""
    lines = ["| scenario | seed | share price start | end | LP return | LP share-price drawdown | bad debt paid by the pool (USD) |",
             "|---|---|---|---|---|---|---|"]
    for sc, rs in runs.items():
        for s in rs:
            lines.append(f"| {sc} | {s['seed']} | {s['lp_share_price_start']:.6f} | {s['lp_share_price_end']:.6f} | "
                         f"{_pct(lp_return(s), 3)} | {100 * s['lp_share_price_drawdown']:.2f} % | "
                         f"{s['bad_debt_from_pool']:,.0f} |")
    return "\n".join(lines) + "\n"


# =============================================================================== plots


def _save_plot(fig, ax, out_png: str | Path, manifest: dict | None) -> Path:
    """Lay out, write `out_png` at the simulator's DPI, record its size and lines in `manifest`, close."""
    import matplotlib.pyplot as plt

    from .sim import PLOT_DPI

    fig.tight_layout()
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=PLOT_DPI)
    if manifest is not None:
        w, h = (round(x * PLOT_DPI) for x in fig.get_size_inches())
        manifest[out_png.name] = {"size_px": [w, h], "lines": [line.get_label() for line in ax.get_lines()]}
    plt.close(fig)
    return out_png


IMPACT_CURVE_NOTIONALS = tuple(round(10 ** (4 + i / 8)) for i in range(0, 27))  # 10k .. 20M USD, log-spaced


def impact_curves(symbol: str = "ETH", notionals: Sequence[float] = IMPACT_CURVE_NOTIONALS,
                  pool_seed: float = POOL_SEED) -> dict[str, list[tuple[float, float | None]]]:
    """All-in cost (bps) of a buy of each notional on the model of the shipped (concentrated) and the plain deployment,
    same pool capital; None where the order reverts (the band). Also GMX v2's published curve for reference."""
    out: dict[str, list[tuple[float, float | None]]] = {}
    for label, cfg in ((f"vPerp {PLAIN}: constant product, 30M of quote", plain_config()),
                       ("vPerp shipped: amplified 10x on the 10 % range, 300M of quote", default_config())):
        model = deployed_model(cfg, pool_seed)
        out[label] = [(n, _impact_of(model, symbol, 1, base_for(model, symbol, n)).cost_bps) for n in notionals]
    gmx = GmxV2Impact()
    out["GMX v2 (published factors, balanced market)"] = [(n, gmx.impact(n, 1).cost_bps) for n in notionals]
    return out


def plot_impact(out_png: str | Path, symbol: str = "ETH", manifest: dict | None = None) -> Path:
    """Price impact against order size, the plain curve and the shipped (concentrated) one, same pool capital (log-log),
    with the 50 bps goal."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .sim import PLOT_DPI, PLOT_WIDTH_IN

    fig, ax = plt.subplots(figsize=(PLOT_WIDTH_IN, 4.0))
    for (label, pts), ls in zip(impact_curves(symbol).items(), ("-", "-", ":")):
        xs = [n for n, c in pts if c is not None]
        ax.plot(xs, [c for n, c in pts if c is not None], ls=ls, lw=1.6, marker="o", ms=3, label=label)
        cut = next((n for n, c in pts if c is None), None)
        if cut is not None:
            ax.axvline(cut, color=ax.get_lines()[-1].get_color(), lw=0.8, ls="--", alpha=0.7)
            ax.annotate("reverts on the band", (cut, 14), fontsize=8, rotation=90, ha="right", va="bottom")
    ax.axhline(50, color="tab:red", lw=0.8, alpha=0.6)
    ax.annotate("goal for 1M: 50 bps", (1.2e4, 55), fontsize=8, color="tab:red")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(f"order size, USD of notional at the index ({symbol} buy, 10M USD pool)", fontsize=9)
    ax.set_ylabel("all-in cost, bps (impact + taker fee)", fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.tick_params(labelsize=9)
    ax.legend(fontsize=8, loc="upper left")
    fig.suptitle("Price impact against size: the plain curve and the shipped concentrated one, same capital", fontsize=11)
    return _save_plot(fig, ax, out_png, manifest)


def plot_share_prices(scenario: str, run_dirs: Sequence[Path], out_png: str | Path,
                      shock: Sequence[float] | None = None, manifest: dict | None = None) -> Path:
    """One LP share-price plot for a scenario, every seed overlaid (1000 px wide, as the simulator's)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    from .sim import HOUR, PLOT_DPI, PLOT_WIDTH_IN, read_csv_rows

    fig, ax = plt.subplots(figsize=(PLOT_WIDTH_IN, 4.0))
    styles = ["-", "--", "-.", ":"]
    for i, d in enumerate(run_dirs):
        rows = read_csv_rows(Path(d) / "steps.csv")
        seed = json.loads((Path(d) / "summary.json").read_text())["seed"]
        ax.plot([r["time_s"] / HOUR for r in rows], [r["pool_share_price"] for r in rows], ls=styles[i % len(styles)],
                lw=1.4, label=f"seed {seed}")
    if shock:
        ax.axvspan(shock[0], shock[1], color="tab:red", alpha=0.12, lw=0, label="shock")
    ax.set_xlabel("hours", fontsize=9)
    ax.set_ylabel("USD per share", fontsize=9)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.4f}"))
    ax.grid(alpha=0.3)
    ax.tick_params(labelsize=9)
    ax.legend(fontsize=8, loc="best")
    fig.suptitle(f"{scenario}: LP share price (pool NAV per share), every seed", fontsize=11)
    return _save_plot(fig, ax, out_png, manifest)


# =============================================================================== the report


SCENARIO_ORDER = ("crash", "trend", "calm", "squeeze")


@dataclass(frozen=True)
class ReportContext:
    """How the runs behind a report were made (written in its header)."""

    command: str  # the command line that wrote it
    commit: str  # the checkout's commit (short hash), with a note when the contracts or vperp/ had local changes
    network: str
    seeds: Sequence[int]
    steps: int
    wall_seconds: float  # the whole command: every run, the tables and the plots
    setting: str = "the shipped deployment defaults"  # what the runs deployed, and with which agents


def report_markdown(ctx: ReportContext, runs_dir: str | Path, scenarios: Sequence[str], impact: ImpactTable,
                    img_prefix: str = "img/economics_", breakers: "BreakerRuns | None" = None) -> str:
    """docs/economics.md: the measure table (quoted 4745643 figures next to the runs'), the LP returns,
    per scenario the simulator's seed table and the LP share-price plot, and the price-impact table."""
    runs = load_runs(runs_dir, scenarios)
    now = measures_now(runs, impact)
    gmx, perp = GmxV2Impact(), PerpV1Amm()
    eth = impact.config.get("ETH", {})
    minutes, seconds = divmod(round(ctx.wall_seconds), 60)
    parts = [
        "# vPerp economics: the issue 13 measures, the simulator's runs and price impact",
        "",
        f"Written by `{ctx.command}` (do not edit by hand: run it again) on commit {ctx.commit}, on "
        f"`{ctx.network}`: scenarios {', '.join(scenarios)}, seeds {', '.join(map(str, ctx.seeds))}, {ctx.steps} steps "
        f"of 5 minutes each ({ctx.steps * 5 / 60:g} simulated hours), {ctx.setting}. The runs "
        f"took {minutes} min {seconds} s in all.",
        "",
        "The simulator (docs/simulator.md) deploys the contracts on a local chain and drives them with traders, "
        "liquidity providers and the keeper; each scenario runs once per seed from the same chain snapshot. "
        "The figures in the \"now\" column are computed from the runs' `summary.json` files (the order cost from "
        "the reference model, below); those in the 4745643 column are **quoted** from issue 13, which reports an "
        "independent economic review of that commit with the simulator and defaults of the time (not re-run "
        "here). The simulator has changed since (agents, keeper, outputs) and so have the contracts "
        "(the value-safety fixes, the auction-expiry rule, depth and repeg costs), so the columns compare the "
        "protocol's outcomes, not identical experiments."
        + (" The plain markets (constant product, trades direct: the shipped default before this setting) have "
           "their own report, [plain/economics.md](plain/economics.md); docs/pool.md \"The shipped setting\" says "
           "what each of this setting's choices is for." if impact.setting == "shipped" else ""),
        "",
        "## The measures",
        "",
        measure_markdown(now, "default config" if impact.setting == "shipped" else f"`{impact.setting}`"),
        "LP return is the LP share price (pool NAV per share) at the end of the run over its start, less 1; the "
        "drawdown is the share price's largest peak-to-trough fall. Bad debt \"paid by the pool\" is the part of "
        "the `BadDebt` events the insurance fund could not cover. The funding ratio is measured on the rate the "
        "contract applied in each run against the unsmoothed rule on the run's own 15-minute premium "
        "(`vperp.funding_compare.chain_ratio`; docs/funding.md#on-the-simulators-paths).",
        "",
        "## LP return per scenario and seed",
        "",
        lp_return_markdown(runs),
        "## The runs, per scenario and seed",
        "",
        "Each scenario's seed table is the simulator's own (`aggregate.md`, `--seeds`); the plot overlays the LP "
        "share price of every seed (the shaded band is the scenario's shock, when it has one).",
        "",
    ]
    from .sim import get_scenario

    for sc in scenarios:
        table = (Path(runs_dir) / sc / "aggregate.md").read_text().splitlines()
        body = [line for line in table if line.startswith("|")]
        parts += [f"### {sc}", "", get_scenario(sc).description + ".", "", *body, "",
                  f"![{sc}: LP share price, every seed]({img_prefix}{sc}.png)", ""]
    if breakers is not None:
        parts.append(breakers_markdown(breakers, img=f"{img_prefix}breakers.png"))
        if list(breakers.seeds) != list(ctx.seeds):
            parts[-1] = parts[-1].replace(
                "## Circuit breakers: on vs off\n\n",
                f"## Circuit breakers: on vs off\n\nOn seeds {', '.join(map(str, breakers.seeds))} only (the "
                f"runs above: seeds {', '.join(map(str, ctx.seeds))}), to keep the whole command near 35 minutes "
                f"of CPU on two cores.\n\n", 1)
    parts += [
        "## Price impact at deployment",
        "",
        "The cost of a market order on the "
        + ("shipped deployment (`vperp.config.default_config()`)" if impact.setting == "shipped" else
           f"deployment of `{impact.setting}`") + f" with its "
        f"{POOL_SEED:,} USD pool seed, before any other trade: the buy or sell of a notional worth 100k, 1M or "
        f"10M USD at the index. Each figure is a trade on the reference model (`vperp.model.Model.open_position`, "
        f"the contracts' math to the wei): the impact is the fill's distance from the index, the fee the taker "
        f"fee ({100 * eth.get('taker_fee', 0):g} % of the quote), both per notional at the index. A trade whose "
        f"post-trade price leaves the band ({100 * eth.get('max_spread', 0):g} % around the index) reverts "
        f"(`PriceBandExceeded`); the largest order inside the band is found by bisection on the model's own trade, "
        f"in minimum-size lots. Virtual depth at listing: "
        + "; ".join(f"{k} {c['base_reserve']:,g} base at {c['price']:,g} ({c['quote_reserve']:,.0f} USD of quote)"
                    for k, c in impact.config.items())
        + (" (on a constant-product curve the relative cost depends only on the notional over the quote reserve, "
           "so markets with the same quote depth give the same rows)." if len({c["quote_reserve"] for c in
                                                                              impact.config.values()}) == 1 else "."),
        "",
        impact_markdown(impact),
        "Price impact against size on ETH, the plain curve and the shipped concentrated one with the same pool capital "
        "(`vperp.economics.plot_impact`; docs/pool.md \"Concentrated depth\" has the curve's math):",
        "",
        "![price impact against size](img/economics_impact.png)",
        "",
        "The comparison rows use each venue's published parameters for ETH, computed by the same code "
        "(`vperp/economics.py`), at an empty (balanced) market:",
        "",
        f"- **GMX v2** (Synthetics, oracle-priced: the order fills at the oracle price plus a price impact that "
        f"depends on the long/short open-interest imbalance, not on a curve): impact in USD = factor x "
        f"(imbalance after^e - imbalance before^e), here with the ETH/USD [WETH-USDC] market's negative factor "
        f"{gmx.negative_factor:g} per USD, exponent {gmx.exponent:g}, net negative impact capped at "
        f"{100 * gmx.max_negative:g} % of the size, and a position fee of {100 * gmx.fee_negative:g} % (the fee "
        f"for an order with a negative impact). Source: {gmx.source}. The date of that stored copy is not "
        f"known here; the parameters are those of the repository's configuration file, not read from the live "
        f"market. From a balanced market an order of N USD costs factor x N of its size in impact "
        f"({10_000 * gmx.negative_factor * 1e6:.1f} bps for 1M); a market already skewed the same way costs more, "
        f"one skewed the other way pays a rebate.",
        f"- **Perp v1** (the first-generation vAMM, on xDai from December 2020): constant product x.y = k on "
        f"virtual reserves, with the ETH/USDC AMM's quote reserve {perp.quote_reserve:,.0f} USD and base "
        f"reserve {perp.base_reserve:,g} ETH (a {perp.quote_reserve / perp.base_reserve:,g} USD price at "
        f"listing), a {100 * perp.spread:g} % spread fee, and a {100 * perp.fluctuation:g} % fluctuation limit "
        f"(an opening trade may not move the price more than that from the previous block's; the contract's "
        f"comment sets it to 1 / max leverage). Source: {perp.source}. The relative cost depends only on the "
        f"notional over the quote reserve, so the figures hold at any ETH price for that depth (the contract can "
        f"later change k by a liquidity migration). Orders beyond the limit had to be split over blocks.",
        "",
        _reading(impact),
        "",
    ]
    return "\n".join(parts)


def _reading(impact: ImpactTable) -> str:
    """The paragraph under the price-impact table, its figures taken from the table."""
    buy = find(impact.vperp, "ETH", 1, 1_000_000)
    gmx = find(impact.gmx, "ETH", 1, 1_000_000)
    ten = [find(impact.vperp, "ETH", s, 10_000_000) for s in (1, -1)]
    band = [i for i in impact.vperp_largest if i.market == "ETH"]
    if buy.reverts:
        return f"What the table says: a 1M buy of ETH {buy.reverts} at the {impact.setting} depth."
    plain = find(impact.plain, "ETH", 1, 1_000_000) if impact.plain else None
    plain10 = [find(impact.plain, "ETH", s, 10_000_000) for s in (1, -1)] if impact.plain else []
    text = (f"What the table says: at the {impact.setting} depth a 1M buy of ETH costs {buy.cost_bps:.1f} bps all in"
            + f", of which {buy.impact_bps:.1f} bps of impact against GMX v2's {gmx.impact_bps:.1f} from a balanced "
            f"market ({buy.impact_bps / gmx.impact_bps:.0f} times); ")
    if any(i.reverts for i in ten):
        text += (f"a 10M order cannot execute ({ten[0].reverts or 'the buy executes'}), and the largest orders inside "
                 f"the band are {_usd(band[0].notional)} (buy) and {_usd(band[1].notional)} (sell) of notional. ")
    else:
        text += (f"a 10M order executes ({ten[0].cost_bps:.0f} bps buy, {ten[1].cost_bps:.0f} sell), and the largest "
                 f"orders inside the band are {_usd(band[0].notional)} (buy) and {_usd(band[1].notional)} (sell). ")
    if plain is not None and impact.setting != PLAIN:
        text += (f"On the plain markets ({PLAIN}: the same pool capital on a constant product with a tenth of the "
                 f"virtual reserves, the shipped markets until the concentrated carry setting) a 1M buy costs "
                 + (f"{plain.cost_bps:.1f} bps" if not plain.reverts else plain.reverts)
                 + " and a 10M order "
                 + ("executes" if not any(i.reverts for i in plain10) else "reverts on the band")
                 + ". The deep curve holds ten times the skew inside the arbitrageur's band; the shipped markets pay "
                 "a carry trader to take it (a 3-hour funding period, docs/pool.md \"Who pays for the pool's "
                 "position\"), and their delayed orders close the oracle front-running the deep curve would open "
                 "(docs/orders.md). ")
    text += ("GMX v2 prices at the oracle with an impact on the open-interest imbalance only, which is why its "
             "orders are cheaper still.")
    return text


def write_report(out_dir: str | Path, runs_dir: str | Path, scenarios: Sequence[str], ctx: ReportContext,
                 impact: ImpactTable | None = None, breakers: "BreakerRuns | None" = None) -> Path:
    """Write `out_dir/economics.md` and `out_dir/img/economics_<scenario>.png` from the runs in
    `runs_dir/<scenario>/seed<S>/`; returns the markdown's path."""
    from .sim import get_scenario, shock_window

    out_dir = Path(out_dir)
    impact = impact or compute_impact_table()
    plot_impact(out_dir / "img" / "economics_impact.png")
    for sc in scenarios:
        agg = json.loads((Path(runs_dir) / sc / "aggregate.json").read_text())
        dirs = [Path(runs_dir) / sc / f"seed{s}" for s in agg["seeds"]]
        first = json.loads((dirs[0] / "summary.json").read_text())
        plot_share_prices(sc, dirs, out_dir / "img" / f"economics_{sc}.png",
                          shock=shock_window(get_scenario(sc), first["steps"], first["step_seconds"]))
    if breakers is not None and "thin" in breakers.on:
        plot_breakers(breakers.off["thin"][0], breakers.on["thin"][0], "THIN", out_dir / "img" / "economics_breakers.png")
    path = out_dir / "economics.md"
    path.write_text(report_markdown(ctx, runs_dir, scenarios, impact, breakers=breakers))
    return path


# =============================================================================== circuit breakers: on vs off


BREAKER_SCENARIOS = ("crash", "squeeze", "thin")
POOL_PARTS = {"fees": "fees", "funding_settled": "funding settled", "traders_realized_pnl": "traders' realized PnL",
              "bad_debt": "bad debt", "depth_sync_cost": "depth syncs", "repeg_cost": "repegs",
              "traders_open_positions": "open positions", "bad_debt_set_aside": "bad-debt set-aside"}
KIND_LABELS = {"index_move": "index move", "divergence": "divergence", "insurance": "insurance",
               "auctions": "auctions", "skew": "skew"}


@dataclass(frozen=True)
class BreakerRuns:
    """Where the on/off comparison's runs are: per scenario the folders of its runs without breakers (`off`)
    and with them (`on`), one per seed, in seed order (the same seeds)."""

    off: dict[str, list[Path]]
    on: dict[str, list[Path]]
    seeds: Sequence[int]
    steps: int


def _summary(d: Path) -> dict[str, Any]:
    return json.loads((Path(d) / "summary.json").read_text())


def breaker_row(summary: dict[str, Any]) -> dict[str, Any]:
    """One run's figures for the on/off table."""
    b = summary.get("breakers")
    dt = summary["step_seconds"]
    pnl = summary.get("trader_pnl") or {}
    return {
        "seed": summary["seed"], "on": b is not None,
        "trips": dict(b["trips"]) if b else {},
        "restricted_hours": {k: v * dt / 3600 for k, v in b["restricted_steps"].items()} if b else {},
        "refused": sum(b["refused"].values()) if b else 0,
        "bad_debt": summary["bad_debt"], "bad_debt_from_pool": summary["bad_debt_from_pool"],
        "pool_pnl": summary["pool_pnl"]["pnl_excluding_lp_flows"], "lp_return": lp_return(summary),
        "attacker_pnl": pnl.get("attacker"), "arb_pnl": pnl.get("arb"),
        "max_skew_share": b["max_skew_share"] if b else None, "max_move": b["max_move"] if b else None,
        "max_divergence": b["max_divergence"] if b else None,
        "min_insurance_factor": b["min_insurance_factor"] if b else None,
        "min_auction_factor": b["min_auction_factor"] if b else None,
        "peg_held_steps": sum((b.get("peg_held_steps") or {}).values()) if b else 0,
        "peg_stale": (summary.get("reverts") or {}).get("PegStale", 0),
        "params": b["params"] if b else None,
        "insurance_start": summary.get("insurance_start"),
        "pool_parts": {k: v for k, v in summary["pool_pnl"].items() if k in POOL_PARTS},
    }


def _attack_prices(run_dir: Path, symbol: str = "THIN") -> tuple[float, float] | None:
    """The highest index and the highest vAMM price of `symbol` over a run (None without that market)."""
    from .sim import read_csv_rows

    rows = read_csv_rows(Path(run_dir) / "steps.csv")
    k = symbol.lower()
    if not rows or f"{k}_spot" not in rows[0]:
        return None
    return max(r[f"{k}_index"] for r in rows), max(r[f"{k}_spot"] for r in rows)


def load_breaker_rows(br: BreakerRuns) -> dict[str, list[tuple[dict, dict]]]:
    """Per scenario, per seed: (off row, on row)."""
    out = {}
    for sc in br.on:
        pairs = []
        for off, on in zip(br.off[sc], br.on[sc]):
            a, b = breaker_row(_summary(off)), breaker_row(_summary(on))
            a["prices"], b["prices"] = _attack_prices(off), _attack_prices(on)
            if a["seed"] != b["seed"]:
                raise ValueError(f"{sc}: off and on runs of different seeds ({a['seed']}, {b['seed']})")
            pairs.append((a, b))
        out[sc] = pairs
    return out


def _trips(r: dict) -> str:
    if not r["on"]:
        return "off"
    return ", ".join(f"{KIND_LABELS[k]} {n}" for k, n in r["trips"].items()) or "none"


def _hours(r: dict) -> str:
    if not r["on"]:
        return ""
    return ", ".join(f"{k} {h:.2f} h" for k, h in r["restricted_hours"].items()) or "0"


def _opt_usd(x: float | None) -> str:
    return "" if x is None else f"{x:+,.0f}"


def breaker_table(scenario: str, pairs: list[tuple[dict, dict]]) -> str:
    """The on/off table of one scenario: a row per seed and mode."""
    thin = any(r["attacker_pnl"] is not None for p in pairs for r in p)
    head = ("| seed | breakers | trips by kind | time restricted (per market) | orders refused | bad debt (USD) | "
            "paid by the pool | pool PnL excl. LP flows (USD) | LP return |"
            + (" attacker PnL (USD) | arbitrageur PnL (USD) |" if thin else ""))
    lines = [head, "|" + "---|" * (9 + 2 * thin)]
    for off, on in pairs:
        for r in (off, on):
            cells = [str(r["seed"]), "on" if r["on"] else "off", _trips(r), _hours(r),
                     str(r["refused"]) if r["on"] else "", f"{r['bad_debt']:,.0f}", f"{r['bad_debt_from_pool']:,.0f}",
                     f"{r['pool_pnl']:+,.0f}", _pct(r["lp_return"], 3)]
            if thin:
                cells += [_opt_usd(r["attacker_pnl"]), _opt_usd(r["arb_pnl"])]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _mean(vals: Sequence[float]) -> float:
    return sum(vals) / len(vals) if vals else 0.0


def breaker_reading(rows: dict[str, list[tuple[dict, dict]]]) -> list[str]:
    """What each breaker did, in words, from the rows: per scenario what changed on vs off, then per breaker
    whether it fired and, when it did not, how far its measure stayed from its threshold."""
    out: list[str] = []
    for sc, pairs in rows.items():
        offs, ons = [p[0] for p in pairs], [p[1] for p in pairs]
        n = len(pairs)
        trips: dict[str, int] = {}
        for r in ons:
            for k, v in r["trips"].items():
                trips[k] = trips.get(k, 0) + v
        fired = ", ".join(f"{KIND_LABELS[k]} {v}" for k, v in trips.items()) or "none"
        text = (f"- **{sc}** ({n} seeds; trips over the seeds: {fired}; {sum(r['refused'] for r in ons)} orders "
                f"refused while restricted): bad debt {sum(r['bad_debt'] for r in offs):,.0f} USD off, "
                f"{sum(r['bad_debt'] for r in ons):,.0f} on (paid by the pool {sum(r['bad_debt_from_pool'] for r in offs):,.0f} "
                f"/ {sum(r['bad_debt_from_pool'] for r in ons):,.0f}); pool PnL excluding LP flows, mean "
                f"{_mean([r['pool_pnl'] for r in offs]):+,.0f} USD off, {_mean([r['pool_pnl'] for r in ons]):+,.0f} on; "
                f"LP return, mean {_pct(_mean([r['lp_return'] for r in offs]), 3)} off, "
                f"{_pct(_mean([r['lp_return'] for r in ons]), 3)} on")
        if all(r["attacker_pnl"] is not None for r in offs + ons):
            text += (f"; the attacker's PnL, mean {_mean([r['attacker_pnl'] for r in offs]):+,.0f} USD off, "
                     f"{_mean([r['attacker_pnl'] for r in ons]):+,.0f} on, the arbitrageur's "
                     f"{_mean([r['arb_pnl'] for r in offs]):+,.0f} off, {_mean([r['arb_pnl'] for r in ons]):+,.0f} on")
        text += "."
        if all(r.get("pool_parts") for r in offs + ons):
            diff = {k: _mean([b["pool_parts"].get(k, 0) - a["pool_parts"].get(k, 0) for a, b in pairs]) for k in POOL_PARTS}
            top = sorted(diff.items(), key=lambda kv: -abs(kv[1]))[:3]
            total_diff = _mean([b["pool_pnl"] - a["pool_pnl"] for a, b in pairs])
            text += (f" On minus off, the pool's PnL differs by {total_diff:+,.0f} USD (mean), the largest parts "
                     f"(`pool_pnl` in the summaries): " + ", ".join(f"{POOL_PARTS[k]} {v:+,.0f}" for k, v in top) + ".")
            if diff["repeg_cost"] < 0 and any(k == "repeg_cost" for k, _ in top):
                text += (" The repegs cost the pool more with the breakers: while growth is refused the arbitrageur "
                         "cannot close the gap between the vAMM price and the index, so the keeper's repegs move the "
                         "peg instead, at the pool's expense.")
        if all(r.get("prices") for r in offs + ons):
            top = _mean([r["prices"][0] for r in offs])
            high_off, high_on = _mean([r["prices"][1] for r in offs]), _mean([r["prices"][1] for r in ons])
            kept = _mean([r["attacker_pnl"] for r in ons]) / _mean([r["attacker_pnl"] for r in offs]) \
                if _mean([r["attacker_pnl"] for r in offs]) else float("nan")
            att_off, arb_off = _mean([r["attacker_pnl"] for r in offs]), _mean([r["arb_pnl"] for r in offs])
            mirror = att_off > 0 and abs(att_off + arb_off) < 0.1 * att_off
            text += (f" The pump took the THIN index to {top:,.1f} USD at the top (mean over the seeds); without the "
                     f"breakers the arbitrageur bought the vAMM up after it (highest vAMM price {high_off:,.1f}) and the "
                     f"attacker sold its long into that price, the arbitrageur left holding the long the index then "
                     f"took back"
                     + (": the attacker's gain is, within 10 %, the arbitrageur's loss, and the pool, which only takes "
                        "the other side of each trade on the curve, is not the one that pays. " if mirror else ". ")
                     + "With them, the index-move breaker made THIN reduce-only at the first poke of the pump"
                     + (" (the divergence breaker then held it while the mark stayed away from the index)"
                        if any("divergence" in r["trips"] for r in ons) else ""))
            held = _mean([r.get("peg_held_steps", 0) for r in ons])
            if held:
                text += (f", and THIN's peg guard held its peg while that lasted ({held:,.0f} steps a run, mean): no "
                         f"repeg carried the vAMM after the pumped index (highest vAMM price {high_on:,.1f}), "
                         f"{_mean([r.get('peg_stale', 0) for r in ons]):,.0f} orders a run toward the index were refused "
                         f"at the held peg (PegStale, mean), and the attacker, selling "
                         f"its long at the held peg, ended at {_mean([r['attacker_pnl'] for r in ons]):+,.0f} USD "
                         f"(mean) against {att_off:+,.0f} without the breakers.")
            else:
                text += (f": the arbitrageur could "
                         f"still buy back the short the attacker's build-up had left it (a reduce), which is how the "
                         f"vAMM price still rose to {high_on:,.1f}, but could not go long to follow the index further, "
                         f"and the attacker kept {100 * kept:.0f} % of the gain it makes without the breakers.")
        out.append(text)
    ons = [p[1] for pairs in rows.values() for p in pairs]
    if not ons:
        return out
    params = ons[0]["params"]
    total: dict[str, int] = {}
    for r in ons:
        for k, v in r["trips"].items():
            total[k] = total.get(k, 0) + v
    worst = {"index_move": (max(r["max_move"] for r in ons), params["move_threshold"], "largest index move vs its TWAP"),
             "divergence": (max(r["max_divergence"] for r in ons), params["divergence_threshold"],
                            "largest mark/index TWAP divergence"),
             "skew": (max(r["max_skew_share"] for r in ons), params["max_skew_share"],
                      "largest skew, as a share of the pool NAV")}
    notes = []
    for k in KIND_LABELS:
        if k in total or k == "insurance":  # the insurance breaker has its own paragraph below
            continue
        if k in worst:
            seen, threshold, label = worst[k]
            note = (f"{KIND_LABELS[k]} never tripped: its {label} was {100 * seen:.2f} % at the most, against a "
                    f"threshold of {100 * threshold:g} %")
            if k == "skew":
                note += f" ({skew_bound_text()})"
            notes.append(note)
        elif k == "auctions":
            notes.append(f"auctions never tripped: the live auction notional stayed under "
                         f"{100 * params['auction_soft_share']:g} % of its cap (lowest cap factor "
                         f"{min(r['min_auction_factor'] for r in ons):.2f})")
    if notes:
        out.append("- Breakers that did not fire: " + "; ".join(notes) + ".")
    if "insurance" in total:
        fund = ons[0]["insurance_start"]
        target = params["insurance_target"]
        runs_with = sum(1 for r in ons if "insurance" in r["trips"])
        out.append(f"- The insurance breaker tripped in {runs_with} of {len(ons)} runs: it holds whenever the gross "
                   f"open-interest notional of all markets is above the insurance fund over its target, "
                   f"{fund:,.0f} / {100 * target:g} % = {fund / target:,.0f} USD with the fund at {fund:,.0f} USD "
                   f"(the first step's), a level the whale's 8x (800,000 of notional) and the arbitrageur's inventory pass in "
                   f"ordinary trading; it then scales every market's per-side cap down by the cover ratio (lowest "
                   f"factor {min(r['min_insurance_factor'] for r in ons):.2f}), which refuses growth on the side "
                   f"already above the scaled cap. The shipped target asks for an insurance fund near "
                   f"{100 * target:g} % of open interest; the shipped deployment seeds it with 1 % of the pool.")
    else:
        out.append(f"- insurance never tripped: the cap factor stayed at {min(r['min_insurance_factor'] for r in ons):.2f}.")
    return out


def skew_bound_text(config: DeployConfig | None = None) -> str:
    """Why the skew breaker cannot fire on the shipped deployment: a net position of D base held by the vAMM
    moves its price by (x / (x - D))^2 - 1, and a trade may not take the price beyond the band (`max_spread`)
    from the index, so between repegs the skew stays under x (1 - 1 / sqrt(1 + band)) base: that fraction of
    the quote reserve in notional, the depth ratio x that of the pool NAV."""
    m = (config or default_config()).markets[0]
    frac = 1 - 1 / math.sqrt(1 + m.max_spread)
    return (f"a skew of D base moves the vAMM price by (x / (x - D))^2 - 1 and no trade may take it more than "
            f"{100 * m.max_spread:g} % from the index, so a market's skew stays under {100 * frac:.2f} % of its base "
            f"reserve, about {100 * frac * m.depth_ratio:.0f} % of the pool NAV at the shipped depth of "
            f"{m.depth_ratio:g} x NAV of quote, until a repeg moves the peg (at most "
            f"{100 * m.max_repeg_step:g} % a call, "
            + ("every block)" if m.repeg_interval == 0 else f"once every {m.repeg_interval:,} s)"))


def plot_breakers(off_dir: Path, on_dir: Path, symbol: str, out_png: str | Path,
                  manifest: dict | None = None) -> Path:
    """One seed of a scenario, breakers off vs on: `symbol`'s index and vAMM spot price in both runs, the
    steps with the market restricted (on) shaded; 1000 px wide."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .sim import HOUR, PLOT_DPI, PLOT_WIDTH_IN, read_csv_rows

    off, on = read_csv_rows(Path(off_dir) / "steps.csv"), read_csv_rows(Path(on_dir) / "steps.csv")
    k = symbol.lower()
    seed = _summary(on_dir)["seed"]
    fig, ax = plt.subplots(figsize=(PLOT_WIDTH_IN, 4.2))
    hours = [r["time_s"] / HOUR for r in on]
    ax.plot([r["time_s"] / HOUR for r in off], [r[f"{k}_index"] for r in off], lw=1.8, color="black", label="index")
    ax.plot([r["time_s"] / HOUR for r in off], [r[f"{k}_spot"] for r in off], lw=1.3, ls="--", color="tab:red",
            label="vAMM price, breakers off")
    ax.plot(hours, [r[f"{k}_spot"] for r in on], lw=1.3, ls="-.", color="tab:blue", label="vAMM price, breakers on")
    step = (on[1]["time_s"] - on[0]["time_s"]) / HOUR if len(on) > 1 else 1 / 12
    first = True
    for h, r in zip(hours, on):
        if r.get(f"{k}_reduce_only"):
            ax.axvspan(h - step, h, color="tab:blue", alpha=0.10, lw=0, label="reduce-only (on)" if first else None)
            first = False
    ax.set_xlabel("hours", fontsize=9)
    ax.set_ylabel(f"{symbol} price (USD)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.tick_params(labelsize=9)
    ax.legend(fontsize=8, loc="best")
    fig.suptitle(f"{symbol}, seed {seed}: index and vAMM price, circuit breakers off vs on", fontsize=11)
    return _save_plot(fig, ax, out_png, manifest)


def breakers_markdown(br: BreakerRuns, img: str = "img/economics_breakers.png") -> str:
    """The section "Circuit breakers: on vs off": how the runs were made, one table per scenario, the
    reading, the plot."""
    rows = load_breaker_rows(br)
    ons = [p[1] for pairs in rows.values() for p in pairs]
    params = ons[0]["params"] if ons else {}
    parts = [
        "## Circuit breakers: on vs off",
        "",
        f"Each scenario below ran twice per seed (seeds {', '.join(map(str, br.seeds))}, {br.steps} steps): without "
        f"governance (\"off\", the runs above where the scenario is one of them) and with `--breakers` (\"on\": "
        f"`vperp.governance.deploy_governance` over the deployed system, the shipped breaker parameters, and the "
        f"keeper calling `CircuitBreaker.pokeAll()` at the start of every step, right after the oracle's post, so a "
        f"move posted in a step restricts that step's orders). The shipped parameters: index move "
        f"{100 * params.get('move_threshold', 0):g} % from the index TWAP -> reduce-only for "
        f"{params.get('cool_off_s', 0) // 60} min; mark/index TWAP divergence above "
        f"{100 * params.get('divergence_threshold', 0):g} % for {params.get('divergence_duration_s', 0) // 60} min -> "
        f"reduce-only; insurance fund below {100 * params.get('insurance_target', 0):g} % of the gross open-interest "
        f"notional -> caps scaled down; live auction notional above {100 * params.get('auction_soft_share', 0):g} % "
        f"of its cap -> caps scaled down; skew above {100 * params.get('max_skew_share', 0):g} % of the pool NAV -> "
        f"the heavy side cannot grow. \"Time restricted\" counts the steps that ended with a restriction in force "
        f"on the market (any breaker); \"orders refused\" the traders' orders that reverted "
        f"`OpenInterestCapExceeded` while their market was restricted. Closes, reduces, liquidations and "
        f"withdrawals are never blocked. The thin scenario's attacker and arbitrageur PnL is each one's account "
        f"value at the end less its deposit.",
        "",
    ]
    for sc, pairs in rows.items():
        parts += [f"### {sc}: breakers off vs on", "", breaker_table(sc, pairs)]
    parts += ["### What the breakers did", "", *breaker_reading(rows), "", PER_MARKET_NOTE, ""]
    if "thin" in br.on:
        parts += [f"![thin: THIN index and vAMM price, breakers off vs on]({img})", ""]
    return "\n".join(parts)
