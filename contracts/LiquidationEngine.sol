// SPDX-License-Identifier: BUSL-1.1
pragma solidity 0.8.28;

import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {Ownable, Ownable2Step} from "@openzeppelin/contracts/access/Ownable2Step.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";

import {ILiquidationEngine} from "./interfaces/ILiquidationEngine.sol";
import {IClearingHouse} from "./interfaces/IClearingHouse.sol";
import {IVault} from "./interfaces/IVault.sol";
import {WAD, WadMath} from "./libraries/WadMath.sol";
import {FundingMath} from "./libraries/FundingMath.sol";
import {Bounds} from "./libraries/Bounds.sol";
import {PAUSE_NO_TRADING} from "./interfaces/IErrors.sol";

/// @title LiquidationEngine
/// @notice Partial liquidations by Dutch auction (docs/liquidation.md). Holds no money: keeper rewards and penalties
///         are ledger moves in the Vault, slices change hands in the ClearingHouse at the auction price.
/// @dev Flow: `kick` (slice into auction, keeper paid, penalty to insurance) -> `take`s at the live
///      index adjusted by a growing discount -> when the auction expires, `redo` from the live index, up
///      to `maxRedos` times -> `backstop` (close against the vAMM). When an account ends with no position
///      and negative collateral, the Vault's loss waterfall runs (insurance fund, then pool).
contract LiquidationEngine is ILiquidationEngine, Ownable2Step, ReentrancyGuardTransient {
    using WadMath for uint256;
    using WadMath for int256;
    using SafeCast for uint256;
    using SafeCast for int256;

    /// @dev Exponential curve: discount reaches (1 - e^-4) ~ 98 % of its span after `duration`,
    ///      normalised so it ends exactly at maxDiscount.
    uint256 internal constant EXP_SPEED = 4;
    /// @dev The exponential curve's span, WAD - FundingMath.expNegWad(EXP_SPEED x WAD) [wad]: the value the library
    ///      returns (tests/clearinghouse/test_funding_math.py checks it against the library and the model), written out so a
    ///      take does not evaluate a constant (about 3,500 gas).
    uint256 internal constant EXP_SPAN = 981_684_361_111_265_820;

    // Hard bounds.
    uint256 internal constant MIN_TARGET_HEALTH = 1e18;
    uint256 internal constant MAX_TARGET_HEALTH = 3e18;
    uint256 internal constant MAX_CHIP = 0.01e18;
    uint256 internal constant MAX_PENALTY = 0.1e18;
    uint256 internal constant MAX_TIP = 1_000e18;
    uint256 internal constant MAX_KEEPER_REWARD = 100_000e18;
    uint256 internal constant MAX_REDOS = 10;
    uint256 internal constant MIN_DURATION = 60;
    uint256 internal constant MAX_DURATION = 1 days;
    uint256 internal constant MAX_DISCOUNT = 0.5e18;
    uint256 internal constant MIN_RESET_DROP = 0.005e18;
    uint256 internal constant MAX_RESET_DROP = 0.5e18;

    IVault public immutable vault;
    IClearingHouse public immutable clearingHouse;

    /// @dev `LiquidationParams` in two slots instead of three: a redo, a cancel and a backstop read only the first
    ///      (targetHealth, maxRedos, tip), a kick reads both (one cold read fewer than three slots: -2.1k gas). The
    ///      widths hold every value `_setParams`' hard bounds admit: targetHealth <= 3e18 < 2^64, tip <= 1e21 <
    ///      2^72, maxKeeperReward <= 1e23 < 2^80, chip <= 1e16 < 2^56; the others keep their external widths.
    struct StoredParams {
        // slot 0
        uint64 targetHealth;
        uint8 maxRedos;
        uint72 tip;
        uint80 maxKeeperReward;
        // slot 1
        uint56 chip;
        uint64 penalty;
        uint128 maxAuctionNotional;
    }

    StoredParams internal _params;
    mapping(uint32 marketId => AuctionParams) internal _auctionParams;
    /// @dev Two slots per auction; the external `Auction` view adds the derived notional.
    struct StoredAuction {
        address owner;
        uint32 subaccount;
        uint32 marketId;
        uint8 redos;
        int96 size; // [wad base] remaining, signed like the position; fits: |position| <= maxOpenInterest <= int96.max
        uint128 startIndex; // [wad]
        uint32 startTime; // [s]
    }

    mapping(uint256 auctionId => StoredAuction) internal _auctions;
    /// @dev The auction counter and the live notional share one slot: kick writes both, take and redo
    ///      read both (`_live`, `_moveNotional`). Widths: a kick adds one auction, so 2^64 is never
    ///      reached; live auctions are parts of positions, at most 2 x int96.max base per market
    ///      (each side's open interest <= maxOpenInterest <= int96.max) in at most 128 markets, each at
    ///      a start index < 2^128 wad: liveNotional < 2^103 x 2^128 / 1e18 + 2^64 < 2^172 < 2^192.
    struct Counters {
        uint64 auctionCount; // auctions ever started; ids run from 1
        uint192 liveNotional; // [wad quote] notional (at each start index) of everything in live auctions
    }

    Counters internal _counters;

    constructor(IVault vault_, IClearingHouse clearingHouse_, address owner_) Ownable(owner_) {
        if (address(vault_) == address(0) || address(clearingHouse_) == address(0)) revert ZeroAddress();
        vault = vault_;
        clearingHouse = clearingHouse_;
        _setParams(
            LiquidationParams({
                targetHealth: 1.25e18,
                chip: 0.001e18,
                penalty: 0.01e18,
                maxRedos: 3,
                tip: 5e18,
                maxKeeperReward: 1_000e18,
                maxAuctionNotional: 10_000_000e18
            })
        );
    }

    /// @inheritdoc ILiquidationEngine
    function defaultAuctionParams() public pure returns (AuctionParams memory) {
        return AuctionParams({curve: Curve.Exponential, duration: 30 minutes, step: 60, maxDiscount: 0.02e18, resetDrop: 0.05e18});
    }

    // ------------------------------------------------------------------ governance

    /// @notice Set the global liquidation parameters, within hard bounds.
    function setLiquidationParams(LiquidationParams calldata p) external onlyOwner {
        _setParams(p);
    }

    /// @notice Set `marketId`'s auction parameters, within hard bounds.
    function setAuctionParams(uint32 marketId, AuctionParams calldata p) external onlyOwner {
        clearingHouse.marketParams(marketId); // reverts UnknownMarket
        Bounds.check("duration", p.duration, MIN_DURATION, MAX_DURATION);
        Bounds.check("step", p.step, 1, p.duration);
        Bounds.check("maxDiscount", p.maxDiscount, 1, MAX_DISCOUNT);
        Bounds.check("resetDrop", p.resetDrop, MIN_RESET_DROP, MAX_RESET_DROP);
        _auctionParams[marketId] = p;
        emit AuctionParamsSet(marketId, p);
    }

    function _setParams(LiquidationParams memory p) internal {
        Bounds.check("targetHealth", p.targetHealth, MIN_TARGET_HEALTH, MAX_TARGET_HEALTH);
        Bounds.check("chip", p.chip, 0, MAX_CHIP);
        Bounds.check("penalty", p.penalty, 0, MAX_PENALTY);
        Bounds.check("maxRedos", p.maxRedos, 0, MAX_REDOS);
        Bounds.check("tip", p.tip, 0, MAX_TIP);
        Bounds.check("maxKeeperReward", p.maxKeeperReward, p.tip, MAX_KEEPER_REWARD);
        Bounds.check("maxAuctionNotional", p.maxAuctionNotional, 1, type(uint128).max);
        // Within the bounds just checked (see StoredParams); checked casts all the same, so a bound raised later
        // cannot store a truncated value.
        _params = StoredParams({
            targetHealth: p.targetHealth,
            maxRedos: p.maxRedos,
            tip: uint256(p.tip).toUint72(),
            maxKeeperReward: uint256(p.maxKeeperReward).toUint80(),
            chip: uint256(p.chip).toUint56(),
            penalty: p.penalty,
            maxAuctionNotional: p.maxAuctionNotional
        });
        emit LiquidationParamsSet(p);
    }


    // ------------------------------------------------------------------ actions

    /// @inheritdoc ILiquidationEngine
    function kick(address owner, uint32 subaccount, uint32 marketId, address keeper)
        external
        nonReentrant
        returns (uint256 auctionId)
    {
        // The pause check is the Vault's, in `chargeLiquidation` below (one call fewer; the whole kick reverts).
        if (keeper == address(0)) revert ZeroAddress();
        (int256 value, uint256 maintenance, uint256 auctionedNotional,) = vault.liquidationState(owner, subaccount);
        // Cast: maintenance < 2^200 (sizes and prices < 2^128 WAD, ratios <= 1).
        if (value >= int256(maintenance)) revert NotLiquidatable(owner, subaccount);
        Slice memory s = _slice(owner, subaccount, marketId, value, maintenance, auctionedNotional);
        uint256 cap = _params.maxAuctionNotional;
        Counters memory c = _counters;
        uint256 live = c.liveNotional;
        if (live + s.notional > cap) revert AuctionCapReached(live, s.notional, cap);
        // Casts: live + notional <= maxAuctionNotional < 2^128; the count fits 64 bits (see Counters).
        c.liveNotional = uint192(live + s.notional);
        auctionId = uint256(c.auctionCount) + 1;
        c.auctionCount = uint64(auctionId);
        _counters = c;
        _auctions[auctionId] = StoredAuction({
            owner: owner,
            subaccount: subaccount,
            marketId: marketId,
            redos: 0,
            size: s.size.toInt96(),
            startIndex: s.index.toUint128(),
            startTime: uint32(block.timestamp)
        });
        clearingHouse.markForAuction(owner, subaccount, marketId, s.size);
        vault.chargeLiquidation(owner, subaccount, keeper, s.keeperReward, s.penalty, s.bounty, s.shortfall);
        emit Kick(auctionId, owner, subaccount, marketId, s.size, s.index, keeper, s.keeperReward + s.bounty, s.penalty);
    }

    /// @inheritdoc ILiquidationEngine
    function take(uint256 auctionId, uint256 maxBase, uint256 limitPrice, uint32 takerSubaccount)
        external
        nonReentrant
        returns (uint256 amount, uint256 price)
    {
        StoredAuction storage a = _live(auctionId);
        // The pause check is the settlement's, on the level the taker's settlement returns (no separate call).
        if (maxBase == 0) revert ZeroAmount();
        address owner = a.owner;
        uint32 subaccount = a.subaccount;
        if (msg.sender == owner && takerSubaccount == subaccount) revert SelfTake(owner, subaccount);
        uint32 marketId = a.marketId;
        int256 size = a.size;
        uint256 index = clearingHouse.indexPrice(marketId);
        AuctionParams memory ap = auctionParams(marketId);
        if (_expired(a, ap, index)) revert AuctionExpired(auctionId);
        price = _price(size, index, _discount(ap, block.timestamp - a.startTime));
        if (size > 0 ? price > limitPrice : price < limitPrice) revert LimitPriceNotMet(price, limitPrice);

        uint256 remaining = size.abs();
        amount = maxBase < remaining ? maxBase : remaining;
        int256 signedAmount = size > 0 ? amount.toInt256() : -amount.toInt256();
        int256 left = size - signedAmount;
        _moveNotional(a, left, a.startIndex);
        a.size = left.toInt96();

        uint256 minSize =
            clearingHouse.settleAuctionFill(owner, subaccount, marketId, signedAmount, price, msg.sender, takerSubaccount);
        // A partial fill's size rules, on the minimum the settlement read (a revert undoes the fill): checked after
        // it, so a take makes no separate `marketParams` call (-4.0k gas on a partial take), and a fill the
        // settlement refuses names the settlement's error first.
        if (amount < remaining) {
            if (amount < minSize) revert TakeBelowMinimum(amount, minSize);
            if (remaining - amount < minSize) revert DustRemainder(remaining - amount, minSize);
        }
        emit Take(auctionId, msg.sender, takerSubaccount, amount, price, left);
        _afterFill(owner, subaccount, marketId);
    }

    /// @inheritdoc ILiquidationEngine
    function redo(uint256 auctionId, address keeper) external nonReentrant {
        StoredAuction storage a = _live(auctionId);
        _checkNotPaused();
        if (keeper == address(0)) revert ZeroAddress();
        uint32 marketId = a.marketId;
        uint256 index = clearingHouse.indexPrice(marketId);
        AuctionParams memory ap = auctionParams(marketId);
        if (!_expired(a, ap, index)) revert AuctionNotExpired(auctionId);
        // The fields it needs, not the whole struct: maxAuctionNotional's slot is not read.
        if (a.redos >= _params.maxRedos) revert MaxRedosReached(auctionId, a.redos);
        address owner = a.owner;
        uint32 subaccount = a.subaccount;
        // The account's health needs every feed it holds; a stale one elsewhere must not stop the auction.
        (bool known, int256 value, uint256 auctionedNotional, uint256 requirement) = _recovery(owner, subaccount);
        // A recovered account's auction ends here, unpaid: a tip for restarting it would be a charge for nothing.
        // Cast: requirement < 2^200 (as in kick).
        uint256 target = requirement.mulWadUp(_params.targetHealth);
        if (known && value >= int256(target)) {
            _cancel(auctionId, a, value, target);
            return;
        }
        uint8 redos = a.redos + 1;
        _moveNotional(a, a.size, index);
        a.redos = redos;
        a.startIndex = index.toUint128();
        a.startTime = uint32(block.timestamp);
        // The tip comes out of what the account keeps after the worst fill its auctions allow, never more,
        // and only while the account is below its requirement (a healthy account's restart is unpaid).
        uint256 tip = 0;
        if (known) {
            int256 room = value - auctionedNotional.mulWadUp(ap.maxDiscount).toInt256();
            if (value < int256(requirement)) {
                uint256 maxTip = _params.tip;
                tip = room <= 0 ? 0 : (maxTip < uint256(room) ? maxTip : uint256(room));
            }
            vault.chargeLiquidation(owner, subaccount, keeper, tip, 0, 0, _shortfall(room - tip.toInt256()));
        }
        emit Redo(auctionId, redos, index, keeper, tip);
    }

    /// @inheritdoc ILiquidationEngine
    function cancel(uint256 auctionId) external nonReentrant {
        StoredAuction storage a = _live(auctionId);
        _checkNotPaused();
        (int256 value, uint256 maintenance,, uint256 auctionedMaintenance) = vault.liquidationState(a.owner, a.subaccount);
        uint256 requirement = (maintenance + auctionedMaintenance).mulWadUp(_params.targetHealth);
        // Cast: requirement < 2^200 (as in kick).
        if (value < int256(requirement)) revert AuctionStillNeeded(auctionId, value, requirement);
        _cancel(auctionId, a, value, requirement);
    }

    /// @dev The account's health for redo: (readable, value, auctioned notional, requirement = free
    ///      maintenance + auctioned backing). Unreadable when a feed of a market it holds is stale or invalid.
    ///      It has recovered at targetHealth x requirement, the health a kick restores: an account hovering
    ///      at its requirement is not cancelled and kicked over and over, nor tipped from while healthy.
    function _recovery(address owner, uint32 subaccount)
        internal
        view
        returns (bool known, int256 value, uint256 auctionedNotional, uint256 requirement)
    {
        uint256 before = gasleft();
        try vault.liquidationState(owner, subaccount) returns (
            int256 v, uint256 maintenance, uint256 an, uint256 auctionedMaintenance
        ) {
            return (true, v, an, maintenance + auctionedMaintenance);
        } catch {
            _checkNotStarved(before);
            return (false, 0, 0, 0);
        }
    }

    /// @dev After a guarded read failed: it may fail quietly only for its own reason, never for the caller's gas
    ///      limit. A call gets at most 63/64 of the gas left (EIP-150), and so does each call below it; a read that
    ///      ran out of gas at any depth down to four calls (engine -> Vault -> ClearingHouse -> feed, a proxy's
    ///      aggregator) leaves this frame at most 1 - (63/64)^4 < 1/16 of `before`, and the caller, who chose the
    ///      gas limit, could otherwise finish on that remainder with the read skipped (an estimate left stale, a
    ///      recovered account's auction restarted). So a failure that leaves 1/16 of `before` or less reverts the
    ///      whole transaction. A read that fails for its own reason (a stale feed) returns what it did not use,
    ///      nearly all of it unless the gas limit barely covered the read, and then asking for more is right too.
    function _checkNotStarved(uint256 before) internal view {
        uint256 left = gasleft();
        if (left <= before / 16) revert GasTooLowForCheck(left);
    }

    /// @inheritdoc ILiquidationEngine
    function backstop(uint256 auctionId) external nonReentrant returns (int256 quote) {
        StoredAuction storage a = _live(auctionId);
        _checkNotPaused();
        uint32 marketId = a.marketId;
        uint256 index = clearingHouse.indexPrice(marketId);
        AuctionParams memory ap = auctionParams(marketId);
        if (!_expired(a, ap, index)) revert AuctionNotExpired(auctionId);
        uint8 maxRedos = _params.maxRedos;
        if (a.redos < maxRedos) revert RedosRemaining(auctionId, a.redos, maxRedos);
        address owner = a.owner;
        uint32 subaccount = a.subaccount;
        // A recovered account's last auction is cancelled, not dumped on the vAMM (as in redo).
        (bool known, int256 value,, uint256 requirement) = _recovery(owner, subaccount);
        uint256 target = requirement.mulWadUp(_params.targetHealth);
        // Cast: requirement < 2^200 (as in kick).
        if (known && value >= int256(target)) {
            _cancel(auctionId, a, value, target);
            return 0;
        }
        int256 size = a.size;
        // No worse than the auction's own last price: what no taker took at the full discount may go to the
        // vAMM, but not below it (a sandwich cannot push the close further than the auction rules allow),
        // nor outside the band.
        uint256 limitPrice = _price(size, index, ap.maxDiscount);
        IClearingHouse.MarketState memory st = clearingHouse.marketState(marketId);
        int256 closed;
        {
            IClearingHouse.MarketParams memory mp = clearingHouse.marketParams(marketId);
            uint256 band = index.mulWadDown(mp.maxSpread);
            uint256 edge = size > 0
                ? (limitPrice > index - band ? limitPrice : index - band)
                : (limitPrice < index + band ? limitPrice : index + band);
            closed = _backstopFit(st.baseReserve, st.quoteReserve, size, edge, mp.minPositionSize);
        }
        if (closed == 0) revert BackstopBlocked(auctionId, st.spotPrice, index);
        quote = clearingHouse.backstopClose(owner, subaccount, marketId, closed, limitPrice);
        int256 left = size - closed;
        _moveNotional(a, left, a.startIndex);
        a.size = left.toInt96();
        emit Backstop(auctionId, closed, quote);
        _afterFill(owner, subaccount, marketId);
    }

    // ------------------------------------------------------------------ views

    /// @inheritdoc ILiquidationEngine
    function auctionPrice(uint256 auctionId) external view returns (uint256) {
        StoredAuction storage a = _live(auctionId);
        uint256 index = clearingHouse.indexPrice(a.marketId);
        AuctionParams memory ap = auctionParams(a.marketId);
        if (_expired(a, ap, index)) revert AuctionExpired(auctionId);
        return _price(a.size, index, _discount(ap, block.timestamp - a.startTime));
    }

    /// @inheritdoc ILiquidationEngine
    function discountAt(uint32 marketId, uint256 elapsed) external view returns (uint256) {
        return _discount(auctionParams(marketId), elapsed);
    }

    /// @inheritdoc ILiquidationEngine
    function auction(uint256 auctionId) external view returns (Auction memory) {
        if (auctionId == 0 || auctionId > _counters.auctionCount) revert UnknownAuction(auctionId);
        StoredAuction storage a = _auctions[auctionId];
        return Auction({
            owner: a.owner,
            subaccount: a.subaccount,
            marketId: a.marketId,
            redos: a.redos,
            size: a.size,
            startIndex: a.startIndex,
            startTime: a.startTime,
            notional: _notional(a.size, a.startIndex).toUint128()
        });
    }

    /// @inheritdoc ILiquidationEngine
    function isExpired(uint256 auctionId) external view returns (bool) {
        StoredAuction storage a = _live(auctionId);
        return _expired(a, auctionParams(a.marketId), clearingHouse.indexPrice(a.marketId));
    }

    /// @inheritdoc ILiquidationEngine
    function liquidationParams() external view returns (LiquidationParams memory) {
        StoredParams memory s = _params;
        return LiquidationParams({
            targetHealth: s.targetHealth,
            chip: s.chip,
            penalty: s.penalty,
            maxRedos: s.maxRedos,
            tip: s.tip,
            maxKeeperReward: s.maxKeeperReward,
            maxAuctionNotional: s.maxAuctionNotional
        });
    }

    /// @notice `marketId`'s auction parameters (the defaults until governance sets its own).
    function auctionParams(uint32 marketId) public view returns (AuctionParams memory p) {
        p = _auctionParams[marketId];
        if (p.duration == 0) p = defaultAuctionParams();
    }

    /// @inheritdoc ILiquidationEngine
    function kickPreview(address owner, uint32 subaccount, uint32 marketId)
        external
        view
        returns (int256 slice, uint256 notional, uint256 keeperReward, uint256 penalty)
    {
        (int256 value, uint256 maintenance, uint256 auctionedNotional,) = vault.liquidationState(owner, subaccount);
        if (value >= int256(maintenance)) return (0, 0, 0, 0);
        Slice memory s = _slice(owner, subaccount, marketId, value, maintenance, auctionedNotional);
        return (s.size, s.notional, s.keeperReward + s.bounty, s.penalty);
    }

    /// @inheritdoc ILiquidationEngine
    function bestMarketToKick(address owner, uint32 subaccount) external view returns (uint32 best) {
        (int256 value, uint256 maintenance, uint256 auctionedNotional,) = vault.liquidationState(owner, subaccount);
        if (value >= int256(maintenance)) return 0;
        uint256 markets = vault.openMarkets(owner, subaccount);
        uint256 bestNotional = type(uint256).max;
        bool bestRestores;
        for (uint32 id = 1; markets != 0; ++id) {
            bool held = markets & 1 == 1;
            markets >>= 1;
            if (!held) continue;
            (int256 size,,) = clearingHouse.position(owner, subaccount, id);
            if (size == clearingHouse.auctionedSize(owner, subaccount, id)) continue;
            Slice memory s = _slice(owner, subaccount, id, value, maintenance, auctionedNotional);
            // Prefer a slice that restores target health (not the whole position); among those the
            // smallest notional; otherwise the largest position (most risk removed).
            bool better = s.restores
                ? (!bestRestores || s.notional < bestNotional)
                : (!bestRestores && (best == 0 || s.notional > bestNotional));
            if (better) {
                best = id;
                bestNotional = s.notional;
                bestRestores = s.restores;
            }
        }
    }

    // ------------------------------------------------------------------ internals

    struct Slice {
        int256 size; // [wad base] signed like the position
        uint256 notional; // [wad quote] |size| x index, rounded up
        uint256 keeperReward; // [wad quote]
        uint256 penalty; // [wad quote]
        uint256 index; // [wad]
        bool restores; // the slice is sized to restore target health (not forced to the whole position)
        uint256 shortfall; // [wad] bad debt the account's auctions would leave at the worst fill, after costs
        uint256 bounty; // [wad quote] paid by the insurance fund when the account can pay its keeper nothing
    }

    /// @dev The smallest slice after which, net of its costs and of the worst fill the auction allows
    ///      (the full discount at an unchanged index), accountValue >= targetHealth x maintenance.
    ///      Taking slice notional n out of margin lowers maintenance by n x mmr and costs at most
    ///      tip + (chip + penalty + maxDiscount) x n, so
    ///        n >= (h x M - V + tip) / (h x mmr - chip - penalty - maxDiscount),
    ///      rounded up to base (and to at least the minimum position size); the whole free position when
    ///      that is more, leaves dust, or the denominator is not positive (costs outrun the margin released).
    ///      Costs: the keeper reward, then the penalty, each capped at what the account keeps after the worst
    ///      fill of everything it will have in auction (notional x this market's maxDiscount), so a kick never
    ///      creates bad debt at an unchanged index and a dust account cannot pay out more than it holds.
    function _slice(
        address owner,
        uint32 subaccount,
        uint32 marketId,
        int256 value,
        uint256 maintenance,
        uint256 auctionedNotional
    ) internal view returns (Slice memory s) {
        // One call for the free size, the two market parameters and the index (read after the size check,
        // as the separate calls did: a position with nothing free reverts here whatever its feed says).
        (int256 available, uint256 mmr, uint256 minSize, uint256 index) =
            clearingHouse.liquidationInputs(owner, subaccount, marketId);
        if (available == 0) revert NothingToLiquidate(owner, subaccount, marketId);
        s.index = index;
        StoredParams memory lp = _params;
        uint256 avail = available.abs();
        uint256 base = avail;
        uint256 maxDiscount = auctionParams(marketId).maxDiscount;
        {
            // Casts: ratios are bounded far below 2^63.
            int256 denom = int256(uint256(lp.targetHealth).mulWadDown(mmr)) - int256(uint256(lp.chip))
                - int256(uint256(lp.penalty)) - int256(maxDiscount);
            if (denom > 0) {
                int256 need = maintenance.mulWadUp(lp.targetHealth).toInt256() - value + int256(uint256(lp.tip));
                uint256 b = need <= 0 ? 0 : uint256(need).divWadUp(uint256(denom)).divWadUp(s.index);
                if (b < minSize) b = minSize;
                if (b < avail && avail - b >= minSize) {
                    base = b;
                    s.restores = true;
                }
            }
        }
        s.size = available > 0 ? base.toInt256() : -base.toInt256();
        s.notional = base.mulWadUp(s.index);
        // What the account can pay: its value less the worst fill of everything in auction after this kick.
        int256 room = value - (auctionedNotional + s.notional).mulWadUp(maxDiscount).toInt256();
        uint256 reward = lp.tip + s.notional.mulWadUp(lp.chip);
        if (reward > lp.maxKeeperReward) reward = lp.maxKeeperReward;
        s.keeperReward = room <= 0 ? 0 : (reward < uint256(room) ? reward : uint256(room));
        room -= s.keeperReward.toInt256();
        uint256 penalty = s.notional.mulWadUp(lp.penalty);
        s.penalty = room <= 0 ? 0 : (penalty < uint256(room) ? penalty : uint256(room));
        s.shortfall = _shortfall(room - s.penalty.toInt256());
        if (s.keeperReward == 0) {
            // An account under water pays its keeper nothing, yet its kick is what sets its bad debt aside
            // (and LP flows resume a TWAP window after a gap whether or not anyone kicked). The insurance
            // fund pays the proportional part only, chip x notional: no flat tip, so dust accounts, which
            // anyone can create, earn nothing worth farming.
            uint256 bounty = s.notional.mulWadUp(lp.chip);
            if (bounty > lp.maxKeeperReward) bounty = lp.maxKeeperReward;
            uint256 insurance = vault.insuranceFund();
            s.bounty = bounty < insurance ? bounty : insurance;
        }
    }

    /// @dev The largest part of `base` (the owner's long when > 0, closed by selling; a short when < 0, closed
    ///      by buying) whose close leaves the vAMM price at or beyond `edge` on the near side (at or above it
    ///      for a sale, at or below it for a purchase), leaving no dust behind. The reserve at the edge comes
    ///      from x' = sqrt(x y / edge) on the curve x y = k, rounded toward the inside.
    function _backstopFit(uint256 x, uint256 y, int256 base, uint256 edge, uint256 minSize)
        internal
        pure
        returns (int256)
    {
        uint256 want = base.abs();
        uint256 fit;
        if (base > 0) {
            // Selling base lowers the price to edge at most: x' <= sqrt(x y / edge).
            if (edge == 0) {
                fit = want;
            } else {
                uint256 xMax = _edgeReserve(x, y, edge);
                // Rounding: the edge reserve rounds down and keeps a 1e-12 margin, so x' is inside the
                // edge; the swap rounds its quote out down, which leaves the price above the exact curve's.
                xMax -= xMax / 1e12;
                fit = xMax > x ? xMax - x : 0;
            }
        } else {
            // Buying base raises the price to edge at most: x' >= sqrt(x y / edge).
            uint256 xMin = _edgeReserve(x, y, edge);
            // Rounding: a 1e-12 margin plus 2 wei covers the floor above and the swap's quote rounded up.
            xMin += xMin / 1e12 + 2;
            fit = x > xMin ? x - xMin : 0;
        }
        if (fit >= want) return base;
        // What stays in the auction must be nothing or a position a taker may hold.
        if (want - fit < minSize) fit = want > minSize ? want - minSize : 0;
        // Cast: fit < want <= |int256|.
        return base > 0 ? int256(fit) : -int256(fit);
    }

    /// @dev floor(sqrt(x y / price)) in WAD: the base reserve at which the curve through (x, y) has `price`.
    function _edgeReserve(uint256 x, uint256 y, uint256 price) internal pure returns (uint256) {
        uint256 q = Math.mulDiv(x, y, price); // [wad base^2 / 1e18]
        // q x 1e18 when it fits (full precision), else sqrt(q) x 1e9 (relative error below 1e-18 there).
        return q <= type(uint256).max / WAD ? Math.sqrt(q * WAD) : Math.sqrt(q) * 1e9;
    }

    /// @dev Bad debt implied by what an account keeps after the worst fill: its negative part.
    function _shortfall(int256 room) internal pure returns (uint256) {
        // Cast: room < 0 on this branch.
        return room < 0 ? uint256(-room) : 0;
    }

    /// @dev After a fill or a backstop: resolve the bad debt of an account left with no position, or refresh its
    ///      shortfall estimate while it has one (a healthy account's stays zero at no cost), both from one Vault call.
    function _afterFill(address owner, uint32 subaccount, uint32 marketId) internal {
        (bool resolved, uint256 shortfall) = vault.tryResolveBadDebt(owner, subaccount);
        if (resolved || shortfall == 0) return;
        // The refresh reads every feed the account holds: a stale one elsewhere leaves the last estimate
        // standing rather than stopping the fill (never the caller's gas limit: `_checkNotStarved`).
        uint256 before = gasleft();
        try vault.liquidationState(owner, subaccount) returns (int256 value, uint256, uint256 auctionedNotional, uint256) {
            vault.recordShortfall(
                owner,
                subaccount,
                _shortfall(value - auctionedNotional.mulWadUp(auctionParams(marketId).maxDiscount).toInt256())
            );
        } catch {
            _checkNotStarved(before);
        }
    }

    /// @dev End an auction unfilled: its size goes back to the position's free part.
    function _cancel(uint256 auctionId, StoredAuction storage a, int256 value, uint256 requirement) internal {
        int256 size = a.size;
        _moveNotional(a, 0, a.startIndex);
        a.size = 0;
        clearingHouse.releaseFromAuction(a.owner, a.subaccount, a.marketId, size);
        if (vault.shortfallOf(a.owner, a.subaccount) != 0) vault.recordShortfall(a.owner, a.subaccount, 0);
        emit AuctionCancelled(auctionId, size, value, requirement);
    }

    function _live(uint256 auctionId) internal view returns (StoredAuction storage a) {
        if (auctionId == 0 || auctionId > _counters.auctionCount) revert UnknownAuction(auctionId);
        a = _auctions[auctionId];
        if (a.size == 0) revert AuctionFinished(auctionId);
    }

    /// @dev Past its duration, or the index moved more than resetDrop from the (re)start index in the
    ///      account's favour (up for a long slice, down for a short one): the account may have recovered, so
    ///      the auction waits for a redo, which cancels it if so. A move against the account does not end it:
    ///      its price follows the live index and its discount keeps growing, so in a fast market the auction
    ///      becomes worth taking instead of restarting at no discount every few minutes.
    function _expired(StoredAuction storage a, AuctionParams memory ap, uint256 index) internal view returns (bool) {
        if (block.timestamp - a.startTime > ap.duration) return true;
        uint256 start = a.startIndex;
        if (a.size > 0 ? index <= start : index >= start) return false;
        uint256 move = index > start ? index - start : start - index;
        return move > start.mulWadDown(ap.resetDrop);
    }

    /// @dev Discount after `elapsed` seconds, non-decreasing in time, 0 at the start, maxDiscount at the end.
    function _discount(AuctionParams memory ap, uint256 elapsed) internal pure returns (uint256) {
        if (elapsed >= ap.duration) return ap.maxDiscount;
        if (ap.curve == Curve.Linear) return uint256(ap.maxDiscount) * elapsed / ap.duration;
        if (ap.curve == Curve.Stairstep) {
            return uint256(ap.maxDiscount) * (elapsed / ap.step) / (uint256(ap.duration) / ap.step);
        }
        // Exponential: rounded down, so never ahead of the curve.
        uint256 done = WAD - FundingMath.expNegWad(EXP_SPEED * elapsed * WAD / ap.duration);
        return uint256(ap.maxDiscount) * done / EXP_SPAN;
    }

    /// @dev Long slice: the taker buys at index x (1 - d), rounded up; short slice: the taker sells at
    ///      index x (1 + d), rounded down. Both roundings are against the taker.
    function _price(int256 size, uint256 index, uint256 discount) internal pure returns (uint256) {
        return size > 0 ? index.mulWadUp(WAD - discount) : index.mulWadDown(WAD + discount);
    }

    /// @dev Notional counted in the global cap: |size| x start index, rounded up.
    function _notional(int256 size, uint256 startIndex) internal pure returns (uint256) {
        return size.abs().mulWadUp(startIndex);
    }

    /// @dev Re-count `a` in `liveNotional` as `newSize` at `newIndex` (call before writing them).
    function _moveNotional(StoredAuction storage a, int256 newSize, uint256 newIndex) internal {
        // Below 2^192 (see Counters); checked anyway.
        _counters.liveNotional =
            (uint256(_counters.liveNotional) - _notional(a.size, a.startIndex) + _notional(newSize, newIndex)).toUint192();
    }

    /// @inheritdoc ILiquidationEngine
    function auctionCount() external view returns (uint256) {
        return _counters.auctionCount;
    }

    /// @inheritdoc ILiquidationEngine
    function liveNotional() external view returns (uint256) {
        return _counters.liveNotional;
    }

    function _checkNotPaused() internal view {
        uint8 level = vault.pauseLevel();
        if (level >= PAUSE_NO_TRADING) revert Paused(level);
    }
}
