// SPDX-License-Identifier: BUSL-1.1
pragma solidity 0.8.28;

import {ICircuitBreaker} from "../interfaces/ICircuitBreaker.sol";
import {IRiskGovernor} from "../interfaces/IRiskGovernor.sol";
import {IClearingHouse} from "../interfaces/IClearingHouse.sol";
import {IVault} from "../interfaces/IVault.sol";
import {ILiquidationEngine} from "../interfaces/ILiquidationEngine.sol";
import {ILiquidityPool} from "../interfaces/ILiquidityPool.sol";
import {WAD, WadMath} from "../libraries/WadMath.sol";
import {Bounds} from "../libraries/Bounds.sol";

/// @title CircuitBreaker
/// @notice Deterministic breakers over every market (see ICircuitBreaker): a permissionless `poke` measures,
///         and the RiskGovernor writes the restriction to the ClearingHouse when it changes.
/// @dev Every figure is read from the modules' views in the poke's block; nothing depends on who pokes or
///      when, beyond the block. A poke accrues the market first (`pokeFunding`); the index TWAP it compares with
///      counts each of the feed's rounds from its own time (ClearingHouseAccrual._indexArea), so a round posted
///      before the poke's block is in it for the seconds since. The move and divergence breakers are observed
///      only by pokes: a move that comes and goes between two pokes is not seen, and divergence counts from the
///      first poke that sees it, reset by any poke that does not (keepers poke every block or minute; the index
///      TWAP itself remembers a move for a window). The gross open-interest notional of the insurance breaker values
///      each market at the index it last accrued at (`MarketState.lastIndexPrice`), so one market's stale
///      feed never stops the breakers of the others.
///      Defaults (`defaultParams`) and hard bounds:
///      | parameter           | default | bounds          |
///      |---------------------|---------|-----------------|
///      | moveThreshold       | 5 %     | 1 % .. 50 %     |
///      | coolOff             | 30 min  | 5 min .. 1 day  |
///      | divergenceThreshold | 3 %     | 0.5 % .. 50 %   |
///      | divergenceDuration  | 30 min  | 1 min .. 1 day  |
///      | insuranceTarget     | 1 %     | 0.1 % .. 100 %  |
///      | auctionSoftShare    | 50 %    | 10 % .. 99 %    |
///      | maxSkewShare        | 20 %    | 1 % .. 1000 %   |
///      A market's own thresholds (`setMarketThresholds`: moveThreshold, divergenceThreshold, divergenceDuration,
///      maxSkewShare; 0 = the global value) take the same bounds; every evaluation (`poke`, `pokeAll`, `check`) and the
///      threshold `BreakerTripped` reports use the market's thresholds in force (`marketThresholds`).
contract CircuitBreaker is ICircuitBreaker {
    using WadMath for uint256;

    uint256 internal constant MIN_MOVE_THRESHOLD = 0.01e18;
    uint256 internal constant MAX_MOVE_THRESHOLD = 0.5e18;
    uint256 internal constant MIN_COOL_OFF = 5 minutes;
    uint256 internal constant MAX_COOL_OFF = 1 days;
    uint256 internal constant MIN_DIVERGENCE_THRESHOLD = 0.005e18;
    uint256 internal constant MAX_DIVERGENCE_THRESHOLD = 0.5e18;
    uint256 internal constant MIN_DIVERGENCE_DURATION = 1 minutes;
    uint256 internal constant MAX_DIVERGENCE_DURATION = 1 days;
    uint256 internal constant MIN_INSURANCE_TARGET = 0.001e18;
    uint256 internal constant MAX_INSURANCE_TARGET = 1e18;
    uint256 internal constant MIN_AUCTION_SOFT_SHARE = 0.1e18;
    uint256 internal constant MAX_AUCTION_SOFT_SHARE = 0.99e18; // < 100 %: the linear ramp needs a width
    uint256 internal constant MIN_MAX_SKEW_SHARE = 0.01e18;
    uint256 internal constant MAX_MAX_SKEW_SHARE = 10e18;
    uint96 internal constant NO_CAP = type(uint96).max;

    /// @inheritdoc ICircuitBreaker
    address public immutable governor;
    /// @inheritdoc ICircuitBreaker
    address public immutable deployer;
    IClearingHouse internal immutable _clearingHouse;
    IVault internal immutable _vault;
    ILiquidationEngine internal immutable _engine;
    ILiquidityPool internal immutable _pool;

    BreakerParams internal _params;

    /// @dev Each market's own thresholds (0 in a field: the global value); one slot per market.
    mapping(uint32 marketId => MarketThresholds) internal _overrides;

    /// @dev Three slots per market.
    struct Stored {
        uint64 reduceOnlyUntil; // [s]
        uint64 divergentSince; // [s] 0: the last poke saw no divergence
        uint64 skewShare; // [wad] saturating
        uint8 holding; // bit (1 << Kind)
        uint64 move; // [wad] saturating
        uint64 divergence; // [wad] saturating
        uint64 insuranceFactor; // [wad]
        uint64 auctionFactor; // [wad]
        uint64 skewUntil; // [s] the skew cap holds until then (a cool-off after the last poke that saw the skew)
        uint96 skewCap; // [wad base] the heavy side's open interest when the skew was last seen
        uint64 moveUntil; // [s] the reduce-only end set by the last poke that saw an index move (pegHoldUntil)
    }

    mapping(uint32 marketId => Stored) internal _state;

    /// @dev The protocol-wide measurements, read once per poke (once for all markets in `pokeAll`).
    struct Globals {
        uint256 insuranceFund; // [wad]
        uint256 insuranceRequired; // [wad]
        uint256 insuranceFactor; // [wad]
        uint256 live; // [wad] live auction notional
        uint256 soft; // [wad]
        uint256 auctionFactor; // [wad]
        int256 nav; // [wad]
        uint256[] longOi; // [wad base] per market, index marketId - 1
        uint256[] shortOi; // [wad base]
    }

    /// @param governor_ the RiskGovernor (it reads the modules' addresses from it); parameters start at
    ///        `defaultParams`.
    constructor(address governor_) {
        if (governor_ == address(0)) revert ZeroAddress();
        governor = governor_;
        deployer = msg.sender;
        IRiskGovernor g = IRiskGovernor(governor_);
        _clearingHouse = IClearingHouse(g.clearingHouse());
        _vault = IVault(g.vault());
        _engine = ILiquidationEngine(g.liquidationEngine());
        _pool = ILiquidityPool(g.liquidityPool());
        _setParams(defaultParams());
    }

    /// @notice The shipped parameters (see the table above).
    function defaultParams() public pure returns (BreakerParams memory) {
        return BreakerParams({
            moveThreshold: 0.05e18,
            coolOff: 30 minutes,
            divergenceThreshold: 0.03e18,
            divergenceDuration: 30 minutes,
            // 1 %: the deployment seeds the fund with 1 % of the pool. At 5 % the simulator's crash and
            // squeeze kept every market capped for 10 of 12.5 hours and cost LPs 1.2 % (docs/economics.md).
            insuranceTarget: 0.01e18,
            auctionSoftShare: 0.5e18,
            maxSkewShare: 0.2e18
        });
    }

    // ------------------------------------------------------------------ actions

    /// @inheritdoc ICircuitBreaker
    function poke(uint32 marketId) external {
        BreakerParams memory bp = _params;
        // Accrue the market first, so its index TWAP includes the index as of this block (a quiet market's
        // TWAP would otherwise lag at the index of its last trade). Reverts UnknownMarket / StaleOracle.
        _clearingHouse.pokeFunding(marketId);
        uint256 index = _clearingHouse.indexPrice(marketId);
        _apply(marketId, _evaluate(marketId, index, _globals(bp), bp));
    }

    /// @inheritdoc ICircuitBreaker
    /// @dev The protocol-wide figures are read once, at the start.
    function pokeAll() external {
        BreakerParams memory bp = _params;
        Globals memory g = _globals(bp);
        uint32 n = _clearingHouse.marketCount();
        for (uint32 id = 1; id <= n; ++id) {
            // A market whose feed is stale or invalid cannot be measured (and cannot be traded either).
            try _clearingHouse.pokeFunding(id) {} catch { continue; }
            try _clearingHouse.indexPrice(id) returns (uint256 index) {
                _apply(id, _evaluate(id, index, g, bp));
            } catch {}
        }
    }

    /// @inheritdoc ICircuitBreaker
    function setParams(BreakerParams calldata p) external {
        if (msg.sender != governor) revert NotGovernor(msg.sender);
        _setParams(p);
    }

    /// @inheritdoc ICircuitBreaker
    function setMarketThresholds(uint32 marketId, MarketThresholds calldata t) external {
        // The deployer's window closes when the governor wires a breaker (this one or another): from then on a
        // market's thresholds change only through the governor's timelock.
        if (msg.sender != governor && (msg.sender != deployer || IRiskGovernor(governor).breaker() != address(0))) {
            revert NotGovernor(msg.sender);
        }
        if (marketId == 0 || marketId > _clearingHouse.marketCount()) revert UnknownMarket(marketId);
        if (t.moveThreshold != 0) Bounds.check("moveThreshold", t.moveThreshold, MIN_MOVE_THRESHOLD, MAX_MOVE_THRESHOLD);
        if (t.divergenceThreshold != 0) {
            Bounds.check("divergenceThreshold", t.divergenceThreshold, MIN_DIVERGENCE_THRESHOLD, MAX_DIVERGENCE_THRESHOLD);
        }
        if (t.divergenceDuration != 0) {
            Bounds.check("divergenceDuration", t.divergenceDuration, MIN_DIVERGENCE_DURATION, MAX_DIVERGENCE_DURATION);
        }
        if (t.maxSkewShare != 0) Bounds.check("maxSkewShare", t.maxSkewShare, MIN_MAX_SKEW_SHARE, MAX_MAX_SKEW_SHARE);
        _overrides[marketId] = t;
        emit MarketThresholdsSet(marketId, t);
    }

    // ------------------------------------------------------------------ views

    /// @inheritdoc ICircuitBreaker
    function check(uint32 marketId) external view returns (Evaluation memory) {
        BreakerParams memory bp = _params;
        return _evaluate(marketId, _clearingHouse.indexPrice(marketId), _globals(bp), bp);
    }

    /// @inheritdoc ICircuitBreaker
    function breakerState(uint32 marketId) external view returns (BreakerState memory s) {
        Stored memory st = _state[marketId];
        (uint96 capBase, bool reduceOnly) = IRiskGovernor(governor).restriction(marketId);
        s = BreakerState({
            reduceOnlyUntil: st.reduceOnlyUntil,
            divergentSince: st.divergentSince,
            capBase: capBase,
            reduceOnly: reduceOnly,
            holding: st.holding,
            move: st.move,
            divergence: st.divergence,
            insuranceFactor: st.insuranceFactor,
            auctionFactor: st.auctionFactor,
            skewShare: st.skewShare
        });
    }

    /// @inheritdoc ICircuitBreaker
    function pegHoldUntil(uint32 marketId) external view returns (uint256 until) {
        (until,,) = _pegHold(marketId);
    }

    /// @inheritdoc ICircuitBreaker
    function pegHold(uint32 marketId) external view returns (uint256 until, bool live, uint256 moveThreshold) {
        return _pegHold(marketId);
    }

    /// @dev The live move compares the index with the TWAP extended to now as an accrual would (each round from its
    ///      own time): a round posted in this block is not in it yet, one posted earlier counts its seconds.
    function _pegHold(uint32 marketId) internal view returns (uint256 until, bool live, uint256 moveThreshold) {
        until = _state[marketId].moveUntil;
        (, uint256 indexTwap) = _clearingHouse.twaps(marketId); // reverts UnknownMarket
        BreakerParams memory bp = _params;
        moveThreshold = _inForce(marketId, bp).moveThreshold;
        live = _relative(_clearingHouse.indexPrice(marketId), indexTwap) > moveThreshold;
        if (live) {
            uint256 end = block.timestamp + bp.coolOff;
            if (end > until) until = end;
        }
    }

    /// @inheritdoc ICircuitBreaker
    function params() external view returns (BreakerParams memory) {
        return _params;
    }

    /// @inheritdoc ICircuitBreaker
    function marketThresholds(uint32 marketId) external view returns (MarketThresholds memory) {
        return _inForce(marketId, _params);
    }

    /// @inheritdoc ICircuitBreaker
    function thresholdOverrides(uint32 marketId) external view returns (MarketThresholds memory) {
        return _overrides[marketId];
    }

    // ------------------------------------------------------------------ internals

    function _globals(BreakerParams memory bp) internal view returns (Globals memory g) {
        uint32 n = _clearingHouse.marketCount();
        uint256 gross; // [wad] sum over markets of (long + short) x the index each last accrued at
        g.longOi = new uint256[](n);
        g.shortOi = new uint256[](n);
        for (uint32 id = 1; id <= n; ++id) {
            IClearingHouse.MarketState memory s = _clearingHouse.marketState(id);
            g.longOi[id - 1] = s.longOpenInterest;
            g.shortOi[id - 1] = s.shortOpenInterest;
            gross += (s.longOpenInterest + s.shortOpenInterest).mulWadUp(s.lastIndexPrice);
        }
        g.insuranceFund = _vault.insuranceFund();
        g.insuranceRequired = gross.mulWadUp(bp.insuranceTarget);
        g.insuranceFactor =
            g.insuranceFund >= g.insuranceRequired ? WAD : g.insuranceFund.divWadDown(g.insuranceRequired);
        g.live = _engine.liveNotional();
        uint256 maxLive = _engine.liquidationParams().maxAuctionNotional; // >= 1 (the engine's bound)
        g.soft = maxLive.mulWadDown(bp.auctionSoftShare); // < maxLive: the share is below 100 %
        if (g.live <= g.soft) g.auctionFactor = WAD;
        else if (g.live < maxLive) g.auctionFactor = (maxLive - g.live).divWadDown(maxLive - g.soft);
        // else 0: at or above the cap nothing may grow
        g.nav = _pool.navWad();
    }

    function _evaluate(uint32 marketId, uint256 index, Globals memory g, BreakerParams memory bp)
        internal
        view
        returns (Evaluation memory e)
    {
        Stored memory st = _state[marketId];
        MarketThresholds memory t = _inForce(marketId, bp);
        (uint256 markTwap, uint256 indexTwap) = _clearingHouse.twaps(marketId); // reverts UnknownMarket
        e.index = index;
        e.move = _relative(index, indexTwap);
        e.divergence = _relative(markTwap, indexTwap);
        e.insuranceFund = g.insuranceFund;
        e.insuranceRequired = g.insuranceRequired;
        e.insuranceFactor = g.insuranceFactor;
        e.liveAuctionNotional = g.live;
        e.auctionSoft = g.soft;
        e.auctionFactor = g.auctionFactor;
        e.nav = g.nav;

        // Reduce-only breakers: each poke that sees one holding extends the cool-off from now.
        uint256 until = st.reduceOnlyUntil;
        uint256 coolOffEnd = block.timestamp + bp.coolOff;
        uint8 holding;
        if (e.move > t.moveThreshold) {
            holding |= _bit(Kind.IndexMove);
            if (coolOffEnd > until) until = coolOffEnd;
        }
        uint256 since = st.divergentSince;
        if (e.divergence > t.divergenceThreshold) {
            if (since == 0) since = block.timestamp;
            if (block.timestamp - since >= t.divergenceDuration) {
                holding |= _bit(Kind.Divergence);
                if (coolOffEnd > until) until = coolOffEnd;
            }
        } else {
            since = 0;
        }
        e.reduceOnly = block.timestamp < until;

        // Cap breakers: the lowest cap any of them asks for.
        uint256 cap = NO_CAP;
        if (g.insuranceFactor < WAD || g.auctionFactor < WAD) {
            // Scaled caps are fractions of the configured cap (read only when one applies).
            (IClearingHouse.MarketParams memory conf,) = IRiskGovernor(governor).configuredMarketParams(marketId);
            if (g.insuranceFactor < WAD) {
                holding |= _bit(Kind.Insurance);
                cap = _min(cap, uint256(conf.maxOpenInterest).mulWadDown(g.insuranceFactor));
            }
            if (g.auctionFactor < WAD) {
                holding |= _bit(Kind.Auctions);
                cap = _min(cap, uint256(conf.maxOpenInterest).mulWadDown(g.auctionFactor));
            }
        }
        // marketId <= marketCount: twaps above reverted for any other id.
        uint256 longOi = g.longOi[marketId - 1];
        uint256 shortOi = g.shortOi[marketId - 1];
        e.skewNotional = (longOi > shortOi ? longOi - shortOi : shortOi - longOi).mulWadUp(index);
        // Cast: nav > 0 in the branch.
        e.skewLimit = g.nav > 0 ? uint256(g.nav).mulWadDown(t.maxSkewShare) : 0;
        // The skew cap holds for a cool-off after the last poke that saw the skew, at the heavy side's open
        // interest then: a balancing round trip (grow the light side, poke, shrink it) cannot lift it at once.
        e.skewUntil = st.skewUntil;
        e.skewCap = st.skewCap;
        if (g.nav <= 0 || e.skewNotional > e.skewLimit) {
            e.skewUntil = uint64(coolOffEnd);
            // Cast: open interest <= maxOpenInterest <= int96 max.
            e.skewCap = uint96(longOi > shortOi ? longOi : shortOi);
        }
        if (block.timestamp < e.skewUntil) {
            holding |= _bit(Kind.Skew);
            cap = _min(cap, e.skewCap);
        }
        // Cast: cap <= NO_CAP = uint96 max.
        e.capBase = uint96(cap);
        e.holding = holding;
        // Casts: timestamps fit 64 bits.
        e.reduceOnlyUntil = uint64(until);
        e.divergentSince = uint64(since);
        (uint96 capNow, bool reduceOnlyNow) = IRiskGovernor(governor).restriction(marketId);
        e.changes = capNow != e.capBase || reduceOnlyNow != e.reduceOnly;
    }

    function _apply(uint32 marketId, Evaluation memory e) internal {
        Stored storage st = _state[marketId];
        uint8 before = st.holding;
        st.reduceOnlyUntil = e.reduceOnlyUntil;
        st.divergentSince = e.divergentSince;
        // Cast: nav > 0 in the branch.
        st.skewShare = e.nav > 0 ? _saturate(e.skewNotional.divWadDown(uint256(e.nav))) : type(uint64).max;
        st.holding = e.holding;
        st.move = _saturate(e.move);
        st.divergence = _saturate(e.divergence);
        // Casts: both factors <= 1e18.
        st.insuranceFactor = uint64(e.insuranceFactor);
        st.auctionFactor = uint64(e.auctionFactor);
        st.skewUntil = e.skewUntil;
        st.skewCap = e.skewCap;
        // The index-move breaker's own end, apart from divergence's extensions: the peg hold (pegHoldUntil).
        if (e.holding & _bit(Kind.IndexMove) != 0) st.moveUntil = e.reduceOnlyUntil;
        for (uint8 k; k <= uint8(Kind.Skew); ++k) {
            uint8 bit = uint8(1) << k;
            if (e.holding & bit != 0 && before & bit == 0) {
                (uint256 value, uint256 threshold, uint256 until) = _measure(marketId, Kind(k), e);
                emit BreakerTripped(marketId, Kind(k), value, threshold, until);
            } else if (e.holding & bit == 0 && before & bit != 0) {
                emit BreakerCleared(marketId, Kind(k));
            }
        }
        if (e.changes) {
            emit RestrictionApplied(marketId, e.capBase, e.reduceOnly);
            IRiskGovernor(governor).applyRestriction(marketId, e.capBase, e.reduceOnly);
        }
    }

    /// @dev What `BreakerTripped` reports for `kind`: (value, threshold in force for the market, end of
    ///      reduce-only or 0).
    function _measure(uint32 marketId, Kind kind, Evaluation memory e)
        internal
        view
        returns (uint256, uint256, uint256)
    {
        if (kind == Kind.IndexMove) return (e.move, _inForce(marketId, _params).moveThreshold, e.reduceOnlyUntil);
        if (kind == Kind.Divergence) {
            return (e.divergence, _inForce(marketId, _params).divergenceThreshold, e.reduceOnlyUntil);
        }
        if (kind == Kind.Insurance) return (e.insuranceFund, e.insuranceRequired, 0);
        if (kind == Kind.Auctions) return (e.liveAuctionNotional, e.auctionSoft, 0);
        return (e.skewNotional, e.skewLimit, 0);
    }

    function _setParams(BreakerParams memory p) internal {
        Bounds.check("moveThreshold", p.moveThreshold, MIN_MOVE_THRESHOLD, MAX_MOVE_THRESHOLD);
        Bounds.check("coolOff", p.coolOff, MIN_COOL_OFF, MAX_COOL_OFF);
        Bounds.check("divergenceThreshold", p.divergenceThreshold, MIN_DIVERGENCE_THRESHOLD, MAX_DIVERGENCE_THRESHOLD);
        Bounds.check("divergenceDuration", p.divergenceDuration, MIN_DIVERGENCE_DURATION, MAX_DIVERGENCE_DURATION);
        Bounds.check("insuranceTarget", p.insuranceTarget, MIN_INSURANCE_TARGET, MAX_INSURANCE_TARGET);
        Bounds.check("auctionSoftShare", p.auctionSoftShare, MIN_AUCTION_SOFT_SHARE, MAX_AUCTION_SOFT_SHARE);
        Bounds.check("maxSkewShare", p.maxSkewShare, MIN_MAX_SKEW_SHARE, MAX_MAX_SKEW_SHARE);
        _params = p;
        emit BreakerParamsSet(p);
    }

    /// @dev `marketId`'s thresholds in force: its own where set, else the global ones in `bp`.
    function _inForce(uint32 marketId, BreakerParams memory bp) internal view returns (MarketThresholds memory t) {
        t = _overrides[marketId];
        if (t.moveThreshold == 0) t.moveThreshold = bp.moveThreshold;
        if (t.divergenceThreshold == 0) t.divergenceThreshold = bp.divergenceThreshold;
        if (t.divergenceDuration == 0) t.divergenceDuration = bp.divergenceDuration;
        if (t.maxSkewShare == 0) t.maxSkewShare = bp.maxSkewShare;
    }


    /// @dev |a - b| / b [wad], rounded down; 0 when b is 0 (no TWAP yet).
    function _relative(uint256 a, uint256 b) internal pure returns (uint256) {
        if (b == 0) return 0;
        return (a > b ? a - b : b - a).divWadDown(b);
    }

    function _bit(Kind kind) internal pure returns (uint8) {
        return uint8(1) << uint8(kind);
    }

    function _min(uint256 a, uint256 b) internal pure returns (uint256) {
        return a < b ? a : b;
    }

    function _saturate(uint256 x) internal pure returns (uint64) {
        // Cast: clamped to the uint64 range first.
        return x > type(uint64).max ? type(uint64).max : uint64(x);
    }
}
