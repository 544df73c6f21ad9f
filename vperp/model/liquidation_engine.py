"""Mirror of LiquidationEngine: the `LiquidationEngineMirror` part of `Model`."""
from __future__ import annotations

from ..funding import exp_neg_wad
from ..units import PAUSE_NO_TRADING, WAD
from .base import ModelRevert
from .state import (
    _atomic, Account, Auction, AuctionParams, Cancelled, CURVE_LINEAR, CURVE_STAIRSTEP, EXP_SPEED, Market, Position,
    Redone, SliceResult,
)
from .wad_math import (
    _int128, _int_n, _uint128, apply_trade, div_wad_up, edge_reserve, mul_wad_down, mul_wad_up, s_mul_wad_up,
    vamm_price, vamm_swap,
)


class LiquidationEngineMirror:
    """The LiquidationEngine part of `Model` (a mixin: every method runs on the one Model state)."""

    # ------------------------------------------------------------------ LiquidationEngine

    def _auction_params_of(self, market_id: int) -> AuctionParams:
        return self.auction_params.get(market_id) or AuctionParams()

    def _check_engine_not_paused(self) -> None:
        if self.pause_level >= PAUSE_NO_TRADING:
            raise ModelRevert("Paused", self.pause_level)

    def _slice(self, owner, sub: int, market_id: int, value: int, maintenance: int, auctioned_notional: int,
               timestamp: int) -> SliceResult:
        """LiquidationEngine._slice: the smallest slice n (notional) with
        n >= (h x M - V + tip) / (h x mmr - chip - penalty - maxDiscount), in base rounded up, at least
        the minimum size; the whole free position when that is more, leaves dust or costs outrun margin.
        Costs come out of the room the account keeps after the worst fill of everything in auction
        after this kick, room = V - ceil((auctionedNotional + n) x maxDiscount): the keeper reward
        (tip + chip x n, at most maxKeeperReward) capped at the room, then the penalty at what is left;
        the shortfall is what the room lacks after both. An account that pays its keeper nothing gets the
        keeper a bounty from the insurance fund instead: chip x n (rounded up; no flat tip), at most
        maxKeeperReward and at most the fund."""
        p = self._position(market_id, owner, sub)
        available = p.size - p.auctioned
        if available == 0:
            raise ModelRevert("NothingToLiquidate", owner, sub, market_id)
        m = self._market(market_id)
        index = self._index(m, timestamp)
        lp = self.liquidation_params
        avail = abs(available)
        base, restores = avail, False
        max_discount = self._auction_params_of(market_id).max_discount
        denom = mul_wad_down(lp.target_health, m.mmr) - lp.chip - lp.penalty - max_discount
        if denom > 0:
            need = mul_wad_up(maintenance, lp.target_health) - value + lp.tip
            b = 0 if need <= 0 else div_wad_up(div_wad_up(need, denom), index)
            b = max(b, m.min_position_size)
            if b < avail and avail - b >= m.min_position_size:
                base, restores = b, True
        notional = mul_wad_up(base, index)
        room = value - mul_wad_up(auctioned_notional + notional, max_discount)
        reward = min(lp.tip + mul_wad_up(notional, lp.chip), lp.max_keeper_reward)
        reward = 0 if room <= 0 else min(reward, room)
        room -= reward
        penalty = 0 if room <= 0 else min(mul_wad_up(notional, lp.penalty), room)
        bounty = 0
        if reward == 0:
            bounty = min(mul_wad_up(notional, lp.chip), lp.max_keeper_reward, self.insurance_fund_wad)
        return SliceResult(base if available > 0 else -base, notional, reward, penalty, index, restores,
                           max(0, -(room - penalty)), bounty)

    def _live(self, auction_id: int) -> Auction:
        if auction_id == 0 or auction_id > self.auction_count:
            raise ModelRevert("UnknownAuction", auction_id)
        a = self.auctions[auction_id]
        if a.size == 0:
            raise ModelRevert("AuctionFinished", auction_id)
        return a

    @staticmethod
    def _expired(a: Auction, ap: AuctionParams, index: int, timestamp: int) -> bool:
        """LiquidationEngine._expired: past its duration, or the index moved more than resetDrop from the
        (re)start index in the account's favour (up for a long slice, down for a short one); a move against
        the account leaves the auction running (its price follows the live index)."""
        if timestamp - a.start_time > ap.duration:
            return True
        if (index <= a.start_index) if a.size > 0 else (index >= a.start_index):
            return False
        return abs(index - a.start_index) > mul_wad_down(a.start_index, ap.reset_drop)

    @staticmethod
    def discount(ap: AuctionParams, elapsed: int) -> int:
        """LiquidationEngine._discount: 0 at the start, maxDiscount from `duration` on, never decreasing."""
        if elapsed >= ap.duration:
            return ap.max_discount
        if ap.curve == CURVE_LINEAR:
            return ap.max_discount * elapsed // ap.duration
        if ap.curve == CURVE_STAIRSTEP:
            return ap.max_discount * (elapsed // ap.step) // (ap.duration // ap.step)
        span = WAD - exp_neg_wad(EXP_SPEED * WAD)
        done = WAD - exp_neg_wad(EXP_SPEED * elapsed * WAD // ap.duration)
        return ap.max_discount * done // span

    @staticmethod
    def _auction_price(size: int, index: int, discount: int) -> int:
        """A long slice is bought at index x (1 - d) rounded up, a short one sold at index x (1 + d)
        rounded down: against the taker both ways."""
        return mul_wad_up(index, WAD - discount) if size > 0 else mul_wad_down(index, WAD + discount)

    @staticmethod
    def _notional(size: int, start_index: int) -> int:
        return mul_wad_up(abs(size), start_index)

    def _move_notional(self, a: Auction, new_size: int, new_index: int) -> None:
        self.live_notional = self.live_notional - self._notional(a.size, a.start_index) + self._notional(new_size, new_index)

    def _after_fill(self, owner, sub: int, market_id: int, timestamp: int) -> None:
        """LiquidationEngine._afterFill: resolve the bad debt of an account left with no position and
        negative collateral; else refresh its shortfall estimate while it has one (value less the worst
        fill of what is still in auction, at this market's maxDiscount)."""
        acct = self.accounts.get((owner, sub)) or Account()
        if acct.open_markets == 0 and acct.collateral < 0:
            self._resolve_bad_debt(owner, sub)
            return
        if self.shortfall_of(owner, sub) == 0:
            return
        try:  # a stale feed of another market held leaves the last estimate standing (try/catch on chain)
            value, _, auctioned_notional, _ = self.liquidation_state(owner, sub, timestamp)
        except ModelRevert:
            return
        max_discount = self._auction_params_of(market_id).max_discount
        self._set_shortfall(owner, sub, max(0, -(value - mul_wad_up(auctioned_notional, max_discount))))

    def _cancel(self, auction_id: int, a: Auction, value: int, requirement: int) -> Cancelled:
        """LiquidationEngine._cancel: the auction ends unfilled, its size goes back to the free part
        (ClearingHouse.releaseFromAuction), the account's shortfall estimate is cleared."""
        size = a.size
        self._move_notional(a, 0, a.start_index)
        a.size = 0
        self._market(a.market_id)
        p = self._position(a.market_id, a.owner, a.subaccount)
        auctioned = p.auctioned
        if size == 0 or (size > 0) != (auctioned > 0) or abs(size) > abs(auctioned):
            raise ModelRevert("InvalidAuctionSlice", size, auctioned)
        p.auctioned = _int128(auctioned - size)
        if self.shortfall_of(a.owner, a.subaccount) != 0:
            self._set_shortfall(a.owner, a.subaccount, 0)
        return Cancelled(size, value, requirement)

    @_atomic
    def kick(self, owner, sub: int, market_id: int, keeper, timestamp: int) -> tuple[int, SliceResult]:
        """LiquidationEngine.kick: returns (auctionId, the slice with its reward, penalty and bounty). The costs in one
        Vault call (Vault.chargeLiquidation, which checks the pause level after everything the kick checks before
        it): charged, the bounty paid from the insurance fund to the keeper's cross account (logged in
        `keeper_bounties`), the shortfall recorded; the Kick event's keeperReward is reward + bounty."""
        if self._is_zero_address(keeper):
            raise ModelRevert("ZeroAddress")
        value, maintenance, auctioned_notional, _ = self.liquidation_state(owner, sub, timestamp)
        if value >= maintenance:
            raise ModelRevert("NotLiquidatable", owner, sub)
        s = self._slice(owner, sub, market_id, value, maintenance, auctioned_notional, timestamp)
        lp = self.liquidation_params
        if self.live_notional + s.notional > lp.max_auction_notional:
            raise ModelRevert("AuctionCapReached", self.live_notional, s.notional, lp.max_auction_notional)
        self.live_notional += s.notional
        self.auction_count += 1
        self.auctions[self.auction_count] = Auction(owner, sub, market_id, 0, _int_n(s.size, 96), s.index, timestamp)
        p = self.positions[(market_id, owner, sub)]
        p.auctioned = _int128(p.auctioned + s.size)
        self._charge_liquidation(owner, sub, keeper, s.keeper_reward, s.penalty, s.bounty, s.shortfall)
        return self.auction_count, s

    @_atomic
    def take(self, auction_id: int, max_base: int, limit_price: int, taker, taker_sub: int,
             timestamp: int) -> tuple[int, int]:
        """LiquidationEngine.take by `taker` into its sub-account `taker_sub`: returns (amount, price)."""
        a = self._live(auction_id)
        # No pause check here: the settlement's (`_settle_auction_fill`), as in the contract.
        if max_base == 0:
            raise ModelRevert("ZeroAmount")
        if taker == a.owner and taker_sub == a.subaccount:
            raise ModelRevert("SelfTake", a.owner, a.subaccount)
        m = self.markets[a.market_id]
        index = self._index(m, timestamp)
        ap = self._auction_params_of(a.market_id)
        if self._expired(a, ap, index, timestamp):
            raise ModelRevert("AuctionExpired", auction_id)
        size = a.size
        price = self._auction_price(size, index, self.discount(ap, timestamp - a.start_time))
        if (price > limit_price) if size > 0 else (price < limit_price):
            raise ModelRevert("LimitPriceNotMet", price, limit_price)
        remaining = abs(size)
        amount = min(max_base, remaining)
        signed = amount if size > 0 else -amount
        left = size - signed
        self._move_notional(a, left, a.start_index)
        a.size = left
        self._settle_auction_fill(a.owner, a.subaccount, a.market_id, signed, price, taker, taker_sub, timestamp)
        # The partial fill's size rules come after the settlement, as in the contract (the action is atomic).
        if amount < remaining:
            if amount < m.min_position_size:
                raise ModelRevert("TakeBelowMinimum", amount, m.min_position_size)
            if remaining - amount < m.min_position_size:
                raise ModelRevert("DustRemainder", remaining - amount, m.min_position_size)
        self._after_fill(a.owner, a.subaccount, a.market_id, timestamp)
        return amount, price

    def _settle_auction_fill(self, owner, sub, market_id, base, price, taker, taker_sub, timestamp) -> None:
        """ClearingHouse.settleAuctionFill: the owner receives rounded down and pays rounded up, the
        taker the other way; the wei between them stays with the pool."""
        m = self._market(market_id)
        index = self._index(m, timestamp)
        self._accrue(m, index, timestamp)
        notional, notional_up = mul_wad_down(abs(base), price), mul_wad_up(abs(base), price)
        owner_quote = notional if base > 0 else -notional_up
        taker_quote = -notional_up if base > 0 else notional
        self._auction_settle(owner, sub, m, -base, owner_quote, True)
        acct, reducing = self._auction_settle(taker, taker_sub, m, base, taker_quote, False)
        if self.pause_level >= PAUSE_NO_TRADING:
            raise ModelRevert("Paused", self.pause_level)
        if not reducing:
            self._check_initial_margin(taker, taker_sub, acct, market_id, index, timestamp)
        elif acct.open_markets == 0 and acct.collateral < 0:
            raise ModelRevert("ReduceBelowMaintenance", taker, taker_sub, acct.collateral)

    def _auction_settle(self, owner, sub, m: Market, base_delta: int, quote_flow: int,
                        from_auction: bool) -> tuple[Account, bool]:
        """ClearingHouseSettlement._auctionSettle: apply a fill (or the backstop) to one account, open interest
        moved but never capped; the auctioned account's fill leaves its auctioned part."""
        p = self._position(m.id, owner, sub)
        size, cf = p.size, m.cumulative_funding
        funding = s_mul_wad_up(size, cf - p.last_cumulative_funding) if size != 0 else 0
        new_size, new_on, realized = apply_trade(size, p.open_notional, base_delta, quote_flow)
        reducing = (size > 0 and 0 <= new_size < size) or (size < 0 and size < new_size <= 0)
        auctioned = p.auctioned
        if from_auction:
            if base_delta == 0 or abs(base_delta) > abs(auctioned) or (base_delta > 0) == (auctioned > 0):
                raise ModelRevert("InvalidAuctionSlice", base_delta, auctioned)
            auctioned += base_delta
        else:
            self._check_auctioned_part(owner, sub, m, new_size, auctioned)
            # The taker's new size only: the auctioned account keeps a free part left under a raised minimum.
            if new_size != 0 and abs(new_size) < m.min_position_size:
                raise ModelRevert("BelowMinPositionSize", m.id, new_size, m.min_position_size)
        self._move_aggregates(m, p, new_size, new_on, cf)
        self.positions[(m.id, owner, sub)] = Position(_int128(new_size), _int128(new_on), _int128(cf), _int128(auctioned))
        delta = realized - funding
        acct = self._settle_trade(owner, sub, m.id, new_size != 0, delta, -delta, 0)
        self._move_open_interest(m, size, new_size)
        return acct, reducing

    @_atomic
    def redo(self, auction_id: int, keeper, timestamp: int) -> Redone | Cancelled:
        """LiquidationEngine.redo: an expired auction of an account that has recovered (value at or
        above targetHealth x (free maintenance + auctioned backing), rounded up) is cancelled, unpaid;
        otherwise it restarts from the live index and the keeper gets the tip, capped at the room the
        account keeps after the worst fill, room = value - ceil(auctionedNotional x maxDiscount); the
        shortfall estimate becomes what the room lacks after the tip; no tip while the account is at or
        above free maintenance + auctioned backing. When the account's health cannot
        be read (a stale feed of another market it holds), the redo goes ahead unpaid and records nothing."""
        a = self._live(auction_id)
        self._check_engine_not_paused()
        if self._is_zero_address(keeper):
            raise ModelRevert("ZeroAddress")
        index = self._index(self.markets[a.market_id], timestamp)
        ap = self._auction_params_of(a.market_id)
        if not self._expired(a, ap, index, timestamp):
            raise ModelRevert("AuctionNotExpired", auction_id)
        lp = self.liquidation_params
        if a.redos >= lp.max_redos:
            raise ModelRevert("MaxRedosReached", auction_id, a.redos)
        known, value, auctioned_notional, requirement = self._recovery(a.owner, a.subaccount, timestamp)
        target = mul_wad_up(requirement, lp.target_health)
        if known and value >= target:
            return self._cancel(auction_id, a, value, target)
        self._move_notional(a, a.size, index)
        a.redos += 1
        a.start_index, a.start_time = index, timestamp
        tip = 0
        if known:
            room = value - mul_wad_up(auctioned_notional, ap.max_discount)
            if value < requirement:  # no tip from an account that is healthy again
                tip = 0 if room <= 0 else min(lp.tip, room)
            self._charge_liquidation(a.owner, a.subaccount, keeper, tip, 0, 0, max(0, -(room - tip)))
        return Redone(a.redos, index, tip)

    def _recovery(self, owner, sub: int, timestamp: int) -> tuple[bool, int, int, int]:
        """LiquidationEngine._recovery: (readable, value, auctioned notional, requirement = free maintenance
        + auctioned backing), liquidationState under try/catch: (False, 0, 0, 0) when a feed of a market
        the account holds is stale or invalid. Recovered means value >= targetHealth x requirement."""
        try:
            value, maintenance, auctioned_notional, auctioned_maintenance = self.liquidation_state(owner, sub, timestamp)
        except ModelRevert:
            return False, 0, 0, 0
        return True, value, auctioned_notional, maintenance + auctioned_maintenance

    @_atomic
    def cancel(self, auction_id: int, timestamp: int) -> Cancelled:
        """LiquidationEngine.cancel (anyone): end the auction of an account whose value is at or above
        targetHealth x (free maintenance + auctioned backing); nobody is paid."""
        a = self._live(auction_id)
        self._check_engine_not_paused()
        value, maintenance, _, auctioned_maintenance = self.liquidation_state(a.owner, a.subaccount, timestamp)
        requirement = mul_wad_up(maintenance + auctioned_maintenance, self.liquidation_params.target_health)
        if value < requirement:
            raise ModelRevert("AuctionStillNeeded", auction_id, value, requirement)
        return self._cancel(auction_id, a, value, requirement)

    @_atomic
    def backstop(self, auction_id: int, timestamp: int) -> tuple[int, int] | Cancelled:
        """LiquidationEngine.backstop: after the expiry and redo checks, an account that has recovered
        (read as in redo: value >= targetHealth x (free maintenance + auctioned backing); unknown with a
        stale feed of a market it holds) has its auction cancelled (AuctionCancelled, returned as
        `Cancelled`; the call returns 0 and closes nothing). Otherwise close against the vAMM the largest
        part of the remainder that leaves the price no worse for the owner than the auction's own price at
        its full discount, nor outside the band (ClearingHouse.backstopClose / _backstopFit);
        BackstopBlocked when nothing fits; the rest stays in the auction. Returns (closed, quote flow to
        the owner), the Backstop event's fields."""
        a = self._live(auction_id)
        self._check_engine_not_paused()
        index = self._index(self.markets[a.market_id], timestamp)
        ap = self._auction_params_of(a.market_id)
        if not self._expired(a, ap, index, timestamp):
            raise ModelRevert("AuctionNotExpired", auction_id)
        lp = self.liquidation_params
        if a.redos < lp.max_redos:
            raise ModelRevert("RedosRemaining", auction_id, a.redos, lp.max_redos)
        known, value, _, requirement = self._recovery(a.owner, a.subaccount, timestamp)
        target = mul_wad_up(requirement, lp.target_health)
        if known and value >= target:
            return self._cancel(auction_id, a, value, target)
        size = a.size
        limit = self._auction_price(size, index, ap.max_discount)
        quote, closed = self._backstop_close(a.owner, a.subaccount, a.market_id, size, limit, timestamp)
        if closed == 0:
            raise ModelRevert("BackstopBlocked", auction_id, self.markets[a.market_id].spot, index)
        left = size - closed
        self._move_notional(a, left, a.start_index)
        a.size = _int_n(left, 96)
        self._after_fill(a.owner, a.subaccount, a.market_id, timestamp)
        return closed, quote

    def _backstop_close(self, owner, sub: int, market_id: int, base: int, limit_price: int,
                        timestamp: int) -> tuple[int, int]:
        """ClearingHouse.backstopClose: (quote flow to the owner, base closed). The price may go to the
        edge at most: the limit price or the band's edge, whichever is nearer the index; the swap's
        price is checked against it again (PriceBandExceeded)."""
        m = self._market(market_id)
        index = self._index(m, timestamp)
        self._accrue(m, index, timestamp)
        x, y = m.x, m.y
        band = mul_wad_down(index, m.max_spread)
        edge = max(limit_price, index - band) if base > 0 else min(limit_price, index + band)
        closed = self._backstop_fit(m, x, y, base, edge)
        if closed == 0:
            return 0, 0
        quote, x, y = vamm_swap(x, y, -closed)
        price_after = vamm_price(x, y)
        if (price_after < edge) if base > 0 else (price_after > edge):
            raise ModelRevert("PriceBandExceeded", market_id, price_after, index, m.max_spread)
        m.x, m.y = _uint128(x), _uint128(y)
        self._auction_settle(owner, sub, m, -closed, quote, True)
        return quote, closed

    @staticmethod
    def _backstop_fit(m: Market, x: int, y: int, base: int, edge: int) -> int:
        """LiquidationEngine._backstopFit: the largest part of `base` whose close leaves the vAMM price at
        or beyond `edge` on the near side, from the edge reserve sqrt(x y / edge) with a 1e-12 margin
        (and 2 wei more when buying); what would stay behind must be nothing or at least the minimum
        position size."""
        want = abs(base)
        if base > 0:
            if edge == 0:
                fit = want
            else:
                x_max = edge_reserve(x, y, edge)
                x_max -= x_max // 10**12
                fit = x_max - x if x_max > x else 0
        else:
            x_min = edge_reserve(x, y, edge)
            x_min += x_min // 10**12 + 2
            fit = x - x_min if x > x_min else 0
        if fit >= want:
            return base
        if want - fit < m.min_position_size:
            fit = want - m.min_position_size if want > m.min_position_size else 0
        return fit if base > 0 else -fit

    # views
    def auction(self, auction_id: int) -> tuple:
        """ILiquidationEngine.Auction, field for field."""
        if auction_id == 0 or auction_id > self.auction_count:
            raise ModelRevert("UnknownAuction", auction_id)
        a = self.auctions[auction_id]
        return (a.owner, a.subaccount, a.market_id, a.redos, a.size, a.start_index, a.start_time,
                self._notional(a.size, a.start_index))

    def auction_price(self, auction_id: int, timestamp: int) -> int:
        a = self._live(auction_id)
        index = self._index(self.markets[a.market_id], timestamp)
        ap = self._auction_params_of(a.market_id)
        if self._expired(a, ap, index, timestamp):
            raise ModelRevert("AuctionExpired", auction_id)
        return self._auction_price(a.size, index, self.discount(ap, timestamp - a.start_time))

    def is_expired(self, auction_id: int, timestamp: int) -> bool:
        a = self._live(auction_id)
        index = self._index(self.markets[a.market_id], timestamp)
        return self._expired(a, self._auction_params_of(a.market_id), index, timestamp)

    def kick_preview(self, owner, sub: int, market_id: int, timestamp: int) -> tuple[int, int, int, int]:
        value, maintenance, auctioned_notional, _ = self.liquidation_state(owner, sub, timestamp)
        if value >= maintenance:
            return 0, 0, 0, 0
        s = self._slice(owner, sub, market_id, value, maintenance, auctioned_notional, timestamp)
        return s.size, s.notional, s.keeper_reward + s.bounty, s.penalty

    def best_market_to_kick(self, owner, sub: int, timestamp: int) -> int:
        """A slice that restores target health, the smallest such; otherwise the largest position."""
        value, maintenance, auctioned_notional, _ = self.liquidation_state(owner, sub, timestamp)
        if value >= maintenance:
            return 0
        best, best_notional, best_restores = 0, None, False
        markets = self.open_markets(owner, sub)
        market_id = 0
        while markets:
            market_id += 1
            held, markets = markets & 1, markets >> 1
            if not held:
                continue
            p = self._position(market_id, owner, sub)
            if p.size == p.auctioned:
                continue
            s = self._slice(owner, sub, market_id, value, maintenance, auctioned_notional, timestamp)
            if s.restores:
                better = not best_restores or s.notional < best_notional
            else:
                better = not best_restores and (best == 0 or s.notional > best_notional)
            if better:
                best, best_notional, best_restores = market_id, s.notional, s.restores
        return best

    def auctioned_size(self, owner, sub: int, market_id: int) -> int:
        return self._position(market_id, owner, sub).auctioned
