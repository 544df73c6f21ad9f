// SPDX-License-Identifier: BUSL-1.1
pragma solidity 0.8.28;

import {IErrors} from "../interfaces/IErrors.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";

import {IClearingHouse} from "../interfaces/IClearingHouse.sol";
import {IVault} from "../interfaces/IVault.sol";
import {WadMath} from "../libraries/WadMath.sol";
import {VAmmMath} from "../libraries/VAmmMath.sol";
import {ClearingHouseAccrual} from "./ClearingHouseAccrual.sol";

/// @title ClearingHouseSettlement
/// @notice How a position changes hands outside a vAMM trade's own path: `_auctionSettle` (an auction fill, a
///         take, a backstop), and the bookkeeping every position change shares (`_moveAggregates`,
///         `_moveOpenInterest`) with the vAMM's liquidity rule (`_checkLiquidity`). Shared by the ClearingHouse
///         (trades, auction fills) and the ClearingHouseConfigurator (backstops, which run there by `delegatecall`
///         on the ClearingHouse's storage): one copy of each rule in the source, compiled into both.
abstract contract ClearingHouseSettlement is ClearingHouseAccrual {
    using WadMath for uint256;
    using WadMath for int256;
    using SafeCast for uint256;
    using SafeCast for int256;

    /// @notice The Vault that holds the money and the account ledger (an immutable: the configurator, running by
    ///         `delegatecall`, reads its own copy, which the ClearingHouse's constructor gives it).
    IVault public immutable vault;

    constructor(IVault vault_) {
        if (address(vault_) == address(0)) revert IErrors.ZeroAddress();
        vault = vault_;
    }

    /// @dev Apply `baseDelta` at `quoteFlow` to one account's position, settle its funding and PnL against
    ///      the pool, move open interest (never capped: a fill moves existing interest between traders
    ///      and a backstop only shrinks it). Releases auctioned size when the account is the auction's.
    function _auctionSettle(
        address owner,
        uint32 subaccount,
        uint32 marketId,
        Market storage m,
        int256 baseDelta,
        int256 quoteFlow,
        IClearingHouse.SettlementCause cause,
        uint256 executionPrice
    ) internal returns (IVault.AccountState memory acct, bool reducing) {
        bool fromAuction = cause != IClearingHouse.SettlementCause.AuctionTake;
        Position storage p = _positions[marketId][owner][subaccount];
        int256 size = p.size;
        int256 cumulativeFunding = m.funding.cumulativeFunding;
        int256 funding = size == 0 ? int256(0) : size.sMulWadUp(cumulativeFunding - p.lastCumulativeFunding);
        (int256 newSize, int256 newOpenNotional, int256 realized) =
            VAmmMath.applyTrade(size, p.openNotional, baseDelta, quoteFlow);
        // Reducing: toward zero without crossing it, the rule `ClearingHouse._trade` writes from the trade's base.
        reducing = (size > 0 && newSize >= 0 && newSize < size) || (size < 0 && newSize <= 0 && newSize > size);
        int256 auctioned = p.auctioned;
        if (fromAuction) {
            // The auctioned account: the base leaves the auctioned part (the engine passes at most it,
            // and never nothing: a zero fill is refused on either side, like a zero slice at the kick).
            // The slice rule, written out where it applies (here, `ClearingHouse.markForAuction` and
            // `ClearingHouse.releaseFromAuction`): a slice is not zero, has the sign of the part it comes out of
            // (here -baseDelta of the auctioned part) and is at most that part. One shared function was measured
            // at +38 gas a take and a kick and +11 a backstop (via-IR does not inline it at three call sites).
            if (baseDelta == 0 || baseDelta.abs() > auctioned.abs() || (baseDelta > 0) == (auctioned > 0)) {
                revert IClearingHouse.InvalidAuctionSlice(baseDelta, auctioned);
            }
            auctioned += baseDelta;
            p.auctioned = auctioned.toInt128();
        } else if (auctioned != 0) {
            // A taker with its own auction in this market: the rule a trade meets.
            _checkAuctionedPart(m, owner, subaccount, marketId, newSize, auctioned);
        }
        // The new size at least the minimum: the taker's. Not the auctioned account's (`fromAuction`): a fill only
        // shrinks its auctioned part, whose remainder a take keeps at zero or at least the minimum
        // (`LiquidationEngine.take`), and leaves its free part as it was, which a kick leaves at zero or at least
        // the minimum. That free part is below the minimum only if governance raised the minimum since, and
        // refusing the last fill (or the backstop) then would leave the auction unable to finish: the owner keeps
        // the small free part instead, as any position left under a raised minimum is kept.
        if (newSize != 0 && newSize.abs() < (fromAuction ? 0 : m.minPositionSize)) {
            revert IClearingHouse.BelowMinPositionSize(marketId, newSize, m.minPositionSize);
        }
        _moveAggregates(m, p, newSize, newOpenNotional, cumulativeFunding);
        p.size = newSize.toInt128();
        p.openNotional = newOpenNotional.toInt128();
        p.lastCumulativeFunding = cumulativeFunding.toInt128();
        int256 delta = realized - funding;
        acct = vault.settleTrade(owner, subaccount, marketId, newSize != 0, delta, -delta, 0);
        _moveOpenInterest(m, size, newSize);
        emit IClearingHouse.PositionChanged(
            owner, subaccount, marketId, baseDelta, quoteFlow, 0, realized, funding, newSize, newOpenNotional,
            VAmmMath.price(m.baseReserve, m.quoteReserve)
        );
        emit IClearingHouse.PositionSettled(owner, subaccount, marketId, cause, executionPrice);
    }

    /// @dev The auctioned-part rule, for a position with an auctioned part (`auctioned` != 0) whose owner trades or
    ///      takes: the new size must still hold the whole auctioned part (a trade may not cut into it), and the free
    ///      part left beside it must not be dust, or the auction's last fill, which leaves only the free part,
    ///      could never settle. Called only when `auctioned` != 0, so a position outside any auction pays nothing
    ///      for it (one copy of the rule; via-IR does not inline it, so an unconditional call cost about 95 gas a
    ///      trade).
    function _checkAuctionedPart(
        Market storage m,
        address owner,
        uint32 subaccount,
        uint32 marketId,
        int256 newSize,
        int256 auctioned
    ) internal view {
        if (auctioned > 0 ? newSize < auctioned : newSize > auctioned) {
            revert IClearingHouse.PositionInAuction(owner, subaccount, marketId, auctioned);
        }
        int256 free = newSize - auctioned;
        if (free != 0 && free.abs() < m.minPositionSize) {
            revert IClearingHouse.BelowMinPositionSize(marketId, free, m.minPositionSize);
        }
    }

    /// @dev Replace a position's contribution to its market's aggregates (call before writing `p`).
    ///      The funding basis of a position is floor(size x lastCumulativeFunding), computed from its
    ///      stored values, so removing it later subtracts exactly what was added.
    function _moveAggregates(Market storage m, Position storage p, int256 newSize, int256 newOpenNotional, int256 cum)
        internal
    {
        int256 oldSize = p.size;
        m.sumOpenNotional = (int256(m.sumOpenNotional) + newOpenNotional - p.openNotional).toInt128();
        m.sumFundingBasis = (
            int256(m.sumFundingBasis) + newSize.sMulWadDown(cum) - oldSize.sMulWadDown(p.lastCumulativeFunding)
        ).toInt128();
    }

    /// @dev Moves the long/short open interest for one position going from `oldSize` to `newSize`.
    function _moveOpenInterest(Market storage m, int256 oldSize, int256 newSize)
        internal
        returns (uint256 longOi, uint256 shortOi)
    {
        longOi = m.longOpenInterest;
        shortOi = m.shortOpenInterest;
        longOi = longOi + (newSize > 0 ? uint256(newSize) : 0) - (oldSize > 0 ? uint256(oldSize) : 0);
        shortOi = shortOi + (newSize < 0 ? uint256(-newSize) : 0) - (oldSize < 0 ? uint256(-oldSize) : 0);
        // Casts: each side is a sum of int128 sizes, checked by SafeCast.
        m.longOpenInterest = longOi.toUint128();
        m.shortOpenInterest = shortOi.toUint128();
    }

    /// @dev A buy of `baseAmount` must leave base in the curve.
    function _checkLiquidity(uint32 marketId, int256 baseAmount, uint256 x) internal pure {
        // Cast: baseAmount > 0 on this branch.
        if (baseAmount > 0 && uint256(baseAmount) >= x) revert IClearingHouse.InsufficientLiquidity(marketId, baseAmount, x);
    }
}
