// SPDX-License-Identifier: BUSL-1.1
pragma solidity 0.8.28;

import {Ownable2Step} from "@openzeppelin/contracts/access/Ownable2Step.sol";
import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {TimelockController} from "@openzeppelin/contracts/governance/TimelockController.sol";

import {IRiskGovernor} from "../interfaces/IRiskGovernor.sol";
import {ICircuitBreaker} from "../interfaces/ICircuitBreaker.sol";
import {IClearingHouse} from "../interfaces/IClearingHouse.sol";
import {IVault} from "../interfaces/IVault.sol";
// The modules themselves, for their setters' selectors and encodings only (compiler-checked signatures;
// no module code is deployed with the governor).
import {Vault} from "../Vault.sol";
import {ClearingHouse} from "../ClearingHouse.sol";
import {LiquidationEngine} from "../LiquidationEngine.sol";
import {LiquidityPool} from "../LiquidityPool.sol";
import {AmmController} from "../AmmController.sol";

/// @title RiskGovernor
/// @notice Owns the five modules; every setter is reached through it, on one of two paths (issue 17, item 1):
///         - the timelock: the admin proposes, the change is dry-run at once against the module's hard bounds,
///           scheduled on an OpenZeppelin TimelockController (delay >= MIN_DELAY, 48 h shipped) and executed
///           by anyone after the delay;
///         - at once (`act`), by the guardian or the admin, only for a change `classify` finds risk-reducing
///           against the current configuration.
///         The circuit breaker (`applyRestriction`) only tightens market parameters; the configured ones are
///         kept here and restored when the restriction lifts.
/// @dev Classification, per setter (anything not listed: `Unknown`, refused on both paths):
///      | target        | setter                                   | path                                     |
///      |---------------|------------------------------------------|------------------------------------------|
///      | Vault         | setPauseLevel(level)                     | Instant if level >= pauseLevel, else Timelock |
///      | ClearingHouse | setMarketParams(id, p, share)            | Instant iff only maxOiPoolRatio and maxOpenInterest move, both down from the configured ones; else Timelock |
///      | Vault         | setGuardian(address(0))                  | Instant (removing a key only takes power away) |
///      | Vault         | setClearingHouse, setLiquidationEngine, setLiquidityPool, setGuardian, transferOwnership | Timelock |
///      | ClearingHouse | listMarket, setFundingParams, setSkewFunding, setPegTolerance, setOrderRouter, setDelayedOrders, setAmmController, setLiquidationEngine, transferOwnership | Timelock |
///      | Liq. engine   | setLiquidationParams, setAuctionParams, transferOwnership | Timelock                |
///      | Pool          | setPoolParams, transferOwnership         | Timelock                                 |
///      | AMM controller| setAmmParams, setConcentration, setPegGuard, transferOwnership | Timelock          |
///      | governor      | setGuardian(address(0))                  | Instant                                  |
///      | governor      | setAdmin, setGuardian, setBreaker, setBreakerParams, setBreakerMarketThresholds | Timelock |
///      `renounceOwnership` is unknown on purpose: no path may leave a module without an owner.
///      Why an mmr change always waits, even a raise: a higher maintenance ratio makes accounts liquidatable
///      the moment it lands. Done at once, a guardian that also runs a keeper (or anyone who saw the
///      transaction coming) could kick those accounts in the same block and collect the keeper rewards and
///      the auction discounts; through the timelock every trader has the delay to add margin or reduce.
///      The initial margin ratio and the band wait too (a review found both misused at once): an imr raised
///      to 100 % locks every trader's free collateral, and a tighter band also suspends LP flows and blocks
///      backstops. The instant levers are the pause level (up), the two open-interest caps (down) and the
///      removal of a guardian. A proposal made against a pause level or a market's configured parameters
///      that an instant change has since moved cannot execute (`StaleProposal`): it would undo the emergency
///      change. The guardian may cancel proposals, but not the governor's own setters, the Vault's guardian
///      or a pause level (`GuardianCannotCancel`), so it cannot veto its own removal or an unpause.
///      The breaker is wired once by the admin (`setBreaker` while none is set: the breaker needs the
///      governor's address at construction, so it cannot be a constructor argument here); any later change
///      goes through the timelock.
contract RiskGovernor is IRiskGovernor {
    /// @inheritdoc IRiskGovernor
    uint256 public constant MIN_DELAY = 1 days;

    /// @inheritdoc IRiskGovernor
    address public immutable deployer;
    /// @inheritdoc IRiskGovernor
    address public immutable vault;
    /// @inheritdoc IRiskGovernor
    address public immutable clearingHouse;
    /// @inheritdoc IRiskGovernor
    address public immutable liquidationEngine;
    /// @inheritdoc IRiskGovernor
    address public immutable liquidityPool;
    /// @inheritdoc IRiskGovernor
    address public immutable ammController;
    /// @inheritdoc IRiskGovernor
    address public immutable timelock;

    /// @inheritdoc IRiskGovernor
    address public admin;
    /// @inheritdoc IRiskGovernor
    address public guardian;
    /// @inheritdoc IRiskGovernor
    address public breaker;

    /// @inheritdoc IRiskGovernor
    uint256 public proposalCount;
    mapping(uint256 proposalId => Proposal) internal _proposals;
    uint256[] internal _pending;
    mapping(uint256 proposalId => uint256) internal _pendingSlot; // index in _pending + 1 (0: not pending)

    /// @dev Governance's parameters of a market; `recorded` once the governor wrote or restricted it.
    struct ConfiguredMarket {
        IClearingHouse.MarketParams params;
        uint64 insuranceFeeShare; // [wad]
        bool recorded;
    }

    /// @dev The breaker's restriction of a market; `active` false means none.
    struct Restriction {
        uint96 capBase; // [wad base] per-side cap
        bool reduceOnly;
        bool active;
    }

    mapping(uint32 marketId => ConfiguredMarket) internal _configured;
    mapping(uint32 marketId => Restriction) internal _restrictions;

    modifier onlySelf() {
        if (msg.sender != address(this)) revert NotSelf(msg.sender);
        _;
    }

    modifier onlyGuardianOrAdmin() {
        if (msg.sender != guardian && msg.sender != admin) revert NotGuardianOrAdmin(msg.sender);
        _;
    }

    /// @param timelock_ a TimelockController with delay >= MIN_DELAY whose only proposer (and a canceller) is
    ///        this governor and whose executor role is open; its deployer grants those roles to the governor
    ///        and renounces its admin role after this constructor (the governor cannot check roles granted later).
    constructor(
        address vault_,
        address clearingHouse_,
        address liquidationEngine_,
        address liquidityPool_,
        address ammController_,
        address timelock_,
        address admin_,
        address guardian_
    ) {
        if (
            vault_ == address(0) || clearingHouse_ == address(0) || liquidationEngine_ == address(0)
                || liquidityPool_ == address(0) || ammController_ == address(0) || timelock_ == address(0)
                || admin_ == address(0)
        ) revert ZeroAddress();
        uint256 delay = TimelockController(payable(timelock_)).getMinDelay();
        if (delay < MIN_DELAY) revert DelayTooShort(delay, MIN_DELAY);
        deployer = msg.sender;
        vault = vault_;
        clearingHouse = clearingHouse_;
        liquidationEngine = liquidationEngine_;
        liquidityPool = liquidityPool_;
        ammController = ammController_;
        timelock = timelock_;
        admin = admin_;
        guardian = guardian_;
        emit RiskAdminSet(admin_);
        emit RiskGuardianSet(guardian_);
    }

    // ------------------------------------------------------------------ proposals

    /// @inheritdoc IRiskGovernor
    function propose(address target, bytes calldata data) external returns (uint256 proposalId) {
        if (msg.sender != admin) revert NotAdmin(msg.sender);
        bytes4 selector = _selector(data);
        Path path = classify(target, data);
        if (path == Path.Unknown) revert UnknownSetter(target, selector);
        _dryRun(target, data);
        TimelockController tl = TimelockController(payable(timelock));
        uint256 delay = tl.getMinDelay();
        if (delay < MIN_DELAY) revert DelayTooShort(delay, MIN_DELAY);
        proposalId = ++proposalCount;
        // Cast: timestamps and delays fit 64 bits (the timelock itself adds them in uint256).
        uint64 eta = uint64(block.timestamp + delay);
        _proposals[proposalId] = Proposal(target, eta, ProposalState.Pending, path, _stateDigest(target, data), data);
        _pending.push(proposalId);
        _pendingSlot[proposalId] = _pending.length;
        emit Proposed(proposalId, target, selector, data, eta);
        tl.schedule(address(this), 0, _payload(proposalId), bytes32(0), bytes32(0), delay);
    }

    /// @inheritdoc IRiskGovernor
    function execute(uint256 proposalId) external {
        _pendingProposal(proposalId);
        // The timelock checks the delay (TimelockUnexpectedOperationState before eta) and calls back
        // executeProposal.
        TimelockController(payable(timelock)).execute(address(this), 0, _payload(proposalId), bytes32(0), bytes32(0));
    }

    /// @inheritdoc IRiskGovernor
    function executeProposal(uint256 proposalId) external {
        if (msg.sender != timelock) revert NotTimelock(msg.sender);
        Proposal storage p = _pendingProposal(proposalId);
        address target = p.target;
        bytes memory data = p.data;
        if (_stateDigest(target, data) != p.digest) revert StaleProposal(proposalId);
        p.state = ProposalState.Executed;
        _removePending(proposalId);
        emit Executed(proposalId, target, _selector(data));
        _perform(target, data);
    }

    /// @inheritdoc IRiskGovernor
    function cancel(uint256 proposalId) external onlyGuardianOrAdmin {
        Proposal storage p = _pendingProposal(proposalId);
        if (msg.sender != admin) {
            // The guardian cancels risk-increasing changes, including a loosening of the breakers, but cannot
            // veto its own replacement, the governor's roles or an unpause: a compromised guardian could
            // otherwise freeze the protocol for good. (A guardian that vetoes breaker changes out of spite is
            // removed at once: `setGuardian(address(0))` is instant for the admin.)
            bytes4 s = _selector(p.data);
            if (
                (p.target == address(this) && (s == this.setAdmin.selector || s == this.setGuardian.selector))
                    || (p.target == vault && (s == Vault.setGuardian.selector || s == Vault.setPauseLevel.selector))
            ) revert GuardianCannotCancel(proposalId);
        }
        p.state = ProposalState.Cancelled;
        _removePending(proposalId);
        emit Cancelled(proposalId, msg.sender);
        TimelockController(payable(timelock)).cancel(operationId(proposalId));
    }

    /// @inheritdoc IRiskGovernor
    function act(address target, bytes calldata data) external onlyGuardianOrAdmin {
        bytes4 selector = _selector(data);
        Path path = classify(target, data);
        if (path == Path.Unknown) revert UnknownSetter(target, selector);
        if (path != Path.Instant) revert NotRiskReducing(target, selector);
        emit ActedAtOnce(msg.sender, target, selector, data);
        _perform(target, data);
    }

    /// @inheritdoc IRiskGovernor
    function dryRun(address target, bytes calldata data) external onlySelf {
        _perform(target, data);
        revert DryRunOk();
    }

    /// @inheritdoc IRiskGovernor
    function dryRunConfigured(uint32 marketId, IClearingHouse.MarketParams calldata params, uint64 insuranceFeeShare)
        external
        onlySelf
    {
        ClearingHouse(clearingHouse).setMarketParams(marketId, params, insuranceFeeShare);
        revert DryRunOk();
    }

    /// @inheritdoc IRiskGovernor
    function acceptOwnership(address module) external {
        if (!_isModule(module)) revert UnknownModule(module);
        Ownable2Step(module).acceptOwnership();
    }

    // ------------------------------------------------------------------ classification

    /// @inheritdoc IRiskGovernor
    function classify(address target, bytes calldata data) public view returns (Path) {
        bytes4 s = _selector(data);
        bytes4 transfer = Ownable.transferOwnership.selector;
        if (target == vault) {
            if (s == Vault.setPauseLevel.selector) {
                uint8 level = abi.decode(data[4:], (uint8));
                return level >= IVault(vault).pauseLevel() ? Path.Instant : Path.Timelock;
            }
            // Removing the Vault's guardian only takes a key's power away.
            if (s == Vault.setGuardian.selector && abi.decode(data[4:], (address)) == address(0)) return Path.Instant;
            if (
                s == Vault.setClearingHouse.selector || s == Vault.setLiquidationEngine.selector
                    || s == Vault.setLiquidityPool.selector || s == Vault.setGuardian.selector || s == transfer
            ) return Path.Timelock;
        } else if (target == clearingHouse) {
            if (s == ClearingHouse.setMarketParams.selector) return _classifyMarketParams(data);
            if (
                s == ClearingHouse.listMarket.selector || s == ClearingHouse.setFundingParams.selector
                    || s == ClearingHouse.setSkewFunding.selector || s == ClearingHouse.setPegTolerance.selector
                    || s == ClearingHouse.setOrderRouter.selector || s == ClearingHouse.setDelayedOrders.selector
                    || s == ClearingHouse.setAmmController.selector || s == ClearingHouse.setLiquidationEngine.selector
                    || s == transfer
            ) return Path.Timelock;
        } else if (target == liquidationEngine) {
            if (
                s == LiquidationEngine.setLiquidationParams.selector || s == LiquidationEngine.setAuctionParams.selector
                    || s == transfer
            ) return Path.Timelock;
        } else if (target == liquidityPool) {
            if (s == LiquidityPool.setPoolParams.selector || s == transfer) return Path.Timelock;
        } else if (target == ammController) {
            if (
                s == AmmController.setAmmParams.selector || s == AmmController.setConcentration.selector
                    || s == AmmController.setPegGuard.selector || s == transfer
            ) return Path.Timelock;
        } else if (target == address(this)) {
            // Removing the guardian only takes a key's power away: the admin can do it at once.
            if (s == this.setGuardian.selector && abi.decode(data[4:], (address)) == address(0)) return Path.Instant;
            if (
                s == this.setAdmin.selector || s == this.setGuardian.selector || s == this.setBreaker.selector
                    || s == this.setBreakerParams.selector || s == this.setBreakerMarketThresholds.selector
            ) return Path.Timelock;
        }
        return Path.Unknown;
    }

    /// @dev Instant only when nothing but the two open-interest caps moves, each toward less risk (imr and the
    ///      band wait for the timelock: an imr raised to 100 % would lock every trader's collateral, and a
    ///      tighter band also suspends LP flows and blocks backstops, so neither is purely risk-reducing),
    ///      against the configured parameters (not the effective ones a restriction tightened: a guardian's
    ///      change is a change of configuration, and the breaker keeps its own restriction on top).
    function _classifyMarketParams(bytes calldata data) internal view returns (Path) {
        (uint32 marketId, IClearingHouse.MarketParams memory p, uint64 share) =
            abi.decode(data[4:], (uint32, IClearingHouse.MarketParams, uint64));
        (IClearingHouse.MarketParams memory c, uint64 cShare) = configuredMarketParams(marketId);
        bool sameRest = p.oracle == c.oracle && p.heartbeat == c.heartbeat && p.twapWindow == c.twapWindow
            && p.takerFee == c.takerFee && p.mmr == c.mmr && p.imr == c.imr && p.maxSpread == c.maxSpread
            && p.minPositionSize == c.minPositionSize && share == cShare;
        bool tighter = p.maxOiPoolRatio <= c.maxOiPoolRatio && p.maxOpenInterest <= c.maxOpenInterest;
        return sameRest && tighter ? Path.Instant : Path.Timelock;
    }

    // ------------------------------------------------------------------ own setters

    /// @inheritdoc IRiskGovernor
    function setAdmin(address admin_) external onlySelf {
        if (admin_ == address(0)) revert ZeroAddress();
        admin = admin_;
        emit RiskAdminSet(admin_);
    }

    /// @inheritdoc IRiskGovernor
    function setGuardian(address guardian_) external onlySelf {
        guardian = guardian_;
        emit RiskGuardianSet(guardian_);
    }

    /// @inheritdoc IRiskGovernor
    function setBreaker(address breaker_) external {
        if (msg.sender != address(this)) {
            // The one-time wiring: the admin or whoever deployed the governor (the breaker needs the governor's
            // address, so the deploy script wires it right after; an admin that is a multisig need not sign).
            if (msg.sender != admin && msg.sender != deployer) revert NotAdmin(msg.sender);
            if (breaker != address(0)) revert BreakerAlreadySet(breaker);
        }
        if (breaker_ == address(0)) revert ZeroAddress();
        address old = breaker;
        breaker = breaker_;
        emit BreakerSet(breaker_);
        // A replacement carries every peg guard that named the old breaker over to the new one (the old one is
        // poked no more, so its hold would shrink to the live check). The governor owns the AmmController by then;
        // the new breaker must answer for each such market (AmmController.InvalidPegGuard otherwise).
        if (old != address(0)) {
            AmmController amm = AmmController(ammController);
            uint32 n = IClearingHouse(clearingHouse).marketCount();
            for (uint32 id = 1; id <= n; ++id) {
                if (amm.pegGuard(id) == old) amm.setPegGuard(id, breaker_);
            }
        }
    }

    /// @inheritdoc IRiskGovernor
    function setBreakerParams(ICircuitBreaker.BreakerParams calldata params) external onlySelf {
        address b = breaker;
        if (b == address(0)) revert ZeroAddress();
        ICircuitBreaker(b).setParams(params);
    }

    /// @inheritdoc IRiskGovernor
    function setBreakerMarketThresholds(uint32 marketId, ICircuitBreaker.MarketThresholds calldata thresholds)
        external
        onlySelf
    {
        address b = breaker;
        if (b == address(0)) revert ZeroAddress();
        ICircuitBreaker(b).setMarketThresholds(marketId, thresholds);
    }

    // ------------------------------------------------------------------ breaker hook

    /// @inheritdoc IRiskGovernor
    function applyRestriction(uint32 marketId, uint96 capBase, bool reduceOnly) external {
        if (msg.sender != breaker) revert NotBreaker(msg.sender);
        ConfiguredMarket storage c = _configured[marketId];
        if (!c.recorded) {
            // Nothing restricted this market before: the ClearingHouse holds the configured parameters.
            (IClearingHouse.MarketParams memory p, uint64 share) = configuredMarketParams(marketId);
            _configured[marketId] = ConfiguredMarket(p, share, true);
        }
        Restriction memory r = Restriction(capBase, reduceOnly, capBase != type(uint96).max || reduceOnly);
        _restrictions[marketId] = r;
        emit RestrictionSet(marketId, capBase, reduceOnly);
        _write(marketId, _tighten(c.params, r), c.insuranceFeeShare, true);
    }

    // ------------------------------------------------------------------ views

    /// @inheritdoc IRiskGovernor
    function proposal(uint256 proposalId) external view returns (Proposal memory) {
        return _proposalOf(proposalId);
    }

    /// @inheritdoc IRiskGovernor
    function pendingProposals() external view returns (uint256[] memory) {
        return _pending;
    }

    /// @inheritdoc IRiskGovernor
    function operationId(uint256 proposalId) public view returns (bytes32) {
        return TimelockController(payable(timelock)).hashOperation(
            address(this), 0, _payload(proposalId), bytes32(0), bytes32(0)
        );
    }

    /// @inheritdoc IRiskGovernor
    function configuredMarketParams(uint32 marketId)
        public
        view
        returns (IClearingHouse.MarketParams memory params, uint64 insuranceFeeShare)
    {
        ConfiguredMarket storage c = _configured[marketId];
        if (c.recorded) return (c.params, c.insuranceFeeShare);
        params = IClearingHouse(clearingHouse).marketParams(marketId);
        // Cast: the ClearingHouse stores the share as uint64.
        insuranceFeeShare = uint64(IClearingHouse(clearingHouse).insuranceFeeShare(marketId));
    }

    /// @inheritdoc IRiskGovernor
    function restriction(uint32 marketId) external view returns (uint96 capBase, bool reduceOnly) {
        Restriction memory r = _restrictions[marketId];
        return r.active ? (r.capBase, r.reduceOnly) : (type(uint96).max, false);
    }

    /// @inheritdoc IRiskGovernor
    function effectiveMarketParams(uint32 marketId) external view returns (IClearingHouse.MarketParams memory) {
        (IClearingHouse.MarketParams memory p,) = configuredMarketParams(marketId);
        return _tighten(p, _restrictions[marketId]);
    }

    // ------------------------------------------------------------------ internals

    /// @dev Make the call as the modules' owner. A ClearingHouse.setMarketParams is not passed through: it
    ///      becomes the configured record and the ClearingHouse gets the effective parameters.
    /// @dev What an instant change can move under a proposal: the pause level (for a pause proposal) or the
    ///      market's configured parameters (for a setMarketParams proposal); 0 for every other setter, which
    ///      only proposals change.
    function _stateDigest(address target, bytes memory data) internal view returns (bytes32) {
        bytes4 s = _selector(data);
        if (target == vault && s == Vault.setPauseLevel.selector) return keccak256(abi.encode(IVault(vault).pauseLevel()));
        if (target == clearingHouse && s == ClearingHouse.setMarketParams.selector) {
            (uint32 marketId,,) = abi.decode(_arguments(data), (uint32, IClearingHouse.MarketParams, uint64));
            (IClearingHouse.MarketParams memory c, uint64 share) = configuredMarketParams(marketId);
            return keccak256(abi.encode(c, share));
        }
        // Breaker parameters are meant for the breaker wired when they were proposed: once another is wired,
        // a pending change cannot land on it (or be run on the old one just before the switch).
        if (target == address(this) && (s == this.setBreakerParams.selector || s == this.setBreakerMarketThresholds.selector)) {
            return keccak256(abi.encode(breaker));
        }
        return bytes32(0);
    }

    function _perform(address target, bytes memory data) internal {
        if (target == clearingHouse && _selector(data) == ClearingHouse.setMarketParams.selector) {
            (uint32 marketId, IClearingHouse.MarketParams memory p, uint64 share) =
                abi.decode(_arguments(data), (uint32, IClearingHouse.MarketParams, uint64));
            _setMarketParams(marketId, p, share);
            return;
        }
        // Targets are the five modules and this contract only (`classify` refuses anything else).
        (bool ok, bytes memory ret) = target.call(data);
        if (!ok) _bubble(ret);
    }

    function _setMarketParams(uint32 marketId, IClearingHouse.MarketParams memory p, uint64 share) internal {
        IClearingHouse.MarketParams memory effective = _tighten(p, _restrictions[marketId]);
        // The restriction may hide a configured value the module would refuse (a cap above its bound, a
        // minimum above the cap): check the record as it is, or lifting the restriction could never write it.
        if (!_same(effective, p)) _checkConfigured(marketId, p, share);
        _configured[marketId] = ConfiguredMarket(p, share, true);
        emit MarketConfigured(marketId, p, share);
        _write(marketId, effective, share, false);
    }

    /// @dev Write `effective` to the ClearingHouse when it differs from what the market holds, after accruing
    ///      the market at the live index in this block. `strictPoke`: the breaker's path (it has just read the
    ///      live index, so the poke must succeed too); governance's path tolerates a failed poke, because
    ///      replacing a stale or broken feed must not depend on that feed (setMarketParams then accrues at the
    ///      last recorded index, as the ClearingHouse does on its own).
    function _write(uint32 marketId, IClearingHouse.MarketParams memory effective, uint64 share, bool strictPoke)
        internal
    {
        IClearingHouse ch = IClearingHouse(clearingHouse);
        if (_same(effective, ch.marketParams(marketId)) && share == ch.insuranceFeeShare(marketId)) return;
        if (strictPoke) {
            ch.pokeFunding(marketId);
        } else {
            try ch.pokeFunding(marketId) {} catch {} // see above: a stale feed must not block governance
        }
        ClearingHouse(clearingHouse).setMarketParams(marketId, effective, share);
    }

    function _checkConfigured(uint32 marketId, IClearingHouse.MarketParams memory p, uint64 share) internal {
        try this.dryRunConfigured(marketId, p, share) {}
        catch (bytes memory reason) {
            if (!_isDryRunOk(reason)) _bubble(reason);
        }
    }

    function _dryRun(address target, bytes calldata data) internal {
        try this.dryRun(target, data) {}
        catch (bytes memory reason) {
            if (!_isDryRunOk(reason)) _bubble(reason);
        }
    }

    /// @dev The configured parameters with the restriction applied: per-side cap min(configured, capBase) but
    ///      never below the minimum position size (the ClearingHouse's bound), pool-ratio cap 1 wei when
    ///      reduce-only. Returns a new struct (the argument is not modified).
    function _tighten(IClearingHouse.MarketParams memory p, Restriction memory r)
        internal
        pure
        returns (IClearingHouse.MarketParams memory e)
    {
        e = IClearingHouse.MarketParams({
            oracle: p.oracle,
            heartbeat: p.heartbeat,
            twapWindow: p.twapWindow,
            imr: p.imr,
            mmr: p.mmr,
            takerFee: p.takerFee,
            maxSpread: p.maxSpread,
            maxOiPoolRatio: p.maxOiPoolRatio,
            maxOpenInterest: p.maxOpenInterest,
            minPositionSize: p.minPositionSize
        });
        if (!r.active) return e;
        uint96 cap = p.maxOpenInterest < r.capBase ? p.maxOpenInterest : r.capBase;
        if (cap < p.minPositionSize) cap = p.minPositionSize;
        e.maxOpenInterest = cap;
        if (r.reduceOnly) e.maxOiPoolRatio = 1;
    }

    function _same(IClearingHouse.MarketParams memory a, IClearingHouse.MarketParams memory b)
        internal
        pure
        returns (bool)
    {
        return keccak256(abi.encode(a)) == keccak256(abi.encode(b));
    }

    function _pendingProposal(uint256 proposalId) internal view returns (Proposal storage p) {
        p = _proposalOf(proposalId);
        if (p.state != ProposalState.Pending) revert ProposalNotPending(proposalId, p.state);
    }

    function _proposalOf(uint256 proposalId) internal view returns (Proposal storage p) {
        if (proposalId == 0 || proposalId > proposalCount) revert UnknownProposal(proposalId);
        p = _proposals[proposalId];
    }

    function _removePending(uint256 proposalId) internal {
        uint256 slot = _pendingSlot[proposalId];
        uint256 last = _pending[_pending.length - 1];
        _pending[slot - 1] = last;
        _pendingSlot[last] = slot;
        _pending.pop();
        delete _pendingSlot[proposalId];
    }

    function _payload(uint256 proposalId) internal pure returns (bytes memory) {
        return abi.encodeCall(IRiskGovernor.executeProposal, (proposalId));
    }

    function _isModule(address a) internal view returns (bool) {
        return a == vault || a == clearingHouse || a == liquidationEngine || a == liquidityPool || a == ammController;
    }

    function _isDryRunOk(bytes memory reason) internal pure returns (bool) {
        return reason.length == 4 && bytes4(reason) == DryRunOk.selector;
    }

    /// @dev The first four bytes of `data`, or zero when shorter (never a known selector).
    function _selector(bytes memory data) internal pure returns (bytes4) {
        return data.length < 4 ? bytes4(0) : bytes4(data);
    }

    /// @dev `data` without its selector (callers checked it has one).
    function _arguments(bytes memory data) internal pure returns (bytes memory args) {
        uint256 n = data.length - 4;
        args = new bytes(n);
        assembly ("memory-safe") {
            mcopy(add(args, 0x20), add(data, 0x24), n)
        }
    }

    /// @dev Revert with `reason` as it is (a module's custom error keeps its name and arguments).
    function _bubble(bytes memory reason) internal pure {
        assembly ("memory-safe") {
            revert(add(reason, 0x20), mload(reason))
        }
    }
}
