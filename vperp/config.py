"""Deployment configuration: which markets to list and with what parameters.

All ratios and amounts are plain Python numbers in human units here (0.1 = 10 %, 3000 = $3000);
`to_params` converts them to the contracts' WAD integers exactly (via Decimal, never float math).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, replace
from decimal import Decimal

from .units import (
    AUCTION_CURVES, DEFAULT_AUCTION_CURVE, DEFAULT_AUCTION_DURATION, DEFAULT_AUCTION_MAX_DISCOUNT,
    DEFAULT_AUCTION_RESET_DROP, DEFAULT_AUCTION_STEP, DEFAULT_FUNDING_PERIOD_HOURS, DEFAULT_SMOOTHING_TAU,
    listing_funding_cap, WAD,
)


def wad(x) -> int:
    """Exact WAD integer of a human number (str/int/float/Decimal); floats go through their repr."""
    d = Decimal(str(x)) * WAD
    if d != d.to_integral_value():
        raise ValueError(f"{x!r} has more than 18 decimals")
    return int(d)


@dataclass(frozen=True)
class MarketConfig:
    symbol: str
    price: float  # initial mock oracle price (local chains), quote per base
    oracle: str = "mock"  # "mock" or the address of a Chainlink-compatible feed
    oracle_decimals: int = 8
    heartbeat: int = 86_400  # [s]; mock feeds on local chains: 24 h so time-travel tests stay valid
    twap_window: int = 900  # [s]
    imr: float = 0.10
    mmr: float = 0.05
    taker_fee: float = 0.001
    insurance_fee_share: float = 0.2
    max_spread: float = 0.10
    max_oi_pool_ratio: float = 2.0
    max_open_interest: float = 10_000  # base units per side
    min_position_size: float = 0.01  # base units
    base_reserve: float = 10_000  # virtual base; the virtual quote is base_reserve x index
    # Dutch auctions (LiquidationEngine.AuctionParams): discount curve, time to max discount, ...; by default the
    # engine's own (LiquidationEngine.defaultAuctionParams: vperp.units' DEFAULT_AUCTION_*)
    auction_curve: str = AUCTION_CURVES[DEFAULT_AUCTION_CURVE]  # one of AUCTION_CURVES (docs/liquidation.md)
    auction_duration: int = DEFAULT_AUCTION_DURATION  # [s] 1,800
    auction_step: int = DEFAULT_AUCTION_STEP  # [s] stairstep width, 60
    auction_max_discount: float = DEFAULT_AUCTION_MAX_DISCOUNT / WAD  # 0.02
    # the index move in the account's favour after which an auction must be redone, 0.05
    auction_reset_drop: float = DEFAULT_AUCTION_RESET_DROP / WAD
    # vAMM depth and peg (AmmController.AmmParams)
    depth_ratio: float = 3.0  # target quote reserve per unit of pool NAV (10M pool: 30M, the listed depth)
    # Depth concentrated on the prices within depth_range of the peg, amplified (AmmController.setConcentration):
    # the quote reserve target becomes depth_ratio x depth_amplification x NAV; the amplification is at most
    # max_amplification(depth_range) (21.49 at 10 %). None: not concentrated (the listing's value; the shipped
    # markets concentrate 10 times on 10 %: SHIPPED_CHANGES).
    depth_range: float | None = None
    depth_amplification: float | None = None
    max_depth_change: float = 0.2
    # The peg (the curve's price at zero net position) follows the index every block, once it is more than
    # repeg_threshold away, by at most max_repeg_step of the peg and max_repeg_cost x NAV per call. A peg that
    # lagged (the earlier 2 % threshold, 1 h interval) let arbitrage hold the gap as inventory that the next repeg
    # then paid from the pool (docs/pool.md "Why the peg follows every block").
    repeg_threshold: float = 0.001
    max_repeg_step: float = 0.05
    max_repeg_cost: float = 0.01
    repeg_interval: int = 0
    depth_interval: int = 3_600  # [s] least time between two depth syncs of one market
    max_depth_cost: float = 0.001  # bounded, no longer binding: a depth sync never hands open positions exit value
    # Funding's skew term (ClearingHouse.setSkewFunding): funding per hour for a skew, (long OI - short OI) /
    # base reserve, of 1; the listing default 0.002 (0.2 %/h: 0.01 %/h at a skew of 5 %), at most 0.01.
    skew_funding: float = 0.002
    # Funding's period (ClearingHouse.setFundingParams' fundingPeriodHours) [h]: the target's premium term is
    # premium / funding_period_hours per hour; 24 at listing, 1 to 720. A curve concentrated `a` times moves the mark
    # 1/a as far for the same skew, so its premium is 1/a of the plain curve's: a period shortened by about `a`
    # charges the crowd the same carry per unit of skew (docs/pool.md "Who pays for the pool's position").
    funding_period_hours: int = DEFAULT_FUNDING_PERIOD_HOURS
    # The applied rate's time constant (setFundingParams' smoothingTau) [s]: 7,200 at listing, 60 to 7 days. A shorter
    # period moves the target further for the same premium; a longer time constant keeps the rate's hourly change
    # as small as before (docs/pool.md "Who pays for the pool's position").
    funding_smoothing_tau: int = DEFAULT_SMOOTHING_TAU
    # The funding rate's cap (setFundingParams' maxFundingRate) [per hour]: the target and the applied rate are
    # clamped to it. None: the listing's cap, the taker fee / 9 per hour and at most 0.001 (0.1 %/h)
    # (`funding_cap_wad`). Funding follows a day-long mean and a time constant, so it lags a position: one that holds
    # a side, then flips to the other, is paid the rate its own first side built. The contract bounds that pay against
    # the fees of the flips (docs/security.md "Fixed: the funding oscillation"): a cap is at most the taker fee / 6 per
    # hour (0.025 %/h at 15 bps) from a 12-hour time constant, the fee / 9 under it, checked here when the file is read
    # (`vperp.funding_compare.oscillation_k`: at the bound the pay is at most 0.79 of the fees).
    max_funding_rate: float | None = None
    # The stale-peg rule (ClearingHouse.setPegTolerance) [bps]: a buy trades only while the peg is at most this
    # below the index, a sell while at most this above (reduces included); 0 (the contract's value at listing) turns
    # it off. Set it above the repeg threshold the keeper follows and below twice the taker fee (docs/pool.md "The
    # stale-peg rule"); at most 500. Shipped: 11 bps (above the 10 bps repeg threshold, below twice the 15 bps fee).
    peg_tolerance_bps: int = 11
    # Delayed orders (ClearingHouse.setDelayedOrders, docs/orders.md): every trade in the market goes through the
    # OrderRouter and executes at a price set after the order was committed; off at listing.
    delayed_orders: bool = False
    # The peg guard (AmmController.setPegGuard, docs/governance.md "Peg guard"): with governance deployed, the peg
    # holds while the circuit breaker's index-move breaker holds the market (repeg reverts PegHeld), so a position
    # built before a pushed index cannot sell into a vAMM the repegs carried after it. For a market whose index can
    # be pushed (a thin spot market); off for ETH and BTC, where the peg should follow a real move at once.
    peg_guard: bool = False

    def funding_cap_wad(self) -> int:
        """The funding cap the deployment leaves the market with [wad per hour]: `max_funding_rate`, or the listing's
        (`vperp.units.listing_funding_cap`)."""
        if self.max_funding_rate is None:
            return listing_funding_cap(wad(self.taker_fee))
        return wad(self.max_funding_rate)

    def to_params(self, oracle_address: str) -> tuple:
        """The `IClearingHouse.MarketParams` tuple, in struct order."""
        return (
            oracle_address,
            self.heartbeat,
            self.twap_window,
            wad(self.imr),
            wad(self.mmr),
            wad(self.taker_fee),
            wad(self.max_spread),
            wad(self.max_oi_pool_ratio),
            wad(self.max_open_interest),
            wad(self.min_position_size),
        )

    def skew_funding_ppm(self) -> int:
        """`skew_funding` in the contract's unit, millionths per hour (it must be a whole number of them)."""
        ppm = Decimal(str(self.skew_funding)) * 10**6
        if ppm != ppm.to_integral_value():
            raise ValueError(f"{self.symbol}: skew_funding must be a multiple of 0.000001, not {self.skew_funding}")
        return int(ppm)

    def to_amm_params(self) -> tuple:
        """The `IAmmController.AmmParams` tuple, in struct order."""
        return (wad(self.depth_ratio), wad(self.max_depth_change), wad(self.repeg_threshold),
                wad(self.max_repeg_step), wad(self.max_repeg_cost), self.repeg_interval, self.depth_interval,
                wad(self.max_depth_cost))

    def to_concentration(self) -> tuple[int, int] | None:
        """(range, amplification) for `AmmController.setConcentration`, in WAD; None: not concentrated."""
        if self.depth_range is None or self.depth_amplification is None:
            return None
        return wad(self.depth_range), wad(self.depth_amplification)

    def to_auction_params(self) -> tuple:
        """The `ILiquidationEngine.AuctionParams` tuple, in struct order."""
        curves = {name: i for i, name in enumerate(AUCTION_CURVES)}
        if self.auction_curve not in curves:
            raise ValueError(f"{self.symbol}: auction_curve must be one of {sorted(curves)}, not {self.auction_curve!r}")
        return (curves[self.auction_curve], self.auction_duration, self.auction_step,
                wad(self.auction_max_discount), wad(self.auction_reset_drop))


MIN_TIMELOCK_DELAY = 86_400  # [s] RiskGovernor.MIN_DELAY: the governor refuses a shorter timelock
MAX_TIMELOCK_DELAY = 30 * 86_400  # [s] the config's own ceiling (no contract bound): catches a typed extra zero
DEFAULT_TIMELOCK_DELAY = 172_800  # [s] the shipped 48 h (vperp.governance.DELAY)


# ICircuitBreaker's hard bounds for the per-market thresholds (CircuitBreaker's MIN_/MAX_ constants), human units;
# a market's own thresholds take the same bounds as the global parameters.
BREAKER_THRESHOLD_BOUNDS = {
    "move_threshold": (Decimal("0.01"), Decimal("0.5")),  # [ratio] index vs index TWAP
    "divergence_threshold": (Decimal("0.005"), Decimal("0.5")),  # [ratio] mark TWAP vs index TWAP
    "divergence_duration": (60, 86_400),  # [s]
    "max_skew_share": (Decimal("0.01"), Decimal("10")),  # [ratio] |long - short| x index / pool NAV
}


@dataclass(frozen=True)
class BreakerThresholds:
    """A market's own thresholds for the reduce-only (index move, divergence) and skew circuit breakers
    (ICircuitBreaker.MarketThresholds) in human units (0.2 = 20 %); None: the market uses the global value."""

    move_threshold: float | Decimal | None = None
    divergence_threshold: float | Decimal | None = None
    divergence_duration: int | None = None
    max_skew_share: float | Decimal | None = None

    def check(self, where: str = "") -> None:
        """Raise ValueError naming the field when a set value is outside the breaker's bound (what
        `CircuitBreaker.setMarketThresholds` would revert ParameterOutOfBounds on), or when none is set."""
        values = dataclasses.asdict(self)
        if all(v is None for v in values.values()):
            raise ValueError(f"{where}: set at least one of {', '.join(BREAKER_THRESHOLD_BOUNDS)}")
        for name, (lo, hi) in BREAKER_THRESHOLD_BOUNDS.items():
            v = values[name]
            if v is not None and not lo <= Decimal(str(v)) <= hi:
                raise ValueError(f"{where}.{name}: {v} is outside the breaker's bound [{lo}, {hi}]")

    def to_tuple(self) -> tuple[int, int, int, int]:
        """(moveThreshold, divergenceThreshold, divergenceDuration, maxSkewShare) as the contract takes them
        (0: global)."""
        return (0 if self.move_threshold is None else wad(self.move_threshold),
                0 if self.divergence_threshold is None else wad(self.divergence_threshold),
                0 if self.divergence_duration is None else int(self.divergence_duration),
                0 if self.max_skew_share is None else wad(self.max_skew_share))


@dataclass(frozen=True)
class GovernanceConfig:
    """Who governs a deployment handed to governance (docs/governance.md): the RiskGovernor's `admin` (proposes
    through the timelock, acts at once on risk-reducing changes), its `guardian` (acts at once on risk-reducing
    changes, cancels proposals; also the Vault's guardian) and the TimelockController's delay [s]. Addresses are
    checksummed strings."""

    admin: str
    guardian: str
    timelock_delay: int = DEFAULT_TIMELOCK_DELAY
    # Per market symbol, the breaker's own thresholds (move, divergence, skew) (`governance.breaker.markets`), set by the
    # deployment before the breaker is wired; markets not listed use the global (shipped) values.
    breaker_markets: tuple[tuple[str, BreakerThresholds], ...] = ()


@dataclass(frozen=True)
class OrderRouterConfig:
    """The OrderRouter's two deployment parameters (fixed for its life; docs/orders.md): the least keeper fee an
    order carries [ETH, at most 0.1] and how long an order stays executable after the first oracle round newer than
    its commit [s, 12 .. 3600]."""

    min_keeper_fee: float = 0.0001
    execution_window: int = 60


# The two markets on the constant-product curve: every field at its listing value, 30M of quote each on a 10M pool,
# trades direct. This was the shipped deployment until the concentrated carry setting below replaced it; most of the
# test suite is written on it (`plain_config()`, `lagging_peg_config()`), and docs/plain/economics.md measures it.
PLAIN_MARKETS = (
    MarketConfig("ETH", price=3000, max_open_interest=10_000, min_position_size=0.01, base_reserve=10_000),
    MarketConfig("BTC", price=60_000, max_open_interest=500, min_position_size=0.001, base_reserve=500),
)

# What the shipped markets change from the plain ones (docs/pool.md "The shipped setting"; the YAML: local.yaml):
# - the depth concentrated on the band: amplified 10 times on prices within 10 % of the peg, with ten times the
#   virtual reserves (300M of quote per market on a 10M pool), so a 1M order on ETH costs under 50 bps all in;
# - the skew term at its bound, measured against that deeper reserve;
# - a 15 bps taker fee;
# - a funding period of 3 h: a curve ten times deeper moves the mark a tenth as far for the same skew, so the premium
#   is divided by a shorter period to charge the crowd about the plain curve's carry per unit of skew, and pay a
#   carry trader to take the other side of it;
# - a time constant of SHIPPED_SMOOTHING_TAU: the larger target then moves the applied rate within issue 13's bound
#   on the smoothing on every simulated run but one, and the carry trader still comes in time (docs/pool.md);
# - delayed orders: on a deep curve a trader who sees an oracle update coming would buy the move for little impact
#   (docs/security.md R10); every trade goes through the OrderRouter and executes after the next oracle round.
SHIPPED_SMOOTHING_TAU = 43_200  # [s] 12 h
SHIPPED_MAX_FUNDING_RATE = 0.00025  # [per hour] 0.025 %/h, a sixth of the 15 bps fee, the most a 12 h tau allows

SHIPPED_DEPTH = {"ETH": 100_000, "BTC": 5_000}  # virtual base reserves: ten times the plain markets'
# The depth's concentration and the skew term measured against it (also `concentrated_config()`'s).
CONCENTRATION = {"depth_range": 0.1, "depth_amplification": 10.0, "skew_funding": 0.01}
SHIPPED_CHANGES = {**CONCENTRATION, "taker_fee": 0.0015, "funding_period_hours": 3,
                   "funding_smoothing_tau": SHIPPED_SMOOTHING_TAU, "max_funding_rate": SHIPPED_MAX_FUNDING_RATE,
                   "delayed_orders": True}
SHIPPED_MARKETS = tuple(replace(m, base_reserve=SHIPPED_DEPTH[m.symbol], **SHIPPED_CHANGES) for m in PLAIN_MARKETS)


@dataclass(frozen=True)
class DeployConfig:
    markets: tuple[MarketConfig, ...] = SHIPPED_MARKETS
    collateral: str = "mock"  # "mock" (mintable 6-decimal token) or an ERC-20 address
    collateral_decimals: int = 6
    pool_seed: float = 10_000_000  # collateral units seeded into the liquidity pool's balance
    insurance_seed: float = 100_000  # the insurance fund pays bad debt before the pool: 1 % of the pool seed
    # None: the deployer keeps owning the modules (local demos); set: they are handed to a timelock, a
    # RiskGovernor and a CircuitBreaker after the system is deployed and seeded (vperp.deployment.deploy_governed).
    governance: GovernanceConfig | None = None
    order_router: OrderRouterConfig = field(default_factory=OrderRouterConfig)

    def with_markets(self, *markets: MarketConfig) -> "DeployConfig":
        return replace(self, markets=tuple(markets))


def max_amplification(range_wad: int) -> int:
    """AmmController.maxAmplification [wad]: 1 / (1 - (1 + range)^(-1/2)), both divisions rounded down; a range
    outside [1 %, 50 %] is refused (ValueError; the contract reverts ParameterOutOfBounds)."""
    import math

    if not 10**16 <= range_wad <= 5 * 10**17:
        raise ValueError(f"range {range_wad} is outside [1e16, 5e17]")

    inv = WAD * WAD // math.isqrt((WAD + range_wad) * WAD)
    return WAD * WAD // (WAD - inv)


def default_config() -> DeployConfig:
    """The shipped deployment: the concentrated carry setting, delayed orders on (deployments/config/local.yaml)."""
    return DeployConfig()


def plain_config() -> DeployConfig:
    """The shipped deployment's system on the plain markets (`PLAIN_MARKETS`): constant product, 10 bps, a 24 h
    funding period at the 2 h time constant, trades direct (deployments/config/plain.yaml)."""
    return DeployConfig(markets=PLAIN_MARKETS)


# The peg setting the shipped markets had before the peg followed every block: the stale-peg rule off, a repeg only
# 2 % from the index, by 1 % of the peg and 0.1 % of NAV at most, once an hour. Most of the test suite was written on
# it: its tests move the index by tens of percent and trade at once, which the stale-peg rule would refuse until the
# repegs the keeper makes after every oracle round. The rule and the every-block peg are tested on their own
# (tests/amm/test_peg_follow.py, the differential and fast tiers' peg steps, the simulator on the shipped default).
LAGGING_PEG = {"repeg_threshold": 0.02, "max_repeg_step": 0.01, "max_repeg_cost": 0.001, "repeg_interval": 3_600,
               "peg_tolerance_bps": 0}


def lagging_peg_config(config: DeployConfig | None = None) -> DeployConfig:
    """`config` (default: the plain markets, `plain_config()`) with every market's peg set as `LAGGING_PEG`."""
    base = config or plain_config()
    return base.with_markets(*(replace(m, **LAGGING_PEG) for m in base.markets))


def concentrated_config(delayed_orders: bool = False) -> DeployConfig:
    """The plain markets with the shipped depth: each market's depth amplified 10 times on a 10 % range (the band),
    so a 10M pool lists 300M of quote per market (ETH 100,000 base, BTC 5,000), and the skew term at its bound,
    0.01, but the listing's 10 bps fee, 24 h funding period and 2 h time constant. The peg follows the index every
    block and the stale-peg rule is at 11 bps, as in every shipped market (docs/pool.md "Why the peg follows every
    block"). `delayed_orders` turns delayed orders on in both markets (docs/orders.md): with it this is
    deployments/config/concentrated.yaml; without it (the default) the markets trade directly, as the tests that
    measure a direct trade on the curve (price impact, the round trips around a repeg) need. The shipped markets
    are this with the fee, funding period and time constant of `SHIPPED_CHANGES`."""
    return DeployConfig().with_markets(*(
        replace(m, base_reserve=SHIPPED_DEPTH[m.symbol], delayed_orders=delayed_orders, **CONCENTRATION)
        for m in PLAIN_MARKETS))
