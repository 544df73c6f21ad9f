"""Keeper logic: poke funding when due, kick liquidatable accounts, take, redo and backstop auctions.

One `Keeper.run_once()` is one pass over every market, every account that ever traded and every live
auction; it returns the actions taken (and sends them from the keeper's account). The keeper takes
auctions into its own cross account only when the discount is at least `min_take_discount` and its
free collateral covers the initial margin of what it takes; otherwise it leaves them to other takers.

Which market to kick on a cross account holding several: the engine's `bestMarketToKick` view, which
picks the market whose slice restores target health with the least notional moved (see
docs/liquidation.md).
"""
from __future__ import annotations

from dataclasses import dataclass, field

WAD = 10**18


@dataclass
class Action:
    kind: str  # "poke" | "kick" | "take" | "redo" | "cancel" | "backstop" | "backstop-blocked"
    detail: dict
    gas: int

    def __str__(self) -> str:
        fields = ", ".join(f"{k}={v}" for k, v in self.detail.items())
        return f"{self.kind}({fields}) gas={self.gas:,}"


@dataclass
class Keeper:
    system: object
    account: object
    min_take_discount: int = WAD // 100  # take once the auction price is >= 1 % better than the index
    take_margin_buffer: int = 12 * WAD // 10  # keep free collateral >= 1.2 x the taken slice's initial margin
    accounts: set = field(default_factory=set)  # (owner, subaccount) seen trading
    _scanned_to: int = -1

    # ---------------------------------------------------------------- discovery

    def discover(self, chain) -> None:
        """Add every (owner, subaccount) that traded since the last scan (PositionChanged logs)."""
        head = chain.blocks.head.number
        start = self._scanned_to + 1
        if start > head:
            return
        for log in self.system.clearing_house.PositionChanged.range(start, head + 1):
            self.accounts.add((log.owner, int(log.subaccount)))
        self._scanned_to = head

    # ---------------------------------------------------------------- one pass

    def run_once(self, chain) -> list[Action]:
        self.discover(chain)
        actions: list[Action] = []
        actions += self._poke_due(chain)
        actions += self._kick_liquidatable()
        actions += self._service_auctions()
        return actions

    def _poke_due(self, chain) -> list[Action]:
        out = []
        ch = self.system.clearing_house
        now = chain.pending_timestamp
        for sym, m in self.system.markets.items():
            st = ch.marketState(m.id)
            quarter = ch.marketParams(m.id).twapWindow // 4
            if now // quarter != st.lastUpdate // quarter:
                tx = self.system.funding.pokeFunding(m.id, sender=self.account)
                out.append(Action("poke", {"market": sym}, tx.gas_used))
        return out

    def _kick_liquidatable(self) -> list[Action]:
        out = []
        vault, engine = self.system.vault, self.system.liquidation
        for owner, sub in sorted(self.accounts):
            while vault.isLiquidatable(owner, sub):
                market = engine.bestMarketToKick(owner, sub)
                if market == 0:
                    break
                tx = engine.kick(owner, sub, market, self.account, sender=self.account)
                ev = tx.decode_logs(engine.Kick)[0]
                out.append(Action("kick", {"auction": ev.auctionId, "owner": owner[:10], "sub": sub,
                                           "market": market, "size": ev.size / WAD,
                                           "reward": round(ev.keeperReward / WAD, 2),
                                           "penalty": round(ev.penalty / WAD, 2)}, tx.gas_used))
        return out

    def _service_auctions(self) -> list[Action]:
        out = []
        engine, ch, vault = self.system.liquidation, self.system.clearing_house, self.system.vault
        max_redos = engine.liquidationParams().maxRedos
        for aid in range(1, engine.auctionCount() + 1):
            a = engine.auction(aid)
            if a.size == 0:
                continue
            if engine.isExpired(aid):
                if a.redos < max_redos:
                    # A recovered account's auction is cancelled by the redo, unpaid.
                    tx = engine.redo(aid, self.account, sender=self.account)
                    if tx.decode_logs(engine.AuctionCancelled):
                        out.append(Action("cancel", {"auction": aid}, tx.gas_used))
                    else:
                        out.append(Action("redo", {"auction": aid, "redos": a.redos + 1}, tx.gas_used))
                else:
                    out.append(self._backstop(aid, a))
                continue
            index = ch.indexPrice(a.marketId)
            price = engine.auctionPrice(aid)
            discount = (index - price) * WAD // index if a.size > 0 else (price - index) * WAD // index
            if discount < self.min_take_discount:
                continue
            amount = self._affordable(a, index, vault, ch)
            if amount == 0:
                continue
            limit = price  # exactly the quoted price: no worse than what we decided on
            tx = engine.take(aid, amount, limit, 0, sender=self.account)
            ev = tx.decode_logs(engine.Take)[0]
            out.append(Action("take", {"auction": aid, "amount": ev.amount / WAD, "price": round(ev.price / WAD, 2),
                                       "discount": f"{discount / WAD:.2%}"}, tx.gas_used))
        return out

    def _backstop(self, aid: int, a) -> Action:
        """Backstop as much as the band and the auction's last price allow; when nothing fits now
        (BackstopBlocked: the vAMM is too far on the owner's wrong side) try again next pass."""
        from ape.exceptions import ContractLogicError

        engine = self.system.liquidation
        try:
            tx = engine.backstop(aid, sender=self.account)
        except ContractLogicError as e:
            if type(e).__name__ != "BackstopBlocked":
                raise
            return Action("backstop-blocked", {"auction": aid, "size": a.size / WAD}, 0)
        ev = tx.decode_logs(engine.Backstop)[0]
        return Action("backstop", {"auction": aid, "size": ev.size / WAD,
                                   "left": engine.auction(aid).size / WAD}, tx.gas_used)

    def _affordable(self, a, index: int, vault, ch) -> int:
        """Base the keeper can take with its free collateral (0 if below the market's minimum)."""
        free = vault.freeCollateral(self.account, 0)
        if free <= 0:
            return 0
        imr = ch.marketParams(a.marketId).imr
        per_base = index * imr // WAD * self.take_margin_buffer // WAD
        amount = min(abs(a.size), free * WAD // per_base)
        minimum = ch.marketParams(a.marketId).minPositionSize
        remaining = abs(a.size)
        if amount < remaining and (amount < minimum or remaining - amount < minimum):
            return 0
        return amount
