// SPDX-License-Identifier: BUSL-1.1
pragma solidity 0.8.28;

import {IClearingHouse} from "../interfaces/IClearingHouse.sol";
import {IErrors} from "../interfaces/IErrors.sol";
import {IVault} from "../interfaces/IVault.sol";

/// @title IOrderRouter
/// @notice Delayed orders (docs/orders.md): a trader commits an order, and a keeper executes it once the market's
///         oracle has published a round newer than the commit, so the trade is priced by a vAMM that follows an
///         index nobody knew when the order was placed. A trader who sees an oracle update coming can no longer
///         buy before it and sell after it. In a market with delayed orders on (`ClearingHouse.delayedOrders`),
///         this router is the only way to trade; elsewhere it is optional.
/// @dev Life of an order:
///      - `commitOrder` (the owner, who has approved this router as an operator in the Vault) records the order,
///        the feed's latest round id and the keeper fee (ETH, at least `minKeeperFee`).
///      - Pending while the feed's latest round is the one recorded: only the owner may cancel (nothing about the
///        execution price is known yet, so cancelling gives no option).
///      - Executable from the first round after the commit until `executionWindow` seconds after that round's
///        update, and never after the order's deadline: anyone may `executeOrder` and is paid the keeper fee, the
///        oldest open order of the market first. The owner cannot cancel it then. The trade meets a peg within
///        the market's stale-peg tolerance of the index either way (ClearingHouse), so the executor cannot choose
///        the stale peg over the repegged one, nor the order in which the round's orders meet the vAMM.
///      - Lapsed after that (or if the first round after the commit cannot be read): anyone may cancel it, and
///        the keeper fee goes back to the owner; except for an order cancelled while its deadline has passed
///        with the feed still on the round of its commit and fresh (never executable, and neither a keeper's
///        inaction nor the feed made it lapse): its fee pays whoever cancels it (`cancelBounty`), so an order
///        committed to lapse at the head of a queue costs its owner the fee and pays the keeper who clears it.
///      The trade itself is `ClearingHouse.openPositionFor` with the order's size, limit and deadline. If the
///      ClearingHouse refuses it (slippage, margin, a revoked approval), the order is used up all the same:
///      `OrderFailed` with the refusal, and the keeper is paid, so that no owner can hold an executable order back
///      until the window has shown which way the next update goes; a stale peg, a pause or a ClearingHouse that
///      moved to another router keep it (the call reverts). An execution sent with too little gas for the
///      trade reverts as a whole (`InsufficientGas`) and the order stays.
interface IOrderRouter is IErrors {
    // ------------------------------------------------------------------ types

    enum Status {
        None, // no such order (never committed, executed or cancelled)
        Pending, // waiting for an oracle round newer than the commit
        Executable, // a newer round exists and the window is open: anyone may execute
        Lapsed // the window closed (or the deadline passed) unexecuted: anyone may cancel
    }

    /// @notice A committed order (three storage slots).
    struct Order {
        address owner;
        uint32 subaccount;
        uint32 marketId;
        uint32 committedAt; // [s] block time of the commit
        int96 baseAmount; // [wad base] > 0 buy, < 0 sell; a close: the free part at the commit (its most)
        uint80 committedRound; // the feed's latest round id at the commit
        uint72 keeperFee; // [wei] paid to the executor, refunded to the owner on a cancel (or the canceller's bounty)
        bool close; // committed with baseAmount 0: closes the free part at execution, at most `baseAmount`
        uint160 quoteLimit; // [wad] as `openPosition`'s (saturated at 2^160 - 1, above any quote)
        uint32 deadline; // [s] last time the order may execute (saturated at 2^32 - 1)
        uint32 prev; // the market's previous open order (0: this is the first)
        uint32 next; // the market's next open order (0: this is the last)
    }

    /// @notice A market's open orders, oldest first: only `head` may execute.
    struct Queue {
        uint32 head;
        uint32 tail;
    }

    // ------------------------------------------------------------------ errors

    /// @notice The order's deadline `deadline` is before `timestamp`.
    error DeadlinePassed(uint256 deadline, uint256 timestamp);
    /// @notice The keeper fee sent, `sent` wei, is below `minimum`.
    error KeeperFeeTooLow(uint256 sent, uint256 minimum);
    /// @notice `owner` has not approved this router as an operator in the Vault (`Vault.setOperator`).
    error RouterNotApproved(address owner);
    /// @notice No order `orderId` (never committed, or already executed or cancelled).
    error UnknownOrder(uint256 orderId);
    /// @notice Order `orderId` waits for an oracle round newer than `committedRound`.
    error OrderNotReady(uint256 orderId, uint256 committedRound);
    /// @notice Order `orderId` could execute only until `executableUntil`.
    error OrderLapsed(uint256 orderId, uint256 executableUntil);
    /// @notice Order `orderId` is executable: it can be cancelled only once it lapses.
    error OrderExecutable(uint256 orderId);
    /// @notice Only the order's owner `owner` may cancel a pending order.
    error NotOrderOwner(address caller, address owner);
    /// @notice The trade ran out of the gas sent with the execution (`gasSent` when it started): send more.
    error InsufficientGas(uint256 gasSent);
    /// @notice The ClearingHouse trades through `current`, not this router: commit there.
    error NotCurrentRouter(address current);
    /// @notice A close order for `owner`'s sub-account `subaccount` in `marketId`, which holds no free position.
    error NothingToClose(address owner, uint32 subaccount, uint32 marketId);
    /// @notice Order `orderId` is not the oldest open order of its market, `head`: that one executes (or is
    ///         cancelled once it lapses) first.
    error NotFirstInQueue(uint256 orderId, uint256 head);
    /// @notice `owner` has no refund credited to claim.
    error NothingToClaim(address owner);
    /// @notice Sending `amount` wei to `to` failed.
    error EtherTransferFailed(address to, uint256 amount);

    // ------------------------------------------------------------------ events

    /// @notice `owner` committed order `orderId`; a close carries the free part it was committed for, and the
    ///         limit and deadline are as stored (saturated).
    event OrderCommitted(
        uint256 indexed orderId,
        address indexed owner,
        uint32 subaccount,
        uint32 indexed marketId,
        int256 baseAmount,
        bool close,
        uint256 quoteLimit,
        uint256 deadline,
        uint256 keeperFee,
        uint256 committedRound
    );
    /// @notice `keeper` executed order `orderId`; the trade's base, quote and taker fee as `openPosition` returns
    ///         them, and the keeper fee paid.
    event OrderExecuted(
        uint256 indexed orderId, address indexed keeper, int256 base, int256 quote, uint256 fee, uint256 keeperFee
    );
    /// @notice `keeper` executed order `orderId`, and the ClearingHouse refused the trade with `reason` (its revert
    ///         data: slippage, margin, a pause, a revoked approval, nothing to close): the order is used up and
    ///         the keeper paid, as for an execution.
    event OrderFailed(uint256 indexed orderId, address indexed keeper, bytes reason, uint256 keeperFee);
    /// @notice A cancelled order's fee could not be sent to `owner` (it refused it): credited, to claim.
    event RefundCredited(address indexed owner, uint256 amount);
    /// @notice `owner` claimed its credited refunds, `amount` wei, to `to`.
    event RefundClaimed(address indexed owner, address to, uint256 amount);
    /// @notice `caller` cancelled order `orderId`; its keeper fee went back to the owner (sent, or credited when the
    ///         owner refused it: `RefundCredited`), or, for an order that was never executable, to the caller
    ///         (`keeperFeeRefunded` 0 then, and `CancelBountyPaid`).
    event OrderCancelled(uint256 indexed orderId, address indexed caller, uint256 keeperFeeRefunded);
    /// @notice `caller` cancelled order `orderId`, whose deadline had passed with its feed still on the round of the
    ///         commit and fresh, and was paid its keeper fee, `amount` wei.
    event CancelBountyPaid(uint256 indexed orderId, address indexed caller, uint256 amount);

    // ------------------------------------------------------------------ actions

    /// @notice Commit an order for the caller's `subaccount` in `marketId`, sending the keeper fee as ETH.
    /// @param baseAmount > 0 buy, < 0 sell (|baseAmount| < 2^95); 0: close the position's free part (`NothingToClose`
    ///        if there is none): at execution the free part then, at most the one now, its limit scaled to it
    /// @param quoteLimit buy: the most quote paid; sell: the least quote received (fee excluded)
    /// @param deadline last timestamp at which the order may execute
    function commitOrder(uint32 subaccount, uint32 marketId, int256 baseAmount, uint256 quoteLimit, uint256 deadline)
        external
        payable
        returns (uint256 orderId);

    /// @notice Execute an executable order (anyone; the keeper fee is paid to the caller), the oldest open order of
    ///         its market first (`NotFirstInQueue`). A trade the ClearingHouse refuses uses the order up
    ///         (`OrderFailed`; the return values are then zero), except three refusals that revert and keep it: a
    ///         stale peg (`PegStale`: repeg first), a pause (`Paused`), a ClearingHouse that no longer takes this
    ///         router's trades (`DelayedOrdersOnly`).
    /// @return base the base traded
    /// @return quote the signed quote flow to the trader (negative = paid)
    /// @return fee the taker fee charged [wad]
    function executeOrder(uint256 orderId) external returns (int256 base, int256 quote, uint256 fee);

    /// @notice Cancel a pending order (its owner) or a lapsed one (anyone); the keeper fee goes back to the owner,
    ///         sent with `REFUND_GAS`, or credited to `refunds(owner)` if the owner refuses it, so that no owner can
    ///         keep a lapsed order, and the queue behind it, in place. An order past its deadline whose feed is still
    ///         on the round of the commit and fresh (by the market's heartbeat) pays its fee to a caller other than
    ///         its owner instead (`cancelBounty`, `CancelBountyPaid`).
    function cancelOrder(uint256 orderId) external;

    /// @notice Send the caller's credited refunds to `to` (`NothingToClaim` without any).
    function claimRefund(address to) external;

    // ------------------------------------------------------------------ views

    /// @notice The ClearingHouse orders trade on.
    function clearingHouse() external view returns (IClearingHouse);
    /// @notice The Vault whose operator approval the router needs.
    function vault() external view returns (IVault);
    /// @notice Least keeper fee an order carries [wei] (fixed at deployment).
    function minKeeperFee() external view returns (uint256);
    /// @notice How long an order stays executable after the first oracle round newer than its commit [s].
    function executionWindow() external view returns (uint256);
    /// @notice Refunds credited to `owner` (cancelled orders' fees it refused), to claim with `claimRefund`.
    function refunds(address owner) external view returns (uint256);
    /// @notice Gas a cancel's refund is sent with [gas].
    function REFUND_GAS() external view returns (uint256);
    /// @notice Bounds of the two deployment parameters.
    function MAX_MIN_KEEPER_FEE() external view returns (uint256);
    function MIN_EXECUTION_WINDOW() external view returns (uint256);
    function MAX_EXECUTION_WINDOW() external view returns (uint256);
    /// @notice The id the next order gets (ids start at 1).
    function nextOrderId() external view returns (uint256);

    /// @notice `marketId`'s open orders: the oldest (the only one that may execute) and the newest (0, 0: none).
    function queue(uint32 marketId) external view returns (uint256 head, uint256 tail);

    /// @notice Order `orderId` as stored (all zero once executed or cancelled).
    function order(uint256 orderId) external view returns (Order memory);

    /// @notice Where order `orderId` stands now, and the last time it may execute (for a pending order, its
    ///         deadline; for an executable or lapsed one, the earlier of the deadline and the window's end).
    function orderStatus(uint256 orderId) external view returns (Status status, uint256 executableUntil);

    /// @notice What cancelling order `orderId` now pays a caller other than its owner [wei]: its keeper fee if its
    ///         deadline has passed while the market's feed is still on the round of the commit and fresh by the
    ///         market's heartbeat (the order never was executable), else 0: a lapse a keeper could have prevented by
    ///         executing pays nothing, so letting an order lapse never pays more than executing it, and neither
    ///         does a feed that stalled, was replaced, or rewrote its rounds. Once the next round is published, a
    ///         missed order refunds its owner too: keepers clear a lapsed head before it (each pass does).
    function cancelBounty(uint256 orderId) external view returns (uint256);
}
