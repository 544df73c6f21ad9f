// SPDX-License-Identifier: BUSL-1.1
pragma solidity 0.8.28;

import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {SignedMath} from "@openzeppelin/contracts/utils/math/SignedMath.sol";
import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";

import {IOrderRouter} from "./IOrderRouter.sol";
import {IClearingHouse} from "../interfaces/IClearingHouse.sol";
import {IVault} from "../interfaces/IVault.sol";
import {IErrors} from "../interfaces/IErrors.sol";
import {AggregatorV3Interface} from "../interfaces/AggregatorV3Interface.sol";
import {Bounds} from "../libraries/Bounds.sol";

/// @title OrderRouter
/// @notice Delayed orders: commit now, execute at a price set after the commit (see `IOrderRouter`,
///         docs/orders.md). The router holds only the keeper fees of open orders; its two parameters are fixed
///         at deployment, so nobody governs it: a new router is a new deployment, which governance points the
///         ClearingHouse at (`ClearingHouse.setOrderRouter`, through the timelock).
/// @dev What it guards against: the vAMM's peg follows the index, so a trader who sees an oracle update coming
///      (a deviation-threshold feed trails the markets it reports) could buy at the old peg and sell after the
///      repeg, and the pool would pay the difference. An order here executes only once the feed has published a
///      round newer than the one current at the commit, so the price it meets was unknown when it was placed.
///      The owner can cancel only before that round (no information about the price yet) or after the window
///      closes; a keeper, paid the order's fee, executes inside it, and an execution whose trade the
///      ClearingHouse refuses uses the order up too. What remains is the time between the round's update and the
///      first keeper's execution, in which the owner may still make its order fail (revoke the approval, move
///      margin): one block when keepers compete for the fee.
contract OrderRouter is IOrderRouter, ReentrancyGuardTransient {
    /// @inheritdoc IOrderRouter
    uint256 public constant MAX_MIN_KEEPER_FEE = 0.1 ether;
    /// @inheritdoc IOrderRouter
    uint256 public constant MIN_EXECUTION_WINDOW = 12;
    /// @inheritdoc IOrderRouter
    uint256 public constant MAX_EXECUTION_WINDOW = 1 hours;
    /// @inheritdoc IOrderRouter
    uint256 public constant REFUND_GAS = 30_000;

    /// @inheritdoc IOrderRouter
    IClearingHouse public immutable clearingHouse;
    /// @inheritdoc IOrderRouter
    IVault public immutable vault;
    /// @inheritdoc IOrderRouter
    uint256 public immutable minKeeperFee;
    /// @inheritdoc IOrderRouter
    uint256 public immutable executionWindow;

    /// @inheritdoc IOrderRouter
    uint256 public nextOrderId = 1;
    mapping(uint256 orderId => Order) internal _orders;
    /// @dev Each market's open orders, oldest first (a list through `Order.prev` / `Order.next`).
    mapping(uint32 marketId => Queue) internal _queues;
    /// @inheritdoc IOrderRouter
    mapping(address owner => uint256) public refunds;

    constructor(IClearingHouse clearingHouse_, uint256 minKeeperFee_, uint256 executionWindow_) {
        if (address(clearingHouse_) == address(0)) revert ZeroAddress();
        Bounds.check("minKeeperFee", minKeeperFee_, 0, MAX_MIN_KEEPER_FEE);
        Bounds.check("executionWindow", executionWindow_, MIN_EXECUTION_WINDOW, MAX_EXECUTION_WINDOW);
        clearingHouse = clearingHouse_;
        vault = clearingHouse_.vault();
        minKeeperFee = minKeeperFee_;
        executionWindow = executionWindow_;
    }

    // ------------------------------------------------------------------ actions

    /// @inheritdoc IOrderRouter
    function commitOrder(uint32 subaccount, uint32 marketId, int256 baseAmount, uint256 quoteLimit, uint256 deadline)
        external
        payable
        nonReentrant
        returns (uint256 orderId)
    {
        if (block.timestamp > deadline) revert DeadlinePassed(deadline, block.timestamp);
        if (msg.value < minKeeperFee) revert KeeperFeeTooLow(msg.value, minKeeperFee);
        Bounds.check("keeperFee", msg.value, 0, type(uint72).max);
        // An order's size fits int96, as every position does (ClearingHouse bounds maxOpenInterest to int96).
        Bounds.check("baseAmount", SignedMath.abs(baseAmount), 0, uint96(type(int96).max));
        if (!vault.isOperator(msg.sender, address(this))) revert RouterNotApproved(msg.sender);
        // An order here could not trade in a market with delayed orders on once the ClearingHouse moved on.
        address current = clearingHouse.orderRouter();
        if (current != address(this)) revert NotCurrentRouter(current);
        // Reverts UnknownMarket for a market that is not listed.
        (uint80 round,,,,) = AggregatorV3Interface(clearingHouse.marketParams(marketId).oracle).latestRoundData();
        bool close = baseAmount == 0;
        if (close) {
            // A close is the free part now (what is in an auction is the auction's to close), never more when it
            // executes: its limit was quoted for this size.
            (int256 size,,) = clearingHouse.position(msg.sender, subaccount, marketId);
            baseAmount = clearingHouse.auctionedSize(msg.sender, subaccount, marketId) - size;
            if (baseAmount == 0) revert NothingToClose(msg.sender, subaccount, marketId);
        }
        orderId = nextOrderId++;
        Bounds.check("orderId", orderId, 1, type(uint32).max);
        // Casts: the bounds above (id, size, fee); a limit or deadline above the field saturates, which no quote
        // (below 2^120: reserves are at most 1e36) or block time before 2106 can tell apart from the value given.
        uint160 limit = quoteLimit > type(uint160).max ? type(uint160).max : uint160(quoteLimit);
        uint32 until = deadline > type(uint32).max ? type(uint32).max : uint32(deadline);
        Queue memory q = _queues[marketId];
        _orders[orderId] = Order({
            owner: msg.sender,
            subaccount: subaccount,
            marketId: marketId,
            committedAt: uint32(block.timestamp),
            baseAmount: int96(baseAmount),
            committedRound: round,
            keeperFee: uint72(msg.value),
            close: close,
            quoteLimit: limit,
            deadline: until,
            prev: q.tail,
            next: 0
        });
        // Casts: orderId < 2^32 (checked above).
        if (q.tail != 0) _orders[q.tail].next = uint32(orderId);
        else q.head = uint32(orderId);
        q.tail = uint32(orderId);
        _queues[marketId] = q;
        emit OrderCommitted(orderId, msg.sender, subaccount, marketId, baseAmount, close, limit, until, msg.value, round);
    }

    /// @inheritdoc IOrderRouter
    function executeOrder(uint256 orderId) external nonReentrant returns (int256 base, int256 quote, uint256 fee) {
        Order memory o = _load(orderId);
        (Status status, uint256 until,) = _status(o);
        if (status == Status.Pending) revert OrderNotReady(orderId, o.committedRound);
        if (status == Status.Lapsed) revert OrderLapsed(orderId, until);
        // First in, first out per market: nobody chooses which order meets the vAMM first.
        uint32 head = _queues[o.marketId].head;
        if (head != orderId) revert NotFirstInQueue(orderId, head);
        int256 amount = o.baseAmount;
        uint256 limit = o.quoteLimit;
        if (o.close) {
            // The free part now, at most the size committed, the limit scaled to it (rounded for the owner: a sell
            // receives at least, a buy pays at most, the committed price). A free part that grew, or turned to the
            // other side, is not this order's to trade.
            (int256 size,,) = clearingHouse.position(o.owner, o.subaccount, o.marketId);
            int256 free = clearingHouse.auctionedSize(o.owner, o.subaccount, o.marketId) - size;
            if ((free > 0) != (amount > 0) || free == 0) {
                amount = 0; // nothing of it left to close: the trade fails (ZeroSize) and uses the order up
            } else if (SignedMath.abs(free) < SignedMath.abs(amount)) {
                limit = Math.mulDiv(
                    limit,
                    SignedMath.abs(free),
                    SignedMath.abs(amount),
                    amount < 0 ? Math.Rounding.Ceil : Math.Rounding.Floor
                );
                amount = free;
            }
        }
        _remove(orderId, o);
        // A trade the ClearingHouse refuses uses the order up all the same (the keeper is paid): otherwise its
        // owner could keep it unexecutable (revoke the approval, move margin) and bring it back once the window
        // showed which way the next update goes. Three refusals keep it instead, because its owner cannot cause
        // them and anyone can clear or wait them out: a peg not yet moved to the index (`PegStale`: anyone may
        // repeg), a pause, and a ClearingHouse that no longer takes this router's trades (its owners cancel once
        // the window closes). Running out of gas is the caller's doing: the whole call reverts then, the order
        // stays. The trade's calls nest at most three deep, so a refusal from an exhausted inner call leaves at
        // most 3/64 of the gas sent; a refusal on its merits leaves far more.
        uint256 gasBefore = gasleft();
        try clearingHouse.openPositionFor(o.owner, o.subaccount, o.marketId, amount, limit, o.deadline) returns (
            int256 b, int256 q, uint256 f
        ) {
            (base, quote, fee) = (b, q, f);
            emit OrderExecuted(orderId, msg.sender, base, quote, fee, o.keeperFee);
        } catch (bytes memory reason) {
            if (gasleft() < gasBefore / 16) revert InsufficientGas(gasBefore);
            bytes4 selector = reason.length >= 4 ? bytes4(reason) : bytes4(0);
            if (
                selector == IClearingHouse.PegStale.selector || selector == IErrors.Paused.selector
                    || selector == IClearingHouse.DelayedOrdersOnly.selector
            ) {
                assembly ("memory-safe") {
                    revert(add(reason, 32), mload(reason))
                }
            }
            emit OrderFailed(orderId, msg.sender, reason, o.keeperFee);
        }
        _send(msg.sender, o.keeperFee);
    }

    /// @inheritdoc IOrderRouter
    function cancelOrder(uint256 orderId) external nonReentrant {
        Order memory o = _load(orderId);
        (Status status,, bool missed) = _status(o);
        if (status == Status.Executable) revert OrderExecutable(orderId);
        if (status == Status.Pending && msg.sender != o.owner) revert NotOrderOwner(msg.sender, o.owner);
        _remove(orderId, o);
        if (missed && msg.sender != o.owner) {
            // Never executable: the owner's deadline, not a keeper's inaction, made it lapse. Its fee pays the
            // caller who clears it from the queue, so committing orders to lapse at a queue's head costs their fees.
            emit OrderCancelled(orderId, msg.sender, 0);
            emit CancelBountyPaid(orderId, msg.sender, o.keeperFee);
            _send(msg.sender, o.keeperFee);
        } else {
            emit OrderCancelled(orderId, msg.sender, o.keeperFee);
            _refund(o.owner, o.keeperFee);
        }
    }

    /// @inheritdoc IOrderRouter
    function claimRefund(address to) external nonReentrant {
        uint256 amount = refunds[msg.sender];
        if (amount == 0) revert NothingToClaim(msg.sender);
        refunds[msg.sender] = 0;
        emit RefundClaimed(msg.sender, to, amount);
        _send(to, amount);
    }

    // ------------------------------------------------------------------ views

    /// @inheritdoc IOrderRouter
    function order(uint256 orderId) external view returns (Order memory) {
        return _orders[orderId];
    }

    /// @inheritdoc IOrderRouter
    function orderStatus(uint256 orderId) external view returns (Status, uint256) {
        Order memory o = _orders[orderId];
        if (o.owner == address(0)) return (Status.None, 0);
        (Status status, uint256 until,) = _status(o);
        return (status, until);
    }

    /// @inheritdoc IOrderRouter
    function cancelBounty(uint256 orderId) external view returns (uint256) {
        Order memory o = _orders[orderId];
        if (o.owner == address(0)) return 0;
        (,, bool missed) = _status(o);
        return missed ? o.keeperFee : 0;
    }

    /// @inheritdoc IOrderRouter
    function queue(uint32 marketId) external view returns (uint256 head, uint256 tail) {
        Queue memory q = _queues[marketId];
        return (q.head, q.tail);
    }

    // ------------------------------------------------------------------ internals

    function _load(uint256 orderId) internal view returns (Order memory o) {
        o = _orders[orderId];
        if (o.owner == address(0)) revert UnknownOrder(orderId);
    }

    /// @dev Unlinks the order from its market's queue and deletes it.
    function _remove(uint256 orderId, Order memory o) internal {
        Queue memory q = _queues[o.marketId];
        if (o.prev != 0) _orders[o.prev].next = o.next;
        else q.head = o.next;
        if (o.next != 0) _orders[o.next].prev = o.prev;
        else q.tail = o.prev;
        _queues[o.marketId] = q;
        delete _orders[orderId];
    }

    /// @dev Pending until the feed's latest round is newer than the committed one; then executable until the
    ///      earlier of the deadline and `executionWindow` after the update of the first round after the commit
    ///      (read with `getRoundData` when later rounds followed it). That round must not predate the commit: it
    ///      could only if the market's feed was replaced since, and then, as when it cannot be read (a feed's
    ///      phase change skips round ids) or the feed does not answer at all, the order counts as lapsed.
    ///      `missed` (`cancelOrder` pays the fee to the canceller): the deadline passed while the feed, still on the
    ///      round of the commit, was fresh by the market's heartbeat. Only then is the lapse the owner's choice
    ///      alone: no keeper could have executed the order, and the feed did not fail it. Judged on the latest round
    ///      only, never on a round's recorded time: ids that went backwards (a replaced feed), a first round stamped
    ///      late, or a feed whose round data moves after the fact (a pull oracle's adapter that answers any round
    ///      with its latest) can then not turn a refund into a bounty; a stalled feed refunds too.
    function _status(Order memory o) internal view returns (Status, uint256, bool missed) {
        IClearingHouse.MarketParams memory params = clearingHouse.marketParams(o.marketId);
        AggregatorV3Interface feed = AggregatorV3Interface(params.oracle);
        uint80 latest;
        uint256 latestAt;
        try feed.latestRoundData() returns (uint80 r, int256, uint256, uint256 at, uint80) {
            (latest, latestAt) = (r, at);
        } catch {
            return (Status.Lapsed, 0, false);
        }
        uint256 deadline = o.deadline;
        if (latest <= o.committedRound) {
            if (block.timestamp <= deadline) return (Status.Pending, deadline, false);
            missed = latest == o.committedRound && block.timestamp <= latestAt + params.heartbeat;
            return (Status.Lapsed, deadline, missed);
        }
        uint256 firstAt = latestAt;
        if (latest != o.committedRound + 1) {
            try feed.getRoundData(o.committedRound + 1) returns (uint80, int256, uint256, uint256 at, uint80) {
                firstAt = at;
            } catch {
                return (Status.Lapsed, 0, false);
            }
        }
        if (firstAt < o.committedAt) return (Status.Lapsed, 0, false);
        uint256 until = firstAt + executionWindow;
        if (deadline < until) until = deadline;
        return (block.timestamp > until ? Status.Lapsed : Status.Executable, until, false);
    }

    /// @dev A cancel's refund never blocks the cancel (and so the queue behind the order): the owner is sent the fee
    ///      with `REFUND_GAS` and no return data copied; an owner that refuses it (or needs more gas) has it credited
    ///      instead, to claim with `claimRefund`.
    function _refund(address to, uint256 amount) internal {
        if (amount == 0) return;
        bool ok;
        assembly ("memory-safe") {
            ok := call(REFUND_GAS, to, amount, 0, 0, 0, 0)
        }
        if (!ok) {
            refunds[to] += amount;
            emit RefundCredited(to, amount);
        }
    }

    function _send(address to, uint256 amount) internal {
        if (amount == 0) return;
        (bool ok,) = to.call{value: amount}("");
        if (!ok) revert EtherTransferFailed(to, amount);
    }
}
