// SPDX-License-Identifier: BUSL-1.1
pragma solidity 0.8.28;

import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";

import {IClearingHouse} from "./interfaces/IClearingHouse.sol";
import {IVault} from "./interfaces/IVault.sol";
import {WadMath} from "./libraries/WadMath.sol";
import {VAmmMath} from "./libraries/VAmmMath.sol";
import {FundingMath} from "./libraries/FundingMath.sol";
import {ClearingHouseSettlement} from "./clearinghouse/ClearingHouseSettlement.sol";
import {ClearingHouseTradeRules} from "./clearinghouse/ClearingHouseTradeRules.sol";
import {ClearingHouseConfigurator} from "./clearinghouse/ClearingHouseConfigurator.sol";
import {PAUSE_NO_NEW_RISK, PAUSE_NO_TRADING} from "./interfaces/IErrors.sol";

/// @title ClearingHouse
/// @notice Lists markets, prices trades on each market's virtual AMM, keeps positions and TWAPs,
///         and enforces margin. Ledger movements (fees, realized PnL, funding) settle in the Vault
///         in one call per trade, always against the liquidity pool's balance.
/// @dev Storage is packed for the hot path: a trade reads 8 market slots, writes the position
///      (2 slots) and makes one Vault call and one oracle call. No loop grows with market activity;
///      the margin check loops over the markets the account holds (at most 16, `Vault.MAX_OPEN_MARKETS`).
contract ClearingHouse is IClearingHouse, ClearingHouseTradeRules, ReentrancyGuardTransient {
    using WadMath for uint256;
    using WadMath for int256;
    using SafeCast for uint256;
    using SafeCast for int256;


    /// @dev The selector-sized prefix of `_configureView`'s static calls (the first four bytes of
    ///      keccak256("vperp.ClearingHouse.viewInConfigurator"), no function's selector; tests/clearinghouse checks it).
    uint256 private constant VIEW_PREFIX = 0xc9675dd8;

    /// @notice Where listing and parameter calls run (by `delegatecall`; see ClearingHouseConfigurator).
    address public immutable configurator;

    modifier onlyLiquidationEngine() {
        if (msg.sender != liquidationEngine) revert UnauthorizedModule(msg.sender);
        _;
    }

    constructor(IVault vault_, address owner_) Ownable(owner_) ClearingHouseSettlement(vault_) {
        configurator = address(new ClearingHouseConfigurator(vault_));
    }

    // ------------------------------------------------------------------ governance

    /// @notice Wire the AMM controller in. Once only.
    function setAmmController(address controller) external onlyOwner {
        if (controller == address(0)) revert ZeroAddress();
        if (ammController != address(0)) revert ModuleAlreadySet(ammController);
        ammController = controller;
        emit ModuleSet("ammController", controller);
    }

    /// @inheritdoc IClearingHouse
    /// @dev Runs in ClearingHouseConfigurator.setReserves, which checks the sender (the AMM controller), holds the
    ///      reentrancy lock and accrues first: a depth sync or repeg is an hourly-at-most keeper call, so it
    ///      pays the forwarding (about 2,700 gas) rather than the trading code paying for its bytes.
    function setReserves(uint32 marketId, uint256 baseReserve, uint256 quoteReserve, int256 fundingCharge) external {
        (marketId, baseReserve, quoteReserve, fundingCharge); // forwarded as calldata
        _configure();
    }

    /// @notice Wire the liquidation engine in. Once only.
    function setLiquidationEngine(address engine) external onlyOwner {
        if (engine == address(0)) revert ZeroAddress();
        if (liquidationEngine != address(0)) revert ModuleAlreadySet(liquidationEngine);
        liquidationEngine = engine;
        emit ModuleSet("liquidationEngine", engine);
    }

    /// @notice List a market whose vAMM starts at the oracle's price with `baseReserve` virtual base
    ///         (runs in ClearingHouseConfigurator.listMarket).
    function listMarket(bytes32 symbol, MarketParams calldata params, uint64 insuranceFeeShare_, uint256 baseReserve)
        external
        onlyOwner
        returns (uint32 marketId)
    {
        (symbol, params, insuranceFeeShare_, baseReserve, marketId); // forwarded as calldata
        _configure();
    }

    /// @notice Change a market's parameters within the hard bounds; accrues the market first
    ///         (runs in ClearingHouseConfigurator.setMarketParams).
    function setMarketParams(uint32 marketId, MarketParams calldata params, uint64 insuranceFeeShare)
        external
        onlyOwner
    {
        (marketId, params, insuranceFeeShare); // forwarded as calldata
        _configure();
    }

    /// @notice Change a market's funding parameters within the hard bounds; accrues funding first
    ///         (runs in ClearingHouseConfigurator.setFundingParams).
    function setFundingParams(uint32 marketId, FundingParams calldata params) external onlyOwner {
        (marketId, params); // forwarded as calldata
        _configure();
    }

    /// @inheritdoc IClearingHouse
    function setSkewFunding(uint32 marketId, uint256 ratePpm) external onlyOwner {
        (marketId, ratePpm); // forwarded as calldata
        _configure();
    }

    /// @inheritdoc IClearingHouse
    function setPegTolerance(uint32 marketId, uint256 bps) external onlyOwner {
        (marketId, bps); // forwarded as calldata
        _configure();
    }

    /// @inheritdoc IClearingHouse
    function pegTolerance(uint32 marketId) external view returns (uint256) {
        return _market(marketId).pegToleranceBps;
    }

    /// @inheritdoc IClearingHouse
    function setOrderRouter(address) external onlyOwner {
        _configure(); // the router is forwarded as calldata
    }

    /// @inheritdoc IClearingHouse
    function setDelayedOrders(uint32 marketId, bool on) external onlyOwner {
        (marketId, on); // forwarded as calldata
        _configure();
    }

    /// @inheritdoc IClearingHouse
    function delayedOrders(uint32 marketId) external view returns (bool) {
        return _market(marketId).delayedOrders;
    }

    /// @dev Runs this call's calldata in the configurator on this contract's storage and returns or reverts
    ///      with exactly what it did. Reached only from the setters above: the owner-only ones check the
    ///      owner here, `setReserves` has its sender checked in the configurator.
    function _configure() private {
        address target = configurator;
        assembly ("memory-safe") {
            let ptr := mload(0x40)
            calldatacopy(ptr, 0, calldatasize())
            let ok := delegatecall(gas(), target, ptr, calldatasize(), 0, 0)
            returndatacopy(ptr, 0, returndatasize())
            if iszero(ok) { revert(ptr, returndatasize()) }
            return(ptr, returndatasize())
        }
    }

    /// @dev Runs a view's calldata in the configurator on this contract's storage, read only: a static call to this
    ///      contract with the calldata behind VIEW_PREFIX, a selector no function has, which `fallback` delegate-calls
    ///      to the configurator (a view cannot delegate-call; under the static call nothing it runs can write).
    ///      Returns or reverts with exactly what the configurator did.
    function _configureView() private view {
        assembly ("memory-safe") {
            let ptr := mload(0x40)
            mstore(ptr, shl(224, VIEW_PREFIX))
            calldatacopy(add(ptr, 4), 0, calldatasize())
            let ok := staticcall(gas(), address(), ptr, add(calldatasize(), 4), 0, 0)
            returndatacopy(ptr, 0, returndatasize())
            if iszero(ok) { revert(ptr, returndatasize()) }
            return(ptr, returndatasize())
        }
    }

    /// @dev Reached only by this contract's own static calls (`_configureView`): the calldata after VIEW_PREFIX runs
    ///      in the configurator. Any other call that matches no function reverts with no data, as it did before this
    ///      fallback existed.
    fallback() external {
        address target = configurator;
        assembly ("memory-safe") {
            if iszero(and(eq(caller(), address()), eq(shr(224, calldataload(0)), VIEW_PREFIX))) { revert(0, 0) }
            let ptr := mload(0x40)
            let n := sub(calldatasize(), 4)
            calldatacopy(ptr, 4, n)
            let ok := delegatecall(gas(), target, ptr, n, 0, 0)
            returndatacopy(ptr, 0, returndatasize())
            if iszero(ok) { revert(ptr, returndatasize()) }
            return(ptr, returndatasize())
        }
    }

    // ------------------------------------------------------------------ funding

    /// @inheritdoc IClearingHouse
    function pokeFunding(uint32 marketId) external nonReentrant {
        Market storage m = _market(marketId);
        (uint256 index, uint256 since) = _round(m);
        _accrue(m, index, since);
    }

    /// @inheritdoc IClearingHouse
    /// @dev Computed by the configurator (`ClearingHouseConfigurator.fundingState`) on this contract's storage, read
    ///      only (`_configureView`): its code lives there to keep this contract under the size limit.
    function fundingState(uint32 marketId)
        external
        view
        returns (
            int256 appliedRate,
            int256 targetRate,
            int256 premium,
            uint256 markTwap,
            uint256 indexTwap,
            int256 projected1h,
            int256 projected8h
        )
    {
        (marketId); // forwarded as calldata
        _configureView();
    }

    /// @inheritdoc IClearingHouse
    function fundingParams(uint32 marketId) external view returns (FundingParams memory) {
        return _market(marketId).fundingParams;
    }

    /// @inheritdoc IClearingHouse
    function skewFunding(uint32 marketId) external view returns (uint256 ratePpm, int256 term) {
        Market storage m = _market(marketId);
        return (m.skewFundingPpm, _skewTerm(m));
    }

    // ------------------------------------------------------------------ trading

    /// @inheritdoc IClearingHouse
    function openPosition(uint32 subaccount, uint32 marketId, int256 baseAmount, uint256 quoteLimit, uint256 deadline)
        external
        nonReentrant
        returns (int256, int256, uint256)
    {
        return _trade(msg.sender, subaccount, marketId, baseAmount, quoteLimit, deadline, 0);
    }

    /// @inheritdoc IClearingHouse
    function openPositionWithBuilder(
        uint32 subaccount,
        uint32 marketId,
        int256 baseAmount,
        uint256 quoteLimit,
        uint256 deadline,
        address builder,
        uint256 builderFeeRate
    ) external nonReentrant returns (int256, int256, uint256) {
        // Packed in one word (one stack slot in _trade): the rate above the address. A rate that does not fit
        // 96 bits could never be approved (Vault.MAX_BUILDER_FEE_RATE). Written out rather than `Bounds.check`
        // (same rule): with the library call here depth syncs and repegs cost 46 gas more (measured, `./run.sh gas`).
        if (builderFeeRate > type(uint96).max) revert ParameterOutOfBounds("builderFeeRate", builderFeeRate);
        uint256 packed = builder == address(0) ? 0 : (builderFeeRate << 160) | uint256(uint160(builder));
        return _trade(msg.sender, subaccount, marketId, baseAmount, quoteLimit, deadline, packed);
    }

    /// @inheritdoc IClearingHouse
    function openPositionFor(
        address owner,
        uint32 subaccount,
        uint32 marketId,
        int256 baseAmount,
        uint256 quoteLimit,
        uint256 deadline
    ) external nonReentrant returns (int256, int256, uint256) {
        if (msg.sender != owner && !vault.isOperator(owner, msg.sender)) revert NotOwnerOrOperator(msg.sender, owner);
        return _trade(owner, subaccount, marketId, baseAmount, quoteLimit, deadline, 0);
    }

    /// @inheritdoc IClearingHouse
    function closePosition(uint32 subaccount, uint32 marketId, uint256 quoteLimit, uint256 deadline)
        external
        nonReentrant
        returns (int256, int256, uint256)
    {
        Position storage p = _positions[marketId][msg.sender][subaccount];
        int256 size = p.size - p.auctioned; // what is in an auction is the auction's to close
        if (size == 0) revert NoPosition(msg.sender, subaccount, marketId);
        return _trade(msg.sender, subaccount, marketId, -size, quoteLimit, deadline, 0);
    }

    // ------------------------------------------------------------------ liquidation hooks

    /// @inheritdoc IClearingHouse
    function markForAuction(address owner, uint32 subaccount, uint32 marketId, int256 slice)
        external
        onlyLiquidationEngine
    {
        _market(marketId);
        Position storage p = _positions[marketId][owner][subaccount];
        int256 available = p.size - p.auctioned;
        // The slice rule (written out in three places: `ClearingHouseSettlement._auctionSettle` says why).
        if (slice == 0 || (slice > 0) != (available > 0) || slice.abs() > available.abs()) {
            revert InvalidAuctionSlice(slice, available);
        }
        p.auctioned = (int256(p.auctioned) + slice).toInt128();
    }

    /// @inheritdoc IClearingHouse
    function settleAuctionFill(
        address owner,
        uint32 subaccount,
        uint32 marketId,
        int256 base,
        uint256 price,
        address taker,
        uint32 takerSubaccount
    ) external onlyLiquidationEngine nonReentrant returns (uint256 minPositionSize) {
        Market storage m = _market(marketId);
        (uint256 index, uint256 since) = _round(m);
        _accrue(m, index, since);
        // The notional changes hands at `price`: what the owner receives rounds down and what it pays
        // rounds up; the taker the other way; the wei between them stays with the pool.
        uint256 notional = base.abs().mulWadDown(price);
        uint256 notionalUp = base.abs().mulWadUp(price);
        int256 ownerQuote = base > 0 ? notional.toInt256() : -notionalUp.toInt256();
        int256 takerQuote = base > 0 ? -notionalUp.toInt256() : notional.toInt256();
        _auctionSettle(owner, subaccount, marketId, m, -base, ownerQuote, SettlementCause.AuctionFill, price);
        (IVault.AccountState memory acct, bool reducing) =
            _auctionSettle(taker, takerSubaccount, marketId, m, base, takerQuote, SettlementCause.AuctionTake, price);
        if (acct.pauseLevel >= PAUSE_NO_TRADING) revert Paused(acct.pauseLevel);
        if (!reducing) {
            _checkInitialMargin(taker, takerSubaccount, acct, marketId, index);
        } else if (acct.openMarkets == 0 && acct.collateral < 0) {
            // A reducing taker fills at or better than the index, so only the trade's no-position floor applies: it
            // may not leave itself flat with negative collateral, a debt no estimate would show the pool's NAV.
            revert ReduceBelowMaintenance(taker, takerSubaccount, acct.collateral);
        }
        return m.minPositionSize;
    }

    /// @inheritdoc IClearingHouse
    /// @dev Runs in ClearingHouseConfigurator.backstopClose, which checks the sender (the liquidation engine) and
    ///      holds the reentrancy lock: a backstop is the rare end of a failed auction, so it pays the forwarding
    ///      (about 2,700 gas) rather than the trading code paying for its bytes.
    function backstopClose(address owner, uint32 subaccount, uint32 marketId, int256 base, uint256 limitPrice)
        external
        returns (int256 quoteFlow)
    {
        (owner, subaccount, marketId, base, limitPrice, quoteFlow); // forwarded as calldata
        _configure();
    }

    /// @inheritdoc IClearingHouse
    function releaseFromAuction(address owner, uint32 subaccount, uint32 marketId, int256 slice)
        external
        onlyLiquidationEngine
    {
        _market(marketId);
        Position storage p = _positions[marketId][owner][subaccount];
        int256 auctioned = p.auctioned;
        // The slice rule (written out in three places: `ClearingHouseSettlement._auctionSettle` says why).
        if (slice == 0 || (slice > 0) != (auctioned > 0) || slice.abs() > auctioned.abs()) {
            revert InvalidAuctionSlice(slice, auctioned);
        }
        p.auctioned = (auctioned - slice).toInt128();
    }

    // ------------------------------------------------------------------ views

    /// @inheritdoc IClearingHouse
    function position(address owner, uint32 subaccount, uint32 marketId)
        external
        view
        returns (int256 size, int256 openNotional, int256 pendingFunding)
    {
        Position storage p = _positions[marketId][owner][subaccount];
        size = p.size;
        openNotional = p.openNotional;
        if (size != 0) {
            Market storage m = _markets[marketId];
            (, uint256 index, uint256 since) = _tryRound(m);
            pendingFunding = size.sMulWadUp(_cumulativeFundingNow(m, index, since) - p.lastCumulativeFunding);
        }
    }

    /// @inheritdoc IClearingHouse
    function tradersPnl() external view returns (int256 pnl, uint256 netExposure) {
        uint32 count = _marketCount;
        for (uint32 id = 1; id <= count; ++id) {
            Market storage m = _markets[id];
            // Cast: each side is below 2^128.
            int256 net = int256(uint256(m.longOpenInterest)) - int256(uint256(m.shortOpenInterest));
            if (net == 0 && m.sumOpenNotional == 0 && m.sumFundingBasis == 0) continue;
            (uint256 index, uint256 since) = _round(m);
            // Traders' unrealized PnL at the index minus the funding they owe, from aggregates.
            pnl += net.sMulWadDown(index) - m.sumOpenNotional
                - (net.sMulWadDown(_cumulativeFundingNow(m, index, since)) - m.sumFundingBasis);
            netExposure += net.abs().mulWadUp(index);
        }
    }

    /// @inheritdoc IClearingHouse
    function tradersExitPnl()
        external
        view
        returns (int256 pnl, uint256 netExposure, uint256 suspendedNotional, uint32 suspendedMarket)
    {
        uint32 count = _marketCount;
        for (uint32 id = 1; id <= count; ++id) {
            Market storage m = _markets[id];
            uint256 longOi = m.longOpenInterest;
            uint256 shortOi = m.shortOpenInterest;
            // Cast: each side is below 2^128.
            int256 net = int256(longOi) - int256(shortOi);
            if (longOi == 0 && shortOi == 0 && m.sumOpenNotional == 0 && m.sumFundingBasis == 0) continue;
            uint256 x = m.baseReserve;
            uint256 y = m.quoteReserve;
            (bool ok, uint256 index, uint256 since) = _tryRound(m);
            pnl += VAmmMath.exitValue(x, y, net) - m.sumOpenNotional
                - (net.sMulWadDown(_cumulativeFundingNow(m, index, since)) - m.sumFundingBasis);
            uint256 spot = VAmmMath.price(x, y);
            netExposure += net.abs().mulWadUp(spot);
            if (longOi == 0 && shortOi == 0) continue;
            if (ok) {
                uint64 maxSpread = m.maxSpread;
                uint256 dist = spot > index ? spot - index : index - spot;
                uint256 last = m.lastIndexPrice;
                uint256 jump = index > last ? index - last : last - index;
                // Untrusted while the vAMM is outside its band now; while the index has moved more than the
                // band since the market last accrued (a gap no block has seen yet, even one traded away in
                // the gap's own block); and for a TWAP window after a block found a gap.
                ok = dist <= index.mulWadDown(maxSpread) && jump <= last.mulWadDown(maxSpread)
                    && block.timestamp >= uint256(m.lastDislocation) + m.twapWindow;
            }
            if (!ok) {
                suspendedNotional += (longOi + shortOi).mulWadUp(spot);
                if (suspendedMarket == 0) suspendedMarket = id;
            }
        }
    }

    /// @inheritdoc IClearingHouse
    function liquidationInputs(address owner, uint32 subaccount, uint32 marketId)
        external
        view
        returns (int256 available, uint256 mmr, uint256 minPositionSize, uint256 index)
    {
        Position storage p = _positions[marketId][owner][subaccount];
        available = int256(p.size) - p.auctioned;
        // Only listed markets hold positions: nothing free, nothing read (and no revert from the feed).
        if (available == 0) return (0, 0, 0, 0);
        Market storage m = _market(marketId);
        return (available, m.mmr, m.minPositionSize, _index(m));
    }

    /// @inheritdoc IClearingHouse
    function auctionedSize(address owner, uint32 subaccount, uint32 marketId) external view returns (int256) {
        return _positions[marketId][owner][subaccount].auctioned;
    }

    /// @inheritdoc IClearingHouse
    function quote(uint32 marketId, int256 baseAmount) external view returns (int256 quoteAmount, uint256 priceAfter) {
        Market storage m = _market(marketId);
        if (baseAmount == 0) revert ZeroSize();
        uint256 x = m.baseReserve;
        uint256 y = m.quoteReserve;
        _checkLiquidity(marketId, baseAmount, x);
        (quoteAmount, x, y) = VAmmMath.swap(x, y, baseAmount);
        priceAfter = VAmmMath.price(x, y);
    }

    /// @inheritdoc IClearingHouse
    function marginSummary(address owner, uint32 subaccount, uint256 openMarkets)
        external
        view
        returns (MarginSummary memory s)
    {
        return _marginSummary(owner, subaccount, openMarkets, 0, 0);
    }

    /// @inheritdoc IClearingHouse
    function markPrice(uint32 marketId) external view returns (uint256 markTwap) {
        (markTwap,) = _twaps(_market(marketId));
    }

    /// @inheritdoc IClearingHouse
    function indexPrice(uint32 marketId) external view returns (uint256) {
        return _index(_market(marketId));
    }

    /// @inheritdoc IClearingHouse
    function spotPrice(uint32 marketId) external view returns (uint256) {
        Market storage m = _market(marketId);
        return VAmmMath.price(m.baseReserve, m.quoteReserve);
    }

    /// @inheritdoc IClearingHouse
    function twaps(uint32 marketId) external view returns (uint256 markTwap, uint256 indexTwap) {
        return _twaps(_market(marketId));
    }

    /// @inheritdoc IClearingHouse
    function marketCount() external view returns (uint32) {
        return _marketCount;
    }

    /// @inheritdoc IClearingHouse
    function marketParams(uint32 marketId) external view returns (MarketParams memory p) {
        Market storage m = _market(marketId);
        p = MarketParams({
            oracle: m.oracle,
            heartbeat: m.heartbeat,
            twapWindow: m.twapWindow,
            imr: m.imr,
            mmr: m.mmr,
            takerFee: m.takerFee,
            maxSpread: m.maxSpread,
            maxOiPoolRatio: m.maxOiPoolRatio,
            maxOpenInterest: m.maxOpenInterest,
            minPositionSize: m.minPositionSize
        });
    }

    /// @inheritdoc IClearingHouse
    function symbolOf(uint32 marketId) external view returns (bytes32) {
        return _symbolOf[marketId];
    }

    /// @inheritdoc IClearingHouse
    function insuranceFeeShare(uint32 marketId) external view returns (uint256) {
        return _market(marketId).insuranceFeeShare;
    }

    /// @inheritdoc IClearingHouse
    function marketState(uint32 marketId) external view returns (MarketState memory s) {
        Market storage m = _market(marketId);
        (, uint256 index, uint256 since) = _tryRound(m);
        s = MarketState({
            baseReserve: m.baseReserve,
            quoteReserve: m.quoteReserve,
            spotPrice: VAmmMath.price(m.baseReserve, m.quoteReserve),
            longOpenInterest: m.longOpenInterest,
            shortOpenInterest: m.shortOpenInterest,
            cumulativeFunding: _cumulativeFundingNow(m, index, since),
            fundingRate: m.funding.rate,
            targetRate: m.funding.target,
            lastIndexPrice: m.lastIndexPrice,
            lastUpdate: m.accumulator.timestamp,
            lastDislocation: m.lastDislocation
        });
    }

    // ------------------------------------------------------------------ trade internals

    struct TradeResult {
        int256 quote; // [wad] signed quote flow to the trader
        uint256 fee; // [wad]
        int256 realizedPnl; // [wad]
        int256 funding; // [wad] settled on this position, positive = paid by the trader
        int256 newSize; // [wad base]
        int256 newOpenNotional; // [wad]
        uint256 priceAfter; // [wad]
        bool reducing; // the trade only reduces or closes the position
    }

    function _trade(
        address owner,
        uint32 subaccount,
        uint32 marketId,
        int256 baseAmount,
        uint256 quoteLimit,
        uint256 deadline,
        uint256 builderData // openPositionWithBuilder's builder (low 160 bits) and fee rate (above); 0: none
    ) internal returns (int256, int256, uint256) {
        if (block.timestamp > deadline) revert DeadlinePassed(deadline, block.timestamp);
        if (baseAmount == 0) revert ZeroSize();
        Market storage m = _markets[marketId];
        // `_market`'s check and the delayed-orders rule from one read of the market's first slot: with delayed
        // orders on, only the router trades (it executes at a price set after the order was committed).
        (address oracle, bool delayed) = (m.oracle, m.delayedOrders);
        if (oracle == address(0)) revert UnknownMarket(marketId);
        if (delayed && msg.sender != orderRouter) revert DelayedOrdersOnly(marketId);
        (uint256 index, uint256 since) = _round(m);
        _accrue(m, index, since);

        Position storage p = _positions[marketId][owner][subaccount];
        TradeResult memory r;
        int256 size = p.size;
        int256 cumulativeFunding = m.funding.cumulativeFunding;
        if (size != 0) r.funding = size.sMulWadUp(cumulativeFunding - p.lastCumulativeFunding);

        // Reducing: the trade moves the position toward zero without crossing it. The same rule as
        // `ClearingHouseSettlement._auctionSettle`'s, written from the trade's base (known before the swap) rather
        // than its new size; one shared function for both was measured at +23 gas on every increase and +69 on a
        // new position (-163 on a reduce), so each path keeps its own form.
        r.reducing = size != 0 && (size > 0) != (baseAmount > 0) && baseAmount.abs() <= size.abs();

        // vAMM swap and price band. The band keeps new risk from pushing the vAMM away from the index;
        // a reduce or close is never blocked by it (the trader's own slippage limit bounds its price), so
        // the winning side of a dislocation can always take its profit while the oracle is valid.
        {
            uint256 x = m.baseReserve;
            uint256 y = m.quoteReserve;
            _checkLiquidity(marketId, baseAmount, x);
            // A delayed order meets a fresh peg whichever its direction (0: both), so its executor cannot choose
            // between the stale peg and the repegged one.
            _checkPeg(marketId, m, x, y, index, delayed ? int256(0) : baseAmount);
            uint256 priceBefore = VAmmMath.price(x, y);
            (r.quote, x, y) = VAmmMath.swap(x, y, baseAmount);
            r.priceAfter = VAmmMath.price(x, y);
            if (!r.reducing) _checkPriceBand(marketId, m.maxSpread, index, priceBefore, r.priceAfter);
            // Casts: reserves stay below MAX_RESERVE... x grows only on sells, bounded by SafeCast.
            m.baseReserve = x.toUint128();
            m.quoteReserve = y.toUint128();
        }

        // Slippage (fee excluded).
        if (baseAmount > 0 ? uint256(-r.quote) > quoteLimit : uint256(r.quote) < quoteLimit) {
            revert SlippageExceeded(r.quote, quoteLimit);
        }

        (r.newSize, r.newOpenNotional, r.realizedPnl) = VAmmMath.applyTrade(size, p.openNotional, baseAmount, r.quote);
        if (p.auctioned != 0) _checkAuctionedPart(m, owner, subaccount, marketId, r.newSize, p.auctioned);
        _checkMinPositionSize(m, marketId, r.newSize);
        _moveAggregates(m, p, r.newSize, r.newOpenNotional, cumulativeFunding);
        p.size = r.newSize.toInt128();
        p.openNotional = r.newOpenNotional.toInt128();
        p.lastCumulativeFunding = cumulativeFunding.toInt128();

        uint256 toInsurance;
        (r.fee, toInsurance) = _tradeFee(m, r.quote);

        IVault.AccountState memory acct = vault.settleTrade(
            owner,
            subaccount,
            marketId,
            r.newSize != 0,
            r.realizedPnl - r.funding - r.fee.toInt256(),
            r.funding - r.realizedPnl + (r.fee - toInsurance).toInt256(),
            toInsurance
        );

        // The pause levels a trade meets: from PAUSE_NO_TRADING none trades; at PAUSE_NO_NEW_RISK only a reduce
        // (a take's form: `settleAuctionFill`). Written here: as a function it measured +36 gas a trade.
        if (acct.pauseLevel >= PAUSE_NO_TRADING || (acct.pauseLevel == PAUSE_NO_NEW_RISK && !r.reducing)) {
            revert Paused(acct.pauseLevel);
        }
        _updateOpenInterest(marketId, m, size, r.newSize, index, acct.poolBalance);
        // Builder fee (openPositionWithBuilder only): after the settlement, before the margin check, so an
        // increase is judged with the fee paid. The Vault checks the owner's approval and the collateral; here,
        // from one margin summary, the fee must leave the account at or above maintenance (a reduce is not
        // checked otherwise), then an increase at or above initial.
        if (builderData >> 160 != 0) {
            uint256 rate = builderData >> 160;
            // Cast: the low 160 bits are the builder's address.
            acct.collateral = vault.chargeBuilderFee(
                owner, subaccount, address(uint160(builderData)), rate, r.quote.abs().mulWadUp(rate)
            );
            MarginSummary memory s = _marginSummary(owner, subaccount, acct.openMarkets, marketId, index);
            _checkBuilderFeeMaintenance(owner, subaccount, acct, s);
            if (!r.reducing) _checkInitial(owner, subaccount, acct, s);
        } else if (!r.reducing) {
            _checkInitialMargin(owner, subaccount, acct, marketId, index);
        } else if (acct.openMarkets == 0 ? acct.collateral < 0 : r.quote * 1e18 + baseAmount * int256(index) < 0) {
            // A reduce filled at or better than the index lowers the account's value by its fee at most: no summary.
            // One filled worse (quote + base x index < 0, exactly: no rounding), or a close that leaves no position
            // and negative collateral, must leave the account at or above maintenance. No product can overflow:
            // |quote| and |base| are below the reserves' 1e36 (the swap went through) and the index below 2^128.
            _checkReduce(owner, subaccount, acct, marketId, index);
        }

        emit PositionChanged(
            owner,
            subaccount,
            marketId,
            baseAmount,
            r.quote,
            r.fee,
            r.realizedPnl,
            r.funding,
            r.newSize,
            r.newOpenNotional,
            r.priceAfter
        );
        return (baseAmount, r.quote, r.fee);
    }
}
