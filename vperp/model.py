"""Exact-integer reference model of vPerp's five contracts: Vault, ClearingHouse, LiquidationEngine,
LiquidityPool and AmmController (margin: docs/design.md#accounts-and-margin; trading:
docs/design.md#trading; funding: docs/funding.md; liquidation: docs/liquidation.md; pool, depth and
repeg: docs/pool.md).

The model is a plain-Python state machine that computes the same integers as the contracts, to the
wei, for every action a trader can take: deposit, withdraw, transferMargin, openPosition,
closePosition, pokeFunding, oracle moves; keepers' and takers' kick, take, redo, cancel, backstop,
resolveBadDebt; LPs' deposit, requestWithdraw, redeem, withdraw; the AMM controller's syncDepth and
repeg; and for every view: collateral, accountValue, freeCollateral, marginRequirements,
isLiquidatable, liquidationState, shortfallOf, pendingBadDebt, position, quote, marketState,
fundingState, twaps, markPrice, indexPrice, tradersPnl, tradersExitPnl, poolBalance, insuranceFund,
the pool's navWad, totalAssets, depositAssets, previewDeposit/previewMint/previewRedeem, max* and
lpFlowsSuspended, the engine's auctions and previews, the AMM controller's depthCost, repegCost and
netExitValue. The differential fuzz (tests/model/test_differential.py)
and the stateful fuzz (tests/model/test_stateful.py) run random action sequences on chain and here and
compare every one.

State
- accounts: ``(owner, subaccount) -> Account(collateral [wad, signed], open_markets [bitmap])``.
- markets (ids from 1 in config order): virtual reserves ``x`` (base) and ``y`` (quote), parameters,
  long/short open interest, the TWAP accumulator ``(timestamp, markCumulative, indexCumulative)``
  (sums modulo 2^112), an 8-slot observation ring, the funding state ``(cumulativeFunding, rate,
  target, observationHead)``, the last index price, the last dislocation (the last block that found an
  index gap: the vAMM inside its band around the last index, outside it around the new one), the
  funding parameters, and the mock oracle
  ``(answer in feed units, updatedAt)``.
- positions: ``(marketId, owner, subaccount) -> Position(size, openNotional, lastCumulativeFunding,
  auctioned)``.
- the liquidity pool's balance, the insurance fund, the shortfall estimates, and the token balance
  the Vault holds; the engine's auctions; the pool's shares and requests; the controller's clocks
  and cost books.
Time is explicit: every action and every time-dependent view takes ``timestamp`` (the
``block.timestamp`` the chain would use).

Rounding (every choice as in contracts/libraries/WadMath.sol; each helper says its direction)
- vAMM, x * y = k: buy b base pays ``ceil(y*b/(x-b))``; sell b base receives ``floor(y*b/(x+b))``;
  spot price ``floor(y*1e18/x)``.
- taker fee ``ceil(|quote| * takerFee / 1e18)``; insurance part ``floor(fee * share / 1e18)``; the pool
  gets the rest.
- position accounting (VAmmMath.applyTrade): increase adds the whole cost to openNotional; a reduce
  removes ``ceil(openNotional*|base|/|size|)`` (toward +inf) of basis; a flip realizes
  ``floor(quote*|size|/|base|) - openNotional`` and opens the rest.
- funding index: ``cf += floor(area * lastIndex / (3600 * 1e18))`` where ``area`` is the integral of the
  applied rate (vperp.funding.evolve, an exact mirror of FundingMath); a position owes
  ``ceil(size * (cf_now - cf_last) / 1e18)`` (rounded up: in the pool's favour for longs and shorts).
- margin: unrealized PnL ``floor(size*index/1e18) - openNotional``; notional
  ``ceil(|size|*index/1e18)``; requirements ``ceil(notional*ratio/1e18)`` summed per market.
- TWAP premium ``trunc((mark - index) * 1e18 / index)`` (Solidity ``/`` truncates toward zero), target
  ``clamp(trunc(premium / periodHours) + baseline, maxFundingRate)``.
- collateral in token units is scaled to WAD exactly (``amount * 10^(18-decimals)``).
- vAMM exit value of a net position n: a long ``floor(y*n/(x+n))``, a short ``-ceil(y*|n|/(x-|n|))``.
- liquidation room ``value - ceil(auctionedNotional * maxDiscount / 1e18)``; backstop edge reserve
  ``isqrt(floor(x*y/edge) * 1e18)`` less ``1e-12`` of itself (selling) or plus ``1e-12`` and 2 wei (buying).

Reverts
Every action is atomic like a transaction: a failure raises ``ModelRevert(name, *args)`` with the
Solidity custom error's name and arguments, and leaves the model unchanged (including the TWAP /
funding update that the failed trade had already made, which the EVM also rolls back). Checks run
in the contracts' order, so the first failing check names the error.

Where the docs (docs/specification.md and the documents it links) leave a detail to the
implementation, the model follows the Solidity and says so (TWAP sampling per block, the observation ring
and its window/4 sampling, the order of checks). Where they fix a rule, the model follows the documented
rule even if the Solidity differs: a position owes ``ceil(size * dCf / 1e18)`` for every sign of ``size``
and ``dCf`` (what a user owes rounds up; docs/design.md#units-and-rounding).

Margin: a position's free part (size - auctioned) owes initial and maintenance margin; its auctioned
part keeps backing enough for its worst fill (``ceil(ceil(|auctioned| x index) x max(mmr,
maxDiscount))``, maxDiscount the market's auction parameter), counted in ``initial`` (so withdrawals,
margin transfers, new risk and taker fills need it) but not in ``maintenance`` (what kick tests). The
margin summary also reports the auctioned notional and that backing. A trade that reduces (opposite
sign, |base| <= |size|, decided before the swap) skips the price band; an account may hold positions in
at most 16 markets (TooManyOpenMarkets, after the isolated-subaccount check).

Liquidation (LiquidationEngine + the ClearingHouse's auction hooks + the Vault's charges): kick (slice
sizing; keeper reward, then penalty, each capped at the room the account keeps after the worst fill of
everything in auction, room = value - ceil((auctionedNotional + slice) x maxDiscount); when the account
pays its keeper nothing, the insurance fund pays a bounty of ceil(chip x slice notional), at most
maxKeeperReward and the fund, to the keeper's cross account (every KeeperBounty logged in
``keeper_bounties``); the live-notional cap; the shortfall estimate recorded), take (discount curves,
limit price, partial fills without dust, the taker's initial margin; then the bad debt of an emptied
account resolved, or the account's shortfall estimate refreshed while it has one, skipped when a feed of
another market it holds is stale), redo (an account that has recovered, value >= targetHealth x (free
maintenance + auctioned backing), has its auction cancelled unpaid; otherwise the tip, paid only while
the account is below free maintenance + auctioned backing, is capped at the room; with a stale feed
elsewhere the redo goes ahead unpaid), cancel (anyone, once the account has recovered as in redo),
backstop (a recovered account's auction is cancelled as in redo, returning 0; otherwise it closes on the
vAMM only the largest part that leaves the price no worse than the auction's own price at its full
discount and inside the band, from the curve's edge reserve (integer square root), leaving no dust;
BackstopBlocked when nothing fits; the rest stays in the auction) and the loss waterfall (insurance
fund, then pool; resolving clears the account's estimate). The Vault keeps the estimates per account and
their sum (pendingBadDebt); collateral credited to an account (deposit, depositFor, transferMargin into
it) lowers its estimate one for one, floored at 0; every ShortfallRecorded event is logged in
``shortfall_log``. Positions carry their auctioned part; every market keeps the aggregates (sum of open
notionals, sum of funding bases) that `traders_pnl` and `traders_exit_pnl` read, as the ClearingHouse
does.

Pool (LiquidityPool, ERC-4626 with 10^6 virtual shares): deposit, mint, requestWithdraw, redeem,
withdraw with cooldown, window, reserve and cash checks. NAV = pool balance - the traders' PnL at vAMM
exit (VAmmMath.exitValue of each market's net position) net of funding owed - the bad-debt estimate
beyond the insurance fund; redemptions and withdrawals (and convertTo*) are priced on it (totalAssets);
deposits and mints on depositAssets, the NAV before that set-aside (pool balance - traders' exit PnL),
so a depositor cannot buy shares cheap ahead of the set-aside's release. The reserve is reserveFactor x
sum |net OI| x vAMM price; maxDeposit is 0 when the ledger's room would buy no share. LP flows are
suspended (LpFlowsSuspended; every max* view 0) while markets with open interest and an invalid or stale
feed, a vAMM outside its band around the index, an index more than the band away from the last one the
market accrued at, or a block in the last TWAP window that found an index gap (``lastDislocation``),
carry more than 0.1 % of the pool's cash in notional. The ERC-4626 views never raise; max* are exactly
what the actions accept.

AmmController: `sync_depth` (depth follows the pool's NAV, at most once per depthInterval: shrinking
by at most maxDepthChange and never below twice a net short; deepening by at most min(maxDepthChange,
takerFee / maxSpread) and within min(maxDepthCost x NAV, takerFee x maxSpread x quote reserve, |net| x price
x takerFee / 2) of exit value moved to the net position; that change charged back to the positions through
the funding index; the cost to the pool, never positive, booked in depthCost) and `repeg` (the peg follows the index,
by at most maxRepegStep and at most what keeps the change of the net position's exit value within
maxRepegCost x NAV; that exact change is the cost booked in repegCost, so NAV moves by -cost), with the
controller's checks in order and ClearingHouse.setReserves's accrual first.

Governance modelled: `set_funding_params`, `set_skew_funding` and `set_market_params` (all accrue at the last recorded
index, without reading the feed; a market's oracle stays the one it was listed with). Not modelled:
other governance (listings' bounds, liquidation/auction/pool/AMM parameter setters), operators
(openPositionFor, withdrawFor, transferMarginFor) and pool share transfers; the pause level is plain
state (`pause_level`) that the checks read.
"""
from __future__ import annotations

import copy
import functools
import math
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Hashable

from .config import DeployConfig, default_config, max_amplification, wad
from .funding import clamp, evolve, exp_neg_wad, tdiv
from .units import (DEFAULT_FUNDING_PERIOD_HOURS, DEFAULT_MAX_FUNDING_RATE, DEFAULT_MAX_RATE_VELOCITY,  # noqa: F401
                    DEFAULT_SKEW_FUNDING_PPM, DEFAULT_SMOOTHING_TAU, FUNDING_WINDOW_HOURS, HOUR, INT96_MAX, MAX_PEG_TOLERANCE_BPS,
                    MAX_SKEW_FUNDING_PPM, WAD)

U112 = 2**112 - 1
INT64_MAX = 2**63 - 1
INT112_MAX = 2**111 - 1
INT128_MAX = 2**127 - 1
UINT128_MAX = 2**128 - 1
UINT256_MAX = 2**256 - 1

OBSERVATIONS = 8
OBSERVATIONS_PER_WINDOW = 4
FUNDING_OBSERVATIONS = 25  # hourly observation slots per market (FUNDING_WINDOW_HOURS + 1)

PAUSE_NO_NEW_RISK = 1
PAUSE_NO_TRADING = 2
PAUSE_WITHDRAW_ONLY = 3

MAX_OPEN_MARKETS = 16  # Vault.MAX_OPEN_MARKETS
MAX_BUILDER_FEE_RATE = 10**15  # Vault.MAX_BUILDER_FEE_RATE: 10 bps of |quote|
ZERO_ADDRESS = "0x" + "00" * 20
SUSPENSION_TOLERANCE = 10**15  # LiquidityPool.SUSPENSION_TOLERANCE: 0.1 % of the pool's cash

# ClearingHouse listing defaults for funding (docs/funding.md): DEFAULT_* from vperp.units.


class ModelRevert(Exception):
    """The model's equivalent of a Solidity revert: ``name`` is the custom error's name."""

    def __init__(self, name: str, *args: Any):
        super().__init__(name, *args)
        self.name = name
        self.error_args = args

    def __str__(self) -> str:
        return f"{self.name}({', '.join(map(str, self.error_args))})"


# ---------------------------------------------------------------------------- WadMath mirror


def mul_wad_down(x: int, y: int) -> int:
    return x * y // WAD


def mul_wad_up(x: int, y: int) -> int:
    return -((-x * y) // WAD)


def div_wad_up(x: int, y: int) -> int:
    return -((-x * WAD) // y)


def div_wad_down(x: int, y: int) -> int:
    return x * WAD // y


def mul_div_up(x: int, y: int, d: int) -> int:
    return -((-x * y) // d)


def s_mul_div_down(x: int, y: int, d: int) -> int:
    """floor(x * y / d) (toward -inf), y, d >= 0: Python's // is already a floor."""
    return x * y // d


def s_mul_div_up(x: int, y: int, d: int) -> int:
    """ceil(x * y / d) (toward +inf)."""
    return -((-x * y) // d)


def s_mul_wad_down(x: int, y: int) -> int:
    """floor(x * y / WAD) for signed x and y (the contract's sign dispatch is a plain floor)."""
    return x * y // WAD


def s_mul_wad_up(x: int, y: int) -> int:
    """ceil(x * y / WAD) for signed x and y."""
    return -((-x * y) // WAD)


def vamm_price(x: int, y: int) -> int:
    return y * WAD // x


def vamm_swap(x: int, y: int, base: int) -> tuple[int, int, int]:
    """VAmmMath.swap: (signed quote flow to the trader, x after, y after)."""
    if base > 0:
        x1 = x - base
        quote_in = mul_div_up(y, base, x1)
        return -quote_in, x1, y + quote_in
    b = -base
    x1 = x + b
    quote_out = y * b // x1
    return quote_out, x1, y - quote_out


def exit_value(x: int, y: int, net: int) -> int:
    """VAmmMath.exitValue: what closing a net position of `net` base on the curve (x, y) pays the
    traders, rounded as `swap` rounds (a net long's sale rounds down, a net short's buy-back up); 0 when
    a net short is at least the base reserve (unreachable; the choice that cannot inflate NAV)."""
    if net == 0:
        return 0
    if net > 0:
        return y * net // (x + net)
    n = -net
    if n >= x:
        return 0
    return -mul_div_up(y, n, x - n)


def _checked(v: int) -> int:
    """A uint256 product under checked arithmetic: Panic(0x11) past 2^256 - 1."""
    if v > UINT256_MAX:
        raise ModelRevert("Panic", 0x11)
    return v


def edge_reserve(x: int, y: int, price: int) -> int:
    """LiquidationEngine._edgeReserve: floor(sqrt(x y / price)) in WAD, the base reserve at which the
    curve through (x, y) has `price`: sqrt(q x 1e18) when that fits 256 bits, else sqrt(q) x 1e9."""
    q = x * y // price  # Math.mulDiv: full precision, floor
    return math.isqrt(q * WAD) if q <= UINT256_MAX // WAD else math.isqrt(q) * 10**9


def apply_trade(size: int, open_notional: int, base: int, quote: int) -> tuple[int, int, int]:
    """VAmmMath.applyTrade: (new size, new open notional, realized PnL)."""
    new_size = size + base
    if size == 0 or (size > 0) == (base > 0):
        return new_size, open_notional - quote, 0
    abs_size, abs_base = abs(size), abs(base)
    if abs_base <= abs_size:
        removed = s_mul_div_up(open_notional, abs_base, abs_size)
        return new_size, open_notional - removed, quote - removed
    closing = s_mul_div_down(quote, abs_size, abs_base)
    return new_size, -(quote - closing), closing - open_notional


def _int128(v: int) -> int:
    if not -(2**127) <= v <= INT128_MAX:
        raise ModelRevert("SafeCastOverflowedIntDowncast", 128, v)
    return v


def _uint128(v: int) -> int:
    if not 0 <= v <= UINT128_MAX:
        raise ModelRevert("SafeCastOverflowedUintDowncast", 128, v)
    return v


def _wrap_i32(v: int) -> int:
    """v modulo 2^32 as an int32 (Solidity's truncating int256 -> int32 conversion)."""
    return (v + 2**31) % 2**32 - 2**31


def _int_n(v: int, bits: int) -> int:
    if not -(2 ** (bits - 1)) <= v <= 2 ** (bits - 1) - 1:
        raise ModelRevert("SafeCastOverflowedIntDowncast", bits, v)
    return v


# ---------------------------------------------------------------------------- state


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
    max_funding_rate: int = DEFAULT_MAX_FUNDING_RATE
    max_rate_velocity: int = DEFAULT_MAX_RATE_VELOCITY
    baseline_rate: int = 0
    smoothing_tau: int = DEFAULT_SMOOTHING_TAU
    funding_period_hours: int = DEFAULT_FUNDING_PERIOD_HOURS

    def as_tuple(self) -> tuple:
        return (self.max_funding_rate, self.max_rate_velocity, self.baseline_rate, self.smoothing_tau,
                self.funding_period_hours)


def peg_holds(peg: int, index: int, bps: int, buy: bool) -> bool:
    """ClearingHouse._checkPeg's condition: with a tolerance of `bps` (0: off), whether a trade in this direction is
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


CURVE_LINEAR, CURVE_EXPONENTIAL, CURVE_STAIRSTEP = 0, 1, 2
EXP_SPEED = 4
POOL_OFFSET = 10**6  # ERC-4626 virtual shares: 10 ** _decimalsOffset()


@dataclass
class LiquidationParams:
    """ILiquidationEngine.LiquidationParams (the engine's constructor defaults)."""

    target_health: int = 125 * 10**16
    chip: int = 10**15
    penalty: int = 10**16
    max_redos: int = 3
    tip: int = 5 * WAD
    max_keeper_reward: int = 1_000 * WAD
    max_auction_notional: int = 10_000_000 * WAD


@dataclass
class AuctionParams:
    """ILiquidationEngine.AuctionParams (defaultAuctionParams until a market has its own)."""

    curve: int = CURVE_EXPONENTIAL
    duration: int = 1800
    step: int = 60
    max_discount: int = 2 * 10**16
    reset_drop: int = 5 * 10**16


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


class Model:
    """The reference model. Build it with :meth:`from_config`."""

    def __init__(self, token_decimals: int = 6):
        if token_decimals > 18:
            raise ModelRevert("UnsupportedDecimals", token_decimals)
        self.token_scale = 10 ** (18 - token_decimals)
        self.accounts: dict[tuple[Hashable, int], Account] = {}
        self.positions: dict[tuple[int, Hashable, int], Position] = {}
        self.markets: dict[int, Market] = {}
        self.pool_balance_wad = 0
        self.insurance_fund_wad = 0
        self.token_balance = 0  # token units held by the Vault
        self.pause_level = 0
        # Vault: builder fees. Approvals (owner, builder) -> max rate [wad], accrued balances per builder
        # [wad], and every BuilderFeePaid (owner, sub, builder, amountWad) in order.
        self.builder_approvals: dict[tuple[Hashable, Hashable], int] = {}
        self.builder_fees_wad: dict[Hashable, int] = {}
        self.builder_fee_log: list[tuple[Hashable, int, Hashable, int]] = []
        # LiquidationEngine
        self.liquidation_params = LiquidationParams()
        self.auction_params: dict[int, AuctionParams] = {}
        self.auctions: dict[int, Auction] = {}
        self.auction_count = 0
        self.live_notional = 0
        self.bad_debt: list[tuple[Hashable, int, int, int, int]] = []  # (owner, sub, debt, fromInsurance, fromPool)
        self.keeper_bounties: list[tuple[Hashable, int]] = []  # (keeper, amount): every KeeperBounty, in order
        # Vault: the liquidation engine's bad-debt estimates, per account and summed, and every
        # ShortfallRecorded event (owner, sub, shortfall, total) in order.
        self.shortfalls: dict[tuple[Hashable, int], int] = {}
        self.pending_bad_debt_wad = 0
        self.shortfall_log: list[tuple[Hashable, int, int, int]] = []
        # LiquidityPool (ERC-4626 shares; its assets are the Vault's pool balance net of the traders' side)
        self.pool_supply = 0
        self.pool_shares: dict[Hashable, int] = {}
        self.pool_requests: dict[Hashable, WithdrawRequest] = {}
        self.pool_cooldown = 86_400
        self.pool_window = 2 * 86_400
        self.pool_reserve_factor = 2 * 10**17
        # AmmController
        self.amm_params: dict[int, AmmParams] = {}
        self.last_repeg: dict[int, int] = {}
        self.concentration: dict[int, tuple[int, int]] = {}  # market -> (range, amplification), AmmController
        self.repeg_cost: dict[int, int] = {}
        self.last_depth_sync: dict[int, int] = {}
        self.depth_cost: dict[int, int] = {}
        self.last_depth_charge: dict[int, tuple[int, int]] = {}  # (exitChange, chargePerBase): DepthCharged

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_config(
        cls,
        config: DeployConfig | None = None,
        timestamp: int = 0,
        *,
        listed_at: dict[int, int] | None = None,
        oracle_updated_at: dict[int, int] | None = None,
        oracles: dict[int, Any] | None = None,
        deployer: Hashable = "deployer",
        skew_funding_at: dict[int, int] | None = None,
    ) -> "Model":
        """The state `vperp.deploy(deployer, config)` leaves: markets listed in order (ids from 1) at
        `listed_at[id]` (default `timestamp`), mock feeds stamped at `oracle_updated_at[id]`, each
        market's auction parameters set, the pool seeded by `deployer`'s LP deposit and the insurance
        seed granted. `oracles[id]` names each feed (its address on chain); a non-default skew term is set at
        `skew_funding_at[id]` (default the listing time: the setter accrues, so the time matters to the TWAPs)."""
        config = config or default_config()
        model = cls(config.collateral_decimals)
        for i, mc in enumerate(config.markets, start=1):
            t_list = (listed_at or {}).get(i, timestamp)
            t_oracle = (oracle_updated_at or {}).get(i, t_list)
            answer = int(Decimal(str(mc.price)) * 10**mc.oracle_decimals)
            model.list_market(
                symbol=mc.symbol,
                oracle=(oracles or {}).get(i, mc.symbol),
                oracle_decimals=mc.oracle_decimals,
                answer=answer,
                answer_updated_at=t_oracle,
                heartbeat=mc.heartbeat,
                twap_window=mc.twap_window,
                imr=wad(mc.imr),
                mmr=wad(mc.mmr),
                taker_fee=wad(mc.taker_fee),
                max_spread=wad(mc.max_spread),
                max_oi_pool_ratio=wad(mc.max_oi_pool_ratio),
                max_open_interest=wad(mc.max_open_interest),
                min_position_size=wad(mc.min_position_size),
                insurance_fee_share=wad(mc.insurance_fee_share),
                base_reserve=wad(mc.base_reserve),
                timestamp=t_list,
            )
            model.auction_params[i] = AuctionParams(*mc.to_auction_params())
            model.amm_params[i] = AmmParams(*mc.to_amm_params())
            if mc.to_concentration() is not None:
                model.set_concentration(i, *mc.to_concentration())
            if mc.skew_funding_ppm() != DEFAULT_SKEW_FUNDING_PPM:  # deploy() sets it after listing
                model.set_skew_funding(i, mc.skew_funding_ppm(), (skew_funding_at or {}).get(i, t_list))
            if mc.peg_tolerance_bps:  # deploy() sets it after listing (nothing accrues)
                model.set_peg_tolerance(i, mc.peg_tolerance_bps)
        if config.pool_seed:
            # deploy() seeds the pool with an LP deposit by the deployer, who holds the shares.
            seed = int(Decimal(str(config.pool_seed)) * 10**config.collateral_decimals)
            model.pool_deposit(deployer, seed, deployer, timestamp)
        if config.insurance_seed:
            model.fund_insurance(int(Decimal(str(config.insurance_seed)) * 10**config.collateral_decimals))
        return model

    def list_market(self, *, symbol, oracle, oracle_decimals, answer, answer_updated_at, heartbeat, twap_window,
                    imr, mmr, taker_fee, max_spread, max_oi_pool_ratio, max_open_interest, min_position_size,
                    insurance_fee_share, base_reserve, timestamp) -> int:
        """ClearingHouse.listMarket (parameter bounds are not re-checked here)."""
        market_id = len(self.markets) + 1
        start = Observation(timestamp, 0, 0)
        m = Market(
            id=market_id, symbol=symbol, oracle=oracle, oracle_decimals=oracle_decimals, heartbeat=heartbeat,
            twap_window=twap_window, imr=imr, mmr=mmr, taker_fee=taker_fee, max_spread=max_spread,
            max_oi_pool_ratio=max_oi_pool_ratio, max_open_interest=max_open_interest,
            min_position_size=min_position_size, insurance_fee_share=insurance_fee_share,
            x=base_reserve, y=0, answer=answer, answer_updated_at=answer_updated_at, last_index_price=0,
            accumulator=copy.copy(start),
            # Every ring slot starts as a true observation at listing time (as the contract does).
            observations=[copy.copy(start) for _ in range(OBSERVATIONS)],
            hourly=[copy.copy(start) for _ in range(FUNDING_OBSERVATIONS)],
            hourly_skew=[0] * FUNDING_OBSERVATIONS,
            skew_funding_ppm=DEFAULT_SKEW_FUNDING_PPM,
        )
        index = self._index(m, timestamp)
        m.y = mul_wad_down(base_reserve, index)
        m.last_index_price = index
        self.markets[market_id] = m
        return market_id

    # ------------------------------------------------------------------ helpers

    def _account(self, owner, sub: int) -> Account:
        return self.accounts.setdefault((owner, sub), Account())

    def _position(self, market_id: int, owner, sub: int) -> Position:
        return self.positions.get((market_id, owner, sub)) or Position()

    def _market(self, market_id: int) -> Market:
        if market_id not in self.markets:
            raise ModelRevert("UnknownMarket", market_id)
        return self.markets[market_id]

    def _index(self, m: Market, timestamp: int) -> int:
        """OracleLib.readWad: positive answer, not older than the heartbeat, scaled to WAD."""
        if m.answer <= 0:
            raise ModelRevert("InvalidOraclePrice", m.oracle, m.answer)
        if m.answer_updated_at + m.heartbeat < timestamp:
            raise ModelRevert("StaleOracle", m.oracle, m.answer_updated_at, m.heartbeat)
        return m.answer * m.oracle_scale

    def _to_wad(self, amount: int) -> int:
        if amount == 0:
            raise ModelRevert("ZeroAmount")
        if amount > INT128_MAX // self.token_scale:
            raise ModelRevert("AmountTooLarge", amount)
        return amount * self.token_scale

    def _check_not_paused(self, blocking_level: int) -> None:
        if self.pause_level >= blocking_level:
            raise ModelRevert("Paused", self.pause_level)

    @staticmethod
    def _add_checked(balance: int, amount_wad: int, amount: int) -> int:
        """Vault._addChecked: `balance + amountWad` as int128, or AmountTooLarge(amount)."""
        total = balance + amount_wad
        if total > INT128_MAX:
            raise ModelRevert("AmountTooLarge", amount)
        return total

    @staticmethod
    def _sub_int128(balance: int, amount_wad: int) -> int:
        """An int128 slot debited under checked arithmetic: Panic(0x11) below int128.min."""
        total = balance - amount_wad
        if total < -(2**127):
            raise ModelRevert("Panic", 0x11)
        return total

    @staticmethod
    def _is_zero_address(a) -> bool:
        return a is None or str(a).lower() == ZERO_ADDRESS

    def _credit_shortfall(self, owner, sub: int, amount_wad: int) -> None:
        """Vault._creditShortfall: collateral credited to an account in liquidation pays its expected bad
        debt one for one (floor 0), through recordShortfall's path (a ShortfallRecorded event); nothing
        happens while the estimate is 0."""
        shortfall = self.shortfall_of(owner, sub)
        if shortfall != 0:
            self._set_shortfall(owner, sub, shortfall - amount_wad if shortfall > amount_wad else 0)

    # ------------------------------------------------------------------ oracle (mock feed)

    @_atomic
    def set_answer(self, market_id: int, answer: int, timestamp: int) -> None:
        """MockAggregator.updateAnswer(answer) in a block at `timestamp`."""
        m = self.markets[market_id]
        m.answer = answer
        m.answer_updated_at = timestamp

    def set_index(self, market_id: int, price_wad: int, timestamp: int) -> None:
        """Move the index to `price_wad` (must be representable in the feed's decimals)."""
        m = self.markets[market_id]
        answer, rest = divmod(price_wad, m.oracle_scale)
        if rest:
            raise ValueError(f"{price_wad} not representable with {m.oracle_decimals} feed decimals")
        self.set_answer(market_id, answer, timestamp)

    # ------------------------------------------------------------------ Vault actions

    @_atomic
    def fund_pool(self, amount: int) -> None:
        """Vault.fundPool (the liquidity pool's deposits and mints)."""
        amount_wad = self._to_wad(amount)
        self._check_not_paused(PAUSE_WITHDRAW_ONLY)
        self.pool_balance_wad = self._add_checked(self.pool_balance_wad, amount_wad, amount)
        self.token_balance += amount

    @_atomic
    def fund_insurance(self, amount: int) -> None:
        amount_wad = self._to_wad(amount)
        self._check_not_paused(PAUSE_WITHDRAW_ONLY)
        self.insurance_fund_wad = self._add_checked(self.insurance_fund_wad, amount_wad, amount)
        self.token_balance += amount

    @_atomic
    def deposit(self, owner, sub: int, amount: int, timestamp: int | None = None) -> int:
        """Vault.deposit (token units) to (owner, sub); returns the WAD credited. In order: the collateral
        is credited (AmountTooLarge past int128), the account's shortfall estimate lowered by the same
        WAD (floor 0; a ShortfallRecorded event when it was nonzero), the Deposit event, the token pull."""
        amount_wad = self._to_wad(amount)
        self._check_not_paused(PAUSE_WITHDRAW_ONLY)
        acct = self._account(owner, sub)
        acct.collateral = self._add_checked(acct.collateral, amount_wad, amount)
        self._credit_shortfall(owner, sub, amount_wad)
        self.token_balance += amount
        return amount_wad

    @_atomic
    def deposit_for(self, owner, sub: int, amount: int, timestamp: int | None = None) -> int:
        """Vault.depositFor: as `deposit`, to `owner`'s account (ZeroAddress for the zero address first)."""
        if self._is_zero_address(owner):
            raise ModelRevert("ZeroAddress")
        return self.deposit(owner, sub, amount, timestamp)

    @_atomic
    def withdraw(self, owner, sub: int, amount: int, timestamp: int) -> int:
        """Vault.withdraw (token units) at `timestamp`; returns the WAD debited. `amount = 2**256 - 1`
        withdraws everything free (Vault._withdrawableUnits): floor(min(free, collateral) / token scale)
        units, InsufficientFreeCollateral when that minimum is negative, ZeroAmount when below one unit."""
        if amount == UINT256_MAX:
            amount = self.withdrawable_units(owner, sub, timestamp)
        amount_wad = self._to_wad(amount)
        acct = self._account(owner, sub)
        acct.collateral = self._sub_int128(acct.collateral, amount_wad)
        self._check_withdrawable(owner, sub, acct, amount_wad, timestamp)
        self.token_balance -= amount
        return amount_wad

    @_atomic
    def approve_builder_fee(self, owner, builder, max_fee_rate: int) -> None:
        """Vault.approveBuilderFee by `owner`: ZeroAddress, then ParameterOutOfBounds past 10 bps."""
        if self._is_zero_address(builder):
            raise ModelRevert("ZeroAddress")
        if max_fee_rate > MAX_BUILDER_FEE_RATE:
            raise ModelRevert("ParameterOutOfBounds", "maxBuilderFeeRate", max_fee_rate)
        self.builder_approvals[(owner, builder)] = max_fee_rate

    def builder_fee_approval(self, owner, builder) -> int:
        return self.builder_approvals.get((owner, builder), 0)

    def builder_fees(self, builder) -> int:
        """Vault.builderFees: accrued, unclaimed [wad]."""
        return self.builder_fees_wad.get(builder, 0)

    @_atomic
    def claim_builder_fees(self, builder, to) -> tuple[int, int]:
        """Vault.claimBuilderFees by `builder`: (token units paid, WAD debited); the WAD rest stays. Open at
        every pause level."""
        if self._is_zero_address(to):
            raise ModelRevert("ZeroAddress")
        balance = self.builder_fees(builder)
        amount = balance // self.token_scale
        if amount == 0:
            raise ModelRevert("NoBuilderFees", builder, balance)
        self.builder_fees_wad[builder] = balance - amount * self.token_scale
        self.token_balance -= amount
        return amount, amount * self.token_scale

    def _charge_builder_fee(self, owner, sub: int, builder, fee_rate: int, amount_wad: int, timestamp: int) -> Account:
        """Vault.chargeBuilderFee (inside a trade: approval, collateral >= 0 after the fee), then the
        ClearingHouse's check on its margin summary: value after the fee >= maintenance (free and auctioned
        parts) when the account holds positions (an increase is checked at initial after this, in `_trade`)."""
        approved = self.builder_fee_approval(owner, builder)
        if fee_rate > approved:
            raise ModelRevert("BuilderFeeNotApproved", owner, builder, fee_rate, approved)
        acct = self._account(owner, sub)
        coll = acct.collateral
        if coll - amount_wad < 0:
            raise ModelRevert("InsufficientCollateral", owner, sub, coll, amount_wad)
        acct.collateral = coll - amount_wad
        if acct.open_markets:
            s = self._margin_summary(owner, sub, acct.open_markets, timestamp)
            excess = acct.collateral + s.unrealized_pnl - s.pending_funding - (s.maintenance + s.auctioned_maintenance)
            if excess < 0:
                raise ModelRevert("BuilderFeeBelowMaintenance", owner, sub, excess)
        self.builder_fees_wad[builder] = self.builder_fees(builder) + amount_wad
        self.builder_fee_log.append((owner, sub, builder, amount_wad))
        return acct

    @_atomic
    def transfer_margin(self, owner, from_sub: int, to_sub: int, amount_wad: int, timestamp: int) -> int:
        """Vault.transferMargin (WAD) between two sub-accounts of `owner`; returns the WAD moved. Checks:
        ZeroAmount, AmountTooLarge (past int128), SameSubaccount, Paused; the source is debited and
        checked as a withdrawal; the destination credited (AmountTooLarge past int128) and its shortfall
        estimate lowered by the same WAD (floor 0; a ShortfallRecorded event when it was nonzero); then
        MarginTransferred."""
        if amount_wad == 0:
            raise ModelRevert("ZeroAmount")
        if amount_wad > INT128_MAX:
            raise ModelRevert("AmountTooLarge", amount_wad)
        if from_sub == to_sub:
            raise ModelRevert("SameSubaccount", from_sub)
        self._check_not_paused(PAUSE_WITHDRAW_ONLY)
        src = self._account(owner, from_sub)
        src.collateral = self._sub_int128(src.collateral, amount_wad)
        self._check_withdrawable(owner, from_sub, src, amount_wad, timestamp)
        dst = self._account(owner, to_sub)
        dst.collateral = self._add_checked(dst.collateral, amount_wad, amount_wad)
        self._credit_shortfall(owner, to_sub, amount_wad)
        return amount_wad

    def withdrawable_units(self, owner, sub: int, timestamp: int) -> int:
        """Vault._withdrawableUnits: whole token units of min(free, collateral); InsufficientFreeCollateral
        (with that minimum) when it is negative."""
        acct = self.accounts.get((owner, sub)) or Account()
        available = acct.collateral
        if acct.open_markets != 0:
            available = min(available, self._health(owner, sub, timestamp)[1])
        if available < 0:
            raise ModelRevert("InsufficientFreeCollateral", owner, sub, available)
        return available // self.token_scale

    def _check_withdrawable(self, owner, sub, acct: Account, amount_wad: int, timestamp: int) -> None:
        coll = acct.collateral
        if coll < 0:
            raise ModelRevert("InsufficientCollateral", owner, sub, coll + amount_wad, amount_wad)
        if acct.open_markets != 0:
            _, free, _, _ = self._health(owner, sub, timestamp)
            if free < 0:
                raise ModelRevert("InsufficientFreeCollateral", owner, sub, free)

    def _settle_trade(self, owner, sub: int, market_id: int, holds_position: bool, collateral_delta: int,
                      pool_delta: int, insurance_delta: int) -> Account:
        """Vault.settleTrade."""
        if collateral_delta + pool_delta + insurance_delta != 0:
            raise ModelRevert("UnbalancedSettlement", collateral_delta, pool_delta, insurance_delta)
        acct = self._account(owner, sub)
        bit = 1 << (market_id - 1)
        markets = acct.open_markets
        if holds_position:
            others = markets & ~bit
            if sub != 0 and others != 0:
                lowest = (others & -others).bit_length()
                raise ModelRevert("IsolatedSubaccountInUse", owner, sub, lowest, market_id)
            if markets & bit == 0 and bin(markets).count("1") >= MAX_OPEN_MARKETS:
                raise ModelRevert("TooManyOpenMarkets", owner, sub, MAX_OPEN_MARKETS)
            markets |= bit
        else:
            markets &= ~bit
        acct.collateral = _int128(acct.collateral + collateral_delta)
        acct.open_markets = markets
        self.pool_balance_wad = _int128(self.pool_balance_wad + pool_delta)
        if insurance_delta:
            self.insurance_fund_wad = _uint128(self.insurance_fund_wad + insurance_delta)
        return acct

    # ------------------------------------------------------------------ ClearingHouse actions

    @_atomic
    def poke_funding(self, market_id: int, timestamp: int) -> None:
        m = self._market(market_id)
        self._accrue(m, self._index(m, timestamp), timestamp)

    @_atomic
    def open_position(self, owner, sub: int, market_id: int, base: int, quote_limit: int, timestamp: int,
                      deadline: int, builder=None, builder_fee_rate: int = 0) -> TradeResult:
        """ClearingHouse.openPosition, or openPositionWithBuilder when `builder` is given (the fee is in
        `TradeResult.builder_fee`)."""
        if builder is not None and builder_fee_rate >= 2**96:  # packed with the builder in one word
            raise ModelRevert("ParameterOutOfBounds", "builderFeeRate", builder_fee_rate)
        return self._trade(owner, sub, market_id, base, quote_limit, timestamp, deadline, builder, builder_fee_rate)

    @_atomic
    def close_position(self, owner, sub: int, market_id: int, quote_limit: int, timestamp: int,
                       deadline: int) -> TradeResult:
        p = self._position(market_id, owner, sub)
        size = p.size - p.auctioned  # what is in an auction is the auction's to close
        if size == 0:
            raise ModelRevert("NoPosition", owner, sub, market_id)
        return self._trade(owner, sub, market_id, -size, quote_limit, timestamp, deadline)

    @_atomic
    def set_funding_params(self, market_id: int, params: FundingParams, timestamp: int) -> None:
        """ClearingHouse.setFundingParams: accrue at the old parameters and the last recorded index (the
        feed is not read: governance does not depend on it), then bound the parameters, then clamp rate
        and target."""
        m = self._market(market_id)
        self._accrue(m, m.last_index_price, timestamp)
        bounds = (("maxFundingRate", params.max_funding_rate, 0, 10**16),
                  ("maxRateVelocity", params.max_rate_velocity, 10**10, 10**17),
                  ("smoothingTau", params.smoothing_tau, 60, 7 * 86400),
                  ("fundingPeriodHours", params.funding_period_hours, 1, 720),
                  ("baselineRate", abs(params.baseline_rate), 0, params.max_funding_rate))
        for name, value, lo, hi in bounds:
            if not lo <= value <= hi:
                raise ModelRevert("ParameterOutOfBounds", name, value)
        m.funding_params = copy.copy(params)
        m.rate = clamp(m.rate, params.max_funding_rate)
        m.target = clamp(m.target, params.max_funding_rate)

    @_atomic
    def set_market_params(self, market_id: int, timestamp: int, *, heartbeat: int | None = None,
                          twap_window: int | None = None, imr: int | None = None, mmr: int | None = None,
                          taker_fee: int | None = None, max_spread: int | None = None,
                          max_oi_pool_ratio: int | None = None, max_open_interest: int | None = None,
                          min_position_size: int | None = None, insurance_fee_share: int | None = None) -> None:
        """ClearingHouse.setMarketParams (the market keeps its oracle): accrue at the last recorded index
        without reading the feed (so `_accrue`'s dislocation test runs against that index and the old
        band), then the new parameters, each within its hard bound in the contract's order
        (ParameterOutOfBounds). Parameters left None keep their value."""
        m = self._market(market_id)
        self._accrue(m, m.last_index_price, timestamp)
        new = {k: (getattr(m, k) if v is None else v) for k, v in (
            ("heartbeat", heartbeat), ("twap_window", twap_window), ("imr", imr), ("mmr", mmr),
            ("taker_fee", taker_fee), ("max_spread", max_spread), ("max_oi_pool_ratio", max_oi_pool_ratio),
            ("max_open_interest", max_open_interest), ("min_position_size", min_position_size),
            ("insurance_fee_share", insurance_fee_share))}
        bounds = (("heartbeat", new["heartbeat"], 60, 2 * 86400),
                  ("twapWindow", new["twap_window"], 60, 4 * HOUR),
                  ("mmr", new["mmr"], 5 * 10**15, WAD // 2),
                  ("imr", new["imr"], new["mmr"] + 1, WAD),
                  ("takerFee", new["taker_fee"], 0, 10**16),
                  ("maxSpread", new["max_spread"], 5 * 10**15, WAD // 2),
                  ("maxOiPoolRatio", new["max_oi_pool_ratio"], 1, 10 * WAD),
                  ("maxOpenInterest", new["max_open_interest"], 1, INT96_MAX),
                  ("minPositionSize", new["min_position_size"], 1, new["max_open_interest"]),
                  ("insuranceFeeShare", new["insurance_fee_share"], 0, WAD))
        for name, value, lo, hi in bounds:
            if not lo <= value <= hi:
                raise ModelRevert("ParameterOutOfBounds", name, value)
        for k, v in new.items():
            setattr(m, k, v)

    def _trade(self, owner, sub, market_id, base, quote_limit, timestamp, deadline, builder=None,
               builder_fee_rate: int = 0) -> TradeResult:
        """ClearingHouse._trade, check for check in the same order."""
        if timestamp > deadline:
            raise ModelRevert("DeadlinePassed", deadline, timestamp)
        if base == 0:
            raise ModelRevert("ZeroSize")
        m = self._market(market_id)
        index = self._index(m, timestamp)
        self._accrue(m, index, timestamp)

        p = self._position(market_id, owner, sub)
        size = p.size
        cf = m.cumulative_funding
        funding = s_mul_wad_up(size, cf - p.last_cumulative_funding) if size != 0 else 0

        # Reducing: toward zero without crossing it; a reduce or close skips the price band.
        reducing = size != 0 and (size > 0) != (base > 0) and abs(base) <= abs(size)

        x, y = m.x, m.y
        self._check_liquidity(market_id, base, x)
        self._check_peg(market_id, m, index, base)
        price_before = vamm_price(x, y)
        quote, x, y = vamm_swap(x, y, base)
        price_after = vamm_price(x, y)
        if not reducing:
            self._check_price_band(market_id, m.max_spread, index, price_before, price_after)
        m.x, m.y = _uint128(x), _uint128(y)

        if (-quote > quote_limit) if base > 0 else (quote < quote_limit):
            raise ModelRevert("SlippageExceeded", quote, quote_limit)

        new_size, new_on, realized = apply_trade(size, p.open_notional, base, quote)
        if new_size != 0 and abs(new_size) < m.min_position_size:
            raise ModelRevert("BelowMinPositionSize", market_id, new_size, m.min_position_size)
        self._check_auctioned_part(owner, sub, m, new_size, p.auctioned)
        self._move_aggregates(m, p, new_size, new_on, cf)
        self.positions[(market_id, owner, sub)] = Position(_int128(new_size), _int128(new_on), _int128(cf), p.auctioned)

        fee = mul_wad_up(abs(quote), m.taker_fee)
        to_insurance = mul_wad_down(fee, m.insurance_fee_share)
        acct = self._settle_trade(owner, sub, market_id, new_size != 0, realized - funding - fee,
                                  funding - realized + (fee - to_insurance), to_insurance)

        if self.pause_level >= PAUSE_NO_TRADING or (self.pause_level == PAUSE_NO_NEW_RISK and not reducing):
            raise ModelRevert("Paused", self.pause_level)
        self._update_open_interest(market_id, m, size, new_size, index, self.pool_balance_wad)
        builder_fee = 0
        if not self._is_zero_address(builder) and builder_fee_rate != 0:
            builder_fee = mul_wad_up(abs(quote), builder_fee_rate)
            acct = self._charge_builder_fee(owner, sub, builder, builder_fee_rate, builder_fee, timestamp)
        if not reducing:
            self._check_initial_margin(owner, sub, acct, market_id, index, timestamp)
        return TradeResult(base, quote, fee, realized, funding, new_size, new_on, price_after, to_insurance,
                           builder_fee)

    def _check_initial_margin(self, owner, sub, acct: Account, market_id: int, index: int, timestamp: int) -> None:
        s = self._margin_summary(owner, sub, acct.open_markets, timestamp, market_id, index)
        free = min(acct.collateral - s.pending_funding,
                   acct.collateral + s.unrealized_pnl - s.pending_funding) - s.initial
        if free < 0:
            raise ModelRevert("InsufficientMargin", owner, sub, free)

    @staticmethod
    def _check_auctioned_part(owner, sub, m: Market, new_size: int, auctioned: int) -> None:
        """The auctioned-part check written inline in ClearingHouse._trade and ClearingHouseSettlement._auctionSettle
        (the taker's side): a trade or a taker's fill neither cuts into the auctioned part nor leaves the
        free part dust (the auction's last fill leaves exactly the free part)."""
        if auctioned == 0:
            return
        if (new_size < auctioned) if auctioned > 0 else (new_size > auctioned):
            raise ModelRevert("PositionInAuction", owner, sub, m.id, auctioned)
        free_part = new_size - auctioned
        if free_part != 0 and abs(free_part) < m.min_position_size:
            raise ModelRevert("BelowMinPositionSize", m.id, free_part, m.min_position_size)

    @staticmethod
    def _move_aggregates(m: Market, p: Position, new_size: int, new_on: int, cf: int) -> None:
        """ClearingHouseSettlement._moveAggregates: replace the position's share of the market's sums."""
        m.sum_open_notional = _int128(m.sum_open_notional + new_on - p.open_notional)
        m.sum_funding_basis = _int128(m.sum_funding_basis + s_mul_wad_down(new_size, cf)
                                      - s_mul_wad_down(p.size, p.last_cumulative_funding))

    @staticmethod
    def _move_open_interest(m: Market, old_size: int, new_size: int) -> None:
        m.long_open_interest = _uint128(m.long_open_interest + max(new_size, 0) - max(old_size, 0))
        m.short_open_interest = _uint128(m.short_open_interest + max(-new_size, 0) - max(-old_size, 0))

    @staticmethod
    def _check_liquidity(market_id: int, base: int, x: int) -> None:
        if base > 0 and base >= x:
            raise ModelRevert("InsufficientLiquidity", market_id, base, x)

    @classmethod
    def _check_peg(cls, market_id: int, m: Market, index: int, base: int) -> None:
        """ClearingHouse._checkPeg: with a tolerance set, a buy reverts PegStale while the peg (`_peg`, read before the
        swap) is below the index by more than floor(index x bps / 1e4), a sell while it is above by more; reduces
        and closes included."""
        if m.peg_tolerance_bps == 0:
            return
        peg = cls._peg(m.x, m.y, m.long_open_interest - m.short_open_interest)
        if peg_holds(peg, index, m.peg_tolerance_bps, base > 0):
            raise ModelRevert("PegStale", market_id, peg, index)

    @staticmethod
    def _check_price_band(market_id, max_spread, index, before, after) -> None:
        dist_after = abs(after - index)
        if dist_after > mul_wad_down(index, max_spread):
            if dist_after > abs(before - index):
                raise ModelRevert("PriceBandExceeded", market_id, after, index, max_spread)

    def _update_open_interest(self, market_id, m: Market, old_size, new_size, index, pool_balance) -> None:
        old_long, old_short = max(old_size, 0), max(-old_size, 0)
        new_long, new_short = max(new_size, 0), max(-new_size, 0)
        long_oi = m.long_open_interest + new_long - old_long
        short_oi = m.short_open_interest + new_short - old_short
        if new_long > old_long:
            self._check_oi_cap(market_id, m, long_oi, index, pool_balance)
        if new_short > old_short:
            self._check_oi_cap(market_id, m, short_oi, index, pool_balance)
        m.long_open_interest = _uint128(long_oi)
        m.short_open_interest = _uint128(short_oi)

    @staticmethod
    def _check_oi_cap(market_id, m: Market, oi, index, pool_balance) -> None:
        if oi > m.max_open_interest:
            raise ModelRevert("OpenInterestCapExceeded", market_id, oi, m.max_open_interest)
        pool = max(pool_balance, 0)
        notional_cap = mul_wad_down(pool, m.max_oi_pool_ratio)
        if mul_wad_up(oi, index) > notional_cap:
            raise ModelRevert("OpenInterestCapExceeded", market_id, oi, div_wad_down(notional_cap, index))

    # ------------------------------------------------------------------ TWAP and funding internals

    def _accrue(self, m: Market, index: int, timestamp: int) -> None:
        """ClearingHouseStorage._accrue: at most once per block (a no-op at the accumulator's timestamp).

        Mirrors the Solidity, which alone defines these details:
        - the interval since the last update is priced at the vAMM spot *before* this block's first
          trade and at the index *last observed* (lastIndexPrice), then the new index is recorded;
        - a ring observation is written when the block is in a new quarter-window (`timestamp // (window/4)`
          changed), not every window/4 s; an hourly observation is written, and the funding target re-sampled
          from the day-long TWAPs (`_funding_twaps`), when the block is in a new hour (`timestamp // 3600`);
        - the applied rate evolves (closed form) and the funding index accrues only when the rate or
          target is nonzero, at the interval's index (the old lastIndexPrice), rounded down;
        - after recording the index, a block that finds an index gap is a dislocation, lastDislocation =
          timestamp: the index moved more than floor(lastIndex x maxSpread) since the last recorded one, or
          the vAMM spot as the block found it (before its first trade) is further from `index` than
          floor(index x maxSpread) but no further from the last recorded index than floor(lastIndex x
          maxSpread) (the index moved away and the vAMM has not followed; a vAMM pushed out by a reduce at
          a steady index is not a gap). `index` is the live one for trades, pokes, fills, backstops and
          setReserves, the last recorded one for setMarketParams / setFundingParams (never a gap then).
        """
        acc = m.accumulator
        if acc.timestamp == timestamp:
            return
        dt = timestamp - acc.timestamp
        last_index = m.last_index_price
        spot = m.spot
        quarter = m.twap_window // OBSERVATIONS_PER_WINDOW
        new_observation = timestamp // quarter != acc.timestamp // quarter
        new_hour = timestamp // HOUR != acc.timestamp // HOUR
        prev = acc
        acc = Observation(timestamp, (acc.mark_cumulative + spot * dt) & U112,
                          (acc.index_cumulative + last_index * dt) & U112)
        m.accumulator = acc
        if index != last_index:
            m.last_index_price = _uint128(index)
        # A gap, recorded before any trade of the block: the index jumped more than the band since the last
        # accrual, or the vAMM as this block found it was inside its band around the last index and is
        # outside it around the new one.
        last_band = mul_wad_down(last_index, m.max_spread)
        if abs(index - last_index) > last_band or (
                abs(spot - index) > mul_wad_down(index, m.max_spread) and abs(spot - last_index) <= last_band):
            m.last_dislocation = timestamp
        skew = self._skew_bps(m)
        if m.rate == 0 and m.target == 0 and skew == 0 and not new_observation and not new_hour:
            return
        f = m.funding_params
        if m.rate != 0 or m.target != 0:
            rate, area = evolve(m.rate, m.target, dt, f.smoothing_tau, f.max_rate_velocity)
            m.rate = _int_n(rate, 56)
            m.cumulative_funding = _int_n(m.cumulative_funding + self._funding_accrual(area, last_index), 104)
        skew_before = m.skew_cumulative
        m.skew_cumulative = _wrap_i32(skew_before + skew * dt)
        if new_observation:
            m.observation_head = (m.observation_head + 1) % OBSERVATIONS
            m.observations[m.observation_head] = copy.copy(acc)
        if new_hour:
            slot = timestamp // HOUR % FUNDING_OBSERVATIONS
            m.hourly[slot] = copy.copy(acc)
            m.hourly_skew[slot] = m.skew_cumulative
            mark_twap, index_twap, skew_term = self._funding_twaps(m, acc, prev, m.skew_cumulative, skew_before, skew)
            _, target = self._target(f, mark_twap, index_twap, skew_term)
            m.target = _int_n(target, 56)

    @staticmethod
    def _funding_accrual(area: int, index_price: int) -> int:
        """Funding per base for a rate area [wad/h * s], rounded down (toward -inf)."""
        return s_mul_div_down(area, index_price, HOUR * WAD)

    def _cumulative_funding_now(self, m: Market, timestamp: int) -> int:
        cf = m.cumulative_funding
        if m.rate == 0 and m.target == 0:
            return cf
        last = m.accumulator.timestamp
        if timestamp == last:
            return cf
        f = m.funding_params
        _, area = evolve(m.rate, m.target, timestamp - last, f.smoothing_tau, f.max_rate_velocity)
        return cf + self._funding_accrual(area, m.last_index_price)

    @staticmethod
    def _target(f: FundingParams, mark_twap: int, index_twap: int, skew_term: int = 0) -> tuple[int, int]:
        premium = tdiv((mark_twap - index_twap) * WAD, index_twap)
        target = clamp(tdiv(premium, f.funding_period_hours) + f.baseline_rate + skew_term, f.max_funding_rate)
        return premium, target

    @staticmethod
    def _skew_term(m: Market) -> int:
        """ClearingHouseStorage._skewTerm: skewFundingPpm x 1e-6 x (long OI - short OI) / x [wad per hour], one
        division truncated toward zero."""
        if m.skew_funding_ppm == 0:
            return 0
        return tdiv((m.long_open_interest - m.short_open_interest) * WAD * m.skew_funding_ppm, m.x * 10**6)

    @_atomic
    def set_skew_funding(self, market_id: int, rate_ppm: int, timestamp: int) -> None:
        """ClearingHouse.setSkewFunding: accrue at the last recorded index, then bound (0..10,000 ppm)."""
        m = self._market(market_id)
        self._accrue(m, m.last_index_price, timestamp)
        if not 0 <= rate_ppm <= MAX_SKEW_FUNDING_PPM:
            raise ModelRevert("ParameterOutOfBounds", "skewFundingPpm", rate_ppm)
        m.skew_funding_ppm = rate_ppm

    @_atomic
    def set_peg_tolerance(self, market_id: int, bps: int) -> None:
        """ClearingHouse.setPegTolerance: bound (0..500 bps); nothing accrues."""
        m = self._market(market_id)
        if not 0 <= bps <= MAX_PEG_TOLERANCE_BPS:
            raise ModelRevert("ParameterOutOfBounds", "pegToleranceBps", bps)
        m.peg_tolerance_bps = bps

    def peg_tolerance(self, market_id: int) -> int:
        """ClearingHouse.pegTolerance [bps]."""
        return self._market(market_id).peg_tolerance_bps

    def skew_funding(self, market_id: int) -> tuple[int, int]:
        """ClearingHouse.skewFunding: (ratePpm, term now)."""
        m = self._market(market_id)
        return m.skew_funding_ppm, self._skew_term(m)

    @staticmethod
    def _twaps_from(m: Market, current: Observation, head: int) -> tuple[int, int]:
        """TWAPs from the ring anchor to `current`: the newest observation at least one window old,
        or the oldest one while the market is younger than a window (the loop's last visit)."""
        now = current.timestamp
        target = now - m.twap_window if now > m.twap_window else 0
        anchor = None
        for i in range(OBSERVATIONS):
            anchor = m.observations[(head + OBSERVATIONS - i) % OBSERVATIONS]
            if anchor.timestamp <= target:
                break
        span = now - anchor.timestamp
        if span == 0:
            return m.spot, m.last_index_price
        mark = ((current.mark_cumulative - anchor.mark_cumulative) & U112) // span
        idx = ((current.index_cumulative - anchor.index_cumulative) & U112) // span
        return mark, idx

    @staticmethod
    def _funding_twaps(m: Market, current: Observation, prev: Observation, skew_sum: int, skew_prev: int,
                       skew_now: int) -> tuple[int, int, int]:
        """ClearingHouseStorage._fundingTwaps: (mark TWAP, index TWAP, skew term of the mean skew) from the hourly
        observation of the oldest of the last FUNDING_WINDOW_HOURS hours a block touched (probed from 24 hours
        back), else from `prev` (the accumulator before this update, the skew `skew_now` over the idle span), to
        `current`; a span shorter than the window is padded to it at premium 0 and skew 0 (mark and index at the
        last index)."""
        anchor, skew_anchor = prev, skew_prev
        hour = current.timestamp // HOUR
        for k in range(FUNDING_WINDOW_HOURS, 0, -1):
            slot = (hour - k) % FUNDING_OBSERVATIONS
            o = m.hourly[slot]
            if hour >= k and o.timestamp // HOUR == hour - k:
                anchor, skew_anchor = o, m.hourly_skew[slot]
                break
        span = current.timestamp - anchor.timestamp
        area = skew_now * span if anchor.timestamp == prev.timestamp else _wrap_i32(skew_sum - skew_anchor)
        mark = (current.mark_cumulative - anchor.mark_cumulative) & U112
        idx = (current.index_cumulative - anchor.index_cumulative) & U112
        window = FUNDING_WINDOW_HOURS * HOUR
        if span < window:  # padded to the whole window at premium 0 and skew 0 (mark = index = last index)
            pad = (window - span) * m.last_index_price
            mark, idx, span = mark + pad, idx + pad, window
        mark, idx = mark // span, idx // span
        return mark, idx, tdiv(area * m.skew_funding_ppm * 10**8, span)

    @staticmethod
    def _skew_bps(m: Market) -> int:
        """ClearingHouseStorage._skewBps: (long OI - short OI) / x in bps, truncated toward zero, clamped to
        +-1e4; 0 while skewFundingPpm is 0."""
        if m.skew_funding_ppm == 0:
            return 0
        return max(-10**4, min(10**4, tdiv((m.long_open_interest - m.short_open_interest) * 10**4, m.x)))

    def _margin_summary(self, owner, sub, open_markets: int, timestamp: int, known_market: int = 0,
                        known_index: int = 0) -> MarginSummary:
        """ClearingHouse._marginSummary over the bitmap, lowest market first (oracle order matters
        for which StaleOracle is reported)."""
        upnl = pending = initial = maintenance = auctioned_notional = auctioned_maintenance = 0
        while open_markets:
            bit = open_markets & -open_markets
            open_markets ^= bit
            market_id = bit.bit_length()
            m = self.markets[market_id]
            p = self._position(market_id, owner, sub)
            index = known_index if market_id == known_market else self._index(m, timestamp)
            upnl += s_mul_wad_down(p.size, index) - p.open_notional
            pending += s_mul_wad_up(p.size, self._cumulative_funding_now(m, timestamp) - p.last_cumulative_funding)
            # The free part owes initial and maintenance margin; the auctioned part keeps backing at
            # max(mmr, the auction's maxDiscount), enough for its worst fill, counted in `initial` (not
            # withdrawable while the auction runs) but not in `maintenance` (what kick tests). PnL and
            # funding run on the whole position.
            notional = mul_wad_up(abs(p.size - p.auctioned), index)
            initial += mul_wad_up(notional, m.imr)
            maintenance += mul_wad_up(notional, m.mmr)
            if p.auctioned:
                a_notional = mul_wad_up(abs(p.auctioned), index)
                ratio = max(m.mmr, self._auction_params_of(market_id).max_discount)
                backing = mul_wad_up(a_notional, ratio)
                auctioned_notional += a_notional
                auctioned_maintenance += backing
                initial += backing
        return MarginSummary(upnl, pending, initial, maintenance, auctioned_notional, auctioned_maintenance)

    def _health(self, owner, sub, timestamp) -> tuple[int, int, int, int]:
        """Vault._health: (accountValue, freeCollateral, initial, maintenance)."""
        acct = self.accounts.get((owner, sub)) or Account()
        coll = acct.collateral
        if acct.open_markets == 0:
            return coll, coll, 0, 0
        s = self._margin_summary(owner, sub, acct.open_markets, timestamp)
        value = coll + s.unrealized_pnl - s.pending_funding
        free = min(coll - s.pending_funding, value) - s.initial
        return value, free, s.initial, s.maintenance

    # ------------------------------------------------------------------ views (Vault)

    def collateral(self, owner, sub: int) -> int:
        return (self.accounts.get((owner, sub)) or Account()).collateral

    def open_markets(self, owner, sub: int) -> int:
        return (self.accounts.get((owner, sub)) or Account()).open_markets

    def account_value(self, owner, sub: int, timestamp: int) -> int:
        return self._health(owner, sub, timestamp)[0]

    def free_collateral(self, owner, sub: int, timestamp: int) -> int:
        return self._health(owner, sub, timestamp)[1]

    def margin_requirements(self, owner, sub: int, timestamp: int) -> tuple[int, int]:
        return self._health(owner, sub, timestamp)[2:]

    def is_liquidatable(self, owner, sub: int, timestamp: int) -> bool:
        value, _, _, maintenance = self._health(owner, sub, timestamp)
        return value < maintenance

    def pool_balance(self) -> int:
        return self.pool_balance_wad

    def insurance_fund(self) -> int:
        return self.insurance_fund_wad

    def liquidation_state(self, owner, sub: int, timestamp: int) -> tuple[int, int, int, int]:
        """Vault.liquidationState: (accountValue, maintenance of the free parts, auctioned notional,
        auctioned parts' maintenance), what the liquidation engine reads in one call."""
        acct = self.accounts.get((owner, sub)) or Account()
        if acct.open_markets == 0:
            return acct.collateral, 0, 0, 0
        s = self._margin_summary(owner, sub, acct.open_markets, timestamp)
        value = acct.collateral + s.unrealized_pnl - s.pending_funding
        return value, s.maintenance, s.auctioned_notional, s.auctioned_maintenance

    def shortfall_of(self, owner, sub: int) -> int:
        return self.shortfalls.get((owner, sub), 0)

    def pending_bad_debt(self) -> int:
        return self.pending_bad_debt_wad

    # ------------------------------------------------------------------ views (ClearingHouse)

    def position(self, owner, sub: int, market_id: int, timestamp: int) -> tuple[int, int, int]:
        """(size, openNotional, pendingFunding). Like the contract, no market check."""
        p = self._position(market_id, owner, sub)
        pending = 0
        if p.size != 0:
            m = self.markets[market_id]
            pending = s_mul_wad_up(p.size, self._cumulative_funding_now(m, timestamp) - p.last_cumulative_funding)
        return p.size, p.open_notional, pending

    def margin_summary(self, owner, sub: int, open_markets: int, timestamp: int) -> MarginSummary:
        return self._margin_summary(owner, sub, open_markets, timestamp)

    def quote(self, market_id: int, base: int) -> tuple[int, int]:
        m = self._market(market_id)
        if base == 0:
            raise ModelRevert("ZeroSize")
        self._check_liquidity(market_id, base, m.x)
        q, x, y = vamm_swap(m.x, m.y, base)
        return q, vamm_price(x, y)

    def index_price(self, market_id: int, timestamp: int) -> int:
        return self._index(self._market(market_id), timestamp)

    def spot_price(self, market_id: int) -> int:
        return self._market(market_id).spot

    def twaps(self, market_id: int, timestamp: int) -> tuple[int, int]:
        """Mark and index TWAPs: the accumulator extended to `timestamp`, from the ring anchor."""
        m = self._market(market_id)
        acc = m.accumulator
        dt = timestamp - acc.timestamp
        current = Observation(timestamp, (acc.mark_cumulative + m.spot * dt) & U112,
                              (acc.index_cumulative + m.last_index_price * dt) & U112)
        return self._twaps_from(m, current, m.observation_head)

    def mark_price(self, market_id: int, timestamp: int) -> int:
        return self.twaps(market_id, timestamp)[0]

    def market_count(self) -> int:
        return len(self.markets)

    def market_state(self, market_id: int, timestamp: int) -> tuple:
        """IClearingHouse.MarketState, field for field (the last is lastDislocation)."""
        m = self._market(market_id)
        return (m.x, m.y, m.spot, m.long_open_interest, m.short_open_interest,
                self._cumulative_funding_now(m, timestamp), m.rate, m.target, m.last_index_price,
                m.accumulator.timestamp, m.last_dislocation)

    def funding_state(self, market_id: int, timestamp: int) -> tuple:
        """(appliedRate, targetRate, premium, markTwap, indexTwap, projected1h, projected8h)."""
        m = self._market(market_id)
        f = m.funding_params
        applied, _ = evolve(m.rate, m.target, timestamp - m.accumulator.timestamp, f.smoothing_tau,
                            f.max_rate_velocity)
        acc = m.accumulator
        dt = timestamp - acc.timestamp
        current = Observation(timestamp, (acc.mark_cumulative + m.spot * dt) & U112,
                              (acc.index_cumulative + m.last_index_price * dt) & U112)
        skew = self._skew_bps(m)
        mark_twap, index_twap, skew_term = self._funding_twaps(
            m, current, acc, _wrap_i32(m.skew_cumulative + skew * dt), m.skew_cumulative, skew)
        premium, target = self._target(f, mark_twap, index_twap, skew_term)
        p1, _ = evolve(applied, target, HOUR, f.smoothing_tau, f.max_rate_velocity)
        p8, _ = evolve(applied, target, 8 * HOUR, f.smoothing_tau, f.max_rate_velocity)
        return applied, target, premium, mark_twap, index_twap, p1, p8

    # ------------------------------------------------------------------ aggregates (for invariants)

    def total_claims(self) -> int:
        """Sum of every trader's collateral + pool balance + insurance fund + builder fees [wad]."""
        return (sum(a.collateral for a in self.accounts.values()) + self.pool_balance_wad + self.insurance_fund_wad
                + sum(self.builder_fees_wad.values()))

    def open_positions(self, market_id: int | None = None):
        return [(k, p) for k, p in self.positions.items() if p.size != 0 and (market_id is None or k[0] == market_id)]

    # ------------------------------------------------------------------ traders' side (pool valuation)

    def traders_pnl(self, timestamp: int) -> tuple[int, int]:
        """ClearingHouse.tradersPnl: (traders' unrealized PnL at the index net of funding owed, sum of
        |net OI| x index rounded up), from the per-market aggregates; markets with nothing open skipped."""
        pnl = exposure = 0
        for market_id in sorted(self.markets):
            m = self.markets[market_id]
            net = m.long_open_interest - m.short_open_interest
            if net == 0 and m.sum_open_notional == 0 and m.sum_funding_basis == 0:
                continue
            index = self._index(m, timestamp)
            cf = self._cumulative_funding_now(m, timestamp)
            pnl += s_mul_wad_down(net, index) - m.sum_open_notional - (s_mul_wad_down(net, cf) - m.sum_funding_basis)
            exposure += mul_wad_up(abs(net), index)
        return pnl, exposure

    def traders_pnl_by_positions(self, timestamp: int) -> int:
        """The same figure summed position by position (what the aggregates must equal, up to the
        rounding of each position's funding basis: see `aggregate_errors`)."""
        total = 0
        for (market_id, _, _), p in self.open_positions():
            m = self.markets[market_id]
            index = self._index(m, timestamp)
            total += s_mul_wad_down(p.size, index) - p.open_notional
            total -= s_mul_wad_down(p.size, self._cumulative_funding_now(m, timestamp)) - s_mul_wad_down(
                p.size, p.last_cumulative_funding)
        return total

    # ------------------------------------------------------------------ Vault: loss waterfall

    @_atomic
    def resolve_bad_debt(self, owner, sub: int) -> tuple[int, int]:
        """Vault.resolveBadDebt (permissionless): a closed account's negative collateral is paid by
        the insurance fund, then the pool; returns (fromInsurance, fromPool)."""
        return self._resolve_bad_debt(owner, sub)

    def _resolve_bad_debt(self, owner, sub: int) -> tuple[int, int]:
        acct = self._account(owner, sub)
        if acct.collateral >= 0 or acct.open_markets != 0:
            raise ModelRevert("NoBadDebt", owner, sub, acct.collateral, acct.open_markets)
        debt = -acct.collateral
        from_insurance = min(debt, self.insurance_fund_wad)
        from_pool = debt - from_insurance
        self.insurance_fund_wad -= from_insurance
        self.pool_balance_wad = _int128(self.pool_balance_wad - from_pool)
        acct.collateral = 0
        # The estimate has become the real thing: the set-aside is released as the debt is paid.
        if self.shortfall_of(owner, sub) != 0:
            self._set_shortfall(owner, sub, 0)
        self.bad_debt.append((owner, sub, debt, from_insurance, from_pool))
        return from_insurance, from_pool

    def _set_shortfall(self, owner, sub: int, shortfall: int) -> None:
        """Vault.recordShortfall (engine only; always writes and emits ShortfallRecorded)."""
        total = self.pending_bad_debt_wad - self.shortfall_of(owner, sub) + shortfall
        self.shortfalls[(owner, sub)] = shortfall
        self.pending_bad_debt_wad = total
        self.shortfall_log.append((owner, sub, shortfall, total))

    def _charge_liquidation(self, owner, sub: int, keeper, keeper_reward: int, penalty: int) -> None:
        """Vault.chargeLiquidation: reward to the keeper's cross account, penalty to the insurance fund."""
        acct = self._account(owner, sub)
        acct.collateral = _int128(acct.collateral - (keeper_reward + penalty))
        keeper_acct = self._account(keeper, 0)
        keeper_acct.collateral = _int128(keeper_acct.collateral + keeper_reward)
        if penalty:
            self.insurance_fund_wad = _uint128(self.insurance_fund_wad + penalty)

    def _pay_keeper_bounty(self, keeper, amount: int) -> None:
        """Vault.payKeeperBounty: the insurance fund pays `amount` to the keeper's cross account
        (InsufficientInsurance beyond the fund); a KeeperBounty event, logged in `keeper_bounties`."""
        if amount > self.insurance_fund_wad:
            raise ModelRevert("InsufficientInsurance", self.insurance_fund_wad, amount)
        self.insurance_fund_wad -= amount
        keeper_acct = self._account(keeper, 0)
        if keeper_acct.collateral + amount > INT128_MAX:
            raise ModelRevert("Panic", 0x11)
        keeper_acct.collateral += amount
        self.keeper_bounties.append((keeper, amount))

    # ------------------------------------------------------------------ LiquidationEngine

    def _auction_params_of(self, market_id: int) -> AuctionParams:
        return self.auction_params.get(market_id) or AuctionParams()

    def _check_engine_not_paused(self) -> None:
        if self.pause_level >= PAUSE_NO_TRADING:
            raise ModelRevert("Paused", self.pause_level)

    def _slice(self, owner, sub: int, market_id: int, value: int, maintenance: int, auctioned_notional: int,
               timestamp: int) -> SliceResult:
        """LiquidationEngine._slice: the smallest slice n (notional) with
        n >= (h x M - V + tip) / (h x mmr - chip - penalty - maxDiscount), in base rounded up, at least
        the minimum size; the whole free position when that is more, leaves dust or costs outrun margin.
        Costs come out of the room the account keeps after the worst fill of everything in auction
        after this kick, room = V - ceil((auctionedNotional + n) x maxDiscount): the keeper reward
        (tip + chip x n, at most maxKeeperReward) capped at the room, then the penalty at what is left;
        the shortfall is what the room lacks after both. An account that pays its keeper nothing gets the
        keeper a bounty from the insurance fund instead: chip x n (rounded up; no flat tip), at most
        maxKeeperReward and at most the fund."""
        p = self._position(market_id, owner, sub)
        available = p.size - p.auctioned
        if available == 0:
            raise ModelRevert("NothingToLiquidate", owner, sub, market_id)
        m = self._market(market_id)
        index = self._index(m, timestamp)
        lp = self.liquidation_params
        avail = abs(available)
        base, restores = avail, False
        max_discount = self._auction_params_of(market_id).max_discount
        denom = mul_wad_down(lp.target_health, m.mmr) - lp.chip - lp.penalty - max_discount
        if denom > 0:
            need = mul_wad_up(maintenance, lp.target_health) - value + lp.tip
            b = 0 if need <= 0 else div_wad_up(div_wad_up(need, denom), index)
            b = max(b, m.min_position_size)
            if b < avail and avail - b >= m.min_position_size:
                base, restores = b, True
        notional = mul_wad_up(base, index)
        room = value - mul_wad_up(auctioned_notional + notional, max_discount)
        reward = min(lp.tip + mul_wad_up(notional, lp.chip), lp.max_keeper_reward)
        reward = 0 if room <= 0 else min(reward, room)
        room -= reward
        penalty = 0 if room <= 0 else min(mul_wad_up(notional, lp.penalty), room)
        bounty = 0
        if reward == 0:
            bounty = min(mul_wad_up(notional, lp.chip), lp.max_keeper_reward, self.insurance_fund_wad)
        return SliceResult(base if available > 0 else -base, notional, reward, penalty, index, restores,
                           max(0, -(room - penalty)), bounty)

    def _live(self, auction_id: int) -> Auction:
        if auction_id == 0 or auction_id > self.auction_count:
            raise ModelRevert("UnknownAuction", auction_id)
        a = self.auctions[auction_id]
        if a.size == 0:
            raise ModelRevert("AuctionFinished", auction_id)
        return a

    @staticmethod
    def _expired(a: Auction, ap: AuctionParams, index: int, timestamp: int) -> bool:
        """LiquidationEngine._expired: past its duration, or the index moved more than resetDrop from the
        (re)start index in the account's favour (up for a long slice, down for a short one); a move against
        the account leaves the auction running (its price follows the live index)."""
        if timestamp - a.start_time > ap.duration:
            return True
        if (index <= a.start_index) if a.size > 0 else (index >= a.start_index):
            return False
        return abs(index - a.start_index) > mul_wad_down(a.start_index, ap.reset_drop)

    @staticmethod
    def discount(ap: AuctionParams, elapsed: int) -> int:
        """LiquidationEngine._discount: 0 at the start, maxDiscount from `duration` on, never decreasing."""
        if elapsed >= ap.duration:
            return ap.max_discount
        if ap.curve == CURVE_LINEAR:
            return ap.max_discount * elapsed // ap.duration
        if ap.curve == CURVE_STAIRSTEP:
            return ap.max_discount * (elapsed // ap.step) // (ap.duration // ap.step)
        span = WAD - exp_neg_wad(EXP_SPEED * WAD)
        done = WAD - exp_neg_wad(EXP_SPEED * elapsed * WAD // ap.duration)
        return ap.max_discount * done // span

    @staticmethod
    def _auction_price(size: int, index: int, discount: int) -> int:
        """A long slice is bought at index x (1 - d) rounded up, a short one sold at index x (1 + d)
        rounded down: against the taker both ways."""
        return mul_wad_up(index, WAD - discount) if size > 0 else mul_wad_down(index, WAD + discount)

    @staticmethod
    def _notional(size: int, start_index: int) -> int:
        return mul_wad_up(abs(size), start_index)

    def _move_notional(self, a: Auction, new_size: int, new_index: int) -> None:
        self.live_notional = self.live_notional - self._notional(a.size, a.start_index) + self._notional(new_size, new_index)

    def _after_fill(self, owner, sub: int, market_id: int, timestamp: int) -> None:
        """LiquidationEngine._afterFill: resolve the bad debt of an account left with no position and
        negative collateral; else refresh its shortfall estimate while it has one (value less the worst
        fill of what is still in auction, at this market's maxDiscount)."""
        acct = self.accounts.get((owner, sub)) or Account()
        if acct.open_markets == 0 and acct.collateral < 0:
            self._resolve_bad_debt(owner, sub)
            return
        if self.shortfall_of(owner, sub) == 0:
            return
        try:  # a stale feed of another market held leaves the last estimate standing (try/catch on chain)
            value, _, auctioned_notional, _ = self.liquidation_state(owner, sub, timestamp)
        except ModelRevert:
            return
        max_discount = self._auction_params_of(market_id).max_discount
        self._set_shortfall(owner, sub, max(0, -(value - mul_wad_up(auctioned_notional, max_discount))))

    def _cancel(self, auction_id: int, a: Auction, value: int, requirement: int) -> Cancelled:
        """LiquidationEngine._cancel: the auction ends unfilled, its size goes back to the free part
        (ClearingHouse.releaseFromAuction), the account's shortfall estimate is cleared."""
        size = a.size
        self._move_notional(a, 0, a.start_index)
        a.size = 0
        self._market(a.market_id)
        p = self._position(a.market_id, a.owner, a.subaccount)
        auctioned = p.auctioned
        if size == 0 or (size > 0) != (auctioned > 0) or abs(size) > abs(auctioned):
            raise ModelRevert("InvalidAuctionSlice", size, auctioned)
        p.auctioned = _int128(auctioned - size)
        if self.shortfall_of(a.owner, a.subaccount) != 0:
            self._set_shortfall(a.owner, a.subaccount, 0)
        return Cancelled(size, value, requirement)

    @_atomic
    def kick(self, owner, sub: int, market_id: int, keeper, timestamp: int) -> tuple[int, SliceResult]:
        """LiquidationEngine.kick: returns (auctionId, the slice with its reward, penalty and bounty). In
        order: the costs charged (Vault.chargeLiquidation), the bounty paid from the insurance fund to the
        keeper's cross account (Vault.payKeeperBounty, logged in `keeper_bounties`), the shortfall recorded;
        the Kick event's keeperReward is reward + bounty."""
        self._check_engine_not_paused()
        if self._is_zero_address(keeper):
            raise ModelRevert("ZeroAddress")
        value, maintenance, auctioned_notional, _ = self.liquidation_state(owner, sub, timestamp)
        if value >= maintenance:
            raise ModelRevert("NotLiquidatable", owner, sub)
        s = self._slice(owner, sub, market_id, value, maintenance, auctioned_notional, timestamp)
        lp = self.liquidation_params
        if self.live_notional + s.notional > lp.max_auction_notional:
            raise ModelRevert("AuctionCapReached", self.live_notional, s.notional, lp.max_auction_notional)
        self.live_notional += s.notional
        self.auction_count += 1
        self.auctions[self.auction_count] = Auction(owner, sub, market_id, 0, _int_n(s.size, 96), s.index, timestamp)
        p = self.positions[(market_id, owner, sub)]
        p.auctioned = _int128(p.auctioned + s.size)
        self._charge_liquidation(owner, sub, keeper, s.keeper_reward, s.penalty)
        if s.bounty:
            self._pay_keeper_bounty(keeper, s.bounty)
        self._set_shortfall(owner, sub, s.shortfall)
        return self.auction_count, s

    @_atomic
    def take(self, auction_id: int, max_base: int, limit_price: int, taker, taker_sub: int,
             timestamp: int) -> tuple[int, int]:
        """LiquidationEngine.take by `taker` into its sub-account `taker_sub`: returns (amount, price)."""
        a = self._live(auction_id)
        self._check_engine_not_paused()
        if max_base == 0:
            raise ModelRevert("ZeroAmount")
        if taker == a.owner and taker_sub == a.subaccount:
            raise ModelRevert("SelfTake", a.owner, a.subaccount)
        m = self.markets[a.market_id]
        index = self._index(m, timestamp)
        ap = self._auction_params_of(a.market_id)
        if self._expired(a, ap, index, timestamp):
            raise ModelRevert("AuctionExpired", auction_id)
        size = a.size
        price = self._auction_price(size, index, self.discount(ap, timestamp - a.start_time))
        if (price > limit_price) if size > 0 else (price < limit_price):
            raise ModelRevert("LimitPriceNotMet", price, limit_price)
        remaining = abs(size)
        amount = min(max_base, remaining)
        if amount < remaining:
            if amount < m.min_position_size:
                raise ModelRevert("TakeBelowMinimum", amount, m.min_position_size)
            if remaining - amount < m.min_position_size:
                raise ModelRevert("DustRemainder", remaining - amount, m.min_position_size)
        signed = amount if size > 0 else -amount
        left = size - signed
        self._move_notional(a, left, a.start_index)
        a.size = left
        self._settle_auction_fill(a.owner, a.subaccount, a.market_id, signed, price, taker, taker_sub, timestamp)
        self._after_fill(a.owner, a.subaccount, a.market_id, timestamp)
        return amount, price

    def _settle_auction_fill(self, owner, sub, market_id, base, price, taker, taker_sub, timestamp) -> None:
        """ClearingHouse.settleAuctionFill: the owner receives rounded down and pays rounded up, the
        taker the other way; the wei between them stays with the pool."""
        m = self._market(market_id)
        index = self._index(m, timestamp)
        self._accrue(m, index, timestamp)
        notional, notional_up = mul_wad_down(abs(base), price), mul_wad_up(abs(base), price)
        owner_quote = notional if base > 0 else -notional_up
        taker_quote = -notional_up if base > 0 else notional
        self._auction_settle(owner, sub, m, -base, owner_quote, True)
        acct, reducing = self._auction_settle(taker, taker_sub, m, base, taker_quote, False)
        if self.pause_level >= PAUSE_NO_TRADING:
            raise ModelRevert("Paused", self.pause_level)
        if not reducing:
            self._check_initial_margin(taker, taker_sub, acct, market_id, index, timestamp)

    def _auction_settle(self, owner, sub, m: Market, base_delta: int, quote_flow: int,
                        from_auction: bool) -> tuple[Account, bool]:
        """ClearingHouseSettlement._auctionSettle: apply a fill (or the backstop) to one account, open interest
        moved but never capped; the auctioned account's fill leaves its auctioned part."""
        p = self._position(m.id, owner, sub)
        size, cf = p.size, m.cumulative_funding
        funding = s_mul_wad_up(size, cf - p.last_cumulative_funding) if size != 0 else 0
        new_size, new_on, realized = apply_trade(size, p.open_notional, base_delta, quote_flow)
        reducing = (size > 0 and 0 <= new_size < size) or (size < 0 and size < new_size <= 0)
        auctioned = p.auctioned
        if from_auction:
            if base_delta == 0 or abs(base_delta) > abs(auctioned) or (base_delta > 0) == (auctioned > 0):
                raise ModelRevert("InvalidAuctionSlice", base_delta, auctioned)
            auctioned += base_delta
        else:
            self._check_auctioned_part(owner, sub, m, new_size, auctioned)
        if new_size != 0 and abs(new_size) < m.min_position_size:
            raise ModelRevert("BelowMinPositionSize", m.id, new_size, m.min_position_size)
        self._move_aggregates(m, p, new_size, new_on, cf)
        self.positions[(m.id, owner, sub)] = Position(_int128(new_size), _int128(new_on), _int128(cf), _int128(auctioned))
        delta = realized - funding
        acct = self._settle_trade(owner, sub, m.id, new_size != 0, delta, -delta, 0)
        self._move_open_interest(m, size, new_size)
        return acct, reducing

    @_atomic
    def redo(self, auction_id: int, keeper, timestamp: int) -> Redone | Cancelled:
        """LiquidationEngine.redo: an expired auction of an account that has recovered (value at or
        above targetHealth x (free maintenance + auctioned backing), rounded up) is cancelled, unpaid;
        otherwise it restarts from the live index and the keeper gets the tip, capped at the room the
        account keeps after the worst fill, room = value - ceil(auctionedNotional x maxDiscount); the
        shortfall estimate becomes what the room lacks after the tip; no tip while the account is at or
        above free maintenance + auctioned backing. When the account's health cannot
        be read (a stale feed of another market it holds), the redo goes ahead unpaid and records nothing."""
        a = self._live(auction_id)
        self._check_engine_not_paused()
        if self._is_zero_address(keeper):
            raise ModelRevert("ZeroAddress")
        index = self._index(self.markets[a.market_id], timestamp)
        ap = self._auction_params_of(a.market_id)
        if not self._expired(a, ap, index, timestamp):
            raise ModelRevert("AuctionNotExpired", auction_id)
        lp = self.liquidation_params
        if a.redos >= lp.max_redos:
            raise ModelRevert("MaxRedosReached", auction_id, a.redos)
        known, value, auctioned_notional, requirement = self._recovery(a.owner, a.subaccount, timestamp)
        target = mul_wad_up(requirement, lp.target_health)
        if known and value >= target:
            return self._cancel(auction_id, a, value, target)
        self._move_notional(a, a.size, index)
        a.redos += 1
        a.start_index, a.start_time = index, timestamp
        tip = 0
        if known:
            room = value - mul_wad_up(auctioned_notional, ap.max_discount)
            if value < requirement:  # no tip from an account that is healthy again
                tip = 0 if room <= 0 else min(lp.tip, room)
            self._charge_liquidation(a.owner, a.subaccount, keeper, tip, 0)
            self._set_shortfall(a.owner, a.subaccount, max(0, -(room - tip)))
        return Redone(a.redos, index, tip)

    def _recovery(self, owner, sub: int, timestamp: int) -> tuple[bool, int, int, int]:
        """LiquidationEngine._recovery: (readable, value, auctioned notional, requirement = free maintenance
        + auctioned backing), liquidationState under try/catch: (False, 0, 0, 0) when a feed of a market
        the account holds is stale or invalid. Recovered means value >= targetHealth x requirement."""
        try:
            value, maintenance, auctioned_notional, auctioned_maintenance = self.liquidation_state(owner, sub, timestamp)
        except ModelRevert:
            return False, 0, 0, 0
        return True, value, auctioned_notional, maintenance + auctioned_maintenance

    @_atomic
    def cancel(self, auction_id: int, timestamp: int) -> Cancelled:
        """LiquidationEngine.cancel (anyone): end the auction of an account whose value is at or above
        targetHealth x (free maintenance + auctioned backing); nobody is paid."""
        a = self._live(auction_id)
        self._check_engine_not_paused()
        value, maintenance, _, auctioned_maintenance = self.liquidation_state(a.owner, a.subaccount, timestamp)
        requirement = mul_wad_up(maintenance + auctioned_maintenance, self.liquidation_params.target_health)
        if value < requirement:
            raise ModelRevert("AuctionStillNeeded", auction_id, value, requirement)
        return self._cancel(auction_id, a, value, requirement)

    @_atomic
    def backstop(self, auction_id: int, timestamp: int) -> tuple[int, int] | Cancelled:
        """LiquidationEngine.backstop: after the expiry and redo checks, an account that has recovered
        (read as in redo: value >= targetHealth x (free maintenance + auctioned backing); unknown with a
        stale feed of a market it holds) has its auction cancelled (AuctionCancelled, returned as
        `Cancelled`; the call returns 0 and closes nothing). Otherwise close against the vAMM the largest
        part of the remainder that leaves the price no worse for the owner than the auction's own price at
        its full discount, nor outside the band (ClearingHouse.backstopClose / _backstopFit);
        BackstopBlocked when nothing fits; the rest stays in the auction. Returns (closed, quote flow to
        the owner), the Backstop event's fields."""
        a = self._live(auction_id)
        self._check_engine_not_paused()
        index = self._index(self.markets[a.market_id], timestamp)
        ap = self._auction_params_of(a.market_id)
        if not self._expired(a, ap, index, timestamp):
            raise ModelRevert("AuctionNotExpired", auction_id)
        lp = self.liquidation_params
        if a.redos < lp.max_redos:
            raise ModelRevert("RedosRemaining", auction_id, a.redos, lp.max_redos)
        known, value, _, requirement = self._recovery(a.owner, a.subaccount, timestamp)
        target = mul_wad_up(requirement, lp.target_health)
        if known and value >= target:
            return self._cancel(auction_id, a, value, target)
        size = a.size
        limit = self._auction_price(size, index, ap.max_discount)
        quote, closed = self._backstop_close(a.owner, a.subaccount, a.market_id, size, limit, timestamp)
        if closed == 0:
            raise ModelRevert("BackstopBlocked", auction_id, self.markets[a.market_id].spot, index)
        left = size - closed
        self._move_notional(a, left, a.start_index)
        a.size = _int_n(left, 96)
        self._after_fill(a.owner, a.subaccount, a.market_id, timestamp)
        return closed, quote

    def _backstop_close(self, owner, sub: int, market_id: int, base: int, limit_price: int,
                        timestamp: int) -> tuple[int, int]:
        """ClearingHouse.backstopClose: (quote flow to the owner, base closed). The price may go to the
        edge at most: the limit price or the band's edge, whichever is nearer the index; the swap's
        price is checked against it again (PriceBandExceeded)."""
        m = self._market(market_id)
        index = self._index(m, timestamp)
        self._accrue(m, index, timestamp)
        x, y = m.x, m.y
        band = mul_wad_down(index, m.max_spread)
        edge = max(limit_price, index - band) if base > 0 else min(limit_price, index + band)
        closed = self._backstop_fit(m, x, y, base, edge)
        if closed == 0:
            return 0, 0
        quote, x, y = vamm_swap(x, y, -closed)
        price_after = vamm_price(x, y)
        if (price_after < edge) if base > 0 else (price_after > edge):
            raise ModelRevert("PriceBandExceeded", market_id, price_after, index, m.max_spread)
        m.x, m.y = _uint128(x), _uint128(y)
        self._auction_settle(owner, sub, m, -closed, quote, True)
        return quote, closed

    @staticmethod
    def _backstop_fit(m: Market, x: int, y: int, base: int, edge: int) -> int:
        """LiquidationEngine._backstopFit: the largest part of `base` whose close leaves the vAMM price at
        or beyond `edge` on the near side, from the edge reserve sqrt(x y / edge) with a 1e-12 margin
        (and 2 wei more when buying); what would stay behind must be nothing or at least the minimum
        position size."""
        want = abs(base)
        if base > 0:
            if edge == 0:
                fit = want
            else:
                x_max = edge_reserve(x, y, edge)
                x_max -= x_max // 10**12
                fit = x_max - x if x_max > x else 0
        else:
            x_min = edge_reserve(x, y, edge)
            x_min += x_min // 10**12 + 2
            fit = x - x_min if x > x_min else 0
        if fit >= want:
            return base
        if want - fit < m.min_position_size:
            fit = want - m.min_position_size if want > m.min_position_size else 0
        return fit if base > 0 else -fit

    # views
    def auction(self, auction_id: int) -> tuple:
        """ILiquidationEngine.Auction, field for field."""
        if auction_id == 0 or auction_id > self.auction_count:
            raise ModelRevert("UnknownAuction", auction_id)
        a = self.auctions[auction_id]
        return (a.owner, a.subaccount, a.market_id, a.redos, a.size, a.start_index, a.start_time,
                self._notional(a.size, a.start_index))

    def auction_price(self, auction_id: int, timestamp: int) -> int:
        a = self._live(auction_id)
        index = self._index(self.markets[a.market_id], timestamp)
        ap = self._auction_params_of(a.market_id)
        if self._expired(a, ap, index, timestamp):
            raise ModelRevert("AuctionExpired", auction_id)
        return self._auction_price(a.size, index, self.discount(ap, timestamp - a.start_time))

    def is_expired(self, auction_id: int, timestamp: int) -> bool:
        a = self._live(auction_id)
        index = self._index(self.markets[a.market_id], timestamp)
        return self._expired(a, self._auction_params_of(a.market_id), index, timestamp)

    def kick_preview(self, owner, sub: int, market_id: int, timestamp: int) -> tuple[int, int, int, int]:
        value, maintenance, auctioned_notional, _ = self.liquidation_state(owner, sub, timestamp)
        if value >= maintenance:
            return 0, 0, 0, 0
        s = self._slice(owner, sub, market_id, value, maintenance, auctioned_notional, timestamp)
        return s.size, s.notional, s.keeper_reward + s.bounty, s.penalty

    def best_market_to_kick(self, owner, sub: int, timestamp: int) -> int:
        """A slice that restores target health, the smallest such; otherwise the largest position."""
        value, maintenance, auctioned_notional, _ = self.liquidation_state(owner, sub, timestamp)
        if value >= maintenance:
            return 0
        best, best_notional, best_restores = 0, None, False
        markets = self.open_markets(owner, sub)
        market_id = 0
        while markets:
            market_id += 1
            held, markets = markets & 1, markets >> 1
            if not held:
                continue
            p = self._position(market_id, owner, sub)
            if p.size == p.auctioned:
                continue
            s = self._slice(owner, sub, market_id, value, maintenance, auctioned_notional, timestamp)
            if s.restores:
                better = not best_restores or s.notional < best_notional
            else:
                better = not best_restores and (best == 0 or s.notional > best_notional)
            if better:
                best, best_notional, best_restores = market_id, s.notional, s.restores
        return best

    def auctioned_size(self, owner, sub: int, market_id: int) -> int:
        return self._position(market_id, owner, sub).auctioned

    # ------------------------------------------------------------------ LiquidityPool (ERC-4626)

    # A valuation is ClearingHouse.tradersExitPnl's answer, (pnl, netExposure, suspendedNotional,
    # suspendedMarket), read once per pool call as the pool caches it.

    def _try_index(self, m: Market, timestamp: int) -> int | None:
        """OracleLib.tryReadWad: the index, or None for a non-positive or stale answer (never raises)."""
        if m.answer <= 0 or m.answer_updated_at + m.heartbeat < timestamp:
            return None
        return m.answer * m.oracle_scale

    def traders_exit_pnl(self, timestamp: int) -> tuple[int, int, int, int]:
        """ClearingHouse.tradersExitPnl (never reverts): per market with open interest or aggregates,
        pnl += exitValue(x, y, net) - sumOpenNotional - (net x cfNow (floor) - sumFundingBasis) and
        netExposure += |net| x spot (up); a market with open interest whose index cannot be trusted now
        adds (long + short) x spot (up) to suspendedNotional, and the first such id is suspendedMarket:
        its feed is invalid or stale; or its spot is further from the index than index x maxSpread
        (down); or the index is further from the last recorded one than lastIndex x maxSpread (down), a
        gap no block has accrued yet; or a block found a gap (see `_accrue`) less than a TWAP window ago
        (timestamp < lastDislocation + twapWindow: a trade back into the band does not end the wait)."""
        pnl = exposure = suspended = 0
        suspended_market = 0
        for market_id in sorted(self.markets):
            m = self.markets[market_id]
            long_oi, short_oi = m.long_open_interest, m.short_open_interest
            net = long_oi - short_oi
            if long_oi == 0 and short_oi == 0 and m.sum_open_notional == 0 and m.sum_funding_basis == 0:
                continue
            cf = self._cumulative_funding_now(m, timestamp)
            pnl += exit_value(m.x, m.y, net) - m.sum_open_notional - (s_mul_wad_down(net, cf) - m.sum_funding_basis)
            spot = m.spot
            exposure += mul_wad_up(abs(net), spot)
            if long_oi == 0 and short_oi == 0:
                continue
            index = self._try_index(m, timestamp)
            last = m.last_index_price
            if (index is None or abs(spot - index) > mul_wad_down(index, m.max_spread)
                    or abs(index - last) > mul_wad_down(last, m.max_spread)
                    or timestamp < m.last_dislocation + m.twap_window):
                suspended += mul_wad_up(long_oi + short_oi, spot)
                if suspended_market == 0:
                    suspended_market = market_id
        return pnl, exposure, suspended, suspended_market

    def uncovered_bad_debt(self) -> int:
        """LiquidityPool.uncoveredBadDebt: the recorded shortfalls beyond the insurance fund."""
        return max(0, self.pending_bad_debt_wad - self.insurance_fund_wad)

    def _nav(self, v: tuple) -> int:
        return self.pool_balance_wad - v[0] - self.uncovered_bad_debt()

    def pool_nav(self, timestamp: int) -> int:
        """LiquidityPool.navWad: cash - traders' PnL at vAMM exit net of funding - uncovered bad debt."""
        return self._nav(self.traders_exit_pnl(timestamp))

    def _total_assets(self, v: tuple) -> int:
        nav = self._nav(v)
        return 0 if nav <= 0 else nav // self.token_scale

    def pool_total_assets(self, timestamp: int) -> int:
        """LiquidityPool.totalAssets: NAV in token units (floor, floored at 0); redemptions, withdrawals
        and convertTo* are priced on it."""
        return self._total_assets(self.traders_exit_pnl(timestamp))

    def _deposit_assets(self, v: tuple) -> int:
        value = self.pool_balance_wad - v[0]
        return 0 if value <= 0 else value // self.token_scale

    def pool_deposit_assets(self, timestamp: int) -> int:
        """LiquidityPool.depositAssets: what deposits and mints are priced on, in token units (floor,
        floored at 0): the NAV before the bad-debt set-aside, pool balance - traders' exit PnL. Never
        below totalAssets."""
        return self._deposit_assets(self.traders_exit_pnl(timestamp))

    def _preview_deposit(self, assets: int, v: tuple) -> int:
        """mulDiv(assets, totalSupply + 1e6, depositAssets + 1), rounded down."""
        return assets * (self.pool_supply + POOL_OFFSET) // (self._deposit_assets(v) + 1)

    def _preview_mint(self, shares: int, v: tuple) -> int:
        """mulDiv(shares, depositAssets + 1, totalSupply + 1e6), rounded up."""
        return -(-shares * (self._deposit_assets(v) + 1) // (self.pool_supply + POOL_OFFSET))

    def pool_preview_deposit(self, assets: int, timestamp: int) -> int:
        return self._preview_deposit(assets, self.traders_exit_pnl(timestamp))

    def pool_preview_mint(self, shares: int, timestamp: int) -> int:
        return self._preview_mint(shares, self.traders_exit_pnl(timestamp))

    def pool_convert_to_shares(self, assets: int, timestamp: int) -> int:
        """ERC4626.convertToShares: on totalAssets (after the set-aside), rounded down."""
        return self._to_shares(assets, self.pool_total_assets(timestamp))

    def pool_convert_to_assets(self, shares: int, timestamp: int) -> int:
        """ERC4626.convertToAssets: on totalAssets (after the set-aside), rounded down."""
        return self._to_assets(shares, self.pool_total_assets(timestamp))

    def pool_reserve_required(self, timestamp: int) -> int:
        """LiquidityPool.reserveRequired: reserveFactor x sum |net OI| x vAMM price."""
        return mul_wad_up(self.traders_exit_pnl(timestamp)[1], self.pool_reserve_factor)

    def pool_balance_of(self, owner) -> int:
        return self.pool_shares.get(owner, 0)

    def _suspended(self, v: tuple) -> tuple[bool, int]:
        """LiquidityPool._suspended: (untrusted-index notional > tolerance, tolerance = 0.1 % of cash)."""
        cash = self.pool_balance_wad
        tolerance = mul_wad_down(cash, SUSPENSION_TOLERANCE) if cash > 0 else 0
        return v[2] > tolerance, tolerance

    def lp_flows_suspended(self, timestamp: int) -> tuple[bool, int]:
        v = self.traders_exit_pnl(timestamp)
        suspended, _ = self._suspended(v)
        return suspended, v[3] if suspended else 0

    def _check_flows_open(self, v: tuple) -> None:
        suspended, tolerance = self._suspended(v)
        if suspended:
            raise ModelRevert("LpFlowsSuspended", v[3], v[2], tolerance)

    def _withdrawable_assets(self, v: tuple) -> int:
        cash = self.pool_balance_wad
        free = cash - v[0] - self.uncovered_bad_debt() - mul_wad_up(v[1], self.pool_reserve_factor)
        limit = min(free, cash)
        return 0 if limit <= 0 else limit // self.token_scale

    def pool_withdrawable_assets(self, timestamp: int) -> int:
        return self._withdrawable_assets(self.traders_exit_pnl(timestamp))

    def _redeemable(self, owner, timestamp: int) -> int:
        r = self.pool_requests.get(owner) or WithdrawRequest()
        if r.shares == 0 or timestamp < r.unlock_at or timestamp > r.unlock_at + self.pool_window:
            return 0
        return min(r.shares, self.pool_balance_of(owner))

    def _to_shares(self, assets: int, total: int, up: bool = False) -> int:
        n, d = assets * (self.pool_supply + POOL_OFFSET), total + 1
        return -(-n // d) if up else n // d

    def _to_assets(self, shares: int, total: int, up: bool = False) -> int:
        n, d = shares * (total + 1), self.pool_supply + POOL_OFFSET
        return -(-n // d) if up else n // d

    def pool_max_redeem(self, owner, timestamp: int) -> int:
        return self._max_redeem(owner, self.traders_exit_pnl(timestamp), timestamp)

    def _max_redeem(self, owner, v: tuple, timestamp: int) -> int:
        """0 while flows are suspended; min(redeemable, shares of the withdrawable assets), and 0 when
        those shares are worth less than one token unit (redeem refuses them with ZeroAssets)."""
        if self._suspended(v)[0]:
            return 0
        total = self._total_assets(v)
        shares = min(self._redeemable(owner, timestamp), self._to_shares(self._withdrawable_assets(v), total))
        return 0 if shares != 0 and self._to_assets(shares, total) == 0 else shares

    def pool_max_withdraw(self, owner, timestamp: int) -> int:
        return self._max_withdraw(owner, self.traders_exit_pnl(timestamp), timestamp)

    def _max_withdraw(self, owner, v: tuple, timestamp: int) -> int:
        if self._suspended(v)[0]:
            return 0
        by_shares = self._to_assets(self._redeemable(owner, timestamp), self._total_assets(v))
        return min(by_shares, self._withdrawable_assets(v))

    def pool_max_deposit(self, timestamp: int) -> int:
        return self._max_deposit(self.traders_exit_pnl(timestamp))

    def _max_deposit(self, v: tuple) -> int:
        """0 at pause level 3 or while flows are suspended; else the room in the pool's int128 ledger
        line and the Vault's per-amount bound, in token units, and 0 when that room buys no share
        (previewDeposit(room) == 0, which deposit refuses with ZeroShares)."""
        if self.pause_level >= PAUSE_WITHDRAW_ONLY or self._suspended(v)[0]:
            return 0
        room = min((INT128_MAX - self.pool_balance_wad) // self.token_scale, INT128_MAX // self.token_scale)
        return 0 if room != 0 and self._preview_deposit(room, v) == 0 else room

    def pool_max_mint(self, timestamp: int) -> int:
        """LiquidityPool.maxMint = previewDeposit(maxDeposit) (priced on depositAssets)."""
        return self._max_mint(self.traders_exit_pnl(timestamp))

    def _max_mint(self, v: tuple) -> int:
        return self._preview_deposit(self._max_deposit(v), v)

    def pool_preview_redeem(self, shares: int, timestamp: int) -> int:
        return self._to_assets(shares, self._total_assets(self.traders_exit_pnl(timestamp)))

    @_atomic
    def pool_deposit(self, caller, assets: int, receiver, timestamp: int) -> int:
        """LiquidityPool.deposit (the caller's tokens go on to the Vault's pool balance); returns shares,
        previewDeposit(assets): priced on depositAssets (the NAV before the bad-debt set-aside).
        Checks: ZeroAssets, Paused (level 3), LpFlowsSuspended, ZeroShares, ERC4626ExceededMaxDeposit."""
        v = self.traders_exit_pnl(timestamp)  # the valuation is read before anything else
        if assets == 0:
            raise ModelRevert("ZeroAssets")
        if self.pause_level >= PAUSE_WITHDRAW_ONLY:
            raise ModelRevert("Paused", self.pause_level)
        self._check_flows_open(v)
        shares = self._preview_deposit(assets, v)
        if shares == 0:
            raise ModelRevert("ZeroShares")
        max_assets = self._max_deposit(v)
        if assets > max_assets:
            raise ModelRevert("ERC4626ExceededMaxDeposit", receiver, assets, max_assets)
        self.fund_pool(assets)
        self.pool_supply += shares
        self.pool_shares[receiver] = self.pool_balance_of(receiver) + shares
        return shares

    @_atomic
    def pool_mint(self, caller, shares: int, receiver, timestamp: int) -> int:
        """LiquidityPool.mint: returns the assets paid, previewMint(shares) (priced on depositAssets,
        rounded up). Checks: ZeroShares, Paused (level 3), LpFlowsSuspended, then OpenZeppelin's
        ERC4626ExceededMaxMint against maxMint = previewDeposit(maxDeposit); the assets go on to the
        Vault's pool balance (Vault.fundPool)."""
        v = self.traders_exit_pnl(timestamp)
        if shares == 0:
            raise ModelRevert("ZeroShares")
        if self.pause_level >= PAUSE_WITHDRAW_ONLY:
            raise ModelRevert("Paused", self.pause_level)
        self._check_flows_open(v)
        max_shares = self._max_mint(v)
        if shares > max_shares:
            raise ModelRevert("ERC4626ExceededMaxMint", receiver, shares, max_shares)
        assets = self._preview_mint(shares, v)
        self.fund_pool(assets)
        self.pool_supply += shares
        self.pool_shares[receiver] = self.pool_balance_of(receiver) + shares
        return assets

    @_atomic
    def pool_request_withdraw(self, owner, shares: int, timestamp: int) -> int:
        if shares == 0:
            raise ModelRevert("ZeroShares")
        balance = self.pool_balance_of(owner)
        if shares > balance:
            raise ModelRevert("SharesExceedBalance", shares, balance)
        unlock_at = timestamp + self.pool_cooldown
        self.pool_requests[owner] = WithdrawRequest(shares, unlock_at)
        return unlock_at

    def _check_withdrawal(self, owner, shares, assets, v: tuple, timestamp) -> None:
        r = self.pool_requests.get(owner) or WithdrawRequest()
        if r.shares == 0:
            raise ModelRevert("NoWithdrawRequest", owner)
        if timestamp < r.unlock_at:
            raise ModelRevert("CooldownNotPassed", r.unlock_at, timestamp)
        expiry = r.unlock_at + self.pool_window
        if timestamp > expiry:
            raise ModelRevert("WithdrawWindowExpired", expiry, timestamp)
        if shares > r.shares:
            raise ModelRevert("ExceedsRequest", shares, r.shares)
        after = self.pool_balance_wad - v[0] - self.uncovered_bad_debt() - assets * self.token_scale
        reserve = mul_wad_up(v[1], self.pool_reserve_factor)
        if after < reserve:
            raise ModelRevert("PoolReserveLocked", after, reserve)
        if assets * self.token_scale > self.pool_balance_wad:
            raise ModelRevert("InsufficientPoolCash", self.pool_balance_wad, assets * self.token_scale)

    def _pool_pay_out(self, owner, shares: int, assets: int) -> None:
        self.pool_requests[owner].shares -= shares
        self.pool_shares[owner] -= shares
        self.pool_supply -= shares
        amount_wad = self._to_wad(assets)
        if self.pool_balance_wad < amount_wad:
            raise ModelRevert("InsufficientPoolCash", self.pool_balance_wad, amount_wad)
        self.pool_balance_wad -= amount_wad
        self.token_balance -= assets

    @_atomic
    def pool_redeem(self, owner, shares: int, timestamp: int) -> int:
        """LiquidityPool.redeem(shares, owner, owner) by the owner; returns the assets paid.
        Checks: ZeroShares, LpFlowsSuspended, the request's checks, ZeroAssets, ERC4626ExceededMaxRedeem."""
        v = self.traders_exit_pnl(timestamp)
        if shares == 0:
            raise ModelRevert("ZeroShares")
        self._check_flows_open(v)
        total = self._total_assets(v)
        assets = self._to_assets(shares, total)
        self._check_withdrawal(owner, shares, assets, v, timestamp)
        if assets == 0:
            raise ModelRevert("ZeroAssets")
        limit = self._max_redeem(owner, v, timestamp)
        if shares > limit:
            raise ModelRevert("ERC4626ExceededMaxRedeem", owner, shares, limit)
        self._pool_pay_out(owner, shares, assets)
        return assets

    @_atomic
    def pool_withdraw(self, owner, assets: int, timestamp: int) -> int:
        """LiquidityPool.withdraw(assets, owner, owner) by the owner; returns the shares burnt.
        Checks: ZeroAssets, LpFlowsSuspended, the request's checks, ERC4626ExceededMaxWithdraw."""
        v = self.traders_exit_pnl(timestamp)
        if assets == 0:
            raise ModelRevert("ZeroAssets")
        self._check_flows_open(v)
        total = self._total_assets(v)
        shares = self._to_shares(assets, total, up=True)
        self._check_withdrawal(owner, shares, assets, v, timestamp)
        limit = self._max_withdraw(owner, v, timestamp)
        if assets > limit:
            raise ModelRevert("ERC4626ExceededMaxWithdraw", owner, assets, limit)
        self._pool_pay_out(owner, shares, assets)
        return shares

    # ------------------------------------------------------------------ AmmController

    def _amm_configured(self, market_id: int) -> AmmParams:
        """AmmController._configured: a listed market with AMM parameters."""
        if market_id == 0 or market_id > len(self.markets):
            raise ModelRevert("UnknownMarket", market_id)
        p = self.amm_params.get(market_id)
        if p is None or p.depth_ratio == 0:
            raise ModelRevert("DepthNotConfigured", market_id)
        return p

    def _set_reserves(self, m: Market, x: int, y: int, timestamp: int, funding_charge: int = 0) -> None:
        """ClearingHouse.setReserves: accrue (TWAPs, funding) on the old reserves first, then bound, then add
        the depth charge to the funding index."""
        self._accrue(m, self._index(m, timestamp), timestamp)
        if x < 10**18 or x > 10**36:
            raise ModelRevert("ParameterOutOfBounds", "baseReserve", x)
        if y == 0 or y > 10**36:
            raise ModelRevert("ParameterOutOfBounds", "quoteReserve", y)
        m.x, m.y = x, y
        if funding_charge:
            m.cumulative_funding = _int_n(m.cumulative_funding + funding_charge, 104)

    @_atomic
    def sync_depth(self, market_id: int, timestamp: int) -> tuple[int, int, int, int]:
        """AmmController.syncDepth: at most once per depthInterval (DepthSyncTooSoon), the quote reserve
        moves toward depthRatio x effective amplification x NAV (compared at zero net position: the target is
        scaled by (x + net) / x, rounded down) within `_depth_step`'s bounds; the base reserve
        scales by the same factor (rounded up, so the price never rises); the change of the net position's exit value is
        charged back through the funding index (`_depth_charge`), and the cost to the pool (that change less
        what the charge adds to floor(net x F), never positive) is booked in depthCost. Returns (x1, y1,
        cost, total cost): the DepthSynced and DepthSyncCost events' fields (DepthCharged's in
        `last_depth_charge`)."""
        p = self._amm_configured(market_id)
        last = self.last_depth_sync.get(market_id, 0)
        if last != 0 and timestamp < last + p.depth_interval:
            raise ModelRevert("DepthSyncTooSoon", last + p.depth_interval, timestamp)
        nav = self.pool_nav(timestamp)
        if nav <= 0:
            raise ModelRevert("PoolValueNotPositive", nav)
        m = self.markets[market_id]
        x0, y0 = m.x, m.y
        net = m.long_open_interest - m.short_open_interest
        target = mul_wad_down(mul_wad_down(nav, p.depth_ratio), self.effective_amplification(market_id))
        if net != 0 and x0 + net > 0:  # the target in live-reserve terms: depth is the quote reserve at zero net
            target = _checked(target * (x0 + net)) // x0  # position, x0 y0 / (x0 + net)
        y1 = self._depth_step(m, p, x0, y0, net, target, nav)
        if y1 < y0 and net != 0:  # the spot kept inside the band (reads the index: a stale feed reverts)
            floor = self._band_floor(x0, y0, net, self.index_price(market_id, timestamp), m.max_spread)
            if floor > y1:
                y1 = min(floor, y0)
        if y1 < y0 and net != 0:
            x1, y1 = self._shrink_keeping_peg(x0, y0, net, y1)
        else:
            x1 = mul_div_up(x0, y1, y0)
        exit_change = exit_value(x1, y1, net) - exit_value(x0, y0, net)
        charge = self._depth_charge(exit_change, net, m.taker_fee)
        cf = self._cumulative_funding_now(m, timestamp)
        cost = exit_change - (s_mul_wad_down(net, cf + charge) - s_mul_wad_down(net, cf))
        self.last_depth_sync[market_id] = timestamp
        total = self.depth_cost.get(market_id, 0) + cost
        self.depth_cost[market_id] = total
        self._set_reserves(m, x1, y1, timestamp, charge)
        self.last_depth_charge[market_id] = (exit_change, charge)
        return x1, y1, cost, total

    @classmethod
    def _depth_step(cls, m: Market, p: AmmParams, x0: int, y0: int, net: int, target: int, nav: int) -> int:
        """AmmController._depthStep: shrinking, at most maxDepthChange and, under a net position, not below
        `_shrink_floor` (the charge budget for a curve scaled about its zero-skew point, and a net short's
        x1 >= 2 |net|); deepening, at most min(maxDepthChange, takerFee / maxSpread) and within the same budget
        of exit value moved to the net position (closed form, E on (s x0, s y0)). The budget
        (`_charge_budget`) keeps the charge per base that hands it back (`_depth_charge`) within half a taker
        fee of the price."""
        if target <= y0:
            lo = y0 - mul_wad_down(y0, p.max_depth_change)
            if net != 0:
                lo = max(lo, cls._shrink_floor(x0, y0, net, cls._charge_budget(m, p, x0, y0, abs(net), nav)))
            return (lo if lo < y0 else y0) if target < lo else target
        step = min(div_wad_down(m.taker_fee, m.max_spread), p.max_depth_change)
        hi = y0 + mul_wad_down(y0, step)
        y1 = hi if target > hi else target
        if net == 0:
            return y1
        n = abs(net)
        budget = cls._charge_budget(m, p, x0, y0, n, nav)
        s_max = 0  # [wad] the largest scale factor within the budget; 0 = unbounded
        if net > 0:
            t = exit_value(x0, y0, net) + budget
            lhs = _checked(y0 * n)
            if lhs > _checked(t * x0):
                s_max = _checked(_checked(t * n) * WAD // (lhs - t * x0))  # Math.mulDiv
        else:
            c0 = -exit_value(x0, y0, net)
            if c0 > budget:
                r = c0 - budget
                if _checked(r * x0) > _checked(y0 * n):
                    s_max = _checked(_checked(r * n) * WAD // (r * x0 - y0 * n))
        if s_max != 0:
            by_cost = max(_checked(y0 * s_max) // WAD, y0)
            y1 = min(y1, by_cost)
        return y1

    @staticmethod
    def _charge_budget(m: Market, p: AmmParams, x0: int, y0: int, n: int, nav: int) -> int:
        """AmmController._chargeBudget: min(floor(NAV x maxDepthCost), floor(floor(y0 x takerFee) x maxSpread),
        floor(floor(n y0 / x0) x floor(takerFee / 2)))."""
        return min(mul_wad_down(nav, p.max_depth_cost), mul_wad_down(mul_wad_down(y0, m.taker_fee), m.max_spread),
                   mul_wad_down(_checked(n * y0) // x0, m.taker_fee // 2))

    @classmethod
    def _shrink_floor(cls, x0: int, y0: int, net: int, budget: int) -> int:
        """AmmController._shrinkFloor: ceil(y0 x sMin) with Z = x0 + net, Y = floor(x0 y0 / Z) and, for a net long n,
        sMin = ceil((e0 + B) n WAD / ((e0 + B) Z - Y n)); for a net short, the larger of ceil(n WAD / Z) and (when
        c0 > B, r = c0 - B) ceil(r n WAD / (Y n - r Z)); y0 itself (no shrink) when that denominator is not positive."""
        n = abs(net)
        z = cls._zero_skew_base(x0, net)
        yz = _checked(x0 * y0) // z
        if net > 0:
            t = exit_value(x0, y0, net) + budget
            if _checked(t * z) <= _checked(yz * n):
                return y0
            s_min = -((-_checked(t * n) * WAD) // (t * z - yz * n))  # Math.mulDiv, Ceil
        else:
            s_min = mul_div_up(n, WAD, z)
            c0 = -exit_value(x0, y0, net)
            if c0 > budget:
                r = c0 - budget
                if _checked(yz * n) <= _checked(r * z):
                    return y0
                s_min = max(s_min, -((-_checked(r * n) * WAD) // (yz * n - r * z)))
        return mul_wad_up(y0, s_min)

    @classmethod
    def _band_floor(cls, x0: int, y0: int, net: int, index: int, band: int) -> int:
        """AmmController._bandFloor: the lowest quote reserve whose shrink about the zero-skew point keeps the spot
        inside index +- floor(index x band): ceil(y0 x sMin) with, for a net long, q = isqrt(floor((index + edge)
        WAD / peg) WAD) and sMin = ceil(q n WAD / ((q - WAD) Z)); for a net short, q = ceil-isqrt(ceil((index - edge)
        WAD / peg) WAD) and sMin = ceil(q n WAD / ((WAD - q) Z)); y0 when q is on the wrong side of WAD."""
        n = abs(net)
        z = cls._zero_skew_base(x0, net)
        peg = cls._peg(x0, y0, net)
        edge = mul_wad_down(index, band)
        if net > 0:
            q = math.isqrt(_checked(_checked((index + edge) * WAD) // peg * WAD))
            if q <= WAD:
                return y0
            s_min = -((-_checked(q * n) * WAD) // _checked((q - WAD) * z))
        else:
            r = _checked(mul_div_up(index - edge, WAD, peg) * WAD)
            q = math.isqrt(r)
            if q * q < r:
                q += 1
            if q >= WAD:
                return y0
            s_min = -((-_checked(q * n) * WAD) // _checked((WAD - q) * z))
        return mul_wad_up(y0, s_min)

    @classmethod
    def _shrink_keeping_peg(cls, x0: int, y0: int, net: int, scaled: int) -> tuple[int, int]:
        """AmmController._shrinkKeepingPeg: Z = x0 + net, Z1 = floor(Z scaled / y0), Y1 = floor(floor(x0 y0 / Z) Z1 / Z),
        x1 = Z1 - net, y1 = floor(Y1 Z1 / x1): the curve scaled about its zero-skew point, the peg kept."""
        z = cls._zero_skew_base(x0, net)
        z1 = _checked(z * scaled) // y0
        yz1 = _checked((_checked(x0 * y0) // z) * z1) // z
        x1 = z1 - net
        if x1 < 0:
            raise ModelRevert("Panic", 0x11)
        if x1 == 0:
            raise ModelRevert("Panic", 0x12)
        return x1, _checked(yz1 * z1) // x1

    @staticmethod
    def _depth_charge(exit_change: int, net: int, taker_fee: int) -> int:
        """AmmController._depthCharge: per base, ceil(|exitChange| (WAD + f) / |net|) paid by the net side when
        it gained, floor(|exitChange| (WAD - f) / |net|) paid to it when it lost; positive = longs pay."""
        if exit_change == 0 or net == 0:
            return 0
        n = abs(net)
        if exit_change > 0:
            magnitude = mul_div_up(exit_change, WAD + taker_fee, n)
        else:
            magnitude = -exit_change * (WAD - taker_fee) // n
        return magnitude if (net > 0) == (exit_change > 0) else -magnitude

    def net_exit_value(self, market_id: int) -> int:
        """AmmController.netExitValue: the market's net position's vAMM exit value [wad]."""
        if market_id == 0 or market_id > len(self.markets):
            raise ModelRevert("UnknownMarket", market_id)
        m = self.markets[market_id]
        return exit_value(m.x, m.y, m.long_open_interest - m.short_open_interest)

    def set_concentration(self, market_id: int, range_: int, amplification: int) -> None:
        """AmmController.setConcentration: range in [0.01, 0.5], amplification in [1, maxAmplification(range)]."""
        if market_id == 0 or market_id > len(self.markets):
            raise ModelRevert("UnknownMarket", market_id)
        if not 10**16 <= range_ <= 5 * 10**17:
            raise ModelRevert("ParameterOutOfBounds", "range", range_)
        if not WAD <= amplification <= max_amplification(range_):
            raise ModelRevert("ParameterOutOfBounds", "amplification", amplification)
        self.concentration[market_id] = (range_, amplification)

    def effective_amplification(self, market_id: int) -> int:
        """AmmController._effectiveAmplification: 1 (WAD) without a concentration or while the market's band
        (maxSpread) is wider than the range, else the amplification."""
        range_, amplification = self.concentration.get(market_id, (0, 0))
        if amplification == 0 or self.markets[market_id].max_spread > range_:
            return WAD
        return amplification

    @staticmethod
    def _zero_skew_base(x: int, net: int) -> int:
        """AmmController._zeroSkewBase: x + net, the base reserve at zero net position (0 if not positive)."""
        return max(x + net, 0)

    @classmethod
    def _peg(cls, x: int, y: int, net: int) -> int:
        """AmmController._peg: x y / (x + net)^2 [wad], rounded down twice (Math.mulDiv); 0 without a
        zero-skew base."""
        x0 = cls._zero_skew_base(x, net)
        return 0 if x0 == 0 else (x * y // x0) * WAD // x0

    def peg_price(self, market_id: int) -> int:
        """AmmController.pegPrice: the curve's price where the traders' net position would be zero."""
        if market_id == 0 or market_id > len(self.markets):
            raise ModelRevert("UnknownMarket", market_id)
        m = self.markets[market_id]
        return self._peg(m.x, m.y, m.long_open_interest - m.short_open_interest)

    @_atomic
    def repeg(self, market_id: int, timestamp: int) -> tuple[int, int]:
        """AmmController.repeg: at most once per block (and repegInterval), when the peg (`_peg`, the curve's
        price at zero net position) is more than repegThreshold from the live index, the quote reserve alone
        moves the peg toward the index, by at most maxRepegStep of the peg and at most what keeps the change
        of the net position's exit value within budget = max(NAV, 0) x maxRepegCost: with n = |net|, x the
        base reserve (fixed) and x0 = x + net, dy = dP x0^2 / x moves the exit value by dP n x0 / x, so
        dP <= floor(floor(budget x / x0) x 1e18 / n); dy = floor(floor(dP x0 / x) x0 / 1e18). The cost
        booked in repegCost and emitted is the exact change of the net's exit value,
        exitValue(x, y1, net) - exitValue(x, y0, net): the pool's NAV moves by -cost.
        Returns (price1, cost), the Repeg event's priceAfter and cost."""
        p = self._amm_configured(market_id)
        last = self.last_repeg.get(market_id, 0)
        nxt = last + (p.repeg_interval or 1)
        if last != 0 and timestamp < nxt:
            raise ModelRevert("RepegTooSoon", nxt, timestamp)
        m = self.markets[market_id]
        index = self._index(m, timestamp)
        net = m.long_open_interest - m.short_open_interest
        x, y0 = m.x, m.y
        x0 = self._zero_skew_base(x, net)
        peg0 = self._peg(x, y0, net)
        gap = abs(index - peg0)
        divergence = div_wad_down(gap, index)
        if x0 == 0 or divergence <= p.repeg_threshold:
            raise ModelRevert("RepegNotNeeded", divergence, p.repeg_threshold)
        max_move = mul_wad_down(peg0, p.max_repeg_step)
        if net != 0:
            nav = self.pool_nav(timestamp)
            budget = mul_wad_down(nav, p.max_repeg_cost) if nav > 0 else 0
            by_cost = div_wad_down(budget * x // x0, abs(net))
            max_move = min(max_move, by_cost)
        move = min(gap, max_move)
        dy = (move * x0 // x) * x0 // WAD
        y1 = y0 + dy if index > peg0 else y0 - dy
        self._set_reserves(m, x, y1, timestamp)
        price1 = y1 * WAD // x
        cost = exit_value(x, y1, net) - exit_value(x, y0, net)
        self.repeg_cost[market_id] = self.repeg_cost.get(market_id, 0) + cost
        self.last_repeg[market_id] = timestamp
        return price1, cost


# ---------------------------------------------------------------------------- CircuitBreaker (read-only mirror)

NO_CAP = 2**96 - 1


@dataclass
class BreakerParams:
    """ICircuitBreaker.BreakerParams, at CircuitBreaker.defaultParams()."""
    move_threshold: int = 5 * 10**16
    cool_off: int = 1_800
    divergence_threshold: int = 3 * 10**16
    divergence_duration: int = 1_800
    insurance_target: int = 10**16
    auction_soft_share: int = 5 * 10**17
    max_skew_share: int = 2 * 10**17


@dataclass
class MarketThresholds:
    """ICircuitBreaker.MarketThresholds: a market's own move, divergence and skew thresholds, 0 in a field: the global value."""
    move_threshold: int = 0
    divergence_threshold: int = 0
    divergence_duration: int = 0
    max_skew_share: int = 0


def breaker_thresholds(params: BreakerParams | None = None,
                       overrides: MarketThresholds | None = None) -> MarketThresholds:
    """CircuitBreaker.marketThresholds: the thresholds in force, the market's own where set, else the global."""
    bp = params or BreakerParams()
    t = overrides or MarketThresholds()
    return MarketThresholds(t.move_threshold or bp.move_threshold, t.divergence_threshold or bp.divergence_threshold,
                            t.divergence_duration or bp.divergence_duration, t.max_skew_share or bp.max_skew_share)


def _relative(a: int, b: int) -> int:
    """CircuitBreaker._relative: |a - b| / b [wad] rounded down, 0 when b is 0."""
    return 0 if b == 0 else div_wad_down(abs(a - b), b)


def breaker_check(model: Model, market_id: int, timestamp: int, params: BreakerParams | None = None,
                  reduce_only_until: int = 0, divergent_since: int = 0,
                  restriction: tuple[int, bool] = (NO_CAP, False),
                  configured_max_open_interest: int | None = None, skew_until: int = 0, skew_cap: int = 0,
                  thresholds: MarketThresholds | None = None) -> tuple:
    """CircuitBreaker.check(marketId): what a poke would measure and ask for, as the Evaluation tuple (capBase,
    reduceOnly, changes, holding, reduceOnlyUntil, divergentSince, index, move, divergence, insuranceFund,
    insuranceRequired, insuranceFactor, liveAuctionNotional, auctionSoft, auctionFactor, skewNotional, skewLimit,
    nav, skewUntil, skewCap). The breaker's stored state and the governor's restriction and configured cap are arguments (a breaker
    never poked and a governor that recorded nothing: the defaults). `thresholds`: the market's own
    thresholds as set (`setMarketThresholds`; None: none). Raises what indexPrice / twaps raise."""
    bp = params or BreakerParams()
    t = breaker_thresholds(bp, thresholds)
    index = model.index_price(market_id, timestamp)
    # _globals: every market's open interest, gross notional at the index each last accrued at.
    gross = 0
    for mid in sorted(model.markets):
        mk = model.markets[mid]
        gross += mul_wad_up(mk.long_open_interest + mk.short_open_interest, mk.last_index_price)
    fund = model.insurance_fund()
    required = mul_wad_up(gross, bp.insurance_target)
    insurance_factor = WAD if fund >= required else div_wad_down(fund, required)
    live = model.live_notional
    max_live = model.liquidation_params.max_auction_notional
    soft = mul_wad_down(max_live, bp.auction_soft_share)
    if live <= soft:
        auction_factor = WAD
    elif live < max_live:
        auction_factor = div_wad_down(max_live - live, max_live - soft)
    else:
        auction_factor = 0
    nav = model.pool_nav(timestamp)
    # _evaluate
    if market_id == 0 or market_id > len(model.markets):
        raise ModelRevert("UnknownMarket", market_id)
    mark_twap, index_twap = model.twaps(market_id, timestamp)
    move = _relative(index, index_twap)
    divergence = _relative(mark_twap, index_twap)
    until = reduce_only_until
    cool_off_end = timestamp + bp.cool_off
    holding = 0
    if move > t.move_threshold:
        holding |= 1 << 0
        until = max(until, cool_off_end)
    since = divergent_since
    if divergence > t.divergence_threshold:
        if since == 0:
            since = timestamp
        if timestamp - since >= t.divergence_duration:
            holding |= 1 << 1
            until = max(until, cool_off_end)
    else:
        since = 0
    reduce_only = timestamp < until
    cap = NO_CAP
    conf = model.markets[market_id].max_open_interest if configured_max_open_interest is None \
        else configured_max_open_interest
    if insurance_factor < WAD:
        holding |= 1 << 2
        cap = min(cap, mul_wad_down(conf, insurance_factor))
    if auction_factor < WAD:
        holding |= 1 << 3
        cap = min(cap, mul_wad_down(conf, auction_factor))
    mk = model.markets[market_id]
    long_oi, short_oi = mk.long_open_interest, mk.short_open_interest
    skew_notional = mul_wad_up(abs(long_oi - short_oi), index)
    skew_limit = mul_wad_down(nav, t.max_skew_share) if nav > 0 else 0
    if nav <= 0 or skew_notional > skew_limit:  # seen now: the cap holds a cool-off from now
        skew_until, skew_cap = cool_off_end, max(long_oi, short_oi)
    if timestamp < skew_until:
        holding |= 1 << 4
        cap = min(cap, skew_cap)
    changes = restriction[0] != cap or restriction[1] != reduce_only
    return (cap, reduce_only, changes, holding, until, since, index, move, divergence, fund, required,
            insurance_factor, live, soft, auction_factor, skew_notional, skew_limit, nav, skew_until, skew_cap)
