"""The Python home of the contracts' units and of the funding defaults (one copy; see tests/model/test_units.py,
which checks each against the deployed contracts' own constants).

- WAD: 1e18, the fixed-point unit of every price, size, ratio and quote amount on chain.
- HOUR, DAY: seconds.
- INT96_MAX: the largest position size and open-interest cap (ClearingHouse: maxOpenInterest <= int96.max).
- UINT64_MAX: the largest value of a uint64 parameter field (e.g. AmmParams' WAD ratios: 18.45 at most).
- DEFAULT_*: ClearingHouse's funding defaults for a newly listed market (its public constants of the same
  names): cap 0.1 %/h at most (a market is listed at `listing_funding_cap(taker_fee)`,
  its taker fee / 9 per hour), velocity 0.05 %/h per hour, time constant 2 h, the premium paid over 24 h (at most 720 h), and the skew
  term's rate (0.2 %/h for a skew, (long OI - short OI) / base reserve, of 1; 0.01 %/h at 5 %).
- DEFAULT_POOL_*: LiquidityPool's pool parameters at deployment (its constructor's PoolParams).
- AUCTION_CURVES, DEFAULT_AUCTION_*: ILiquidationEngine.Curve's names, and LiquidationEngine.defaultAuctionParams
  (a market's auction until governance sets its own; the deployment sets each listed market's from its config).
- DEFAULT_LIQUIDATION_*: LiquidationEngine's constructor LiquidationParams (liquidationParams() until governance
  sets its own; the deployment leaves them).
- PAUSE_*: the Vault's pause levels (contracts/interfaces/IErrors.sol's file-level constants).
"""
from __future__ import annotations

WAD = 10**18
HOUR = 3_600
DAY = 86_400
MAX_UINT256 = 2**256 - 1
INT96_MAX = 2**95 - 1
UINT64_MAX = 2**64 - 1

DEFAULT_MAX_FUNDING_RATE = 10**15  # [wad per hour] 0.1 %/h
MAX_FUNDING_RATE = 10**16  # ClearingHouseConfigurator: the hard bound on a cap [wad per hour] 1 %/h
# ClearingHouseConfigurator: a market's cap is at most its taker fee over FUNDING_CAP_FEE_HOURS hours (cap x 6 <= fee),
# over FUNDING_CAP_FEE_HOURS_FAST while its time constant is under SLOW_SMOOTHING_TAU, and its rate velocity at least
# the cap / RATE_VELOCITY_CAP_DIVISOR per hour: the funding oscillation's bound (docs/security.md "Fixed: the funding
# oscillation"); a listing's cap is the fee over FUNDING_CAP_FEE_HOURS_FAST, at most DEFAULT_MAX_FUNDING_RATE.
FUNDING_CAP_FEE_HOURS = 6
FUNDING_CAP_FEE_HOURS_FAST = 9
SLOW_SMOOTHING_TAU = 12 * 3_600  # [s]
RATE_VELOCITY_CAP_DIVISOR = 4
MIN_RATE_VELOCITY = 10**10  # ClearingHouseConfigurator: the hard floor of maxRateVelocity [wad per hour per hour]
DEFAULT_MAX_RATE_VELOCITY = 5 * 10**14  # [wad per hour, per hour] 0.05 %/h²
DEFAULT_SMOOTHING_TAU = 2 * HOUR  # [s]
FUNDING_WINDOW_HOURS = 24  # ClearingHouseStorage: the funding TWAPs' and mean skew's span (hours), re-sampled hourly
DEFAULT_FUNDING_PERIOD_HOURS = 24
MAX_FUNDING_PERIOD_HOURS = 720  # ClearingHouseConfigurator: the longest funding period a market may set
SMOOTHING_TAU_BOUNDS = (60, 7 * DAY)  # ClearingHouseConfigurator: MIN_SMOOTHING_TAU, MAX_SMOOTHING_TAU [s]
DEFAULT_SKEW_FUNDING_PPM = 2_000  # [1e-6 per hour per unit of skew] 0.2 %/h at a skew of the whole base reserve
MAX_SKEW_FUNDING_PPM = 10_000
MAX_MIN_KEEPER_FEE_ETH = 0.1  # OrderRouter.MAX_MIN_KEEPER_FEE [ETH]
EXECUTION_WINDOW_BOUNDS = (12, 3_600)  # OrderRouter.MIN_EXECUTION_WINDOW, MAX_EXECUTION_WINDOW [s]
MAX_PEG_TOLERANCE_BPS = 500  # ClearingHouseConfigurator: the stale-peg rule's widest tolerance (5 %)

# LiquidityPool's constructor: PoolParams({withdrawCooldown: 1 days, withdrawWindow: 2 days, reserveFactor: 0.2e18})
DEFAULT_POOL_WITHDRAW_COOLDOWN = DAY  # PoolParams.withdrawCooldown [s] from a withdrawal request to its window
DEFAULT_POOL_WITHDRAW_WINDOW = 2 * DAY  # PoolParams.withdrawWindow [s] the window's length
DEFAULT_POOL_RESERVE_FACTOR = 2 * 10**17  # PoolParams.reserveFactor [wad] 20 % of the net exposure held back

# ILiquidationEngine.Curve, in enum order (a curve's number on chain is its index here)
AUCTION_CURVES = ("linear", "exponential", "stairstep")
# LiquidationEngine.defaultAuctionParams: AuctionParams({curve: Curve.Exponential, duration: 30 minutes, step: 60,
# maxDiscount: 0.02e18, resetDrop: 0.05e18})
DEFAULT_AUCTION_CURVE = 1  # AuctionParams.curve: Curve.Exponential (AUCTION_CURVES[1])
DEFAULT_AUCTION_DURATION = 30 * 60  # AuctionParams.duration [s] to the full discount
DEFAULT_AUCTION_STEP = 60  # AuctionParams.step [s] the stairstep curve's step width
DEFAULT_AUCTION_MAX_DISCOUNT = 2 * 10**16  # AuctionParams.maxDiscount [wad] 2 %
DEFAULT_AUCTION_RESET_DROP = 5 * 10**16  # AuctionParams.resetDrop [wad] 5 % index move in the account's favour
# LiquidationEngine's constructor: LiquidationParams({targetHealth: 1.25e18, chip: 0.001e18, penalty: 0.01e18,
# maxRedos: 3, tip: 5e18, maxKeeperReward: 1_000e18, maxAuctionNotional: 10_000_000e18})
DEFAULT_LIQUIDATION_TARGET_HEALTH = 125 * 10**16  # LiquidationParams.targetHealth [wad] a kick restores 1.25 x maint.
DEFAULT_LIQUIDATION_CHIP = 10**15  # LiquidationParams.chip [wad] keeper reward, 0.1 % of the slice notional
DEFAULT_LIQUIDATION_PENALTY = 10**16  # LiquidationParams.penalty [wad] 1 % of the slice notional to insurance
DEFAULT_LIQUIDATION_MAX_REDOS = 3  # LiquidationParams.maxRedos [count] redos before `backstop`
DEFAULT_LIQUIDATION_TIP = 5 * WAD  # LiquidationParams.tip [wad quote] flat keeper reward on a kick and each redo
DEFAULT_LIQUIDATION_MAX_KEEPER_REWARD = 1_000 * WAD  # LiquidationParams.maxKeeperReward [wad quote] tip + chip cap
DEFAULT_LIQUIDATION_MAX_AUCTION_NOTIONAL = 10_000_000 * WAD  # LiquidationParams.maxAuctionNotional [wad quote] live

# The Vault's pause levels (IErrors.sol: PAUSE_NO_NEW_RISK, PAUSE_NO_TRADING, PAUSE_WITHDRAW_ONLY; 0 is none)
PAUSE_NO_NEW_RISK = 1  # from 1 no position may add risk
PAUSE_NO_TRADING = 2  # from 2 no trade and no liquidation
PAUSE_WITHDRAW_ONLY = 3  # at 3 only withdrawals

# The headroom a vPerp call's gas limit needs, per market it reads, over an estimate made for another block on the
# same state: a market's first update in a new hour writes the hour's observations and re-samples its funding target
# (a view over a market a whole hour idle takes that sample too), dearest after hours without blocks a day back.
# tests/sdk/test_gas_headroom.py measures the rise (80,321 per market at most) and checks it stays under 100,000.
GAS_HEADROOM_PER_MARKET = 120_000


def gas_limit(estimate: int, markets: int) -> int:
    """A transaction's gas limit: `estimate` (eth_estimateGas, made for one block) plus GAS_HEADROOM_PER_MARKET for
    each market the call reads (a trade or a margin check: the markets the account holds; the pool: every market;
    when unsure, every market of the deployment). Unused gas is not charged: only the limit is higher."""
    return estimate + GAS_HEADROOM_PER_MARKET * markets


def cap_fee_hours(smoothing_tau: int) -> int:
    """The hours of funding at its cap a market's taker fee must cover at this time constant [s]
    (ClearingHouseConfigurator._capFeeHours)."""
    return FUNDING_CAP_FEE_HOURS_FAST if smoothing_tau < SLOW_SMOOTHING_TAU else FUNDING_CAP_FEE_HOURS


def max_funding_cap(taker_fee: int, smoothing_tau: int) -> int:
    """The largest funding cap [wad per hour] a market with this taker fee [wad] and time constant [s] may set: the
    hard bound, or the fee over `cap_fee_hours` hours, rounded down (ClearingHouseConfigurator._setFundingParams)."""
    return min(MAX_FUNDING_RATE, taker_fee // cap_fee_hours(smoothing_tau))


def listing_funding_cap(taker_fee: int) -> int:
    """The cap a market is listed with [wad per hour] (ClearingHouseConfigurator.listMarket): at the listing's
    2-hour time constant, the fee / 9, at most DEFAULT_MAX_FUNDING_RATE."""
    return min(DEFAULT_MAX_FUNDING_RATE, taker_fee // cap_fee_hours(DEFAULT_SMOOTHING_TAU))


def funding_off_params(fp) -> tuple[int, int, int, int, int]:
    """The FundingParams that turn a market's funding off, from its current ones `fp` (IClearingHouse.FundingParams
    in field order: maxFundingRate, maxRateVelocity, baselineRate, smoothingTau, fundingPeriodHours; an ape struct
    or a plain tuple): the cap 0 and with it the baseline 0 (bounded by the cap), the velocity, time constant and
    period kept. The applied rate then stays 0, so health and PnL have no time term. setFundingParams' argument for
    every funding-off helper: the tests' `helpers.trading.funding_off` (ape), the fast tier's (pyrevm, its own call
    API: tests/helpers/fast_erc4626.py's `funding_off` step, vperp/fast/exploits.py's setup)."""
    _, velocity, _, tau, period = tuple(fp)
    return (0, velocity, 0, tau, period)


def min_rate_velocity(max_funding_rate: int) -> int:
    """The least maxRateVelocity [wad per hour per hour] a market with this cap may set: the hard floor, or a quarter
    of the cap per hour, rounded down (ClearingHouseConfigurator._setFundingParams)."""
    return max(MIN_RATE_VELOCITY, max_funding_rate // RATE_VELOCITY_CAP_DIVISOR)
