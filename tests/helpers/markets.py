"""Markets listed in a test beyond the deployment's ETH and BTC: `list_market` (shaped like ETH's config, its own
mock feed) and `listed_amm` (the fresh vAMM, checked against the chain)."""
from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

from helpers.liquidation import one_event
from helpers.trading import WAD, Amm
from vperp.config import wad

def list_market(system, project, price, oracle=None, base_reserve=None, **changes):
    """List a market shaped like ETH's config (`changes` override fields) at `price` (human units) with its
    own mock feed unless `oracle` is given; no auction or AMM parameters are set. Returns (id, oracle, cfg, tx)."""
    ch, deployer = system.clearing_house, system.deployer
    n = ch.marketCount() + 1
    mc = replace(system.config.markets[0], symbol=f"M{n}", price=price, **changes)
    if oracle is None:
        oracle = project.MockAggregator.deploy(mc.oracle_decimals, int(Decimal(str(price)) * 10**mc.oracle_decimals),
                                               f"M{n} / USD", sender=deployer)
    x = wad(mc.base_reserve) if base_reserve is None else base_reserve
    tx = ch.listMarket(mc.symbol.encode().ljust(32, b"\0"), mc.to_params(oracle.address),
                       wad(mc.insurance_fee_share), x, sender=deployer)
    mid = one_event(ch, "MarketListed", tx).marketId
    assert mid == n
    return mid, oracle, mc, tx


def listed_amm(ch, mid: int, x: int, index: int) -> Amm:
    """A freshly listed vAMM: `baseReserve` x and quote floor(x * index) (listMarket NatSpec: starts at the
    oracle's price); checked against the chain."""
    amm = Amm(x, x * index // WAD)
    st = ch.marketState(mid)
    assert (st.baseReserve, st.quoteReserve) == (amm.x, amm.y)
    return amm
