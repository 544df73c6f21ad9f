"""The model's state types: one dataclass per contract struct, and the action decorator `_atomic`."""
from __future__ import annotations

import copy
import functools
from dataclasses import dataclass, field
from typing import Any, TYPE_CHECKING

from ..units import (
    AUCTION_CURVES, DEFAULT_AUCTION_CURVE, DEFAULT_AUCTION_DURATION, DEFAULT_AUCTION_MAX_DISCOUNT,
    DEFAULT_AUCTION_RESET_DROP, DEFAULT_AUCTION_STEP, DEFAULT_FUNDING_PERIOD_HOURS, DEFAULT_LIQUIDATION_CHIP,
    DEFAULT_LIQUIDATION_MAX_AUCTION_NOTIONAL, DEFAULT_LIQUIDATION_MAX_KEEPER_REWARD, DEFAULT_LIQUIDATION_MAX_REDOS,
    DEFAULT_LIQUIDATION_PENALTY, DEFAULT_LIQUIDATION_TARGET_HEALTH, DEFAULT_LIQUIDATION_TIP, DEFAULT_MAX_FUNDING_RATE,
    DEFAULT_MAX_RATE_VELOCITY, DEFAULT_SMOOTHING_TAU,
)
from .base import ModelRevert
from .wad_math import vamm_price

if TYPE_CHECKING:
    from .model import Model


@dataclass
class Account:
    collateral: int = 0  # [wad] settled margin (signed)
    open_markets: int = 0  # bit (marketId - 1) set while a position is open


@dataclass
class Position:
    size: int = 0
    open_notional: int = 0
    last_cumulative_funding: int = 0
    auctioned: int = 0  # the part of `size` in a live auction (same sign), the engine's to close


@dataclass
class Observation:
    timestamp: int
    mark_cumulative: int  # modulo 2^112
    index_cumulative: int  # modulo 2^112


@dataclass
class FundingParams:
    max_funding_rate: int = DEFAULT_MAX_FUNDING_RATE  # listMarket sets the fee's: units.listing_funding_cap
    max_rate_velocity: int = DEFAULT_MAX_RATE_VELOCITY
    baseline_rate: int = 0
    smoothing_tau: int = DEFAULT_SMOOTHING_TAU
    funding_period_hours: int = DEFAULT_FUNDING_PERIOD_HOURS

    def as_tuple(self) -> tuple:
        return (self.max_funding_rate, self.max_rate_velocity, self.baseline_rate, self.smoothing_tau,
                self.funding_period_hours)


def peg_holds(peg: int, index: int, bps: int, buy: bool) -> bool:
    """ClearingHouseTradeRules._checkPeg's condition: with a tolerance of `bps` (0: off), whether a trade in this direction is
    held by the stale-peg rule: a buy while the peg is below the index by more than floor(index x bps / 1e4), a
    sell while it is above by more. The model, the SDK (`Client.peg_is_stale`) and the fast tier use this one."""
    if bps == 0:
        return False
    band = index * bps // 10**4
    return index > peg + band if buy else peg > index + band


@dataclass
class Market:
    id: int
    symbol: str
    oracle: Any  # feed identifier (address on chain), used in oracle error arguments
    oracle_decimals: int
    heartbeat: int
    twap_window: int
    imr: int
    mmr: int
    taker_fee: int
    max_spread: int
    max_oi_pool_ratio: int
    max_open_interest: int
    min_position_size: int
    insurance_fee_share: int
    x: int  # virtual base reserve
    y: int  # virtual quote reserve
    answer: int  # mock oracle answer, feed units
    answer_updated_at: int
    last_index_price: int
    accumulator: Observation
    observations: list[Observation]
    hourly: list[Observation]  # the accumulator as each hour's first block left it, at hour % FUNDING_OBSERVATIONS
    hourly_skew: list[int]  # the skew sum at the same moments (int32)
    long_open_interest: int = 0
    short_open_interest: int = 0
    cumulative_funding: int = 0
    rate: int = 0
    target: int = 0
    observation_head: int = 0
    # [bps of x, times s] sum of the skew as each block found it (ClearingHouseStorage: int32, wrapping)
    skew_cumulative: int = 0
    funding_params: FundingParams = field(default_factory=FundingParams)
    sum_open_notional: int = 0  # sum of openNotional over the market's positions (int128)
    sum_funding_basis: int = 0  # sum of floor(size x lastCumulativeFunding / 1e18) (int128)
    # [s] the last block that found an index gap, the vAMM inside its band around the last index and
    # outside it around the new one (0: never); LP flows wait a TWAP window after it.
    last_dislocation: int = 0
    # [1e-6 per hour] funding target added per unit of skew, (long OI - short OI) / x (setSkewFunding)
    skew_funding_ppm: int = 0
    # [bps] the stale-peg rule: an increase needs the peg within this of the index; 0: off (setPegTolerance)
    peg_tolerance_bps: int = 0
    delayed_orders: bool = False  # ClearingHouse.setDelayedOrders: trades come from the router, peg fresh both ways

    @property
    def oracle_scale(self) -> int:
        return 10 ** (18 - self.oracle_decimals)

    @property
    def spot(self) -> int:
        return vamm_price(self.x, self.y)


@dataclass(frozen=True)
class TradeResult:
    """What `openPosition`/`closePosition` return and what `PositionChanged` carries."""

    base: int
    quote: int
    fee: int
    realized_pnl: int
    funding: int  # settled on this position by this trade, positive = paid by the trader
    new_size: int
    new_open_notional: int
    price_after: int
    to_insurance: int
    builder_fee: int = 0  # [wad] openPositionWithBuilder's fee to the builder (Vault.BuilderFeePaid)


@dataclass(frozen=True)
class MarginSummary:
    """IClearingHouse.MarginSummary: `initial` includes `auctioned_maintenance` (the auctioned parts'
    backing); `maintenance` is the free parts' only (what `kick` tests)."""

    unrealized_pnl: int
    pending_funding: int
    initial: int
    maintenance: int
    auctioned_notional: int = 0
    auctioned_maintenance: int = 0


CURVE_LINEAR, CURVE_EXPONENTIAL, CURVE_STAIRSTEP = (  # ILiquidationEngine.Curve (vperp.units.AUCTION_CURVES)
    AUCTION_CURVES.index(name) for name in ("linear", "exponential", "stairstep"))
EXP_SPEED = 4
POOL_OFFSET = 10**6  # ERC-4626 virtual shares: 10 ** _decimalsOffset()


@dataclass
class LiquidationParams:
    """ILiquidationEngine.LiquidationParams (the engine's constructor defaults, units.DEFAULT_LIQUIDATION_*)."""

    target_health: int = DEFAULT_LIQUIDATION_TARGET_HEALTH
    chip: int = DEFAULT_LIQUIDATION_CHIP
    penalty: int = DEFAULT_LIQUIDATION_PENALTY
    max_redos: int = DEFAULT_LIQUIDATION_MAX_REDOS
    tip: int = DEFAULT_LIQUIDATION_TIP
    max_keeper_reward: int = DEFAULT_LIQUIDATION_MAX_KEEPER_REWARD
    max_auction_notional: int = DEFAULT_LIQUIDATION_MAX_AUCTION_NOTIONAL


@dataclass
class AuctionParams:
    """ILiquidationEngine.AuctionParams (defaultAuctionParams until a market has its own)."""

    curve: int = DEFAULT_AUCTION_CURVE
    duration: int = DEFAULT_AUCTION_DURATION
    step: int = DEFAULT_AUCTION_STEP
    max_discount: int = DEFAULT_AUCTION_MAX_DISCOUNT
    reset_drop: int = DEFAULT_AUCTION_RESET_DROP


@dataclass
class Auction:
    owner: Any
    subaccount: int
    market_id: int
    redos: int
    size: int  # remaining, signed like the position
    start_index: int
    start_time: int


@dataclass(frozen=True)
class SliceResult:
    size: int
    notional: int
    keeper_reward: int
    penalty: int
    index: int
    restores: bool
    shortfall: int = 0  # bad debt the account's auctions would leave at the worst fill, after the costs
    bounty: int = 0  # paid to the keeper by the insurance fund when the account can pay it nothing


@dataclass(frozen=True)
class Redone:
    """What `redo` did when the account still needed its auction (the `Redo` event's fields)."""

    redos: int
    start_index: int
    tip: int


@dataclass(frozen=True)
class Cancelled:
    """What `redo` of a recovered account or `cancel` did (the `AuctionCancelled` event's fields)."""

    size: int
    value: int
    requirement: int


@dataclass(frozen=True)
class AmmParams:
    """IAmmController.AmmParams, field for field."""

    depth_ratio: int
    max_depth_change: int
    repeg_threshold: int
    max_repeg_step: int
    max_repeg_cost: int
    repeg_interval: int
    depth_interval: int = 3_600
    max_depth_cost: int = 10**15


@dataclass
class WithdrawRequest:
    shares: int = 0
    unlock_at: int = 0


def _atomic(fn):
    """Run an action as a transaction: on ModelRevert, restore every field the action touched."""

    @functools.wraps(fn)
    def wrapper(self: "Model", *args, **kwargs):
        saved = copy.deepcopy(self.__dict__)
        try:
            return fn(self, *args, **kwargs)
        except ModelRevert:
            self.__dict__.clear()
            self.__dict__.update(saved)
            raise

    return wrapper
