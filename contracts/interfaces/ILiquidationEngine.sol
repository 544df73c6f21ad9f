// SPDX-License-Identifier: BUSL-1.1
pragma solidity 0.8.28;

import {IClearingHouse} from "./IClearingHouse.sol";
import {IErrors} from "./IErrors.sol";
import {IVault} from "./IVault.sol";

/// @title ILiquidationEngine
/// @notice Dutch-auction liquidation of position slices (docs/liquidation.md). `kick` moves the smallest slice of a
///         liquidatable account's position that restores its target health into an auction; takers buy
///         it at the live index adjusted by a discount that grows with time; the vAMM is not touched
///         unless an auction is redone `maxRedos` times and then backstopped.
/// @dev Units: base and prices WAD; ratios WAD; time seconds. A long slice is sold to the taker at
///      `index x (1 - discount)`, a short slice at `index x (1 + discount)`.
interface ILiquidationEngine is IErrors {
    // ------------------------------------------------------------------ types

    /// @notice Shape of the discount over an auction's life, chosen per market.
    enum Curve {
        Linear, // discount = maxDiscount x t / duration
        Exponential, // discount = maxDiscount x (1 - e^(-4 t / duration)) / (1 - e^-4)
        Stairstep // discount = maxDiscount x floor(t / step) / floor(duration / step)
    }

    /// @notice Per-market auction parameters (defaults apply to a market never configured).
    struct AuctionParams {
        Curve curve;
        uint32 duration; // [s] time to reach maxDiscount; after it the auction must be redone
        uint32 step; // [s] stairstep width
        uint64 maxDiscount; // [wad]
        uint64 resetDrop; // [wad] index move in the account's favour since (re)start after which the auction must be redone
    }

    /// @notice Global liquidation parameters.
    struct LiquidationParams {
        uint64 targetHealth; // [wad] a kick restores accountValue >= targetHealth x maintenance
        uint64 chip; // [wad] keeper reward as a fraction of the slice notional
        uint64 penalty; // [wad] liquidation penalty to the insurance fund, fraction of the slice notional
        uint8 maxRedos; // redos allowed before `backstop`
        uint96 tip; // [wad quote] flat keeper reward, on kick and on each redo
        uint96 maxKeeperReward; // [wad quote] cap on tip + chip x notional
        uint128 maxAuctionNotional; // [wad quote] cap on the notional (at kick index) in live auctions
    }

    /// @notice One auction. `size` is what is left (the position's sign); zero once finished.
    struct Auction {
        address owner;
        uint32 subaccount;
        uint32 marketId;
        uint8 redos;
        int128 size; // [wad base] remaining slice, signed like the position
        uint128 startIndex; // [wad] index at (re)start
        uint64 startTime; // [s] (re)start time
        uint128 notional; // [wad quote] remaining size x startIndex, counted in the global cap
    }

    // ------------------------------------------------------------------ errors

    /// @notice The account is not below its maintenance requirement.
    error NotLiquidatable(address owner, uint32 subaccount);
    /// @notice The account holds no position (outside auctions) in this market.
    error NothingToLiquidate(address owner, uint32 subaccount, uint32 marketId);
    /// @notice No auction has this id.
    error UnknownAuction(uint256 auctionId);
    /// @notice The auction is finished (fully taken or backstopped).
    error AuctionFinished(uint256 auctionId);
    /// @notice The auction ran past its duration or the index moved past `resetDrop` in the account's favour: redo
    ///         (which cancels it if the account recovered) or backstop it.
    error AuctionExpired(uint256 auctionId);
    /// @notice `redo`/`backstop` on an auction that can still be taken.
    error AuctionNotExpired(uint256 auctionId);
    /// @notice `redo` after `maxRedos` redos: only `backstop` remains.
    error MaxRedosReached(uint256 auctionId, uint8 redos);
    /// @notice `backstop` before the auction has been redone `maxRedos` times.
    error RedosRemaining(uint256 auctionId, uint8 redos, uint8 maxRedos);
    /// @notice The auction price is worse for the taker than `limitPrice`.
    error LimitPriceNotMet(uint256 price, uint256 limitPrice);
    /// @notice A take of less than the minimum position size that does not finish the auction.
    error TakeBelowMinimum(uint256 amount, uint256 minPositionSize);
    /// @notice A take that would leave a remainder below the minimum position size.
    error DustRemainder(uint256 remainder, uint256 minPositionSize);
    /// @notice The take amount is zero.
    error ZeroAmount();
    /// @notice The liquidated account may not take its own auction.
    error SelfTake(address owner, uint32 subaccount);
    /// @notice Live-auction notional would exceed `maxAuctionNotional`.
    error AuctionCapReached(uint256 liveNotional, uint256 sliceNotional, uint256 cap);
    /// @notice `cancel` of an auction whose account still needs it: its value is below `requirement`,
    ///         targetHealth x (the free parts' maintenance + the auctioned parts' backing).
    error AuctionStillNeeded(uint256 auctionId, int256 accountValue, uint256 requirement);
    /// @notice `backstop` can close nothing now: any close would take the vAMM price past the auction's
    ///         price at its full discount, or outside the market's band around the index (a keeper retries
    ///         once arbitrage or a repeg has moved it back).
    error BackstopBlocked(uint256 auctionId, uint256 spotPrice, uint256 indexPrice);

    /// @notice A guarded read of the account's health (the bad-debt estimate's refresh after a fill, the recovery
    ///         check of a redo or a backstop) ran out of the gas the call was given: the transaction's gas limit
    ///         was too low for it. Such a read may fail quietly only for its own reason (a stale feed), never for
    ///         the caller's gas limit. `gasLeft` is what was left after the call.
    error GasTooLowForCheck(uint256 gasLeft);

    // ------------------------------------------------------------------ events

    /// @notice An auction started: `size` of the position (its sign) at `startIndex`.
    event Kick(
        uint256 indexed auctionId,
        address indexed owner,
        uint32 indexed subaccount,
        uint32 marketId,
        int256 size,
        uint256 startIndex,
        address keeper,
        uint256 keeperReward,
        uint256 penalty
    );
    /// @notice `amount` base of the auction went to the taker at `price`; `remaining` is left.
    event Take(
        uint256 indexed auctionId,
        address indexed taker,
        uint32 takerSubaccount,
        uint256 amount,
        uint256 price,
        int256 remaining
    );
    /// @notice The auction restarted from the live index (`redos` so far); the keeper got the tip.
    event Redo(uint256 indexed auctionId, uint8 redos, uint256 startIndex, address keeper, uint256 tip);
    /// @notice `size` of the auction was closed against the vAMM for `quote` (signed flow to the owner);
    ///         what the band did not allow stays in the auction (see `auction(id).size`).
    event Backstop(uint256 indexed auctionId, int256 size, int256 quote);
    /// @notice The account recovered: the auction ended without a fill, its `size` went back to the
    ///         position's free part, and nobody was paid.
    event AuctionCancelled(uint256 indexed auctionId, int256 size, int256 accountValue, uint256 requirement);
    /// @notice Per-market auction parameters set.
    event AuctionParamsSet(uint32 indexed marketId, AuctionParams params);
    /// @notice Global parameters set.
    event LiquidationParamsSet(LiquidationParams params);

    // ------------------------------------------------------------------ actions

    /// @notice Start an auction for the smallest slice of `(owner, subaccount)`'s position in `marketId`
    ///         that restores its target health. Anyone may call; `keeper` is paid the reward.
    function kick(address owner, uint32 subaccount, uint32 marketId, address keeper) external returns (uint256 auctionId);

    /// @notice Take up to `maxBase` of the auction into the caller's `takerSubaccount` at the current
    ///         auction price, if it is at least as good as `limitPrice` for the taker.
    /// @return amount the base taken
    /// @return price the auction price paid
    function take(uint256 auctionId, uint256 maxBase, uint256 limitPrice, uint32 takerSubaccount)
        external
        returns (uint256 amount, uint256 price);

    /// @notice Restart an expired auction from the live index; pays `keeper` the tip, capped at what the
    ///         account can pay after the worst fill, while the account is below the maintenance of its
    ///         free parts plus the backing of its auctioned parts (none once it is healthy again). If the
    ///         account has recovered (value at or above
    ///         targetHealth x (the free parts' maintenance + the auctioned parts' backing), the health a kick
    ///         restores) the auction is cancelled instead, unpaid. When another market the account holds
    ///         has a stale feed, its health cannot be read: the redo goes ahead, unpaid.
    function redo(uint256 auctionId, address keeper) external;

    /// @notice End a live auction whose account has recovered (as in `redo`). Anyone may call; nobody is paid.
    function cancel(uint256 auctionId) external;

    /// @notice Close the remainder of an expired auction that was redone `maxRedos` times against the vAMM,
    ///         as much of it as keeps the vAMM price no worse for the owner than the auction's price at its
    ///         full discount (and inside the band): a backstop cannot be sandwiched into a worse price than
    ///         the auction itself allowed. The rest stays in the auction for a later backstop; reverts
    ///         `BackstopBlocked` when nothing fits. A recovered account's auction is cancelled instead (as
    ///         in `redo`), returning 0.
    function backstop(uint256 auctionId) external returns (int256 quote);

    // ------------------------------------------------------------------ views

    /// @notice The price a taker gets now (reverts when the auction cannot be taken).
    function auctionPrice(uint256 auctionId) external view returns (uint256);

    /// @notice An auction's record.
    function auction(uint256 auctionId) external view returns (Auction memory);

    /// @notice `marketId`'s auction parameters (the defaults until governance sets its own).
    function auctionParams(uint32 marketId) external view returns (AuctionParams memory);

    /// @notice Number of auctions ever started; ids run from 1.
    function auctionCount() external view returns (uint256);

    /// @notice What `kick` would do now: the slice (signed) and its notional, keeper reward and penalty.
    function kickPreview(address owner, uint32 subaccount, uint32 marketId)
        external
        view
        returns (int256 slice, uint256 notional, uint256 keeperReward, uint256 penalty);

    /// @notice The market a keeper should kick for `(owner, subaccount)`: the one whose slice restores
    ///         target health with the least notional moved (0 when the account is not liquidatable).
    function bestMarketToKick(address owner, uint32 subaccount) external view returns (uint32 marketId);

    /// @notice Parameters a market uses until governance sets its own: exponential (front-loaded: half the
    ///         2 % discount in the first 5 min), 30 min to a 2 % discount, redo after a 5 % index move in the
    ///         account's favour. Chosen from the simulator's crash (docs/liquidation.md#choosing-the-curve).
    function defaultAuctionParams() external pure returns (AuctionParams memory);

    /// @notice The global liquidation parameters (target health, keeper reward and penalty, redos, cap).
    function liquidationParams() external view returns (LiquidationParams memory);

    /// @notice The discount an auction of `marketId` has after `elapsed` seconds [wad].
    function discountAt(uint32 marketId, uint256 elapsed) external view returns (uint256);

    /// @notice Whether live auction `auctionId` has expired (past its duration, or the index moved more than
    ///         resetDrop in the account's favour): it can then only be redone.
    function isExpired(uint256 auctionId) external view returns (bool);

    /// @notice Notional (at each start index) of everything in live auctions [wad].
    function liveNotional() external view returns (uint256);

    /// @notice The Vault whose ledger auctions charge and settle, and the ClearingHouse whose positions they move
    ///         (both fixed at construction).
    function vault() external view returns (IVault);
    function clearingHouse() external view returns (IClearingHouse);
}
