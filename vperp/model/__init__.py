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

Layout (one module per contract, named after it; `Model` composes them): `base.py` (constants, `ModelRevert`),
`wad_math.py` (WadMath, VAmmMath and MarginMath), `state.py` (the structs), `vault.py`, `clearing_house.py`,
`liquidation_engine.py`, `liquidity_pool.py`, `amm_controller.py` (each a mixin holding that contract's actions,
internals and views), `model.py` (`Model`: state, construction, the mock feeds) and `circuit_breaker.py` (the
breakers' read-only check). Everything is importable from `vperp.model` as before.
"""
from __future__ import annotations

from .base import (  # noqa: F401
    FUNDING_OBSERVATIONS, INT112_MAX, INT128_MAX, INT64_MAX, MAX_BUILDER_FEE_RATE, MAX_OPEN_MARKETS, ModelRevert,
    OBSERVATIONS, OBSERVATIONS_PER_WINDOW, SUSPENSION_TOLERANCE, U112, UINT128_MAX, UINT256_MAX, ZERO_ADDRESS,
)
from .wad_math import (  # noqa: F401
    _checked, _int128, _int_n, _uint128, _wrap_i32, apply_trade, div_wad_down, div_wad_up, edge_reserve, exit_value,
    mul_div_up, mul_wad_down, mul_wad_up, s_mul_div_down, s_mul_div_up, s_mul_wad_down, s_mul_wad_up, vamm_price,
    vamm_swap,
)
from .state import (  # noqa: F401
    _atomic, Account, AmmParams, Auction, AuctionParams, Cancelled, CURVE_EXPONENTIAL, CURVE_LINEAR, CURVE_STAIRSTEP,
    EXP_SPEED, FundingParams, LiquidationParams, MarginSummary, Market, Observation, peg_holds, POOL_OFFSET, Position,
    Redone, SliceResult, TradeResult, WithdrawRequest,
)
from .model import Model  # noqa: F401
from .circuit_breaker import (  # noqa: F401
    _relative, breaker_check, breaker_thresholds, BreakerParams, MarketThresholds, NO_CAP,
)
from .vault import VaultMirror  # noqa: F401
from .clearing_house import ClearingHouseMirror  # noqa: F401
from .liquidation_engine import LiquidationEngineMirror  # noqa: F401
from .liquidity_pool import LiquidityPoolMirror  # noqa: F401
from .amm_controller import AmmControllerMirror  # noqa: F401
# Names the single-module model imported and callers read from it.
from ..config import DeployConfig, default_config, max_amplification, wad  # noqa: F401
from ..funding import clamp, evolve, exp_neg_wad, tdiv  # noqa: F401
from ..units import (  # noqa: F401
    DEFAULT_FUNDING_PERIOD_HOURS, DEFAULT_MAX_FUNDING_RATE, DEFAULT_MAX_RATE_VELOCITY, DEFAULT_SKEW_FUNDING_PPM,
    DEFAULT_SMOOTHING_TAU, FUNDING_WINDOW_HOURS, HOUR, INT96_MAX, MAX_PEG_TOLERANCE_BPS, MAX_SKEW_FUNDING_PPM,
    PAUSE_NO_NEW_RISK, PAUSE_NO_TRADING, PAUSE_WITHDRAW_ONLY, WAD,
)
