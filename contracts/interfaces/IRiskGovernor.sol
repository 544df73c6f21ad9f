// SPDX-License-Identifier: BUSL-1.1
pragma solidity 0.8.28;

import {IClearingHouse} from "./IClearingHouse.sol";
import {ICircuitBreaker} from "./ICircuitBreaker.sol";
import {IErrors} from "./IErrors.sol";

/// @title IRiskGovernor
/// @notice The owner of the five modules (Vault, ClearingHouse, LiquidationEngine, LiquidityPool,
///         AmmController) and the only way their setters are reached. Governance is asymmetric (issue 17,
///         item 1): a change that reduces risk against the current configuration may be made at once by the
///         guardian or the admin (`act`); every other change is proposed by the admin, checked against the
///         module's hard bounds at proposal (a dry run), and executed through an OpenZeppelin
///         TimelockController after its delay (at least `MIN_DELAY`; 48 h shipped). What counts as
///         risk-reducing is decided in code, per setter (`classify`).
/// @dev Market parameters are kept twice: the CONFIGURED ones (what governance decided) and the EFFECTIVE
///      ones the ClearingHouse holds, the configured ones tightened by the circuit breaker's restriction of
///      the market (`applyRestriction`). Governance changes the configured record; the breaker only
///      tightens; lifting a restriction restores the configured parameters.
interface IRiskGovernor is IErrors {
    // ------------------------------------------------------------------ types

    /// @notice How a call may reach a module: `Unknown` (not a known setter: refused), `Timelock` (propose,
    ///         wait, execute) or `Instant` (risk-reducing now: `act`, or the timelock as well).
    enum Path {
        Unknown,
        Timelock,
        Instant
    }

    /// @notice A proposal's life: `None` (no such id), `Pending` (scheduled on the timelock), `Executed`,
    ///         `Cancelled`.
    enum ProposalState {
        None,
        Pending,
        Executed,
        Cancelled
    }

    /// @notice One proposal: the call it makes and when it may run.
    struct Proposal {
        address target; // a module or the governor itself
        uint64 eta; // [s] first timestamp the timelock lets it execute
        ProposalState state;
        Path path; // `classify` at proposal time (for reviewers: an Instant one could also have been `act`)
        bytes32 digest; // the state an instant change can move under it (pause level, a market's configured
            // params) at proposal time; execution refuses if it moved since (`StaleProposal`)
        bytes data; // the setter's calldata
    }

    // ------------------------------------------------------------------ errors

    /// @notice `caller` is not the admin.
    error NotAdmin(address caller);
    /// @notice `caller` is neither the guardian nor the admin.
    error NotGuardianOrAdmin(address caller);
    /// @notice `caller` is not the timelock (only it executes proposals).
    error NotTimelock(address caller);
    /// @notice `caller` is not the governor itself (its own setters and dry runs run only through itself).
    error NotSelf(address caller);
    /// @notice `caller` is not the circuit breaker.
    error NotBreaker(address caller);
    /// @notice `selector` on `target` is not a setter the governor knows (or `target` is not a module).
    error UnknownSetter(address target, bytes4 selector);
    /// @notice `act` of a change that is not risk-reducing against the current configuration: propose it.
    error NotRiskReducing(address target, bytes4 selector);
    /// @notice No proposal has this id.
    error UnknownProposal(uint256 proposalId);
    /// @notice The proposal is not pending (already executed or cancelled).
    error ProposalNotPending(uint256 proposalId, ProposalState state);
    /// @notice The timelock's minimum delay is below `MIN_DELAY`.
    error DelayTooShort(uint256 delay, uint256 minDelay);
    /// @notice `acceptOwnership` for an address that is not one of the five modules.
    error UnknownModule(address module);
    /// @notice The breaker was already wired (a later change goes through the timelock).
    error BreakerAlreadySet(address breaker);
    /// @notice The end of every successful dry run: the call would have succeeded (its effects are undone).
    error DryRunOk();
    /// @notice An instant change moved what this proposal was made against (the pause level, or the market's
    ///         configured parameters) after it was proposed: it would undo that change, so it cannot execute.
    ///         Propose again against the state as it is.
    error StaleProposal(uint256 proposalId);
    /// @notice The guardian may not cancel this proposal (the governor's own setters, the Vault's guardian, a
    ///         pause level): only the admin may, so a guardian cannot veto its own removal or an unpause.
    error GuardianCannotCancel(uint256 proposalId);

    // ------------------------------------------------------------------ events

    /// @notice The admin proposed `data` on `target`; it may execute from `eta`.
    event Proposed(uint256 indexed proposalId, address indexed target, bytes4 selector, bytes data, uint256 eta);
    /// @notice A proposal was executed (through the timelock).
    event Executed(uint256 indexed proposalId, address indexed target, bytes4 selector);
    /// @notice A proposal was cancelled by `by` (admin or guardian).
    event Cancelled(uint256 indexed proposalId, address indexed by);
    /// @notice `by` made a risk-reducing change at once.
    event ActedAtOnce(address indexed by, address indexed target, bytes4 selector, bytes data);
    /// @notice The admin changed.
    event RiskAdminSet(address indexed admin);
    /// @notice The guardian changed (the zero address: none).
    event RiskGuardianSet(address indexed guardian);
    /// @notice The circuit breaker changed.
    event BreakerSet(address indexed breaker);
    /// @notice Governance set `marketId`'s configured parameters (the ClearingHouse holds them tightened by
    ///         any restriction in force).
    event MarketConfigured(uint32 indexed marketId, IClearingHouse.MarketParams params, uint64 insuranceFeeShare);
    /// @notice The breaker's restriction of `marketId` changed: per-side cap `capBase` [wad base]
    ///         (type(uint96).max: none) and reduce-only.
    event RestrictionSet(uint32 indexed marketId, uint96 capBase, bool reduceOnly);

    // ------------------------------------------------------------------ governance

    /// @notice Admin only: schedule `data` on `target` through the timelock, after a dry run that must succeed
    ///         (an out-of-bounds change reverts here with the module's own error and nothing is scheduled).
    function propose(address target, bytes calldata data) external returns (uint256 proposalId);

    /// @notice Anyone: execute a pending proposal whose delay has passed (the timelock enforces it and
    ///         reverts `TimelockUnexpectedOperationState` before `eta`).
    function execute(uint256 proposalId) external;

    /// @notice Timelock only: perform the proposal's call (reached through `execute` or the timelock's own
    ///         `execute`).
    function executeProposal(uint256 proposalId) external;

    /// @notice Admin or guardian: cancel a pending proposal. The guardian may not cancel the governor's roles
    ///         (`setAdmin`, `setGuardian`), the Vault's guardian or a pause level (`GuardianCannotCancel`): only
    ///         the admin may. It may cancel breaker changes (`setBreaker`, `setBreakerParams`,
    ///         `setBreakerMarketThresholds`) like any other loosening.
    function cancel(uint256 proposalId) external;

    /// @notice Guardian or admin: make a change at once, only if `classify` says it is risk-reducing now.
    function act(address target, bytes calldata data) external;

    /// @notice Governor only: perform `data` on `target` as the owner, then revert `DryRunOk` (so nothing
    ///         stays). `propose` calls it and passes on any other revert unchanged.
    function dryRun(address target, bytes calldata data) external;

    /// @notice Governor only: write `params` to the ClearingHouse as they are (no restriction applied), then
    ///         revert `DryRunOk`: checks a configured record against the module's own bounds when the
    ///         restriction in force hides it from the write that really happens.
    function dryRunConfigured(uint32 marketId, IClearingHouse.MarketParams calldata params, uint64 insuranceFeeShare)
        external;

    /// @notice Which path `data` on `target` may take now (see `Path`); the rules per setter are in
    ///         `RiskGovernor`.
    function classify(address target, bytes calldata data) external view returns (Path);

    /// @notice Anyone: make the governor accept a pending two-step ownership transfer of a module.
    function acceptOwnership(address module) external;

    // ------------------------------------------------------------------ own setters (through the timelock)

    /// @notice Governor only (timelock path): set the admin.
    function setAdmin(address admin_) external;

    /// @notice Governor only (timelock path): set the guardian (the zero address: none).
    function setGuardian(address guardian_) external;

    /// @notice Wire the circuit breaker: the admin once, while none is set; later only the governor itself
    ///         (timelock path). A replacement also re-points every market's peg guard that named the old breaker
    ///         (`AmmController.setPegGuard`) to the new one.
    function setBreaker(address breaker_) external;

    /// @notice Governor only (timelock path): set the breaker's parameters (bounded by the breaker).
    function setBreakerParams(ICircuitBreaker.BreakerParams calldata params) external;

    /// @notice Governor only (timelock path): set `marketId`'s own breaker thresholds (move, divergence, skew) (0 in a
    ///         field: the global value; bounded by the breaker, which refuses an unknown market).
    function setBreakerMarketThresholds(uint32 marketId, ICircuitBreaker.MarketThresholds calldata thresholds)
        external;

    // ------------------------------------------------------------------ breaker hook

    /// @notice Breaker only: restrict `marketId` to a per-side open-interest cap of `capBase` [wad base]
    ///         (type(uint96).max: no cap) and, with `reduceOnly`, a pool-ratio cap of 1 wei (nothing may grow).
    ///         The ClearingHouse gets the configured parameters tightened accordingly, written only when they
    ///         change, after accruing the market at the live index.
    function applyRestriction(uint32 marketId, uint96 capBase, bool reduceOnly) external;

    // ------------------------------------------------------------------ views

    /// @notice Shortest timelock delay the governor accepts [s].
    function MIN_DELAY() external view returns (uint256);

    /// @notice Who deployed the governor: it may wire the breaker once (`setBreaker`, while none is set), and
    ///         nothing else.
    function deployer() external view returns (address);

    /// @notice The governance multisig: proposes, acts, cancels.
    function admin() external view returns (address);

    /// @notice Acts at once on risk-reducing changes and cancels proposals.
    function guardian() external view returns (address);

    /// @notice The circuit breaker, the only caller of `applyRestriction`.
    function breaker() external view returns (address);

    /// @notice The OpenZeppelin TimelockController proposals go through.
    function timelock() external view returns (address);

    /// @notice The modules the governor owns.
    function vault() external view returns (address);
    function clearingHouse() external view returns (address);
    function liquidationEngine() external view returns (address);
    function liquidityPool() external view returns (address);
    function ammController() external view returns (address);

    /// @notice Number of proposals made; ids run from 1.
    function proposalCount() external view returns (uint256);

    /// @notice Proposal `proposalId` (reverts `UnknownProposal`).
    function proposal(uint256 proposalId) external view returns (Proposal memory);

    /// @notice Ids of the pending proposals (order not meaningful).
    function pendingProposals() external view returns (uint256[] memory);

    /// @notice The timelock's operation id of proposal `proposalId` (for `TimelockController` views).
    function operationId(uint256 proposalId) external view returns (bytes32);

    /// @notice `marketId`'s configured parameters and insurance fee share: the governor's record once it has
    ///         written or restricted the market, the ClearingHouse's current ones before.
    function configuredMarketParams(uint32 marketId)
        external
        view
        returns (IClearingHouse.MarketParams memory params, uint64 insuranceFeeShare);

    /// @notice `marketId`'s restriction in force: cap [wad base] (type(uint96).max: none) and reduce-only.
    function restriction(uint32 marketId) external view returns (uint96 capBase, bool reduceOnly);

    /// @notice The parameters the ClearingHouse holds for `marketId` when the governor last wrote or would
    ///         write them: the configured ones tightened by the restriction.
    function effectiveMarketParams(uint32 marketId) external view returns (IClearingHouse.MarketParams memory);
}
