"""Agent-based economic simulation of vPerp on a local chain.

    ./run.sh ape run simulate --scenario crash --steps 150 --seed 7 --out sim_out/
    python -m vperp.sim --scenario crash --steps 150 --seed 7 --out sim_out/   # connects to Ape itself

A run deploys the whole protocol with `vperp.deploy`, then advances time in fixed steps (5 minutes by
default). Every step:

1. the chain clock moves one step and the index of every market (a path drawn from geometric Brownian
   motion with Poisson jumps, plus the scenario's shock, or read from a CSV) is posted to the mock
   Chainlink aggregators with `updateAnswer`, so no feed is ever stale;
2. the liquidity providers deposit, request withdrawals and redeem in the ERC-4626 pool;
3. the traders (trend follower, mean reverter, noise traders, a levered whale, a basis arbitrageur) place
   orders, each with a slippage bound and a deadline; reverts are caught and counted by error name;
4. the keeper runs one `vperp.keeper.Keeper.run_once` pass (funding pokes, kicks, takes, redos,
   backstops), unwinds what it took, and repegs / re-syncs the vAMM depth when due;
5. the state is read back (one batched `eth_call`) into one CSV row.

In a market with delayed orders on (docs/orders.md) nobody trades directly: in step 3 the traders (and in step
4 the keeper, closing what it took) commit their orders to the OrderRouter, and right after the next post and
its repeg the keeper executes them, before the agents look at the chain again. Each order thus meets the vAMM
after an oracle round newer than its commit: commit, post, repeg, execute (`Simulation._order_turn`).

At the end the CSV, a JSON summary and PNG plots are written to the output folder. The run is
deterministic for a given seed: the chain clock starts on an hour boundary and every block is one second
after the previous one (on Anvil the block-time interval is pinned to 1 s too).

The pure parts (index paths, scenarios, CSV reading, plots) import nothing from Ape, so they can be
tested and reused without a chain. See docs/simulator.md.
"""
from __future__ import annotations

import csv
import json
import math
import os
import random
import time
from dataclasses import asdict, dataclass, field, replace
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from . import chain_io
from .config import wad
from .funding import tdiv
from .units import DAY, HOUR, WAD

STEP_SECONDS = 300  # default simulated time per step
MAX_UINT = 2**256 - 1
BREAKER_KINDS = ("index_move", "divergence", "insurance", "auctions", "skew")  # ICircuitBreaker.Kind, in order
NO_CAP = 2**96 - 1  # BreakerState.capBase without a cap


class SimError(Exception):
    """A reason the simulation cannot run as asked (bad scenario, bad price file, ...); one line."""


# =============================================================================== index paths (pure)


@dataclass(frozen=True)
class PathSpec:
    """Log-price dynamics, in per-day units: `drift` is the expected log return per day, `vol` the
    standard deviation of the log return over one day; jumps arrive as a Poisson process with
    `jump_rate` jumps per day, each a normal log move of mean `jump_mean` and deviation `jump_std`."""

    drift: float = 0.0
    vol: float = 0.03
    jump_rate: float = 0.0
    jump_mean: float = 0.0
    jump_std: float = 0.0

    def __post_init__(self) -> None:
        if self.vol < 0 or self.jump_rate < 0 or self.jump_std < 0:
            raise SimError(f"vol, jump_rate and jump_std must be >= 0: {self}")


@dataclass(frozen=True)
class Shock:
    """A deterministic move layered on the random path: from `start` (a fraction of the run) the index is
    multiplied by `factor ** (elapsed / duration)`, so it has moved by `factor` after `duration` seconds,
    and stays moved."""

    start: float
    factor: float
    duration: int
    # A move that goes back (a pump and dump): None, the index stays moved; else it is held `back_after`
    # seconds after the move ends, then moves back to the path over another `duration`.
    back_after: int | None = None

    @property
    def span(self) -> int:
        """Seconds from the move's start until the index stops being moved by it."""
        return self.duration if self.back_after is None else 2 * self.duration + self.back_after

    def start_step(self, steps: int, dt: int) -> int:
        """The step the move starts at: `start` x steps, early enough that the whole move fits the run."""
        span = math.ceil(self.span / dt)
        return max(0, min(round(self.start * steps), steps - span))

    def multipliers(self, steps: int, dt: int) -> list[float]:
        """Factor applied to each of the `steps + 1` points of a path."""
        first = self.start_step(steps, dt)
        out = []
        for k in range(steps + 1):
            t = max((k - first) * dt, 0)
            elapsed = min(t, self.duration)
            if self.back_after is not None and t > self.duration + self.back_after:
                elapsed = max(self.duration - (t - self.duration - self.back_after), 0)
            out.append(self.factor ** (elapsed / self.duration))
        return out


def _poisson(rng: random.Random, lam: float) -> int:
    """Poisson draw by inversion (small `lam`: a step's expected jump count)."""
    if lam <= 0:
        return 0
    k, p, threshold = 0, 1.0, math.exp(-lam)
    while True:
        p *= rng.random()
        if p <= threshold:
            return k
        k += 1


def gbm_path(price0: float, spec: PathSpec, steps: int, dt: int, rng: random.Random) -> list[float]:
    """`steps + 1` prices from `price0`: geometric Brownian motion with drift and volatility from `spec`
    (per day), plus compound-Poisson jumps in the log price. Deterministic for a given `rng` state."""
    if price0 <= 0:
        raise SimError(f"initial price must be positive, not {price0}")
    if steps < 1 or dt < 1:
        raise SimError(f"steps and dt must be >= 1 (got {steps}, {dt})")
    h = dt / DAY
    mu = (spec.drift - spec.vol**2 / 2) * h  # so that E[S_t] = S_0 e^(drift t)
    sd = spec.vol * math.sqrt(h)
    out = [price0]
    log_p = math.log(price0)
    for _ in range(steps):
        log_p += mu + sd * rng.gauss(0.0, 1.0)
        for _ in range(_poisson(rng, spec.jump_rate * h)):
            log_p += rng.gauss(spec.jump_mean, spec.jump_std)
        out.append(math.exp(log_p))
    return out


def read_price_csv(path: str | Path, symbols: Iterable[str]) -> dict[str, list[float]]:
    """Index paths from a CSV: one column per market symbol (e.g. `time,ETH,BTC`; other columns are
    ignored), one row per step, the first row being the starting price. At least one symbol must be
    present; every price must be a positive number."""
    path = Path(path)
    if not path.is_file():
        raise SimError(f"price file {path} does not exist")
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        header = [h.strip() for h in (reader.fieldnames or [])]
        wanted = [s for s in symbols if s in header]
        if not wanted:
            raise SimError(f"{path}: no column named after a market ({', '.join(symbols)}); header is {header}")
        out: dict[str, list[float]] = {s: [] for s in wanted}
        for line, row in enumerate(reader, start=2):
            row = {k.strip(): v for k, v in row.items() if k is not None}
            for s in wanted:
                try:
                    price = float(row[s])
                except (TypeError, ValueError):
                    raise SimError(f"{path}:{line}: {s} is not a number: {row.get(s)!r}") from None
                if not price > 0 or math.isinf(price):
                    raise SimError(f"{path}:{line}: {s} must be a positive price, not {price}")
                out[s].append(price)
    if len(next(iter(out.values()))) < 2:
        raise SimError(f"{path}: needs at least two rows of prices (a start and one step)")
    return out


def max_drop_within(prices: Sequence[float], dt: int, window: int) -> float:
    """The largest fall (a fraction, 0.4 = -40 %) from any point to any later point at most `window`
    seconds after it, on a path sampled every `dt` seconds."""
    span = window // dt
    worst = 0.0
    for i, p in enumerate(prices):
        for q in prices[i + 1:i + span + 1]:
            worst = max(worst, 1 - q / p)
    return worst


# =============================================================================== the oracle agent (pure)


@dataclass(frozen=True)
class OraclePolicy:
    """When the simulated Chainlink node posts a market's index, as a real feed does: on a move of more
    than `deviation_bps` from the last posted answer, or once `heartbeat` seconds have passed since that
    post. The defaults (0, 0) post every step, as the simulator always did. A heartbeat of 0 means every
    step, so a threshold without a heartbeat would never matter and is refused (`check`); a heartbeat
    without a threshold posts on the heartbeat alone."""

    deviation_bps: int = 0  # [bps] of the last posted answer; 0: no deviation trigger
    heartbeat: int = 0  # [s] since the last post; 0: every step

    @property
    def every_step(self) -> bool:
        return self.heartbeat == 0

    def should_post(self, answer: int, last_answer: int | None, now: int, last_posted_at: int | None) -> bool:
        """Whether the feed posts `answer` (feed units) at `now`, given the last posted answer and time
        (None: never posted in this run). The deviation is compared in exact integers: a move of exactly
        the threshold does not post."""
        if self.every_step or last_answer is None or last_posted_at is None:
            return True
        if now - last_posted_at >= self.heartbeat:
            return True
        return self.deviation_bps > 0 and abs(answer - last_answer) * 10_000 > self.deviation_bps * abs(last_answer)

    def longest_gap(self, dt: int) -> int:
        """The longest time [s] between two posts: the heartbeat rounded up to whole steps (the node acts
        at step boundaries), or one step when it posts every step."""
        return dt if self.every_step else math.ceil(self.heartbeat / dt) * dt

    def check(self, dt: int, feed_heartbeats: dict[str, int]) -> None:
        """Refuse settings that would make no sense or let a feed go stale in the run. The contracts
        reject an answer older than the market's `heartbeat` (OracleLib: `updatedAt + heartbeat <
        block.timestamp`); every read in the run happens less than `longest_gap` after the last post
        (posts are the first transaction of their step), so a gap no longer than every market's
        heartbeat keeps every feed fresh."""
        if self.deviation_bps < 0 or self.heartbeat < 0:
            raise SimError("--oracle-deviation-bps and --oracle-heartbeat must be >= 0")
        if self.deviation_bps and not self.heartbeat:
            raise SimError("--oracle-deviation-bps needs --oracle-heartbeat: a heartbeat of 0 posts every step, so "
                           "the threshold would never matter (Chainlink's ETH/USD feeds: 50 bps, 3600 s)")
        gap = self.longest_gap(dt)
        stale = {s: h for s, h in feed_heartbeats.items() if gap > h}
        if stale:
            sym, h = min(stale.items(), key=lambda kv: kv[1])
            raise SimError(f"--oracle-heartbeat {self.heartbeat}: with {dt} s steps a feed may go {gap} s without an "
                           f"update, longer than the feeds' staleness limit ({sym}: {h} s, the deployment's "
                           f"heartbeat): its reads would revert StaleOracle")


# =============================================================================== delayed orders (pure)


ORDER_EVENTS = ("OrderCommitted", "OrderExecuted", "OrderFailed", "OrderCancelled")  # the OrderRouter events the run reads
COMMIT_GAS_CAP = 300_000  # [gas] above what a commit takes (about 155,000), for the check of the agents' ETH
ORDER_COLUMNS = ("orders_committed", "orders_executed", "orders_failed", "orders_lapsed", "orders_open")


def order_wait(policy: OraclePolicy, dt: int) -> int:
    """How long [s] an order committed now may wait for the next oracle round under `policy`: the longest time
    between two posts (`OraclePolicy.longest_gap`). Every post is at least as old as a commit made after it, so
    the next one comes at most this long after the commit; an order's deadline is this wait plus the time the
    agent gives a trade to go through once it may execute."""
    return policy.longest_gap(dt)


@dataclass(frozen=True)
class OpenOrder:
    """A delayed order the run has seen committed and not yet executed or cancelled."""

    agent: str
    symbol: str
    committed_at: int  # [s] block time of the commit
    committed_round: int  # the feed's latest round id at the commit


class OrderBook:
    """The run's record of its delayed orders (docs/orders.md), fed with the OrderRouter's events in the order
    they were emitted, and with the agents' commits as they are sent.

    An agent has at most one order open per market: while one is open (sent and not yet executed or cancelled),
    the orders it would place in that market are held back and counted, so that it never stacks orders on a
    position it has not seen change (it reads its position from the chain, like every agent, and does not
    assume the order filled). Per market the record counts the orders committed, executed (the trade went
    through), failed (`OrderFailed`: the ClearingHouse refused the trade, the order is used up) and lapsed
    (cancelled once their window closed: in the simulator only the keeper cancels, and only lapsed orders), of
    which missed (past the deadline with the feed still on the round of the commit: the next round never came
    in time, so the fee paid the keeper that cancelled it, `CancelBountyPaid`; the keeper's own orders are
    refunded to it), and,
    over every execution (executed or failed), the time [s] and the oracle rounds from the commit."""

    def __init__(self, symbols: Iterable[str]) -> None:
        self.symbols = list(symbols)
        self.counts = {s: {"committed": 0, "executed": 0, "failed": 0, "lapsed": 0, "missed": 0, "held_back": 0}
                       for s in self.symbols}
        self.delays: dict[str, list[int]] = {s: [] for s in self.symbols}  # [s] commit to execution, per market
        self.rounds_waited: dict[int, int] = {}  # feed rounds from the commit to the execution -> executions
        self.failed_reasons: dict[str, int] = {}
        self._open: dict[int, OpenOrder] = {}  # order id -> the order
        self._sent: dict[tuple[str, str], int] = {}  # (agent, symbol) -> commits sent whose event is not read yet

    def is_open(self, agent: str, symbol: str) -> bool:
        """Whether `agent` has an order in `symbol` that has not executed or been cancelled yet."""
        return self._sent.get((agent, symbol), 0) > 0 or any(
            o.agent == agent and o.symbol == symbol for o in self._open.values())

    def sent(self, agent: str, symbol: str) -> None:
        """A commit of `agent` in `symbol` went through (its event is read later)."""
        self._sent[(agent, symbol)] = self._sent.get((agent, symbol), 0) + 1

    def symbol_of(self, order_id: int) -> str:
        return self._open[order_id].symbol

    def hold(self, symbol: str) -> None:
        """An agent's order in `symbol` not committed, because its previous one there is still open."""
        self.counts[symbol]["held_back"] += 1

    def committed(self, order_id: int, agent: str, symbol: str, at: int, round_id: int) -> None:
        key = (agent, symbol)
        if self._sent.get(key, 0) > 0:
            self._sent[key] -= 1
        self._open[order_id] = OpenOrder(agent, symbol, at, round_id)
        self.counts[symbol]["committed"] += 1

    def executed(self, order_id: int, at: int, round_id: int, refusal: str | None = None) -> OpenOrder:
        """Order `order_id` executed at `at` with the feed at round `round_id`; `refusal`: the ClearingHouse refused
        the trade (its error's name), the order used up. Returns the order."""
        o = self._open.pop(order_id)
        if refusal is None:
            self.counts[o.symbol]["executed"] += 1
        else:
            self.counts[o.symbol]["failed"] += 1
            self.failed_reasons[refusal] = self.failed_reasons.get(refusal, 0) + 1
        self.delays[o.symbol].append(at - o.committed_at)
        waited = round_id - o.committed_round
        self.rounds_waited[waited] = self.rounds_waited.get(waited, 0) + 1
        return o

    def cancelled(self, order_id: int, missed: bool = False) -> OpenOrder:
        """Order `order_id` cancelled once lapsed; `missed`: it missed the next round (its fee paid the canceller)."""
        o = self._open.pop(order_id)
        self.counts[o.symbol]["lapsed"] += 1
        self.counts[o.symbol]["missed"] += int(missed)
        return o

    def open_count(self) -> int:
        return len(self._open) + sum(self._sent.values())

    def row(self) -> dict[str, str]:
        """The CSV's order columns (`ORDER_COLUMNS`): cumulative counts over the markets, and the orders open now."""
        total = {k: sum(c[k] for c in self.counts.values()) for k in ("committed", "executed", "failed", "lapsed")}
        return {"orders_committed": str(total["committed"]), "orders_executed": str(total["executed"]),
                "orders_failed": str(total["failed"]), "orders_lapsed": str(total["lapsed"]),
                "orders_open": str(self.open_count())}

    @staticmethod
    def _delay_stats(delays: Sequence[int]) -> dict[str, float | None]:
        if not delays:
            return {"mean_delay_s": None, "min_delay_s": None, "max_delay_s": None}
        return {"mean_delay_s": round(sum(delays) / len(delays), 2), "min_delay_s": min(delays),
                "max_delay_s": max(delays)}

    def summary(self, keeper_fee_wei: int, wait_s: int) -> dict[str, Any]:
        """The summary's `orders` record: totals, delay statistics and refusals, then the same per market."""
        by_market = {}
        for s in self.symbols:
            open_now = sum(1 for o in self._open.values() if o.symbol == s) + sum(
                n for (_, sym), n in self._sent.items() if sym == s)
            by_market[s] = {**self.counts[s], "open_at_end": open_now, **self._delay_stats(self.delays[s])}
        totals = {k: sum(m[k] for m in by_market.values())
                  for k in ("committed", "executed", "failed", "lapsed", "missed", "held_back", "open_at_end")}
        return {"markets": list(self.symbols), "keeper_fee_wei": keeper_fee_wei, "wait_s": wait_s, **totals,
                **self._delay_stats([d for s in self.symbols for d in self.delays[s]]),
                "rounds_waited": {str(k): v for k, v in sorted(self.rounds_waited.items())},
                "failed_reasons": dict(sorted(self.failed_reasons.items())), "by_market": by_market}


# =============================================================================== scenarios


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    paths: dict[str, PathSpec]  # per market symbol; a market not listed follows `default_path`
    shocks: dict[str, Shock] = field(default_factory=dict)
    default_path: PathSpec = PathSpec()
    whale_side: int = 1  # +1: the whale is long; -1: short
    noise_buy_probability: float = 0.5  # the crowd's lean: < 0.5 means the noise traders mostly sell
    # Markets the scenario lists on top of the deployment's (MarketConfig); only the arbitrageur and the
    # attacker trade them. `attack`: the market an attacker agent (`Attacker`) pumps and trades into.
    extra_markets: tuple = ()
    attack: str | None = None

    def path_for(self, symbol: str) -> PathSpec:
        return self.paths.get(symbol, self.default_path)


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("calm", "no drift, 2 %/day volatility, no jumps: funding and fees at rest",
                 {"ETH": PathSpec(vol=0.02), "BTC": PathSpec(vol=0.015)}),
        Scenario("trend", "a steady rally: +15 %/day drift, 3 %/day volatility, occasional small jumps",
                 {"ETH": PathSpec(drift=0.15, vol=0.03, jump_rate=2, jump_std=0.01),
                  "BTC": PathSpec(drift=0.10, vol=0.025, jump_rate=2, jump_std=0.008)}),
        Scenario("crash", "ETH index -40 % within one hour (BTC -30 %), starting 20 % into the run, on a "
                 "calm 3 %/day path; the whale is long 8x",
                 {"ETH": PathSpec(vol=0.03), "BTC": PathSpec(vol=0.025)},
                 shocks={"ETH": Shock(0.2, 0.60, HOUR), "BTC": Shock(0.2, 0.70, HOUR)}),
        Scenario("squeeze", "short squeeze: shorts are crowded (the whale is short 8x, the noise traders sell "
                 "70 % of the time), then the ETH index rallies +35 % within two hours, starting 30 % into the run",
                 {"ETH": PathSpec(vol=0.03), "BTC": PathSpec(vol=0.02)},
                 shocks={"ETH": Shock(0.3, 1.35, 2 * HOUR), "BTC": Shock(0.3, 1.10, 2 * HOUR)},
                 whale_side=-1, noise_buy_probability=0.3),
        Scenario("thin", "a manipulated thin market: a third market, THIN (100 USD, 20,000 base of virtual depth, "
                 "2M USD of quote; caps 5,000 base a side), whose index an attacker pumps +40 % within 20 minutes, "
                 "holds for 30 minutes and lets fall back over 20 minutes, starting 30 % into the run; the attacker "
                 "goes long 2,000 THIN in the half hour before the pump and sells into the moved mark at the top "
                 "(the arbitrageur follows the index); ETH and BTC are calm",
                 {"ETH": PathSpec(vol=0.02), "BTC": PathSpec(vol=0.015), "THIN": PathSpec(vol=0.03)},
                 shocks={"THIN": Shock(0.3, 1.40, 20 * 60, back_after=30 * 60)},
                 extra_markets=("THIN",), attack="THIN"),
    )
}


def thin_market(price: float = 100.0):
    """The thin market the "thin" scenario lists: 20,000 base of virtual depth (2M USD of quote at 100 USD,
    a depth rule of 0.2 x the pool NAV so the depth syncs keep it thin), caps of 5,000 base a side, and a peg
    guard (with --breakers: the peg holds while the index-move breaker holds the market)."""
    from .config import MarketConfig

    return MarketConfig("THIN", price=price, max_open_interest=5_000, min_position_size=0.1, base_reserve=20_000,
                        depth_ratio=0.2, peg_guard=True)


EXTRA_MARKETS = {"THIN": thin_market}


def get_scenario(name: str) -> Scenario:
    try:
        return SCENARIOS[name]
    except KeyError:
        raise SimError(f"unknown scenario {name!r}: one of {', '.join(SCENARIOS)}") from None


def index_paths(scenario: Scenario, steps: int, seed: int, start_prices: dict[str, float], dt: int = STEP_SECONDS,
                prices: dict[str, list[float]] | None = None,
                override: dict[str, float] | None = None) -> dict[str, list[float]]:
    """`steps + 1` index prices per market: from `prices` (a CSV's columns) where given, else the
    scenario's GBM path (with `override` replacing PathSpec fields for every market) times its shock.
    Each market draws from its own generator seeded by (seed, symbol), so adding a market or a CSV
    column leaves the others' paths unchanged."""
    out: dict[str, list[float]] = {}
    for symbol, price0 in start_prices.items():
        if prices and symbol in prices:
            given = prices[symbol]
            if len(given) < steps + 1:
                raise SimError(f"the price file has {len(given)} rows for {symbol}; {steps} steps need {steps + 1}")
            out[symbol] = list(given[:steps + 1])
            continue
        spec = replace(scenario.path_for(symbol), **(override or {}))
        path = gbm_path(price0, spec, steps, dt, random.Random(f"{seed}:{symbol}:index"))
        shock = scenario.shocks.get(symbol)
        if shock is not None:
            path = [p * m for p, m in zip(path, shock.multipliers(steps, dt))]
        out[symbol] = path
    return out


# =============================================================================== outputs (pure)


def _premium(mark_twap: int, index_twap: int) -> int:
    """(mark TWAP - index TWAP) / index TWAP [wad], truncated toward zero, as the contract computes a premium: here
    from the market's TWAP window (`twaps`, 15 minutes by default), the premium the unsmoothed hourly rule of
    `vperp.funding_compare` reads; `fundingState`'s premium is the day-long one that drives the target."""
    return tdiv((mark_twap - index_twap) * WAD, index_twap)


def wad_str(x: int) -> str:
    """A WAD integer as an exact decimal string (no float rounding, so a CSV compares byte for byte)."""
    d = (Decimal(x) / WAD).normalize()
    return format(d, "f")


def columns(symbols: Sequence[str], breakers: bool = False, orders: bool = False) -> list[str]:
    """The CSV's columns. With the circuit breakers on, per market also: restricted (0/1, any restriction in
    force after the step's poke), reduce_only (0/1) and cap (the effective per-side cap, base: the
    governor's `effectiveMarketParams.maxOpenInterest`), at the end of the row. With delayed orders on in any
    market, then `ORDER_COLUMNS`: the orders committed, executed, failed and lapsed so far over every market,
    and the orders open at the end of the step (`OrderBook.row`)."""
    cols = ["step", "time_s"]
    for s in symbols:
        k = s.lower()
        cols += [f"{k}_index", f"{k}_mark", f"{k}_spot", f"{k}_funding_applied", f"{k}_funding_target",
                 f"{k}_premium", f"{k}_twap_premium", f"{k}_skew_term", f"{k}_long_oi", f"{k}_short_oi",
                 f"{k}_peg"]
    cols += ["insurance_fund", "pool_balance", "pool_nav", "pool_share_price", "bad_debt", "bad_debt_insurance",
             "bad_debt_pool", "kicks", "takes", "redos", "backstops", "live_auction_notional", "trades",
             "reverts", "vault_tokens", "ledger_total", "claims", "pending_bad_debt"]
    if breakers:
        for s in symbols:
            k = s.lower()
            cols += [f"{k}_restricted", f"{k}_reduce_only", f"{k}_cap"]
    if orders:
        cols += list(ORDER_COLUMNS)
    return cols


def read_csv_rows(path: str | Path) -> list[dict[str, float]]:
    with Path(path).open(newline="") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def parse_seeds(text: str) -> list[int]:
    """Seeds from a command-line list: ranges and single seeds, comma separated (`1-5`, `1,3,7`,
    `1-3,7`), in the order given; a seed may appear only once (each gets its own output folder)."""
    seeds: list[int] = []
    for part in (p.strip() for p in str(text).split(",")):
        try:
            if "-" in part[1:]:
                lo, hi = (int(x) for x in part.split("-", 1)) if not part.startswith("-") else (None, None)
                if lo is None or hi < lo:
                    raise ValueError
                seeds += range(lo, hi + 1)
            else:
                seeds.append(int(part))
        except ValueError:
            raise SimError(f"--seeds: {part!r} is not a seed or a range like 1-5") from None
    repeated = sorted({s for s in seeds if seeds.count(s) > 1})
    if repeated:
        raise SimError(f"--seeds: seed {repeated[0]} appears twice")
    return seeds


def drawdown(values: Sequence[float]) -> tuple[float, int, int]:
    """The largest peak-to-trough fall of a series, as a fraction of the peak (0.021 = -2.1 %), with the
    indices of that peak and trough; (0.0, 0, 0) for a series that never falls."""
    worst, peak_i, at = 0.0, 0, (0, 0)
    for i, v in enumerate(values):
        if v > values[peak_i]:
            peak_i = i
        peak = values[peak_i]
        if peak > 0 and (peak - v) / peak > worst:
            worst, at = (peak - v) / peak, (peak_i, i)
    return worst, at[0], at[1]


def shock_window(scenario: Scenario, steps: int, dt: int, symbols: Iterable[str] | None = None
                 ) -> tuple[float, float] | None:
    """The hours (start, end) during which any of the scenario's shocks (of `symbols`, if given) moves
    the index, or None without a shock."""
    spans = [(sh.start_step(steps, dt) * dt / HOUR, (sh.start_step(steps, dt) * dt + sh.span) / HOUR)
             for sym, sh in scenario.shocks.items() if symbols is None or sym in symbols]
    if not spans:
        return None
    return min(a for a, _ in spans), max(b for _, b in spans)


AGGREGATE_FIELDS = ("seed", "kicks", "takes", "redos", "backstops", "bad_debt", "bad_debt_from_insurance",
                    "bad_debt_from_pool", "nav_drawdown", "lp_share_price_drawdown", "max_live_auction_notional",
                    "reverts", "wall_seconds")


def run_metrics(run_dir: str | Path) -> dict[str, Any]:
    """One run's figures for the seed table, from its `summary.json` and `steps.csv` (the drawdowns are
    computed from the CSV, so runs written before those summary fields existed compare too)."""
    run_dir = Path(run_dir)
    s = json.loads((run_dir / "summary.json").read_text())
    rows = read_csv_rows(run_dir / "steps.csv")
    out = {k: s[k] for k in ("seed", "kicks", "takes", "redos", "backstops", "bad_debt", "bad_debt_from_insurance",
                             "bad_debt_from_pool", "max_live_auction_notional", "wall_seconds")}
    out["nav_drawdown"] = round(drawdown([r["pool_nav"] for r in rows])[0], 6)
    out["lp_share_price_drawdown"] = round(drawdown([r["pool_share_price"] for r in rows])[0], 6)
    out["reverts"] = dict(sorted(s["reverts"].items()))
    return {k: out[k] for k in AGGREGATE_FIELDS}


def aggregate_runs(run_dirs: Sequence[str | Path]) -> dict[str, Any]:
    """Per-seed figures of several runs and their aggregate: sums of the counts, bad debt and reverts,
    mean / min / max of everything per run."""
    per_seed = [run_metrics(d) for d in run_dirs]
    numeric = [k for k in AGGREGATE_FIELDS if k not in ("seed", "reverts")]
    agg: dict[str, Any] = {"runs": len(per_seed)}
    for k in numeric:
        vals = [r[k] for r in per_seed]
        agg[k] = {"sum": round(sum(vals), 6), "mean": round(sum(vals) / len(vals), 6),
                  "min": min(vals), "max": max(vals)}
    reverts: dict[str, int] = {}
    for r in per_seed:
        for name, n in r["reverts"].items():
            reverts[name] = reverts.get(name, 0) + n
    agg["reverts"] = dict(sorted(reverts.items()))
    agg["runs_with_bad_debt"] = sum(1 for r in per_seed if r["bad_debt"] > 0)
    agg["runs_with_backstops"] = sum(1 for r in per_seed if r["backstops"] > 0)
    return {"seeds": [r["seed"] for r in per_seed], "per_seed": per_seed, "aggregate": agg}


def _reverts_text(reverts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(reverts.items(), key=lambda kv: (-kv[1], kv[0]))) or "none"


def aggregate_markdown(agg: dict[str, Any], title: str = "") -> str:
    """The seed table of `aggregate_runs` as markdown: one row per seed, then the sums and means."""
    head = ("| seed | kicks | takes | redos | backstops | bad debt (USD) | paid by insurance | paid by pool | "
            "NAV drawdown | LP share-price drawdown | max live auction notional (USD) | reverts | run time (s) |")
    lines = ([f"{title}", ""] if title else []) + [head, "|" + "---|" * 13]

    def pct(x: float | None) -> str:
        return "" if x is None else f"{x:.2%}"

    def row(label: str, r: dict[str, Any], reverts: str) -> str:
        return (f"| {label} | {r['kicks']:g} | {r['takes']:g} | {r['redos']:g} | {r['backstops']:g} | "
                f"{r['bad_debt']:,.0f} | {r['bad_debt_from_insurance']:,.0f} | {r['bad_debt_from_pool']:,.0f} | "
                f"{pct(r['nav_drawdown'])} | {pct(r['lp_share_price_drawdown'])} | "
                f"{r['max_live_auction_notional']:,.0f} | {reverts} | {r['wall_seconds']:.0f} |")

    for r in agg["per_seed"]:
        lines.append(row(str(r["seed"]), r, _reverts_text(r["reverts"])))
    a = agg["aggregate"]
    numeric = [k for k in AGGREGATE_FIELDS if k not in ("seed", "reverts")]
    sums = {k: a[k]["sum"] for k in numeric} | {"nav_drawdown": None, "lp_share_price_drawdown": None}
    lines.append(row("sum", sums, _reverts_text(a["reverts"])))  # a sum of drawdowns means nothing
    lines.append(row("mean", {k: a[k]["mean"] for k in numeric}, ""))
    lines.append(row("max", {k: a[k]["max"] for k in numeric}, ""))
    return "\n".join(lines) + "\n"


def write_aggregate(run_dirs: Sequence[str | Path], out_dir: str | Path, title: str = "") -> dict[str, Any]:
    """`aggregate.json` and `aggregate.md` in `out_dir` for the runs in `run_dirs`; returns the JSON."""
    agg = aggregate_runs(run_dirs)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "aggregate.json").write_text(json.dumps(agg, indent=2) + "\n")
    (out_dir / "aggregate.md").write_text(aggregate_markdown(agg, title))
    return agg


PLOT_WIDTH_IN, PLOT_DPI = 12.5, 80  # 1000 px wide


def _label(label: str, ys: Sequence[float]) -> str:
    """A legend label that says when the series is zero throughout: drawn all the same (on the zero line,
    possibly under another zero series), never left out."""
    return f"{label} (0 throughout)" if all(v == 0 for v in ys) else label


def plot_run(rows: Sequence[dict[str, float]], symbols: Sequence[str], out_dir: str | Path, title: str = "",
             dpi: int = PLOT_DPI, shock: tuple[float, float] | None = None,
             manifest: dict[str, dict] | None = None) -> list[Path]:
    """Write the run's PNG plots to `out_dir` (mark vs index, funding, OI, insurance, pool NAV, LP share
    price, bad debt, liquidations); returns their paths. Time on the x axis in hours; each plot is
    1000 px wide. `shock` (start, end) in hours is shaded on every axis. Every series is drawn, a series
    that is zero throughout too (its label says so; distinct line styles and markers keep series that
    coincide apart). `manifest`, if given, is filled with each plot's pixel size and series labels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    hours = [r["time_s"] / HOUR for r in rows]
    col = lambda name: [r[name] for r in rows]  # noqa: E731
    written: list[Path] = []

    titles = {"mark_vs_index": "mark vs index", "funding": "funding rate: applied vs target",
              "open_interest": "open interest", "insurance_fund": "insurance fund", "pool_nav": "liquidity pool",
              "lp_share_price": "LP share price (pool NAV per share)", "bad_debt": "bad debt (cumulative)",
              "liquidations": "liquidations (cumulative)"}
    usd = FuncFormatter(lambda v, _: f"{v:,.0f}")
    styles = [{"ls": "-"}, {"ls": "--"}, {"ls": "-."}, {"ls": ":"}]
    markers = ["o", "s", "^", "D"]
    mark_every = max(1, len(rows) // 12)

    def decorate(ax) -> None:
        if shock is not None:
            ax.axvspan(shock[0], shock[1], color="tab:red", alpha=0.12, lw=0, label="shock")
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=9)
        ax.legend(fontsize=8, loc="best")

    def save(fig, name: str) -> None:
        fig.suptitle(f"{title}{titles[name]}", fontsize=11)
        fig.tight_layout()
        path = out_dir / f"{name}.png"
        fig.savefig(path, dpi=dpi)
        if manifest is not None:
            w, h = (round(x * dpi) for x in fig.get_size_inches())
            manifest[name] = {"size_px": [w, h],
                              "lines": [[line.get_label() for line in ax.get_lines()] for ax in fig.axes],
                              "legends": [[t.get_text() for t in ax.get_legend().get_texts()] for ax in fig.axes]}
        plt.close(fig)
        written.append(path)

    def per_market(name: str, series: Callable[[str], list[tuple[str, list[float], dict]]], ylabel: str) -> None:
        fig, axes = plt.subplots(len(symbols), 1, figsize=(PLOT_WIDTH_IN, 3.0 * len(symbols)), sharex=True,
                                 squeeze=False)
        for ax, s in zip(axes[:, 0], symbols):
            for label, ys, style in series(s.lower()):
                ax.plot(hours, ys, label=_label(label, ys), **style)
            ax.set_ylabel(f"{s} {ylabel}", fontsize=9)
            ax.ticklabel_format(axis="y", style="plain", useOffset=False)
            decorate(ax)
        axes[-1, 0].set_xlabel("hours", fontsize=9)
        save(fig, name)

    per_market("mark_vs_index", lambda k: [("index (oracle)", col(f"{k}_index"), {"lw": 1.6}),
                                           ("mark (TWAP)", col(f"{k}_mark"), {"lw": 1.2}),
                                           ("vAMM spot", col(f"{k}_spot"), {"lw": 0.8, "alpha": 0.6})], "price")
    per_market("funding", lambda k: [("applied", [100 * v for v in col(f"{k}_funding_applied")], {"lw": 1.6}),
                                     ("target", [100 * v for v in col(f"{k}_funding_target")],
                                      {"lw": 1.0, "ls": "--"})], "%/h")
    per_market("open_interest", lambda k: [("long OI", col(f"{k}_long_oi"), {"lw": 1.4}),
                                           ("short OI", col(f"{k}_short_oi"), {"lw": 1.4, "ls": "--"})], "base")

    def single(name: str, series: list[tuple[str, list[float]]], ylabel: str, step: bool = False,
               fmt=usd, integer: bool = False) -> None:
        fig, ax = plt.subplots(figsize=(PLOT_WIDTH_IN, 3.6))
        for i, (label, ys) in enumerate(series):
            style = {**styles[i % len(styles)], "marker": markers[i % len(markers)], "markevery": mark_every,
                     "markersize": 4, "lw": 1.4}
            if step:
                ax.step(hours, ys, where="post", label=_label(label, ys), **style)
            else:
                ax.plot(hours, ys, label=_label(label, ys), **style)
        ax.set_xlabel("hours", fontsize=9)
        ax.set_ylabel(ylabel, fontsize=9)
        ax.yaxis.set_major_formatter(fmt)
        if integer:  # counts: whole-number ticks only
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        decorate(ax)
        save(fig, name)

    single("insurance_fund", [("insurance fund", col("insurance_fund"))], "USD")
    single("pool_nav", [("pool NAV", col("pool_nav")), ("pool cash (Vault balance)", col("pool_balance"))], "USD")
    single("lp_share_price", [("NAV per share", col("pool_share_price"))], "USD per share",
           fmt=FuncFormatter(lambda v, _: f"{v:.4f}"))
    single("bad_debt", [("cumulative bad debt", col("bad_debt")), ("paid by insurance", col("bad_debt_insurance")),
                        ("paid by the pool", col("bad_debt_pool"))], "USD", step=True)
    single("liquidations", [("kicks", col("kicks")), ("takes", col("takes")), ("redos", col("redos")),
                            ("backstops", col("backstops"))], "cumulative count", step=True, integer=True)
    return written


# =============================================================================== agents


@dataclass
class Order:
    agent: str
    symbol: str
    base: int  # signed WAD base: > 0 buys
    tolerance_bps: int = 50  # slippage accepted beyond the quote seen at the start of the step
    deadline_s: int = 120  # the order is void this long after it is placed


@dataclass
class View:
    """What the agents see at the start of a step (one batched read)."""

    step: int
    now: int
    index: dict[str, int]  # WAD
    spot: dict[str, int]
    reserves: dict[str, tuple[int, int]]  # (base, quote) virtual reserves
    twaps: dict[str, tuple[int, int]]  # (mark TWAP, index TWAP)
    history: dict[str, list[float]]  # index so far (floats), oldest first
    size: dict[tuple[str, str], int]  # (agent, symbol) -> signed base
    value: dict[str, int]  # agent -> account value (WAD)
    free: dict[str, int]  # agent -> free collateral (WAD)
    min_size: dict[str, int]  # symbol -> minPositionSize
    imr: dict[str, int]  # symbol -> initial margin ratio
    funding: dict[str, int] = field(default_factory=dict)  # symbol -> applied funding rate (WAD per hour; > 0: longs pay)


def _round_size(base: float, minimum: int) -> int:
    """A float base amount as WAD, rounded toward zero to a multiple of the market's minimum size."""
    lots = int(base * WAD / minimum)
    return lots * minimum


@dataclass
class Trader:
    """Base class: a trader with one cross-margin account (sub-account 0)."""

    name: str
    account: Any
    capital: float  # USD deposited at the start
    max_leverage: float = 3.0
    tolerance_bps: int = 50

    def orders(self, v: View, rng: random.Random) -> list[Order]:
        raise NotImplementedError

    def _toward(self, v: View, symbol: str, target_base: float, min_change: float = 0.1,
                max_notional: float | None = None) -> list[Order]:
        """An order moving the position toward `target_base` (capped by leverage and `max_notional` per
        step), or none when the gap is below `min_change` of the target or the market's minimum."""
        price = v.index[symbol] / WAD
        equity = max(v.value.get(self.name, 0) / WAD, 0.0)
        cap = self.max_leverage * equity / price / len(v.index)
        target = max(-cap, min(cap, target_base))
        current = v.size.get((self.name, symbol), 0) / WAD
        gap = target - current
        if max_notional is not None:
            gap = max(-max_notional / price, min(max_notional / price, gap))
        if abs(gap) < max(min_change * abs(target), 1e-12):
            return []
        base = _round_size(gap, v.min_size[symbol])
        if base == 0:
            return []
        # The remaining position must not fall below the minimum size: close instead.
        rest = current * WAD + base
        if rest != 0 and abs(rest) < v.min_size[symbol]:
            base = -int(current * WAD)
        return [Order(self.name, symbol, base, self.tolerance_bps)]


@dataclass
class TrendFollower(Trader):
    """Momentum: target exposure proportional to the index's log return over `lookback` steps, full
    leverage at a `full_signal` move; holds until the signal changes by enough to matter."""

    lookback: int = 12
    full_signal: float = 0.02

    def orders(self, v: View, rng: random.Random) -> list[Order]:
        out: list[Order] = []
        for s in v.index:
            h = v.history[s]
            if len(h) <= self.lookback:
                continue
            signal = math.log(h[-1] / h[-1 - self.lookback]) / self.full_signal
            signal = max(-1.0, min(1.0, signal))
            equity = max(v.value.get(self.name, 0) / WAD, 0.0)
            target = signal * self.max_leverage * equity / (v.index[s] / WAD) / len(v.index)
            out += self._toward(v, s, target, min_change=0.25, max_notional=150_000)
        return out


@dataclass
class MeanReverter(Trader):
    """Contrarian: fades the index's deviation from its exponential moving average (span `span` steps),
    full leverage at a `full_deviation` gap."""

    span: int = 24
    full_deviation: float = 0.03
    _ema: dict[str, float] = field(default_factory=dict)

    def orders(self, v: View, rng: random.Random) -> list[Order]:
        out: list[Order] = []
        alpha = 2 / (self.span + 1)
        for s in v.index:
            price = v.history[s][-1]
            ema = self._ema.get(s, price)
            ema = ema + alpha * (price - ema)
            self._ema[s] = ema
            if len(v.history[s]) < 4:
                continue
            signal = max(-1.0, min(1.0, -math.log(price / ema) / self.full_deviation))
            equity = max(v.value.get(self.name, 0) / WAD, 0.0)
            target = signal * self.max_leverage * equity / (price) / len(v.index)
            out += self._toward(v, s, target, min_change=0.25, max_notional=150_000)
        return out


@dataclass
class NoiseTrader(Trader):
    """Trades at random: with probability `activity` per step, a random market, a notional uniform in
    `notional_range`, buying with probability `buy_probability`; cuts the position in half when its
    leverage passes `max_leverage`."""

    activity: float = 0.35
    notional_range: tuple[float, float] = (5_000, 40_000)
    buy_probability: float = 0.5

    def orders(self, v: View, rng: random.Random) -> list[Order]:
        if rng.random() >= self.activity:
            return []
        symbol = rng.choice(sorted(v.index))
        price = v.index[symbol] / WAD
        equity = max(v.value.get(self.name, 0) / WAD, 0.0)
        exposure = sum(abs(v.size.get((self.name, s), 0)) * v.index[s] for s in v.index) / WAD / WAD
        current = v.size.get((self.name, symbol), 0)
        if equity > 0 and exposure > self.max_leverage * equity and current != 0:
            half = -_round_size(current / WAD / 2, v.min_size[symbol])
            return [Order(self.name, symbol, half or -current, self.tolerance_bps)] if (half or current) else []
        notional = rng.uniform(*self.notional_range)
        side = 1 if rng.random() < self.buy_probability else -1
        base = side * _round_size(notional / price, v.min_size[symbol])
        return [Order(self.name, symbol, base, self.tolerance_bps)] if base else []


@dataclass
class Whale(Trader):
    """A levered whale: builds an ETH position of `max_leverage` x its capital on `side` in chunks of at
    most `chunk` notional per step, then holds it and never de-levers (it tops up when its leverage
    falls below the target, e.g. after a gain)."""

    side: int = 1
    symbol: str = "ETH"
    chunk: float = 120_000

    def orders(self, v: View, rng: random.Random) -> list[Order]:
        price = v.index[self.symbol] / WAD
        equity = max(v.value.get(self.name, 0) / WAD, 0.0)
        current = v.size.get((self.name, self.symbol), 0) / WAD
        target = self.side * self.max_leverage * equity / price
        gap = target - current
        if gap * self.side <= 0.02 * abs(target):  # at or above the target leverage: hold
            return []
        gap = self.side * min(abs(gap), self.chunk / price)
        base = _round_size(gap, v.min_size[self.symbol])
        return [Order(self.name, self.symbol, base, self.tolerance_bps)] if base else []


@dataclass
class Arbitrageur(Trader):
    """Basis arbitrage: when the vAMM price is more than `band` away from the index, trades the vAMM
    toward the index (to within `band / 2`), at most `max_notional` per step and within its leverage;
    the hedge it would hold elsewhere is outside the model."""

    band: float = 0.004
    max_notional: float = 1_500_000

    def orders(self, v: View, rng: random.Random) -> list[Order]:
        out: list[Order] = []
        equity = max(v.value.get(self.name, 0) / WAD, 0.0)
        for s in v.index:
            index, spot = v.index[s] / WAD, v.spot[s] / WAD
            if abs(spot / index - 1) <= self.band:
                continue
            x, y = (r / WAD for r in v.reserves[s])
            goal = index * (1 + self.band / 2 if spot > index else 1 - self.band / 2)
            # x * y = k and price = y / x, so the base reserve at price p is sqrt(k / p).
            base = x - math.sqrt(x * y / goal)  # > 0: buy (spot below the index)
            base = max(-self.max_notional / index, min(self.max_notional / index, base))
            current = v.size.get((self.name, s), 0) / WAD
            cap = self.max_leverage * equity / index / len(v.index)
            base = max(-cap - current, min(cap - current, base))
            base_w = _round_size(base, v.min_size[s])
            if base_w:
                out.append(Order(self.name, s, base_w, self.tolerance_bps))
        return out


@dataclass
class Attacker(Trader):
    """The manipulator of the "thin" scenario: it moves the index of `symbol` (the scenario's shock is its
    doing, so it knows the schedule: the pump's first step `pump_step`, its top `top_step`) and trades the
    perp into it. In the `build_steps` before the pump it buys toward a long of `size` base, at most `chunk`
    a step and never past `band` above the index (the arbitrageur sells it back down between steps); from
    the top on it sells the position into the moved mark, as much a step as keeps the price within `band`
    below the index, until it is flat."""

    symbol: str = "THIN"
    size: float = 2_000
    chunk: float = 500
    band: float = 0.08
    build_steps: int = 6
    pump_step: int = 0
    top_step: int = 0

    def orders(self, v: View, rng: random.Random) -> list[Order]:
        s = self.symbol
        index = v.index[s] / WAD
        x, y = (r / WAD for r in v.reserves[s])
        held = v.size.get((self.name, s), 0)
        current = held / WAD
        if self.pump_step - self.build_steps <= v.step < self.pump_step:
            ceiling = index * (1 + self.band)
            room = max(x - math.sqrt(x * y / ceiling), 0.0)  # base bought before the price reaches the ceiling
            base = min(self.size - current, self.chunk, room)
        elif v.step >= self.top_step and current > 0:
            floor = index * (1 - self.band)
            room = max(math.sqrt(x * y / floor) - x, 0.0)  # base sold before the price reaches the floor
            base = -min(current, self.chunk * 2, room)
        else:
            return []
        base_w = _round_size(base, v.min_size[s])
        if base_w < 0 and 0 < held + base_w < v.min_size[s]:
            base_w = -held
        return [Order(self.name, s, base_w, self.tolerance_bps)] if base_w else []


@dataclass
class BasisTrader(Trader):
    """Funding carry (a basis trader): holds a position against the skew while the applied funding rate
    pays it, and unwinds when it stops paying. Flat, it enters on the side the rate pays (short when
    longs pay, rate > 0; long when shorts pay) once |rate| >= `enter_rate`; holding, it keeps the
    position while the rate still pays its side at least `exit_rate`, and closes it otherwise (the rate
    fell, or turned against it). Target: `max_leverage` x its equity split over the markets, at most
    `max_notional` per step. Its hedge elsewhere (the spot it would hold) is outside the model.

    At the default entry rate (0.003 %/h, about 26 % a year) the round trip's 0.2 % of fees takes about
    three days of funding to earn back: a multi-day carry, of which a 12-hour run shows the effect on
    the skew rather than the profit."""

    enter_rate: float = 0.00003  # per hour
    exit_rate: float = 0.00001  # per hour
    max_notional: float = 200_000

    def side(self, rate: float, current: float) -> int:
        """The side to hold (+1 long, -1 short, 0 flat) given the applied rate per hour (> 0: longs pay)
        and the current signed size."""
        held = (current > 0) - (current < 0)
        if held and -held * rate >= self.exit_rate:
            return held  # still paid enough to stay
        if abs(rate) >= self.enter_rate:
            return -1 if rate > 0 else 1
        return 0

    def orders(self, v: View, rng: random.Random) -> list[Order]:
        out: list[Order] = []
        equity = max(v.value.get(self.name, 0) / WAD, 0.0)
        for s in v.index:
            rate = v.funding.get(s, 0) / WAD
            current = v.size.get((self.name, s), 0) / WAD
            side = self.side(rate, current)
            if side == 0 and current == 0:
                continue
            target = side * self.max_leverage * equity / (v.index[s] / WAD) / len(v.index)
            # min_change 0.1: the per-step cap may be under a quarter of the target, and the gap is compared capped.
            out += self._toward(v, s, target, min_change=0.1, max_notional=self.max_notional)
        return out


@dataclass
class LiquidityProvider:
    """An LP in the ERC-4626 pool. `steady`: deposits `capital` at the start and `top_up` every
    `top_up_every` steps. `nervous`: deposits at the start and, once the pool's share price falls by
    `fear` from its peak (or bad debt appears), requests the withdrawal of all its shares and redeems
    what the pool allows after the cooldown, step after step."""

    name: str
    account: Any
    capital: float
    style: str = "steady"  # "steady" | "nervous"
    top_up: float = 100_000
    top_up_every: int = 24
    fear: float = 0.002
    peak: float = 0.0
    requested: bool = False
    unlock_at: int = 0
    redeemed_shares: int = 0


# =============================================================================== the run


@dataclass
class SimSummary:
    scenario: str
    steps: int
    seed: int
    step_seconds: int
    network: str
    wall_seconds: float
    steps_per_second: float
    trades: int
    reverts: dict[str, int]
    kicks: int
    takes: int
    redos: int
    backstops: int
    bad_debt: float
    bad_debt_from_insurance: float
    bad_debt_from_pool: float
    insurance_start: float
    insurance_min: float
    insurance_end: float
    nav_start: float
    nav_min: float
    nav_end: float
    max_live_auction_notional: float
    max_index_drop_1h: dict[str, float]
    lp_deposits: int
    lp_withdraw_requests: int
    lp_redemptions: int
    conservation_ok: bool
    shortfall_steps: int
    nav_drawdown: float  # largest peak-to-trough fall of the NAV (fraction; LP deposits and redemptions included)
    lp_share_price_start: float  # pool NAV per share (USD), first step
    lp_share_price_peak: float
    lp_share_price_min: float
    lp_share_price_end: float
    lp_share_price_drawdown: float  # largest peak-to-trough fall of the NAV per share (fraction)
    shock_hours: list[float] | None  # [start, end] of the scenario's shock, hours into the run
    pool_pnl: dict[str, float]  # the NAV's change over the run by source (USD), see Simulation._pool_pnl
    csv: str
    plots: list[str]
    config: str = "shipped defaults"  # the deployment simulated: "shipped defaults" or the YAML file's path
    auctions: dict[str, str] = field(default_factory=dict)  # per market: curve, duration, max discount, reset drop
    # The oracle agent: its settings, and per market the number of updates posted during the run, the
    # longest time a step began without a fresh post (s) and the feed's staleness limit (s).
    oracle: dict[str, Any] = field(default_factory=dict)
    basis_trader: bool = False  # whether the funding-carry agent took part in this run
    trades_by_agent: dict[str, int] = field(default_factory=dict)  # executed orders per trader
    # Only in runs with the circuit breakers on or an attacker (absent from summary.json otherwise, so the
    # other runs' outputs are unchanged): trips per kind (and per market), steps ending restricted per
    # market, orders refused OpenInterestCapExceeded while their market was restricted (per agent), the
    # extremes the breakers measured (see `Simulation._breaker_max`); and every trader's PnL (account value
    # at the end less the deposit, USD).
    breakers: dict[str, Any] | None = None
    repegs: dict[str, int] = field(default_factory=dict)  # per market: repegs the keeper made (the peg follows the index)
    trader_pnl: dict[str, float] | None = None
    # Only in runs with delayed orders on in a market (absent otherwise): `OrderBook.summary`.
    orders: dict[str, Any] | None = None

    def lines(self) -> list[str]:
        rv = ", ".join(f"{k} {v}" for k, v in sorted(self.reverts.items(), key=lambda kv: -kv[1])) or "none"
        drops = ", ".join(f"{k} {v:.1%}" for k, v in self.max_index_drop_1h.items())
        return [
            f"scenario {self.scenario}, {self.steps} steps of {self.step_seconds} s "
            f"({self.steps * self.step_seconds / HOUR:.1f} h simulated), seed {self.seed}, on {self.network}",
            f"deployment: {self.config}; auctions: "
            + ("; ".join(f"{k} {v}" for k, v in self.auctions.items()) or "n/a"),
            *([self.oracle_line()] if self.oracle else []),
            f"wall time {self.wall_seconds:.1f} s: {self.steps_per_second:.2f} steps/s",
            f"largest index drop within 1 h: {drops}",
            f"trades {self.trades}; reverts {sum(self.reverts.values())} ({rv})",
            f"liquidations: {self.kicks} kicks, {self.takes} takes, {self.redos} redos, {self.backstops} backstops; "
            f"peak live auction notional {self.max_live_auction_notional:,.0f} USD",
            f"bad debt {self.bad_debt:,.2f} USD (insurance paid {self.bad_debt_from_insurance:,.2f}, "
            f"pool paid {self.bad_debt_from_pool:,.2f})",
            f"insurance fund {self.insurance_start:,.2f} -> min {self.insurance_min:,.2f} -> {self.insurance_end:,.2f}",
            f"pool NAV {self.nav_start:,.2f} -> min {self.nav_min:,.2f} -> {self.nav_end:,.2f} "
            f"(largest peak-to-trough fall {self.nav_drawdown:.2%}, LP flows included)",
            f"LP share price {self.lp_share_price_start:.6f} -> peak {self.lp_share_price_peak:.6f} -> "
            f"min {self.lp_share_price_min:.6f} -> {self.lp_share_price_end:.6f} "
            f"(largest peak-to-trough fall {self.lp_share_price_drawdown:.2%})",
            "pool PnL by source (USD): " + ", ".join(f"{k} {v:,.0f}" for k, v in self.pool_pnl.items()),
            f"LPs: {self.lp_deposits} deposits, {self.lp_withdraw_requests} withdrawal requests, "
            f"{self.lp_redemptions} redemptions",
            f"conservation (Vault tokens == traders' + pool + insurance balances, every step): "
            f"{'exact' if self.conservation_ok else 'VIOLATED'}; steps with positive claims above the tokens "
            f"(an underwater account's debt not yet resolved): {self.shortfall_steps}",
            *self.breaker_lines(),
            *self.order_lines(),
            f"wrote {self.csv} and {len(self.plots)} plots in {Path(self.csv).parent}",
        ]


    def oracle_line(self) -> str:
        o = self.oracle
        rule = ("every step" if not o["heartbeat_s"] else
                f"on a move > {o['deviation_bps']} bps or after {o['heartbeat_s']} s" if o["deviation_bps"] else
                f"every {o['heartbeat_s']} s")
        per = ", ".join(f"{k} {n} updates (longest without one {o['max_age_s'][k]} s, stale after "
                        f"{o['feed_heartbeat_s'][k]} s)" for k, n in o["updates"].items())
        return f"oracle: posts {rule}: {per}" + ("; basis trader on" if self.basis_trader else "")

    def breaker_lines(self) -> list[str]:
        out = []
        if self.breakers is not None:
            b = self.breakers
            trips = ", ".join(f"{k} {v}" for k, v in b["trips"].items()) or "none"
            restricted = ", ".join(f"{k} {v}" for k, v in b["restricted_steps"].items()) or "none"
            held = ", ".join(f"{k} {v}" for k, v in b.get("peg_held_steps", {}).items()) or "none"
            out.append(f"circuit breakers: trips {trips}; steps restricted {restricted}; orders refused while "
                       f"restricted {sum(b['refused'].values())}; steps with the peg held {held}")
        if self.trader_pnl is not None:
            out.append("trader PnL (USD): " + ", ".join(f"{k} {v:,.0f}" for k, v in self.trader_pnl.items()))
        return out

    def order_lines(self) -> list[str]:
        o = self.orders
        if o is None:
            return []
        refused = ", ".join(f"{k} {v}" for k, v in sorted(o["failed_reasons"].items(), key=lambda kv: -kv[1]))
        delay = ("no execution" if o["mean_delay_s"] is None else
                 f"commit to execution mean {o['mean_delay_s']:,.1f} s, max {o['max_delay_s']:,} s")
        return [f"delayed orders ({', '.join(o['markets'])}; keeper fee {o['keeper_fee_wei'] / 10**18:g} ETH): "
                f"{o['committed']} committed, {o['executed']} executed, {o['failed']} failed"
                + (f" ({refused})" if refused else "")
                + f", {o['lapsed']} lapsed ({o['missed']} missed the next round), {o['open_at_end']} open at the end, "
                f"{o['held_back']} held back "
                f"(an order of the agent still open in the market); {delay}"]

    def to_json(self) -> str:
        d = asdict(self)
        for k in ("breakers", "trader_pnl", "orders"):
            if d[k] is None:
                del d[k]
        return json.dumps(d, indent=2) + "\n"


def _error_name(err: Exception) -> str:
    """A revert's name: the custom error's (Ape makes one class per error), else the message."""
    from ape.exceptions import CustomError

    if isinstance(err, CustomError):
        return type(err).__name__
    msg = (getattr(err, "message", None) or str(err)).strip().splitlines()
    return (msg[0][:60] if msg else "") or type(err).__name__


class Wire:
    """Transactions and calls straight through the provider's web3, for the agents' hot path.

    Ape's contract handlers cost about 15 RPC round trips per transaction (code checks, nonce, fee
    queries, receipt polling), and on Anvil every reverted transaction is traced and printed. Here a
    transaction is `eth_estimateGas` (a revert surfaces there, named from the contracts' error ABIs),
    `eth_sendTransaction` from the unlocked test account, and one receipt read; a view is one `eth_call`.
    The protocol sees exactly the same transactions."""

    MAX_FEE = 100 * 10**9  # [wei] fixed fee caps, so web3 does not query fees before each transaction

    def __init__(self, contracts: Iterable[Any]) -> None:
        from ape import chain

        from .client import error_selectors

        self.w3 = chain.provider.web3
        chain_io.cache_chain_id(self.w3)  # what it saves: vperp/chain_io.py
        # Over HTTP (Anvil, a node) a transaction's three requests go to the node as they are, without web3's
        # middleware and its receipt polling: the same requests in the same order, so the same chain (a 16-step thin
        # run with breakers wrote the same CSV and summary in 15.8 s instead of 17.8 s). The embedded chain keeps
        # web3's path (its provider raises on reverts).
        self.raw = hasattr(self.w3.provider, "endpoint_uri")
        self.ecosystem = chain.provider.network.ecosystem
        self.errors = {"08c379a0": "Error(string)", "4e487b71": "Panic"}
        for selector, name in error_selectors(c.contract_type for c in contracts).items():
            self.errors.setdefault(selector.hex(), name)

    def error_name(self, err: BaseException) -> str:
        return self._selector_name(_revert_data(err)[:4].hex())

    def _selector_name(self, selector: str) -> str:
        """The error named by a 4-byte selector (hex, no 0x; empty: a bare revert)."""
        return self.errors.get(selector, f"revert 0x{selector}" if selector else "revert")

    def call(self, contract, method: str, *args) -> tuple:
        handler = getattr(contract, method)
        raw = self.w3.eth.call({"to": contract.address, "data": _hex(handler.encode_input(*args))})
        return self.ecosystem.decode_returndata(handler.abis[0], bytes(raw))

    def send(self, contract, method: str, *args, sender, value: int = 0) -> tuple[bool, str | None]:
        """(True, None) when mined and successful, else (False, the error's name). `value`: wei sent with it."""
        receipt, error = self._submit(contract, method, args, sender, value)
        return receipt is not None, error

    def transact(self, contract, method: str, *args, sender) -> "WireReceipt":
        """`send` for code written against Ape's contract handlers (the keeper, through `FastViews`): the
        receipt (its gas and decoded logs), or a revert raised as Ape's ContractLogicError, named after the
        error."""
        from ape.exceptions import ContractLogicError

        receipt, error = self._submit(contract, method, args, sender, 0)
        if receipt is None:
            raise ContractLogicError(revert_message=error, set_ape_traceback=False)
        return WireReceipt(receipt, self.ecosystem)

    def _submit(self, contract, method: str, args: tuple, sender, value: int) -> tuple[Any, str | None]:
        """(the receipt, None) when mined and successful, else (None, the error's name)."""
        from eth_tester.exceptions import TransactionFailed
        from web3.exceptions import ContractLogicError as Web3LogicError

        tx = {"from": sender.address, "to": contract.address,
              "data": _hex(getattr(contract, method).encode_input(*args)),
              "maxFeePerGas": self.MAX_FEE, "maxPriorityFeePerGas": 0}
        if value:
            tx["value"] = value
        if self.raw:
            return self._submit_raw(tx)
        try:
            gas = self.w3.eth.estimate_gas(tx)
        except (Web3LogicError, TransactionFailed) as err:  # Anvil / eth-tester
            return None, self.error_name(err)
        tx["gas"] = gas * 13 // 10 + 30_000
        receipt = self.w3.eth.wait_for_transaction_receipt(self.w3.eth.send_transaction(tx), poll_latency=0.005)
        if receipt["status"] != 1:  # passed estimation, failed in its block (a state change in between)
            return None, "reverted in block"
        return receipt, None

    def _submit_raw(self, tx: dict) -> tuple[Any, str | None]:
        """`_submit` over JSON-RPC as is: eth_estimateGas, eth_sendTransaction with the same padded limit, then the
        receipt (Anvil mines on send, so it is there at once; web3's wait otherwise), its numbers and logs decoded."""
        request = self.w3.provider.make_request
        rpc = {k: (hex(v) if isinstance(v, int) else v) for k, v in tx.items()}
        answer = request("eth_estimateGas", [rpc])
        if "error" in answer:
            data = answer["error"].get("data") or ""
            data = data if isinstance(data, str) else data.get("data", "") if isinstance(data, dict) else ""
            return None, self._selector_name(data[2:10] if data.startswith("0x") else "")
        gas = int(answer["result"], 16)
        rpc["gas"] = hex(gas * 13 // 10 + 30_000)
        sent = request("eth_sendTransaction", [rpc])
        if "error" in sent:
            raise SimError(f"eth_sendTransaction failed after a successful estimate: {sent['error']}")
        receipt = request("eth_getTransactionReceipt", [sent["result"]]).get("result")
        if receipt is None:
            receipt = dict(self.w3.eth.wait_for_transaction_receipt(sent["result"], poll_latency=0.005))
        else:
            receipt = _decoded_receipt(receipt)
        if receipt["status"] != 1:  # passed estimation, failed in its block (a state change in between)
            return None, "reverted in block"
        return receipt, None


def _decoded_receipt(raw: dict) -> dict:
    """A JSON-RPC receipt with the numbers WireReceipt and Ape's log decoder read as ints (hashes stay hex)."""
    out = dict(raw)
    for k in ("status", "gasUsed", "blockNumber"):
        out[k] = int(raw[k], 16)
    out["logs"] = [{**log, **{k: int(log[k], 16) for k in ("blockNumber", "logIndex", "transactionIndex") if k in log}}
                   for log in raw.get("logs", [])]
    return out


class WireReceipt:
    """What the keeper reads of a transaction it sent through `Wire.transact`: the gas used, the block, and the
    logs decoded as Ape decodes a receipt's."""

    def __init__(self, receipt, ecosystem) -> None:
        self._receipt = receipt
        self._ecosystem = ecosystem
        self.gas_used = int(receipt["gasUsed"])
        self.block_number = int(receipt["blockNumber"])
        h = receipt["transactionHash"]
        self.txn_hash = h if isinstance(h, str) else _hex(h)

    def decode_logs(self, events) -> list:
        """The logs of `events` (an Ape contract event, or a list of them), in the order they were emitted."""
        events = events if isinstance(events, (list, tuple)) else [events]
        logs = [dict(log) for log in self._receipt["logs"]]
        return list(self._ecosystem.decode_logs(logs, *(e.abi for e in events)))


def _revert_data(err: BaseException | None) -> bytes:
    """The raw revert data behind a web3 (`.data`, hex) or eth-tester (bytes argument, possibly on the
    exception it was raised from) revert; empty if none is found."""
    seen = 0
    while err is not None and seen < 4:
        data = getattr(err, "data", None)
        if isinstance(data, str) and data.startswith("0x"):
            return bytes.fromhex(data[2:])
        for arg in err.args:
            if isinstance(arg, (bytes, bytearray)):
                return bytes(arg)
            if isinstance(arg, BaseException):
                inner = _revert_data(arg)
                if inner:
                    return inner
        err, seen = err.__cause__ or err.__context__, seen + 1
    return b""


def _hex(data: bytes) -> str:
    return "0x" + bytes(data).hex()


class FastViews:
    """A contract whose view functions are answered through `Wire.call` (one `eth_call`, decoded like
    Ape decodes it), and the methods named in `transactions` sent through `Wire.transact`; everything else
    (other transactions, events, attributes) is the Ape contract's. The simulated keeper runs the unchanged
    `Keeper.run_once` over contracts wrapped in this."""

    def __init__(self, contract, wire: Wire, transactions: Iterable[str] = ()) -> None:
        self._contract = contract
        self._wire = wire
        self._views = {abi.name for abi in contract.contract_type.view_methods}
        self._transactions = set(transactions)

    def __getattr__(self, name: str) -> Any:
        if name in self._views:
            def view(*args):
                values = self._wire.call(self._contract, name, *args)
                return values[0] if len(values) == 1 else tuple(values)

            return view
        if name in self._transactions:
            def transact(*args, sender):
                return self._wire.transact(self._contract, name, *args, sender=sender)

            return transact
        return getattr(self._contract, name)

    @property
    def address(self) -> str:
        return self._contract.address


class Batch:
    """Many view calls in one `eth_call` through the test-only BatchCaller: label -> value."""

    def __init__(self, batcher, wire: Wire) -> None:
        self.batcher = batcher
        self.wire = wire

    def read(self, calls: dict[str, tuple]) -> dict[str, Any]:
        labels = list(calls)
        targets, data, abis = [], [], []
        for label in labels:
            contract, method, *args = calls[label]
            handler = getattr(contract, method)
            targets.append(contract.address)
            data.append(handler.encode_input(*args))
            abis.append(handler.abis[0])
        (results,) = self.wire.call(self.batcher, "batch", targets, data)
        out = {}
        for label, abi, raw in zip(labels, abis, results):
            values = self.wire.ecosystem.decode_returndata(abi, bytes(raw))
            out[label] = values[0] if len(values) == 1 else tuple(values)
        return out


class Simulation:
    """One run: deploy, agents, the step loop, the CSV. Use `run_simulation` unless you need the parts."""

    def __init__(self, scenario: Scenario, steps: int, seed: int, out_dir: Path, *, dt: int = STEP_SECONDS,
                 prices: dict[str, list[float]] | None = None, override: dict[str, float] | None = None,
                 insurance_seed: float = 100_000, pool_cooldown: int | None = HOUR,
                 keeper_discount_bps: int = 100, config: "DeployConfig | None" = None,
                 config_source: str | None = None, oracle: OraclePolicy = OraclePolicy(),
                 basis_trader: bool = False, breakers: bool = False, warm_up: bool = True,
                 plots: bool = True) -> None:
        from ape import accounts, chain, project

        from .config import default_config
        from .deployment import deploy
        from .keeper import Keeper

        if steps < 1:
            raise SimError(f"steps must be >= 1, not {steps}")
        self.scenario, self.steps, self.seed, self.dt, self.out_dir = scenario, steps, seed, dt, out_dir
        self.plots = plots
        self.chain = chain
        self.rng = random.Random(f"{seed}:agents")
        test_accounts = accounts.test_accounts
        if len(test_accounts) < 10:
            raise SimError(f"the simulation needs 10 funded test accounts, the network has {len(test_accounts)}")
        deployer = test_accounts[0]
        self._pin_clock()

        base = config if config is not None else default_config()
        if scenario.extra_markets:  # the scenario's own markets, listed after the deployment's
            listed = {m.symbol for m in base.markets}
            base = replace(base, markets=base.markets + tuple(EXTRA_MARKETS[sym]() for sym in scenario.extra_markets
                                                              if sym not in listed))
        self.config_source = config_source or ("a given config" if config is not None else "shipped defaults")
        self.auctions = {m.symbol: f"{m.auction_curve} {m.auction_duration} s to {m.auction_max_discount:.2%}, "
                                   f"reset {m.auction_reset_drop:.0%}" for m in base.markets}
        if config is not None and (config.collateral != "mock" or any(m.oracle != "mock" for m in config.markets)):
            raise SimError("the simulator posts prices to mock feeds and mints mock collateral: "
                           "the config's collateral and oracles must be \"mock\"")
        oracle.check(dt, {m.symbol: m.heartbeat for m in base.markets})
        self.oracle = oracle
        start = {m.symbol: m.price for m in base.markets}
        self.paths = index_paths(scenario, steps, seed, start, dt, prices, override)
        self._csv_symbols = set(prices or {})
        markets = tuple(replace(m, price=_oracle_round(self.paths[m.symbol][0], m.oracle_decimals))
                        for m in base.markets)
        config = replace(base, markets=markets, insurance_seed=insurance_seed)
        self.first_block = chain.blocks.head.number + 1
        self.s = deploy(deployer, config)
        self.batcher = project.BatchCaller.deploy(sender=deployer)
        system = self.s
        self.wire = Wire((system.vault, system.clearing_house, system.liquidation, system.pool, system.amm,
                          system.collateral, self.batcher, system.router))
        self.batch = Batch(self.batcher, self.wire)
        self.symbols = list(self.s.markets)
        if pool_cooldown is not None:
            p = self.s.pool.poolParams()
            self.s.pool.setPoolParams((pool_cooldown, p.withdrawWindow, p.reserveFactor), sender=deployer)

        acct = test_accounts
        whale_side = scenario.whale_side
        self.traders: list[Trader] = [
            TrendFollower("trend", acct[3], 150_000),
            MeanReverter("contrarian", acct[4], 150_000),
            NoiseTrader("noise1", acct[5], 50_000, max_leverage=5, buy_probability=scenario.noise_buy_probability),
            NoiseTrader("noise2", acct[6], 50_000, max_leverage=5, buy_probability=scenario.noise_buy_probability),
            Whale("whale", acct[7], 100_000, max_leverage=8, side=whale_side, tolerance_bps=100),
            Arbitrageur("arb", acct[8], 2_000_000, max_leverage=5, tolerance_bps=30),
        ]
        # The scenario's extra markets are traded only by the arbitrageur (and the attacker): the other agents
        # see the deployment's markets, as in every other scenario.
        self._extra = set(scenario.extra_markets)
        self._sees_all = {"arb", "attacker"}
        if scenario.attack:
            shock = scenario.shocks[scenario.attack]
            pump = shock.start_step(steps, dt)
            # The deployer's trading account is free unless the basis trader takes it; then the LP top-up account.
            self.traders.append(Attacker("attacker", acct[0] if not basis_trader else acct[1], 150_000,
                                         max_leverage=5, tolerance_bps=300, symbol=scenario.attack,
                                         pump_step=pump, top_step=pump + math.ceil(shock.duration / dt)))
        if basis_trader:  # off by default, so the default runs' CSVs stay as they were
            # The ten funded test accounts are all taken; the deployer's own trading account is unused.
            self.traders.append(BasisTrader("basis", deployer, 500_000, max_leverage=2, tolerance_bps=50))
        self.lps = [LiquidityProvider("lp_steady", acct[1], 2_000_000, "steady"),
                    LiquidityProvider("lp_nervous", acct[2], 1_000_000, "nervous")]
        self.keeper_account = acct[9]
        for t in self.traders:
            self.s.fund(t.account, t.capital)
        self.s.fund(self.keeper_account, 1_000_000)
        for lp in self.lps:
            units = self.s.units(lp.capital * 10)  # wallet for the start deposit and top-ups
            self.s.collateral.mint(lp.account, units, sender=lp.account)
            self.s.collateral.approve(self.s.pool, MAX_UINT, sender=lp.account)
        fast = {k: FastViews(getattr(system, k), self.wire) for k in ("vault", "clearing_house", "liquidation")}
        # The keeper's delayed-order transactions go through the wire too: a run with delayed orders sends one a trade.
        fast["router"] = FastViews(system.router, self.wire, transactions=("executeOrder", "cancelOrder"))
        keeper_view = replace(system, **fast, funding=fast["clearing_house"])
        # The peg upkeep runs once a step, batched, in `_peg_turn`; the keeper's pass leaves it.
        # No agent's order can miss its round (its deadline outlasts the feed's longest gap, `order_wait`), so the
        # keeper's walk behind a pending head for missed orders would only add view calls.
        self.keeper = Keeper(keeper_view, self.keeper_account, min_take_discount=keeper_discount_bps * 10**14,
                             follow_peg=False, clear_missed_orders=False)
        self.keeper._scanned_to = self.first_block - 1
        # Circuit breakers: governance over the deployed system (the deployer is admin and guardian), the
        # keeper pokes every market at the start of every step. Off: not one transaction more.
        self.gov = None
        self.breaker_trips: dict[str, int] = {}
        self.breaker_trips_by_market: dict[str, dict[str, int]] = {}
        self.restricted_steps: dict[str, int] = {}  # steps ending with a restriction in force, per market
        self.refused: dict[str, int] = {}  # orders refused OpenInterestCapExceeded while their market was restricted
        self._restricted: dict[str, bool] = {s: False for s in self.s.markets}
        self._breaker_max = {"move": 0, "divergence": 0, "skew_share": 0, "insurance_factor": WAD,
                             "auction_factor": WAD}
        self._breaker_max_by_market = {s: {"move": 0, "divergence": 0} for s in self.s.markets}  # as poked
        if breakers:
            from .governance import deploy_governance

            # A config's `governance.breaker.markets` (its markets' own breaker thresholds) applies; its admin,
            # guardian and delay do not (the deployer governs the run).
            overrides = base.governance.breaker_markets if base.governance is not None else ()
            self.gov = deploy_governance(system, deployer, deployer, deployer, admin_sender=deployer,
                                         breaker_markets=overrides)
            self.wire = Wire((system.vault, system.clearing_house, system.liquidation, system.pool, system.amm,
                              system.collateral, self.batcher, system.router, self.gov.governor, self.gov.breaker))
            self.batch = Batch(self.batcher, self.wire)

        self.history: dict[str, list[float]] = {s: [self.paths[s][0]] for s in self.symbols}
        # The oracle agent's record per market: last posted answer (feed units) and time, posts, longest gap.
        self._posted: dict[str, tuple[int, int] | None] = {s: None for s in self.symbols}
        self.oracle_updates = {s: 0 for s in self.symbols}
        self.oracle_max_age = {s: 0 for s in self.symbols}
        self.reverts: dict[str, int] = {}
        self.trades = 0
        self.trades_by_agent: dict[str, int] = {}  # the traders' own orders that executed (not the keeper's closes)
        self.counts = {"kicks": 0, "takes": 0, "redos": 0, "backstops": 0}
        self.repegs: dict[str, int] = {}
        self.peg_held_steps: dict[str, int] = {}  # steps in which a peg guard held the market's peg
        self.bad_debt = [0, 0, 0]  # amount, from insurance, from pool (WAD)
        self.lp_counts = {"deposits": 0, "requests": 0, "redemptions": 0}
        self._scanned = self.chain.blocks.head.number
        self._symbol_of = {m.id: sym for sym, m in self.s.markets.items()}
        self._topics = self._event_topics()
        # The pool's PnL by source: event sums since this block, and the state they are measured from.
        self._fee_share = {m.id: ch_share for m in self.s.markets.values()
                           for ch_share in [self.wire.call(self.s.clearing_house, "insuranceFeeShare", m.id)[0]]}
        self.flows = {"deposits": 0, "withdrawals": 0, "fees": 0, "funding": 0, "realized": 0}  # WAD
        self._pool0 = self._pool_state()
        self._last_sync: dict[str, int] = {s: 0 for s in self.symbols}
        self.rows: list[dict[str, str]] = []
        self.conservation_ok = True  # Vault tokens == every signed balance, every step
        self.shortfall_steps = 0  # steps where positive claims exceeded the tokens (bad debt not yet resolved)
        self._setup_orders()
        if warm_up:
            self._warm_up(deployer)
        self.t0 = self._hour_after(chain.pending_timestamp)
        self.now = self.t0

    # ------------------------------------------------------------------ delayed orders

    def _setup_orders(self) -> None:
        """Delayed orders (docs/orders.md) in the markets of the config that have them on: there every trade of the
        run is committed to the OrderRouter (`_commit`) and executed by the keeper after the next oracle round.
        Every account that trades (the agents, and the keeper, which closes what it takes) approves the router
        once, and must hold the ETH of an order's keeper fee (the router's minimum) and its gas at the fee cap for
        every step and market; local test accounts hold 10,000 ETH."""
        self.delayed = [s for s in self.symbols if self.s.markets[s].config.delayed_orders]
        self._delayed = set(self.delayed)
        self.book: OrderBook | None = None
        if not self.delayed:
            return
        router = self.s.router
        (self._keeper_fee,) = self.wire.call(router, "minKeeperFee")
        self._order_wait = order_wait(self.oracle, self.dt)
        self.book = OrderBook(self.delayed)
        accounts = [(t.name, t.account) for t in self.traders] + [("keeper", self.keeper_account)]
        self._agent_of = {a.address.lower(): name for name, a in accounts}
        need = (self.steps + 1) * len(self.delayed) * (self._keeper_fee + COMMIT_GAS_CAP * Wire.MAX_FEE)
        for name, account in accounts:
            balance = self.wire.w3.eth.get_balance(account.address)
            if balance < need:
                raise SimError(f"delayed orders: the {name} account holds {balance / 10**18:g} ETH, less than the "
                               f"{need / 10**18:g} ETH of its orders' keeper fees and gas over {self.steps} steps")
            ok, error = self.wire.send(self.s.vault, "setOperator", router.address, True, sender=account)
            if not ok:
                raise SimError(f"delayed orders: the {name} account's approval of the router failed: {error}")

    def _commit(self, agent: str, account, symbol: str, base: int, limit: int, deadline_s: int) -> bool:
        """Commit `agent`'s order of `base` (0: close the free part) in `symbol` with the quote limit `limit`, the
        router's minimum keeper fee, and a deadline `deadline_s` after the latest time the next oracle round
        may come (`order_wait`); a refusal is counted under its error's name."""
        m = self.s.markets[symbol]
        deadline = self.chain.pending_timestamp + self._order_wait + deadline_s
        ok, error = self.wire.send(self.s.router, "commitOrder", 0, m.id, base, limit, deadline, sender=account,
                                   value=self._keeper_fee)
        if ok:
            self.book.sent(agent, symbol)
        else:
            self._count_revert(error or "revert")
        return ok

    def _order_turn(self) -> None:
        """The keeper's order pass, right after the oracle's post and the repeg (and the breakers' poke): every
        order the new round made executable runs, each market's oldest first, at the peg that round set; lapsed
        ones are cancelled. Its events are read at once, so the agents know which of their orders are done."""
        if not self.delayed:
            return
        from ape.exceptions import ContractLogicError

        try:
            self.keeper.run_orders()
        except ContractLogicError as err:
            name = f"keeper: {_error_name(err)}"
            self.reverts[name] = self.reverts.get(name, 0) + 1
        self._scan_events()

    def _order_event(self, name: str, log, word, data: bytes) -> None:
        """One OrderRouter event into the order book (and the trade counts: an order trades when it executes)."""
        topic = lambda i: int.from_bytes(bytes(log["topics"][i]), "big")  # noqa: E731
        order_id = topic(1)
        at = self._block_time(int(log["blockNumber"]))
        if name == "OrderCommitted":  # topics: orderId, owner, marketId; data word 6: committedRound
            owner = "0x" + bytes(log["topics"][2])[-20:].hex()
            self.book.committed(order_id, self._agent_of.get(owner, owner), self._symbol_of[topic(3)], at, word(6))
            return
        if name == "OrderCancelled":  # data: keeperFeeRefunded, 0 when the fee paid the canceller (a missed order)
            self.book.cancelled(order_id, missed=word(0) == 0)
            return
        refusal = None  # an execution: OrderExecuted (the trade went through) or OrderFailed (refused, used up)
        if name == "OrderFailed":  # data: (bytes reason, uint256 keeperFee)
            offset = word(0)
            length = int.from_bytes(data[offset:offset + 32], "big")
            reason = data[offset + 32:offset + 32 + length]
            refusal = self.wire.errors.get(reason[:4].hex(), f"revert 0x{reason[:4].hex()}" if reason else "revert")
        o = self.book.executed(order_id, at, self._round(self.book.symbol_of(order_id)), refusal)
        if refusal is None:
            self.trades += 1
            if o.agent != "keeper":
                self.trades_by_agent[o.agent] = self.trades_by_agent.get(o.agent, 0) + 1
        elif refusal == "OpenInterestCapExceeded" and self._restricted.get(o.symbol) and o.agent != "keeper":
            self.refused[o.agent] = self.refused.get(o.agent, 0) + 1

    def _block_time(self, number: int) -> int:
        """Block `number`'s timestamp [s] (read once per scan of the events)."""
        if number not in self._block_times:
            self._block_times[number] = int(self.wire.w3.eth.get_block(number)["timestamp"])
        return self._block_times[number]

    def _round(self, symbol: str) -> int:
        """The latest round id of `symbol`'s feed, read once per scan of the events: the round every execution of
        the scanned blocks met, since the oracle posts only at the start of a step and every scan ends the order
        pass or the step."""
        if self._rounds is None:
            r = self.batch.read({s: (self.s.markets[s].oracle, "latestRoundData") for s in self.delayed})
            self._rounds = {s: int(v[0]) for s, v in r.items()}
        return self._rounds[symbol]

    # ------------------------------------------------------------------ clock

    def _pin_clock(self) -> None:
        """Start on the next hour boundary and, on Anvil, make every block exactly 1 s after the last
        (eth-tester already does so once the clock is ahead of the wall clock): the run's timestamps,
        and so its funding, auctions and CSV, then depend on the seed only."""
        chain = self.chain
        chain.pending_timestamp = self._hour_after(chain.pending_timestamp + DAY)
        if "foundry" in chain.provider.name or "anvil" in chain.provider.name:
            chain.provider.make_request("anvil_setBlockTimestampInterval", [1])

    def _warm_up(self, deployer) -> None:
        """Age the markets by a funding window before the scenario: a poke at the first second of each of the next
        FUNDING_WINDOW_HOURS + 1 hours, each oracle re-posting its opening answer first, nothing traded. The funding
        TWAPs and mean skew then span a whole window at the scenario's start (premium and skew 0 over it), as on a
        market that has been live for a day, instead of the hours since the listing (docs/funding.md)."""
        from .units import FUNDING_WINDOW_HOURS

        # The same transactions as through Ape, sent through the wire: a tenth of the time (100 transactions).
        answers = {m.id: self.wire.call(m.oracle, "latestRoundData")[1] for m in self.s.markets.values()}
        for _ in range(FUNDING_WINDOW_HOURS + 1):
            self.chain.pending_timestamp = self._hour_after(self.chain.pending_timestamp)
            for m in self.s.markets.values():
                for contract, method, arg in ((m.oracle, "updateAnswer", answers[m.id]),
                                              (self.s.clearing_house, "pokeFunding", m.id)):
                    ok, err = self.wire.send(contract, method, arg, sender=deployer)
                    if not ok:
                        raise SimError(f"warm-up: {method} on market {m.id} failed: {err}")

    @staticmethod
    def _hour_after(t: int) -> int:
        return (t // HOUR + 1) * HOUR

    def _advance(self, step: int) -> None:
        target = self.t0 + step * self.dt
        if self.chain.pending_timestamp > target:
            raise SimError(f"step {step}: the previous step ran past {self.dt} s of blocks; use a longer step")
        self.chain.pending_timestamp = target
        self.now = target

    # ------------------------------------------------------------------ events

    def _event_topics(self) -> dict[str, str]:
        from eth_utils import keccak

        out = {}
        for contract, name in ((self.s.liquidation, "Kick"), (self.s.liquidation, "Take"),
                               (self.s.liquidation, "Redo"), (self.s.liquidation, "Backstop"),
                               (self.s.vault, "BadDebt"), (self.s.clearing_house, "PositionChanged"),
                               (self.s.pool, "Deposit"), (self.s.pool, "Withdraw"),
                               *((self.s.router, name) for name in ORDER_EVENTS),
                               *([(self.gov.breaker, "BreakerTripped")] if self.gov else [])):
            abi = getattr(contract, name).abi
            out[(contract.address.lower(), "0x" + keccak(text=abi.selector).hex().removeprefix("0x"))] = name
        return out

    def _pool_state(self) -> dict[str, int]:
        """What the pool's PnL split is measured between (WAD): its cash, NAV, the uncovered bad-debt
        set-aside, and the AMM controller's cumulative depth-sync and repeg costs over all markets."""
        pool, amm = self.s.pool, self.s.amm
        calls: dict[str, tuple] = {"cash": (self.s.vault, "poolBalance"), "nav": (pool, "navWad"),
                                   "uncovered": (pool, "uncoveredBadDebt")}
        for sym, m in self.s.markets.items():
            calls[f"depth:{sym}"] = (amm, "depthCost", m.id)
            calls[f"repeg:{sym}"] = (amm, "repegCost", m.id)
        r = self.batch.read(calls)
        return {"cash": r["cash"], "nav": r["nav"], "uncovered": r["uncovered"],
                "depth": sum(r[f"depth:{s}"] for s in self.symbols), "repeg": sum(r[f"repeg:{s}"] for s in self.symbols)}

    def _pool_pnl(self) -> dict[str, float]:
        """The NAV's change from the start of the run to its end, by source, in USD; the parts add up to
        `nav_change` exactly. Cash moves (read from events): LP deposits and withdrawals (the pool's
        ERC-4626 events), the pool's part of the trading fees, funding settled at trades, the traders'
        realized PnL (`PositionChanged`), bad debt paid by the pool (`BadDebt`); `cash_unexplained` is the
        rest of the cash change (0 when nothing else moves the pool's cash). The NAV also moves with the
        traders' open positions valued at the vAMM exit: the depth syncs' and repegs' costs (the AMM
        controller's totals) and the rest (`traders_open_positions`: price moves and funding accrued but
        not yet settled, not separable from these reads); and with the bad-debt set-aside."""
        a, b, f = self._pool0, self._pool_state(), self.flows
        exit0 = a["cash"] - a["uncovered"] - a["nav"]  # the traders' PnL at the vAMM exit (navWad's terms)
        exit1 = b["cash"] - b["uncovered"] - b["nav"]
        depth, repeg = b["depth"] - a["depth"], b["repeg"] - a["repeg"]
        explained = f["deposits"] - f["withdrawals"] + f["fees"] + f["funding"] - f["realized"] - self.bad_debt[2]
        parts = {
            "nav_change": b["nav"] - a["nav"],
            "lp_deposits": f["deposits"], "lp_withdrawals": -f["withdrawals"],
            "fees": f["fees"], "funding_settled": f["funding"], "traders_realized_pnl": -f["realized"],
            "bad_debt": -self.bad_debt[2], "cash_unexplained": b["cash"] - a["cash"] - explained,
            "depth_sync_cost": -depth, "repeg_cost": -repeg,
            "traders_open_positions": -(exit1 - exit0 - depth - repeg),
            "bad_debt_set_aside": -(b["uncovered"] - a["uncovered"]),
        }
        parts["pnl_excluding_lp_flows"] = parts["nav_change"] - f["deposits"] + f["withdrawals"]
        return {k: round(v / WAD, 2) for k, v in parts.items()}

    def _scan_events(self) -> None:
        """Count liquidation events and add up bad debt since the last scan (one eth_getLogs); with delayed orders,
        the OrderRouter's events too (`_order_event`)."""
        head = self.chain.blocks.head.number
        if head <= self._scanned:
            return
        logs = self.chain.provider.web3.eth.get_logs({
            "address": [self.s.liquidation.address, self.s.vault.address, self.s.clearing_house.address,
                        self.s.pool.address] + ([self.gov.breaker.address] if self.gov else [])
                       + ([self.s.router.address] if self.delayed else []),
            "fromBlock": self._scanned + 1, "toBlock": head})
        self._scanned = head
        self._block_times: dict[int, int] = {}
        self._rounds: dict[str, int] | None = None
        keys = {"Kick": "kicks", "Take": "takes", "Redo": "redos", "Backstop": "backstops"}
        for log in logs:
            topic0 = log["topics"][0]
            topic0 = "0x" + (topic0.hex() if isinstance(topic0, bytes) else str(topic0)).removeprefix("0x")
            name = self._topics.get((str(log["address"]).lower(), topic0))
            data = bytes(log["data"])
            word = lambda i, signed=False: int.from_bytes(data[32 * i:32 * i + 32], "big", signed=signed)  # noqa: E731
            if name == "PositionChanged":  # data: baseDelta, quoteDelta, fee, realizedPnl, fundingPaid, ...
                market_id = int.from_bytes(bytes(log["topics"][3]), "big")
                fee = word(2)
                self.flows["fees"] += fee - fee * self._fee_share[market_id] // WAD  # the insurance part rounds down
                self.flows["realized"] += word(3, True)
                self.flows["funding"] += word(4, True)
            elif name in ("Deposit", "Withdraw"):  # ERC-4626: data is (assets, shares), assets in token units
                self.flows["deposits" if name == "Deposit" else "withdrawals"] += word(0) * self.s.token_scale
            elif name in keys:
                self.counts[keys[name]] += 1
            elif name == "BreakerTripped":  # topics: marketId, kind
                kind = BREAKER_KINDS[int.from_bytes(bytes(log["topics"][2]), "big")]
                sym = self._symbol_of[int.from_bytes(bytes(log["topics"][1]), "big")]
                self.breaker_trips[kind] = self.breaker_trips.get(kind, 0) + 1
                per = self.breaker_trips_by_market.setdefault(sym, {})
                per[kind] = per.get(kind, 0) + 1
            elif name in ORDER_EVENTS:
                self._order_event(name, log, word, data)
            elif name == "BadDebt":
                amount, from_ins, from_pool = (int.from_bytes(data[i:i + 32], "big") for i in (0, 32, 64))
                self.bad_debt[0] += amount
                self.bad_debt[1] += from_ins
                self.bad_debt[2] += from_pool

    # ------------------------------------------------------------------ transactions

    def _count_revert(self, name: str) -> None:
        self.reverts[name] = self.reverts.get(name, 0) + 1

    def _send(self, contract, method: str, *args, sender) -> bool:
        """Send `contract.method(*args)` from `sender`; a revert is counted under its error name."""
        ok, error = self.wire.send(contract, method, *args, sender=sender)
        if not ok:
            self._count_revert(error or "revert")
        return ok

    def _post_index(self, step: int) -> None:
        """The oracle agent: post the index of every market whose feed is due (`OraclePolicy`: every
        step by default) to its mock aggregator, all in one transaction. The traders' price history is
        the path itself (the market they watch), posted or not; the chain sees the feeds."""
        targets, data = [], []
        for sym, m in self.s.markets.items():
            price = self.paths[sym][step]
            answer = int(round(Decimal(repr(price)) * 10**m.config.oracle_decimals))
            self.history[sym].append(float(answer) / 10**m.config.oracle_decimals)
            last = self._posted[sym]
            if last is not None:
                self.oracle_max_age[sym] = max(self.oracle_max_age[sym], self.now - last[1])
            if not self.oracle.should_post(answer, last and last[0], self.now, last and last[1]):
                continue
            targets.append(m.oracle.address)
            data.append(m.oracle.updateAnswer.encode_input(answer))
            self._posted[sym] = (answer, self.now)
            self.oracle_updates[sym] += 1
        if targets and not self._send(self.batcher, "batch", targets, data, sender=self.s.deployer):
            raise SimError(f"step {step}: posting the index failed: {self.reverts}")

    # ------------------------------------------------------------------ reading

    def _view(self, step: int) -> View:
        ch, vault = self.s.clearing_house, self.s.vault
        calls: dict[str, tuple] = {}
        for sym, m in self.s.markets.items():
            calls[f"idx:{sym}"] = (ch, "indexPrice", m.id)
            calls[f"st:{sym}"] = (ch, "marketState", m.id)
            calls[f"mp:{sym}"] = (ch, "marketParams", m.id)
            calls[f"tw:{sym}"] = (ch, "twaps", m.id)
            calls[f"fs:{sym}"] = (ch, "fundingState", m.id)
            for t in self.traders:
                calls[f"pos:{t.name}:{sym}"] = (ch, "position", t.account.address, 0, m.id)
        for t in self.traders:
            calls[f"h:{t.name}"] = (vault, "health", t.account.address, 0)
        r = self.batch.read(calls)
        return View(
            step=step, now=self.now,
            index={s: r[f"idx:{s}"] for s in self.symbols},
            spot={s: r[f"st:{s}"].spotPrice for s in self.symbols},
            reserves={s: (r[f"st:{s}"].baseReserve, r[f"st:{s}"].quoteReserve) for s in self.symbols},
            history=self.history,
            size={(t.name, s): r[f"pos:{t.name}:{s}"][0] for t in self.traders for s in self.symbols},
            twaps={s: r[f"tw:{s}"] for s in self.symbols},
            value={t.name: r[f"h:{t.name}"][0] for t in self.traders},
            free={t.name: r[f"h:{t.name}"][1] for t in self.traders},
            min_size={s: r[f"mp:{s}"].minPositionSize for s in self.symbols},
            imr={s: r[f"mp:{s}"].imr for s in self.symbols},
            funding={s: r[f"fs:{s}"][0] for s in self.symbols},
        )

    def _record(self, step: int) -> dict[str, str]:
        ch, vault, pool, engine = self.s.clearing_house, self.s.vault, self.s.pool, self.s.liquidation
        calls: dict[str, tuple] = {}
        for sym, m in self.s.markets.items():
            calls[f"idx:{sym}"] = (ch, "indexPrice", m.id)
            calls[f"mark:{sym}"] = (ch, "markPrice", m.id)
            calls[f"st:{sym}"] = (ch, "marketState", m.id)
            calls[f"fs:{sym}"] = (ch, "fundingState", m.id)
            calls[f"tw:{sym}"] = (ch, "twaps", m.id)
            calls[f"sk:{sym}"] = (ch, "skewFunding", m.id)
            calls[f"peg:{sym}"] = (self.s.amm, "pegPrice", m.id)
        calls.update(ins=(vault, "insuranceFund"), cash=(vault, "poolBalance"), nav=(pool, "navWad"),
                     supply=(pool, "totalSupply"), live=(engine, "liveNotional"),
                     tokens=(self.s.collateral, "balanceOf", vault.address))
        if self.gov is not None:
            for sym, m in self.s.markets.items():
                calls[f"bs:{sym}"] = (self.gov.breaker, "breakerState", m.id)
                calls[f"eff:{sym}"] = (self.gov.governor, "effectiveMarketParams", m.id)
        holders = [t.account for t in self.traders] + [self.keeper_account]
        for i, a in enumerate(holders):
            calls[f"coll:{i}"] = (vault, "collateral", a.address, 0)
        r = self.batch.read(calls)
        self._scan_events()
        colls = [r[f"coll:{i}"] for i in range(len(holders))]
        claims = sum(max(c, 0) for c in colls) + r["ins"] + max(r["cash"], 0)
        ledger = sum(colls) + r["ins"] + r["cash"]
        pending = sum(-c for c in colls if c < 0) + max(-r["cash"], 0)  # negative balances not yet socialized
        tokens = r["tokens"] * self.s.token_scale
        if tokens != ledger:
            self.conservation_ok = False
        if tokens < claims:
            self.shortfall_steps += 1
        share_price = r["nav"] * 10**self._share_decimals // r["supply"] if r["supply"] else 0
        row: dict[str, str] = {"step": str(step), "time_s": str(self.now - self.t0)}
        for sym in self.symbols:
            k, st, fs = sym.lower(), r[f"st:{sym}"], r[f"fs:{sym}"]
            row.update({f"{k}_index": wad_str(r[f"idx:{sym}"]), f"{k}_mark": wad_str(r[f"mark:{sym}"]),
                        f"{k}_spot": wad_str(st.spotPrice), f"{k}_funding_applied": wad_str(fs[0]),
                        f"{k}_funding_target": wad_str(fs[1]), f"{k}_premium": wad_str(fs[2]),
                        f"{k}_twap_premium": wad_str(_premium(*r[f"tw:{sym}"])),
                        f"{k}_skew_term": wad_str(r[f"sk:{sym}"][1]),
                        f"{k}_long_oi": wad_str(st.longOpenInterest),
                        f"{k}_short_oi": wad_str(st.shortOpenInterest), f"{k}_peg": wad_str(r[f"peg:{sym}"])})
        row.update({
            "insurance_fund": wad_str(r["ins"]), "pool_balance": wad_str(r["cash"]), "pool_nav": wad_str(r["nav"]),
            "pool_share_price": wad_str(share_price), "bad_debt": wad_str(self.bad_debt[0]),
            "bad_debt_insurance": wad_str(self.bad_debt[1]), "bad_debt_pool": wad_str(self.bad_debt[2]),
            **{k: str(v) for k, v in self.counts.items()},
            "live_auction_notional": wad_str(r["live"]), "trades": str(self.trades),
            "reverts": str(sum(self.reverts.values())), "vault_tokens": wad_str(tokens), "ledger_total": wad_str(ledger),
            "claims": wad_str(claims), "pending_bad_debt": wad_str(pending),
        })
        if self.gov is not None:
            for sym in self.symbols:
                k, bs = sym.lower(), r[f"bs:{sym}"]
                restricted = bs.reduceOnly or bs.capBase != NO_CAP
                row.update({f"{k}_restricted": str(int(restricted)), f"{k}_reduce_only": str(int(bs.reduceOnly)),
                            f"{k}_cap": wad_str(r[f"eff:{sym}"].maxOpenInterest)})
                if restricted:
                    self.restricted_steps[sym] = self.restricted_steps.get(sym, 0) + 1
                mx = self._breaker_max
                mx["move"], mx["divergence"] = max(mx["move"], bs.move), max(mx["divergence"], bs.divergence)
                per = self._breaker_max_by_market[sym]
                per["move"], per["divergence"] = max(per["move"], bs.move), max(per["divergence"], bs.divergence)
                mx["skew_share"] = max(mx["skew_share"], bs.skewShare)
                # A factor below 1 always comes with its breaker's bit (ICircuitBreaker.Kind 2, 3); without it the
                # stored factor is 1, or 0 on a market no poke has reached yet (the storage's default), read as 1.
                mx["insurance_factor"] = min(mx["insurance_factor"], bs.insuranceFactor if bs.holding & 4 else WAD)
                mx["auction_factor"] = min(mx["auction_factor"], bs.auctionFactor if bs.holding & 8 else WAD)
        if self.book is not None:
            row.update(self.book.row())
        self._share_price = share_price
        return row

    # ------------------------------------------------------------------ agents' turns

    def _poke_breakers(self) -> None:
        """The keeper's first act of a step (breakers on): `pokeAll`, right after the oracle's post, so a move
        posted this step restricts this step's orders; then the restriction in force per market, read back."""
        if self.gov is None:
            return
        self._send(self.gov.breaker, "pokeAll", sender=self.keeper_account)
        r = self.batch.read({sym: (self.gov.breaker, "breakerState", m.id) for sym, m in self.s.markets.items()})
        self._restricted = {sym: bool(st.reduceOnly or st.capBase != NO_CAP) for sym, st in r.items()}

    def _lp_turn(self, step: int) -> None:
        pool = self.s.pool
        price = getattr(self, "_share_price", 0) / WAD
        for lp in self.lps:
            if step == 1 or (lp.style == "steady" and step % lp.top_up_every == 0):
                amount = self.s.units(lp.capital if step == 1 else lp.top_up)
                if self._send(pool, "deposit", amount, lp.account, sender=lp.account):
                    self.lp_counts["deposits"] += 1
                continue
            if lp.style != "nervous":
                continue
            lp.peak = max(lp.peak, price)
            scared = price and (price < lp.peak * (1 - lp.fear) or self.bad_debt[0] > 0)
            if scared and not lp.requested:
                (shares,) = self.wire.call(pool, "balanceOf", lp.account.address)
                if self._send(pool, "requestWithdraw", shares, sender=lp.account):
                    lp.requested = True
                    lp.unlock_at = self.wire.call(pool, "withdrawRequest", lp.account.address)[0].unlockAt
                    self.lp_counts["requests"] += 1
            elif lp.requested and self.now >= lp.unlock_at:
                (shares,) = self.wire.call(pool, "maxRedeem", lp.account.address)
                if shares == 0:
                    continue
                if self._send(pool, "redeem", shares, lp.account, lp.account, sender=lp.account):
                    lp.redeemed_shares += shares
                    self.lp_counts["redemptions"] += 1

    def _trade_turn(self, view: View) -> None:
        ch = self.s.clearing_house
        orders: list[Order] = []
        narrow = _without(view, self._extra) if self._extra else view
        for t in self.traders:
            orders += t.orders(view if t.name in self._sees_all else narrow, self.rng)
        self.rng.shuffle(orders)
        by_name = {t.name: t for t in self.traders}
        for o in orders:
            delayed = o.symbol in self._delayed
            if delayed and self.book.is_open(o.agent, o.symbol):  # it waits for the outcome of the one it has
                self.book.hold(o.symbol)
                continue
            m = self.s.markets[o.symbol]
            x, y = view.reserves[o.symbol]
            limit = _quote_limit(x, y, o.base, o.tolerance_bps)
            if limit is None:
                self.reverts["skipped: would drain the vAMM"] = self.reverts.get("skipped: would drain the vAMM", 0) + 1
                continue
            who = by_name[o.agent].account
            if delayed:  # the same size and limit, committed; it trades (or fails) once the next round is posted
                self._commit(o.agent, who, o.symbol, o.base, limit, o.deadline_s)
                continue
            deadline = self.chain.pending_timestamp + o.deadline_s
            ok, error = self.wire.send(ch, "openPosition", 0, m.id, o.base, limit, deadline, sender=who)
            if ok:
                self.trades += 1
                self.trades_by_agent[o.agent] = self.trades_by_agent.get(o.agent, 0) + 1
                continue
            self._count_revert(error or "revert")
            if error == "OpenInterestCapExceeded" and self._restricted.get(o.symbol):
                self.refused[o.agent] = self.refused.get(o.agent, 0) + 1

    def _peg_turn(self) -> None:
        """The keeper back-runs the oracle: the peg follows a posted index in the next block, before traders
        and arbitrageurs act on it (`Keeper._repeg_due`'s rule, with the reads batched in one call; the keeper's
        own pass does not repeg again in the step)."""
        from .keeper import repeg_due

        ch, amm = self.s.clearing_house, self.s.amm
        calls: dict[str, tuple] = {}
        for sym, m in self.s.markets.items():
            calls[f"peg:{sym}"] = (amm, "pegPrice", m.id)
            calls[f"idx:{sym}"] = (ch, "indexPrice", m.id)
            calls[f"last:{sym}"] = (amm, "lastRepeg", m.id)
            if self.gov and m.config.peg_guard:
                calls[f"held:{sym}"] = (amm, "pegHeldUntil", m.id)
        r = self.batch.read(calls)
        now = self.chain.pending_timestamp
        for sym, m in self.s.markets.items():
            if now < r.get(f"held:{sym}", 0):  # a held peg (the contract would refuse PegHeld)
                self.peg_held_steps[sym] = self.peg_held_steps.get(sym, 0) + 1
                continue
            if not repeg_due(r[f"peg:{sym}"], r[f"idx:{sym}"], r[f"last:{sym}"], now,
                             wad(m.config.repeg_threshold), m.config.repeg_interval):
                continue
            if self._send(amm, "repeg", m.id, sender=self.keeper_account):
                self.repegs[sym] = self.repegs.get(sym, 0) + 1

    def _keeper_turn(self, view: View) -> None:
        from ape.exceptions import ContractLogicError

        try:
            for action in self.keeper.run_once(self.chain):
                if action.kind == "repeg":
                    self.repegs[action.detail["market"]] = self.repegs.get(action.detail["market"], 0) + 1
        except ContractLogicError as err:  # e.g. a take raced by a price move: the next pass retries
            name = f"keeper: {_error_name(err)}"
            self.reverts[name] = self.reverts.get(name, 0) + 1
        ch, amm = self.s.clearing_house, self.s.amm
        # The keeper does not keep what it takes: it closes its inventory on the vAMM (1 % bound).
        calls: dict[str, tuple] = {}
        for sym, m in self.s.markets.items():
            calls[f"pos:{sym}"] = (ch, "position", self.keeper_account.address, 0, m.id)
            calls[f"st:{sym}"] = (ch, "marketState", m.id)
        r = self.batch.read(calls)
        for sym, m in self.s.markets.items():
            size, st = r[f"pos:{sym}"][0], r[f"st:{sym}"]
            if size == 0:
                continue
            limit = _quote_limit(st.baseReserve, st.quoteReserve, -size, 100)
            if limit is not None and sym in self._delayed:  # a close order for the free part, one at a time
                if not self.book.is_open("keeper", sym):
                    self._commit("keeper", self.keeper_account, sym, 0, limit, 120)
            elif limit is not None:
                deadline = self.chain.pending_timestamp + 120
                if self._send(ch, "closePosition", 0, m.id, limit, deadline, sender=self.keeper_account):
                    self.trades += 1
        # vAMM upkeep: depth follows the pool once per depth interval (the keeper's pass above repegs: the peg
        # follows the index every block it is more than the threshold away).
        for sym, m in self.s.markets.items():
            p = m.config
            if self.now - self._last_sync[sym] >= p.depth_interval:
                if self._send(amm, "syncDepth", m.id, sender=self.keeper_account):
                    # The interval runs from the sync's block, a few seconds into the step.
                    self._last_sync[sym] = amm.lastDepthSync(m.id)

    # ------------------------------------------------------------------ the loop

    def run(self, progress: bool = False) -> SimSummary:
        self._share_decimals = self.s.pool.decimals()
        started = time.perf_counter()
        bar = None
        if progress:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            bar = Progress(TextColumn(f"[bold]{self.scenario.name}[/]"), BarColumn(), MofNCompleteColumn(),
                           TextColumn("steps"), TimeRemainingColumn(), transient=True)
            task = bar.add_task("sim", total=self.steps)
            bar.start()
        try:
            for step in range(1, self.steps + 1):
                self._advance(step)
                self._post_index(step)
                self._peg_turn()
                self._poke_breakers()
                self._order_turn()
                self._lp_turn(step)
                view = self._view(step)
                self._trade_turn(view)
                self._keeper_turn(view)
                self.rows.append(self._record(step))
                if bar is not None:
                    bar.advance(task)
        finally:
            if bar is not None:
                bar.stop()
        wall = time.perf_counter() - started
        return self._finish(wall)

    def _oracle_summary(self) -> dict[str, Any]:
        return {"deviation_bps": self.oracle.deviation_bps, "heartbeat_s": self.oracle.heartbeat,
                "updates": dict(self.oracle_updates), "max_age_s": dict(self.oracle_max_age),
                "feed_heartbeat_s": {s: m.config.heartbeat for s, m in self.s.markets.items()}}

    def _breaker_summary(self) -> dict[str, Any] | None:
        if self.gov is None:
            return None
        p = self.gov.breaker.params()
        mx = self._breaker_max
        return {"trips": {k: self.breaker_trips[k] for k in BREAKER_KINDS if k in self.breaker_trips},
                "trips_by_market": {k: dict(v) for k, v in sorted(self.breaker_trips_by_market.items())},
                "restricted_steps": dict(sorted(self.restricted_steps.items())),
                "peg_held_steps": dict(sorted(self.peg_held_steps.items())),
                "refused": dict(sorted(self.refused.items())),
                "max_move": mx["move"] / WAD, "max_divergence": mx["divergence"] / WAD,
                "max_skew_share": mx["skew_share"] / WAD, "min_insurance_factor": mx["insurance_factor"] / WAD,
                "min_auction_factor": mx["auction_factor"] / WAD,
                "max_by_market": {sym: {k: v / WAD for k, v in per.items()}
                                  for sym, per in sorted(self._breaker_max_by_market.items())},
                "params": {"move_threshold": p.moveThreshold / WAD, "cool_off_s": p.coolOff,
                           "divergence_threshold": p.divergenceThreshold / WAD,
                           "divergence_duration_s": p.divergenceDuration, "insurance_target": p.insuranceTarget / WAD,
                           "auction_soft_share": p.auctionSoftShare / WAD, "max_skew_share": p.maxSkewShare / WAD},
                "market_thresholds": {sym: {"move_threshold": t.moveThreshold / WAD,
                                            "divergence_threshold": t.divergenceThreshold / WAD,
                                            "divergence_duration_s": t.divergenceDuration,
                                            "max_skew_share": t.maxSkewShare / WAD}
                                      for sym, t in ((sym, self.gov.breaker.marketThresholds(m.id))
                                                     for sym, m in sorted(self.s.markets.items()))}}

    def _trader_pnl(self) -> dict[str, float] | None:
        """Every trader's account value at the end less its deposit (USD), in runs with breakers or an attacker."""
        if self.gov is None and not self.scenario.attack:
            return None
        r = self.batch.read({t.name: (self.s.vault, "health", t.account.address, 0) for t in self.traders})
        return {t.name: round(r[t.name][0] / WAD - t.capital, 2) for t in self.traders}

    def _finish(self, wall: float) -> SimSummary:
        from ape import chain

        self.out_dir.mkdir(parents=True, exist_ok=True)
        csv_path = self.out_dir / "steps.csv"
        cols = columns(self.symbols, breakers=self.gov is not None, orders=self.book is not None)
        with csv_path.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=cols, lineterminator="\n")
            w.writeheader()
            w.writerows(self.rows)
        rows = read_csv_rows(csv_path)
        shock = shock_window(self.scenario, self.steps, self.dt, [s for s in self.symbols if s not in self._csv_symbols])
        plots = plot_run(rows, self.symbols, self.out_dir, title=f"{self.scenario.name}, seed {self.seed}: ",
                         shock=shock) if self.plots else []
        ins = [r["insurance_fund"] for r in rows]
        nav = [r["pool_nav"] for r in rows]
        share = [r["pool_share_price"] for r in rows]
        summary = SimSummary(
            scenario=self.scenario.name, steps=self.steps, seed=self.seed, step_seconds=self.dt,
            network=f"{chain.provider.network.ecosystem.name}:{chain.provider.network.name}:{chain.provider.name}",
            wall_seconds=round(wall, 2), steps_per_second=round(self.steps / wall, 3), trades=self.trades,
            reverts=dict(sorted(self.reverts.items())), **self.counts,
            bad_debt=self.bad_debt[0] / WAD, bad_debt_from_insurance=self.bad_debt[1] / WAD,
            bad_debt_from_pool=self.bad_debt[2] / WAD,
            insurance_start=ins[0], insurance_min=min(ins), insurance_end=ins[-1],
            nav_start=nav[0], nav_min=min(nav), nav_end=nav[-1],
            max_live_auction_notional=max(r["live_auction_notional"] for r in rows),
            max_index_drop_1h={s: round(max_drop_within([r[f"{s.lower()}_index"] for r in rows], self.dt, HOUR), 4)
                               for s in self.symbols},
            lp_deposits=self.lp_counts["deposits"], lp_withdraw_requests=self.lp_counts["requests"],
            lp_redemptions=self.lp_counts["redemptions"], conservation_ok=self.conservation_ok,
            shortfall_steps=self.shortfall_steps, nav_drawdown=round(drawdown(nav)[0], 6),
            lp_share_price_start=share[0], lp_share_price_peak=max(share), lp_share_price_min=min(share),
            lp_share_price_end=share[-1], lp_share_price_drawdown=round(drawdown(share)[0], 6),
            shock_hours=list(shock) if shock else None, pool_pnl=self._pool_pnl(),
            csv=str(csv_path), plots=[str(p) for p in plots], config=self.config_source,
            auctions=self.auctions, oracle=self._oracle_summary(),
            basis_trader=any(isinstance(t, BasisTrader) for t in self.traders),
            trades_by_agent=dict(sorted(self.trades_by_agent.items())), repegs=dict(sorted(self.repegs.items())),
            breakers=self._breaker_summary(), trader_pnl=self._trader_pnl(),
            orders=self.book.summary(self._keeper_fee, self._order_wait) if self.book else None)
        (self.out_dir / "summary.json").write_text(summary.to_json())
        return summary


def _without(view: View, symbols: set[str]) -> View:
    """`view` without the markets in `symbols` (what the agents that do not trade them see)."""
    keep = lambda d: {k: v for k, v in d.items() if k not in symbols}  # noqa: E731
    return replace(view, index=keep(view.index), spot=keep(view.spot), reserves=keep(view.reserves),
                   twaps=keep(view.twaps), history=keep(view.history), min_size=keep(view.min_size),
                   imr=keep(view.imr), funding=keep(view.funding),
                   size={k: v for k, v in view.size.items() if k[1] not in symbols})


def _oracle_round(price: float, decimals: int) -> float:
    """A price with at most the feed's decimals (the deploy config needs an exact decimal)."""
    return float(round(Decimal(repr(price)), decimals))


def _quote_limit(x: int, y: int, base: int, tolerance_bps: int) -> int | None:
    """The slippage bound of a trade of `base` on reserves (x, y) as the vAMM prices it (docs/design.md):
    a buy pays at most ceil(y b / (x - b)) x (1 + tol), a sell receives at least floor(y |b| / (x + |b|))
    x (1 - tol). None when a buy would take the whole base reserve."""
    if base > 0:
        if base >= x:
            return None
        cost = -(-y * base // (x - base))
        return cost * (10_000 + tolerance_bps) // 10_000
    b = -base
    proceeds = y * b // (x + b)
    return proceeds * (10_000 - tolerance_bps) // 10_000


def run_simulation(scenario: str | Scenario = "crash", steps: int | None = 150, seed: int = 1,
                   out_dir: str | Path = "sim_out",
                   *, step_seconds: int = STEP_SECONDS, prices_csv: str | Path | None = None,
                   override: dict[str, float] | None = None, insurance_seed: float = 100_000,
                   pool_cooldown: int | None = HOUR, keeper_discount_bps: int = 100,
                   config: "DeployConfig | str | Path | None" = None, progress: bool = False,
                   oracle_deviation_bps: int = 0, oracle_heartbeat: int = 0,
                   basis_trader: bool = False, breakers: bool = False, plots: bool = True) -> SimSummary:
    """Run one simulation on the connected (local) Ape network and write its outputs to `out_dir`:
    `steps.csv` (one row per step), `summary.json` and the PNG plots. Returns the summary.

    `override` replaces PathSpec fields (drift, vol, jump_rate, jump_mean, jump_std) for every market;
    `prices_csv` gives index paths for the markets it has a column for (then `steps` may be None: the
    file's length). `pool_cooldown` shortens the pool's withdrawal cooldown so LP redemptions happen in
    a short run (None keeps the deployed 24 h). `config` is the deployment to simulate: a `DeployConfig`
    or the path of a deployment YAML file (`vperp.config_file`); default: the shipped defaults. Its
    markets' prices are replaced by the index path's first price, its insurance seed by `insurance_seed`.
    `oracle_deviation_bps` and `oracle_heartbeat` make the oracle agent post a feed only on a move of more
    than the threshold or after the heartbeat (`OraclePolicy`; 0 and 0: every step); `basis_trader` adds
    the funding-carry agent (`BasisTrader`); `breakers` deploys governance and the circuit breakers over the
    system and has the keeper poke them every step (`vperp.governance`, docs/simulator.md). `plots` False
    writes no PNGs (the CSV and the summary are the same; the summary's `plots` list is empty)."""
    chain_io.skip_console_log_traces()
    from ape import chain

    from .config_file import is_local_network

    net = chain.provider.network.name
    if not is_local_network(chain.chain_id, net):
        raise SimError(f"the simulator deploys mocks and time-travels: local networks only, not '{net}'")
    sc = get_scenario(scenario) if isinstance(scenario, str) else scenario
    source = str(config) if isinstance(config, (str, Path)) else None
    config = _load_config(config)
    prices = None
    if prices_csv is not None:
        from .config import default_config

        symbols = [m.symbol for m in (config or default_config()).markets]
        prices = read_price_csv(prices_csv, symbols)
        if steps is None:
            steps = len(next(iter(prices.values()))) - 1
    if steps is None:
        raise SimError("steps is required without a price file")
    sim = Simulation(sc, steps, seed, Path(out_dir), dt=step_seconds, prices=prices, override=override,
                     insurance_seed=insurance_seed, pool_cooldown=pool_cooldown,
                     keeper_discount_bps=keeper_discount_bps, config=config, config_source=source,
                     oracle=OraclePolicy(oracle_deviation_bps, oracle_heartbeat), basis_trader=basis_trader,
                     breakers=breakers, plots=plots)
    return sim.run(progress=progress)


def _load_config(config: "DeployConfig | str | Path | None") -> "DeployConfig | None":
    """A DeployConfig as given, or loaded from a YAML file (its errors become one-line SimErrors)."""
    if config is None or not isinstance(config, (str, Path)):
        return config
    from .config_file import ConfigError, load_config

    try:
        loaded = load_config(config)
    except (ConfigError, OSError) as e:
        raise SimError(f"--config {config}: {e}") from None
    return loaded


def run_seeds(scenario: str | Scenario, steps: int | None, seeds: Sequence[int], out_dir: str | Path,
              on_summary: Callable[[SimSummary], None] | None = None, **kwargs) -> dict[str, Any]:
    """`run_simulation` once per seed, each into `out_dir/seed<S>/`, then `aggregate.json` and
    `aggregate.md` (the seed table) in `out_dir`; returns the aggregate. The chain is snapshotted before
    each run and restored after it, so every seed starts from the same chain and gives the CSV a run of
    that seed alone gives. `on_summary` is called with each run's summary as it finishes."""
    from ape import chain

    out_dir = Path(out_dir)
    dirs = []
    for seed in seeds:
        snapshot = chain.snapshot()
        try:
            summary = run_simulation(scenario, steps, seed, out_dir / f"seed{seed}", **kwargs)
        finally:
            chain.restore(snapshot)
        dirs.append(Path(summary.csv).parent)
        if on_summary is not None:
            on_summary(summary)
    name = scenario if isinstance(scenario, str) else scenario.name
    return write_aggregate(dirs, out_dir, title=f"{name}, {summary.steps} steps, seeds {', '.join(map(str, seeds))}")


# =============================================================================== command line


def simulator_command() -> type:
    """The click command class of the simulator's Ape scripts (`ape run simulate`, `ape run economics`): Ape's
    connected command, its Anvil started as `python -m vperp.sim` starts it (vperp/chain_io.py): without step traces,
    Ape's record of its nodes cleared of stopped ones first. Built on call, so importing this module needs no Ape."""
    import click
    from ape.cli import ConnectedProviderCommand

    class SimulatorCommand(ConnectedProviderCommand):
        def invoke(self, ctx: click.Context):
            chain_io.forget_stopped_nodes()
            chain_io.anvil_without_step_traces_or_state_files()
            chain_io.anvil_on_a_free_port()
            return super().invoke(ctx)

    return SimulatorCommand


def cli_options(f: Callable) -> Callable:
    """The options shared by `ape run simulate` and `python -m vperp.sim`."""
    import click

    options = [
        click.option("--scenario", type=click.Choice(list(SCENARIOS)), default="crash", show_default=True),
        click.option("--steps", type=click.IntRange(min=1), default=None,
                     help="number of steps [default: 150, or the price file's length - 1]"),
        click.option("--seed", type=int, default=1, show_default=True),
        click.option("--seeds", default=None,
                     help="several runs: seeds as a range or list (1-5, 1,3,7); each run in OUT/seed<S>/, "
                          "the seed table in OUT/aggregate.md and aggregate.json (replaces --seed)"),
        click.option("--out", "out_dir", default="sim_out", show_default=True, help="output folder"),
        click.option("--step-seconds", type=click.IntRange(min=30), default=STEP_SECONDS, show_default=True),
        click.option("--prices", "prices_csv", default=None,
                     help="CSV of index prices, one column per market symbol (ETH, BTC), one row per step"),
        click.option("--drift", type=float, default=None, help="override: expected log return per day"),
        click.option("--vol", type=float, default=None, help="override: volatility per day"),
        click.option("--jump-rate", type=float, default=None, help="override: jumps per day"),
        click.option("--jump-mean", type=float, default=None, help="override: mean log jump"),
        click.option("--jump-std", type=float, default=None, help="override: log jump deviation"),
        click.option("--insurance-seed", type=float, default=100_000, show_default=True,
                     help="USD granted to the insurance fund at deployment"),
        click.option("--pool-cooldown", type=click.IntRange(min=0), default=HOUR, show_default=True,
                     help="pool withdrawal cooldown [s] for the run (deployed default: 86400)"),
        click.option("--keeper-discount-bps", type=click.IntRange(0, 10_000), default=100, show_default=True,
                     help="the keeper takes auctions at least this far below/above the index"),
        click.option("--config", "config_path", default=None,
                     help="deployment YAML to simulate (the format `ape run deploy --config` reads); "
                          "collateral and oracles must be mock [default: the shipped defaults]"),
        click.option("--oracle-deviation-bps", type=click.IntRange(min=0), default=0, show_default=True,
                     help="post a feed only when the index moved more than this from its last answer "
                          "(or after --oracle-heartbeat); 0: every step"),
        click.option("--oracle-heartbeat", type=click.IntRange(min=0), default=0, show_default=True,
                     help="[s] post a feed at least this often; 0: every step"),
        click.option("--basis-trader", is_flag=True, default=False,
                     help="add the funding-carry agent (holds against the skew while funding pays it)"),
        click.option("--breakers", is_flag=True, default=False,
                     help="deploy governance and the circuit breakers (shipped parameters, and the markets' own "
                          "thresholds of the --config's governance.breaker.markets) over the system; the "
                          "keeper pokes them every step; restrictions, trips and refused orders are recorded"),
        click.option("--plots/--no-plots", default=True, show_default=True,
                     help="write the run's PNG plots (the CSV and summary.json are written either way)"),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def check_cli(oracle_deviation_bps: int = 0, oracle_heartbeat: int = 0, step_seconds: int = STEP_SECONDS,
              **_ignored) -> None:
    """The checks of the command-line options that need no chain (before connecting); a bad combination
    is one line (click's error). The feeds' staleness is checked against the deployment when it is
    known (`OraclePolicy.check`, in the run); here against the shipped 24 h."""
    import click

    from .config import MarketConfig

    try:
        OraclePolicy(oracle_deviation_bps, oracle_heartbeat).check(step_seconds, {"shipped": MarketConfig("X", 1).heartbeat})
    except SimError as e:
        raise click.UsageError(str(e)) from None


def run_from_cli(scenario, steps, seed, seeds, out_dir, step_seconds, prices_csv, drift, vol, jump_rate, jump_mean, jump_std,
                 insurance_seed, pool_cooldown, keeper_discount_bps, config_path=None, oracle_deviation_bps=0,
                 oracle_heartbeat=0, basis_trader=False, breakers=False, plots=True) -> SimSummary:
    """What both command lines do after connecting: run, print the summary; errors as one line."""
    import click
    from ape.exceptions import ApeException
    from ape.logging import logger

    check_cli(oracle_deviation_bps, oracle_heartbeat, step_seconds)

    logger.set_level("WARNING")
    override = {k: v for k, v in dict(drift=drift, vol=vol, jump_rate=jump_rate, jump_mean=jump_mean,
                                      jump_std=jump_std).items() if v is not None}
    if steps is None and prices_csv is None:
        steps = 150
    def echo(summary: SimSummary) -> None:
        for line in summary.lines():  # plain lines, never wrapped: the demo and scripts read them
            click.echo("  " + line)

    options = dict(step_seconds=step_seconds, prices_csv=prices_csv, override=override,
                   insurance_seed=insurance_seed, pool_cooldown=pool_cooldown,
                   keeper_discount_bps=keeper_discount_bps, progress=True,
                   oracle_deviation_bps=oracle_deviation_bps, oracle_heartbeat=oracle_heartbeat,
                   basis_trader=basis_trader, breakers=breakers, plots=plots)
    try:
        options["config"] = config_path
        click.echo(f"simulating {scenario}: {get_scenario(scenario).description}")
        if seeds is not None:
            agg = run_seeds(scenario, steps, parse_seeds(seeds), out_dir, on_summary=echo, **options)
            click.echo(aggregate_markdown(agg))
            click.echo(f"wrote {Path(out_dir) / 'aggregate.md'} and {Path(out_dir) / 'aggregate.json'}")
            return agg
        summary = run_simulation(scenario, steps, seed, out_dir, **options)
    except SimError as e:
        raise click.ClickException(str(e)) from None
    except ApeException as e:
        raise click.ClickException(f"simulation failed: {e}") from None
    echo(summary)
    return summary


def _project_root() -> Path:
    return Path(__file__).resolve().parent.parent


def main() -> None:
    """`python -m vperp.sim`: connect to a local Ape network itself, then run like `ape run simulate`."""
    command_line()()


def command_line():
    """The click command of `python -m vperp.sim` (options are checked before any network starts)."""
    import click

    @click.command()
    @click.option("--network", default="ethereum:local:foundry", show_default=True,
                  help="Ape network choice (ethereum:local:foundry runs on Anvil, faster for long runs)")
    @cli_options
    def command(network, **kwargs):
        """Run the vPerp economic simulator (see docs/simulator.md)."""
        check_cli(**kwargs)
        root = _project_root()
        if not (root / "ape-config.yaml").is_file():
            raise click.ClickException(f"{root} is not the vPerp project: run `./run.sh ape run simulate` there")
        os.chdir(root)  # Ape's `project` is the working directory's
        os.environ.setdefault("SOLCX_BINARY_PATH", str(root / "tools" / "solcx"))
        os.environ["PATH"] = f"{root / '.venv' / 'bin'}{os.pathsep}{root / 'node_modules' / '.bin'}{os.pathsep}" \
                             f"{os.environ.get('PATH', '')}"
        from ape import networks

        chain_io.forget_stopped_nodes()  # before the network starts its Anvil (vperp/chain_io.py)
        chain_io.anvil_without_step_traces_or_state_files()
        chain_io.anvil_on_a_free_port()
        out = kwargs["out_dir"]
        kwargs["out_dir"] = out if os.path.isabs(out) else os.path.join(_invoked_from, out)
        if kwargs.get("prices_csv") and not os.path.isabs(kwargs["prices_csv"]):
            kwargs["prices_csv"] = os.path.join(_invoked_from, kwargs["prices_csv"])
        with networks.parse_network_choice(network):
            run_from_cli(**kwargs)

    _invoked_from = os.getcwd()
    return command


if __name__ == "__main__":
    main()
