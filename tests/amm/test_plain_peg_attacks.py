"""The round trips around a public repeg, on the plain markets with direct trades (`plain_config()`: the every-block
peg, the 11 bps stale-peg rule, 30M of quote per market; docs/pool.md "The stale-peg rule"). test_peg_follow.py
measures them on the concentrated curve, chain against model; here the plain markets, chain only, with a control:
the same deployment with the rule off, where each attack pays. The shipped markets take delayed orders, which
refuse these trades outright (tests/orders/).

An index update of +0.5 % is public and the keeper's repeg not yet mined:
- the sandwich: buy 1M before the repeg, sell after it;
- the hedge legs: a 1M short and a 1M long opened at a fresh peg on two accounts; buy back the short at the stale
  peg, repeg, sell the long.
"""
from __future__ import annotations

from dataclasses import replace

import pytest

from helpers.trading import ETH_ID, MAX_UINT, WAD, deadline, expect_revert, trade
from vperp import deploy
from vperp.config import plain_config

SIZE = 1_000_000 * WAD // 3000  # 1M USD of ETH at the listing price
MOVE_BPS = 50  # +0.5 %: the deviation threshold of common ETH/USD feeds


@pytest.fixture(scope="module", params=["rule on", "rule off"])
def plain(request, deployer):
    cfg = plain_config()
    if request.param == "rule off":  # the control: the same peg, no stale-peg rule
        cfg = cfg.with_markets(*(replace(m, peg_tolerance_bps=0) for m in cfg.markets))
    return request.param, deploy(deployer, cfg)


def _value(s) -> int:
    """What the pool and the insurance fund hold between them [wad]."""
    return s.pool.navWad() + s.vault.insuranceFund()


def _move_index(s) -> int:
    s.set_price("ETH", 3000 * (10_000 + MOVE_BPS) / 10_000)
    return s.clearing_house.indexPrice(ETH_ID)


def _refused_at_the_stale_peg(s, who, call, index) -> None:
    """`call` reverts PegStale(ETH, peg, index) and changes nothing of `who`'s or the market's."""
    ch, vault = s.clearing_house, s.vault
    peg = s.amm.pegPrice(ETH_ID)
    seen = lambda: (vault.collateral(who, 0), tuple(ch.position(who, 0, ETH_ID)), ch.marketState(ETH_ID))  # noqa: E731
    before = seen()
    with expect_revert(ch.PegStale, marketId=ETH_ID, peg=peg, indexPrice=index):
        call()
    assert seen() == before


def _verdict(setting: str, label: str, gain: int, pool_side: int) -> None:
    """The rule on: the attacker pays its fees and the pool and the fund gain them; the control (the rule off): the
    attack takes the move from them."""
    print(f"\n{label}, {setting}: attacker {gain / WAD:+,.2f} USD, pool and insurance {pool_side / WAD:+,.2f}")
    if setting == "rule on":
        assert gain < 0 and pool_side > 0
    else:
        assert gain > 0 and pool_side < 0


def test_sandwiching_a_public_repeg(plain, alice, bob):
    setting, s = plain
    ch, vault = s.clearing_house, s.vault
    s.fund(alice, 500_000)
    wealth0, value0 = vault.collateral(alice, 0), _value(s)
    index = _move_index(s)
    assert index > s.amm.pegPrice(ETH_ID) * (10_000 + 11) // 10_000  # stale by more than the tolerance
    if setting == "rule on":
        _refused_at_the_stale_peg(s, alice, lambda: trade(ch, alice, ETH_ID, SIZE), index)
        s.amm.repeg(ETH_ID, sender=bob)  # the keeper's repeg; then the honest round trip at the fresh peg
        trade(ch, alice, ETH_ID, SIZE)
    else:
        trade(ch, alice, ETH_ID, SIZE)  # before the repeg
        s.amm.repeg(ETH_ID, sender=bob)
    ch.closePosition(0, ETH_ID, 0, deadline(), sender=alice)
    _verdict(setting, "sandwich of a public repeg, 1M at +0.5 %", vault.collateral(alice, 0) - wealth0,
             _value(s) - value0)  # the rule on: two fees paid


def test_closing_one_hedge_leg_at_the_stale_peg(plain, alice, bob, carol):
    setting, s = plain
    ch, vault = s.clearing_house, s.vault
    for who in (alice, bob):
        s.fund(who, 500_000)
    wealth0, value0 = vault.collateral(alice, 0) + vault.collateral(bob, 0), _value(s)
    trade(ch, alice, ETH_ID, -SIZE)  # the short leg
    trade(ch, bob, ETH_ID, SIZE)  # the long leg: net zero, funding cancels
    index = _move_index(s)
    if setting == "rule on":
        _refused_at_the_stale_peg(s, alice, lambda: ch.closePosition(0, ETH_ID, MAX_UINT, deadline(), sender=alice),
                                  index)
        s.amm.repeg(ETH_ID, sender=carol)
        ch.closePosition(0, ETH_ID, MAX_UINT, deadline(), sender=alice)
    else:
        ch.closePosition(0, ETH_ID, MAX_UINT, deadline(), sender=alice)  # the short bought back at the stale peg
        s.amm.repeg(ETH_ID, sender=carol)  # the pool pays the long the move
    ch.closePosition(0, ETH_ID, 0, deadline(), sender=bob)
    _verdict(setting, "hedge legs around a public repeg, 1M + 1M at +0.5 %",
             vault.collateral(alice, 0) + vault.collateral(bob, 0) - wealth0, _value(s) - value0)  # the rule on: four fees
