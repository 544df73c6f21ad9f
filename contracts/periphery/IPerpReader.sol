// SPDX-License-Identifier: BUSL-1.1
pragma solidity 0.8.28;

import {IClearingHouse} from "../interfaces/IClearingHouse.sol";
import {ILiquidationEngine} from "../interfaces/ILiquidationEngine.sol";
import {IErrors} from "../interfaces/IErrors.sol";
import {IVault} from "../interfaces/IVault.sol";

/// @title IPerpReader
/// @notice Read-only answers bots and dashboards ask for, computed from the modules' public views (the
///         reader holds no state and changes none): what an account may withdraw, the index at which it
///         becomes liquidatable, the largest trade a market accepts now, and a market's state in one call.
/// @dev Every answer is for the block it is read in (its timestamp and oracle answers). Units are WAD
///      except where a name says token units.
interface IPerpReader is IErrors {
    // ------------------------------------------------------------------ types

    /// @notice A market's state in one call.
    struct MarketSummary {
        uint32 marketId;
        bytes32 symbol;
        bool indexValid; // false when the feed is stale or answers a non-positive price (then indexPrice = 0)
        uint256 indexPrice; // [wad] validated oracle price (0 when !indexValid)
        uint256 spotPrice; // [wad] vAMM price now, quoteReserve / baseReserve
        uint256 markTwap; // [wad] `ClearingHouse.fundingState`'s: vAMM TWAP over the funding window (about 24 h)
        uint256 indexTwap; // [wad] index TWAP over the window
        int256 appliedRate; // [wad per hour] `fundingState`: rate in force now
        int256 targetRate; // [wad per hour] target implied by the TWAPs now
        int256 premium; // [wad] (markTwap - indexTwap) / indexTwap
        int256 projected1h; // [wad per hour] applied rate 1 h ahead if the premium stays
        int256 projected8h; // [wad per hour] applied rate 8 h ahead if the premium stays
        int256 poolBalance; // [wad] the liquidity pool's balance in the Vault (the pool-ratio cap's base)
        uint256 oiNotionalCap; // [wad quote] per-side notional cap: floor(max(poolBalance, 0) x maxOiPoolRatio)
        uint256 maxLong; // [wad base] `maxTradeSize(marketId, true)` (0 when !indexValid)
        uint256 maxShort; // [wad base] `maxTradeSize(marketId, false)` (0 when !indexValid)
        uint256 insuranceFeeShare; // [wad] part of the taker fee paid to the insurance fund
        uint8 pauseLevel; // the Vault's pause level (1: no new risk, 2: no trading, 3: withdrawals only)
        IClearingHouse.MarketState state; // reserves, open interest, funding index, last update, ...
        IClearingHouse.MarketParams params; // oracle, margin ratios, fee, band, OI caps, minimum size
        IClearingHouse.FundingParams fundingParams;
        ILiquidationEngine.AuctionParams auctionParams;
    }

    // ------------------------------------------------------------------ errors

    /// @notice `marketId` is not listed (ids run from 1 to `ClearingHouse.marketCount()`).
    error UnknownMarket(uint32 marketId);

    // ------------------------------------------------------------------ views

    /// @notice What `Vault.withdraw(subaccount, type(uint256).max)` by `owner` would pay out now:
    ///         `amount = floor(min(freeCollateral, collateral) / tokenScale)` token units when that
    ///         minimum is positive, else 0 (the withdrawal would revert). Less than one token unit of
    ///         WAD stays in the account (the ledger is finer than the token).
    /// @return amount [token units]
    /// @return amountWad [wad] amount x tokenScale, what leaves the ledger
    function withdrawable(address owner, uint32 subaccount) external view returns (uint256 amount, uint256 amountWad);

    /// @notice The index price of `marketId` at which `(owner, subaccount)` becomes liquidatable, every other
    ///         input held where it is now (other markets' prices, collateral, funding owed, time).
    /// @dev With x the market's index, the Vault values the account as
    ///      h(x) = accountValue(x) - maintenance(x) = A + floor(s x) - B - ceil(ceil(|s - a| x) mmr), where s is
    ///      the position, a its auctioned part and A, B everything else (read now); `isLiquidatable` is h(x) < 0.
    ///      h is linear in x up to less than 3 wei of rounding, so the reader solves the line, then evaluates
    ///      h exactly at the prices the feed can report (multiples of its unit u = 10^(18 - decimals)):
    ///      - long: the highest such price at which the account is liquidatable; at every feed price above
    ///        it, it is not. Returns 0 (`NO_LIQUIDATION_PRICE`) when no positive price makes it liquidatable.
    ///      - short: the lowest such price at which it is liquidatable; at every feed price below it, it is
    ///        not (u when it is liquidatable at every price). Returns 0 when only a price above 2^128 wei would.
    ///      - 0 when the account holds no position in the market.
    ///      The answer errs only toward the user's safety: when the linear solve leaves more than 8 feed
    ///      units to check (positions below 3e18 / (8 u) base wei: 3.75e-11 base for an 8-decimal feed),
    ///      the price returned is the nearest one not verified, so the account may turn liquidatable up to
    ///      that band later than reported, never earlier. Reverts like the Vault's views when a feed the
    ///      account depends on is stale.
    /// @return price [wad] on the feed's grid, or 0
    function liquidationPrice(address owner, uint32 subaccount, uint32 marketId) external view returns (uint256 price);

    /// @notice The largest base a trade in `marketId` may add now on one side (`isLong`: a buy), for an account
    ///         with no position in the market: the largest b for which `openPosition` passes the vAMM checks
    ///         (`InsufficientLiquidity`, `PriceBandExceeded`) and both open-interest caps
    ///         (`OpenInterestCapExceeded`), with the pool balance the trade itself leaves (its fee net of the
    ///         insurance share credited). One wei more fails one of them. Margin, `minPositionSize`, slippage
    ///         and the pause level are the caller's to check.
    /// @dev A reduce or close is never limited by the band or the caps. An account adding to a position also
    ///      settles its funding into the pool in the same trade, which moves the pool-ratio cap by that amount.
    /// @return base [wad base]
    function maxTradeSize(uint32 marketId, bool isLong) external view returns (uint256 base);

    /// @notice Everything a dashboard shows about `marketId`, in one call (never reverts on a stale feed).
    function marketSummary(uint32 marketId) external view returns (MarketSummary memory);

    /// @notice The modules it reads (fixed at construction).
    function vault() external view returns (IVault);
    function clearingHouse() external view returns (IClearingHouse);
    function liquidationEngine() external view returns (ILiquidationEngine);

    /// @notice `liquidationPrice`'s answer when no price applies (no position; a long no positive index
    ///         makes liquidatable; a short only an index above `MAX_PRICE` would).
    function NO_LIQUIDATION_PRICE() external view returns (uint256);

    /// @notice Highest index `liquidationPrice` considers [wad]: the ClearingHouse records indices as uint128.
    function MAX_PRICE() external view returns (uint256);
}
