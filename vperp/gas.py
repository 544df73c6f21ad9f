"""Gas table: runs every user-facing operation on a fresh local deployment and reports gas used.

Gas is read from transaction receipts, so it is the same on the embedded chain and on Anvil.
`./run.sh gas` writes docs/gas.md; the previous table's figures are shown next to the new ones.
"""
from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

from .config import DeployConfig, MarketConfig, default_config
from .deployment import deploy

WAD = 10**18
BIG = 2**255


def _deadline(chain):
    return chain.pending_timestamp + 3600


def _start_of_quarter(chain, window: int = 900) -> None:
    """Move the clock to the start of a TWAP quarter-window, so the next blocks (about one second
    each) stay inside it: a block that crosses into a new quarter writes a ring observation and
    re-samples the funding target, which would land on whichever measured trade happens to cross,
    depending on the wall clock."""
    quarter = window // 4
    chain.pending_timestamp = (chain.pending_timestamp // quarter + 1) * quarter
    chain.mine()


def measure(accounts, chain) -> list[tuple[str, int, str]]:
    """Return rows (operation, gas, what exactly was measured)."""
    rows: list[tuple[str, int, str]] = []
    deployer, alice, bob, carol = accounts[0], accounts[1], accounts[2], accounts[3]

    # Everything up to the funding rows runs inside one quarter-window (about 80 blocks of one second):
    # no ring observation, so the funding target stays zero and no row pays for funding by accident.
    _start_of_quarter(chain)
    # Ten markets so the cross-margin check can be measured at 1, 2, 5 and 10 markets held.
    base = default_config()
    extra = [replace(base.markets[0], symbol=f"M{i}") for i in range(3, 11)]
    cfg = base.with_markets(*base.markets, *extra)
    s = deploy(deployer, cfg)
    ch, vault, usdc = s.clearing_house, s.vault, s.collateral

    units = s.units(1_000_000)
    for who in (alice, bob, carol):
        usdc.mint(who, units * 3, sender=who)
        usdc.approve(vault, units * 3, sender=who)

    tx = vault.deposit(0, units, sender=alice)
    rows.append(("deposit (first, new account)", tx.gas_used, "Vault.deposit into an empty sub-account"))
    tx = vault.deposit(0, units, sender=alice)
    rows.append(("deposit (existing balance)", tx.gas_used, "Vault.deposit into a funded sub-account"))
    tx = vault.withdraw(0, s.units(1000), sender=alice)
    rows.append(("withdraw (no positions)", tx.gas_used, "Vault.withdraw, account holds no position"))
    tx = vault.transferMargin(0, 1, 1000 * WAD, sender=alice)
    rows.append(("transferMargin (to new sub-account)", tx.gas_used, "cross -> isolated, no positions"))
    vault.deposit(0, units, sender=bob, )
    vault.deposit(0, units, sender=carol)

    # Warm the ETH market in an earlier block (another trader), so the measured open pays only
    # for its own position, as a trader arriving at a live market does.
    ch.openPosition(0, 1, WAD, BIG, _deadline(chain), sender=bob)
    chain.mine()
    tx = ch.openPosition(0, 1, WAD, BIG, _deadline(chain), sender=alice)
    rows.append(("openPosition (new position, warm market)", tx.gas_used, "first position of the account, market traded in an earlier block"))
    chain.mine()
    tx = ch.openPosition(0, 1, WAD, BIG, _deadline(chain), sender=alice)
    rows.append(("openPosition (increase)", tx.gas_used, "same direction, next block"))
    chain.mine()
    tx = ch.openPosition(0, 1, -WAD // 2, 0, _deadline(chain), sender=alice)
    rows.append(("openPosition (reduce)", tx.gas_used, "half of the increase, next block"))
    chain.mine()
    tx = ch.closePosition(0, 1, 0, _deadline(chain), sender=alice)
    rows.append(("closePosition", tx.gas_used, "whole position, next block"))
    chain.mine()
    ch.openPosition(0, 1, WAD, BIG, _deadline(chain), sender=alice)
    chain.mine()
    tx = ch.openPosition(0, 1, -3 * WAD, 0, _deadline(chain), sender=alice)
    rows.append(("openPosition (flip long -> short)", tx.gas_used, "through zero in one call"))
    chain.mine()
    tx = vault.withdraw(0, s.units(1000), sender=alice)
    rows.append(("withdraw (1 open position)", tx.gas_used, "free-collateral check over one market"))

    # Cross-margin check cost: carol holds N markets, then increases her market-1 position.
    held = 0
    for n in (1, 2, 5, 10):
        while held < n:
            held += 1
            size = WAD // 10 if held == 2 else WAD
            ch.openPosition(0, held, size, BIG, _deadline(chain), sender=carol)
        chain.mine()
        tx = ch.openPosition(0, 1, WAD // 10, BIG, _deadline(chain), sender=carol)
        rows.append((f"openPosition (increase) holding {n} market(s)", tx.gas_used, "cross-margin check over every market held"))

    # Funding active: the longs above left ETH's vAMM above its index, so the target is non-zero.
    # Each row is the first touch of the market in its block, an hour after the previous one: it pays
    # the per-block update (TWAP sums, ring observation, kernel evolution, funding index).
    hour = 3600
    # Steady state: fill the 8-slot observation ring once (a live market did so in its first two
    # windows), so the rows below pay a nonzero -> nonzero ring write, as every later update does.
    quarter = s.markets["ETH"].config.twap_window // 4
    for _ in range(8):
        chain.pending_timestamp += quarter
        ch.pokeFunding(1, sender=deployer)
    chain.pending_timestamp += hour
    tx = ch.pokeFunding(1, sender=deployer)
    rows.append(("pokeFunding (1 h since last update)", tx.gas_used, "permissionless accrual, funding active"))
    chain.pending_timestamp += hour
    tx = ch.openPosition(0, 1, WAD, BIG, _deadline(chain), sender=bob)
    rows.append(("openPosition (increase, funding active)", tx.gas_used, "first trade in the block, 1 h later; settles the position's funding"))
    chain.pending_timestamp += hour
    tx = ch.closePosition(0, 1, 0, _deadline(chain), sender=bob)
    rows.append(("closePosition (funding active)", tx.gas_used, "first trade in the block, 1 h later; settles the position's funding"))
    rows += _measure_liquidation(s, accounts, chain)
    rows += _measure_pool(s, accounts, chain)
    rows += _measure_nav(accounts, chain)
    return rows


def render(rows, previous: dict[str, int]) -> str:
    out = [
        "# Gas table",
        "",
        "Produced by `./run.sh gas` (vperp/gas.py) on a fresh local deployment with the default",
        "config plus eight more ETH-like markets. Gas from receipts: identical on the embedded chain",
        "and on Anvil. 'previous' is the table this one replaced.",
        "",
        "| operation | gas | previous | change | what is measured |",
        "|---|---:|---:|---:|---|",
    ]
    for name, gas, what in rows:
        prev = previous.get(name)
        change = "" if prev is None else f"{gas - prev:+d}"
        out.append(f"| {name} | {gas:,} | {'' if prev is None else f'{prev:,}'} | {change} | {what} |")
    return "\n".join(out) + "\n"


def read_previous(path: Path) -> dict[str, int]:
    prev: dict[str, int] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            m = re.match(r"\| (.+?) \| ([\d,]+) \|", line)
            if m:
                prev[m.group(1)] = int(m.group(2).replace(",", ""))
    return prev


def _measure_liquidation(s, accounts, chain) -> list[tuple[str, int, str]]:
    """kick, take (partial, full), redo and backstop on the ETH market after a 10 % index drop."""
    rows = []
    ch, engine = s.clearing_house, s.liquidation
    deployer, bob, carol = accounts[0], accounts[2], accounts[3]
    victims = accounts[4:6]
    for v in victims:
        s.fund(v, 1_000)
        ch.openPosition(0, 1, 3 * WAD, BIG, _deadline(chain), sender=v)
    for m in s.markets.values():  # ETH down 10 %; the other feeds refreshed at their price
        answer = m.oracle.latestRoundData()[1]
        m.oracle.updateAnswer(answer * 9 // 10 if m.id == 1 else answer, sender=deployer)
    tx = engine.kick(victims[0], 0, 1, carol, sender=carol)
    rows.append(("kick", tx.gas_used, "slice of a cross account's ETH long into a new auction; keeper paid"))
    first = engine.auctionCount()
    size = engine.auction(first).size
    chain.pending_timestamp += 300
    tx = engine.take(first, size // 2, BIG, 0, sender=bob)
    rows.append(("take (partial)", tx.gas_used, "half of the slice into the taker's existing position"))
    tx = engine.take(first, size, BIG, 0, sender=bob)
    rows.append(("take (full remainder)", tx.gas_used, "finishes the auction"))
    engine.kick(victims[1], 0, 1, carol, sender=carol)
    second = engine.auctionCount()
    duration = engine.auctionParams(1).duration
    chain.pending_timestamp += duration + 1
    tx = engine.redo(second, carol, sender=carol)
    rows.append(("redo", tx.gas_used, "restart an expired auction from the live index; tip paid"))
    for _ in range(engine.liquidationParams().maxRedos - 1):
        chain.pending_timestamp += duration + 1
        engine.redo(second, carol, sender=carol)
    chain.pending_timestamp += duration + 1
    tx = engine.backstop(second, sender=carol)
    rows.append(("backstop", tx.gas_used, "close the remainder against the vAMM"))
    return rows


def _measure_pool(s, accounts, chain) -> list[tuple[str, int, str]]:
    """LP deposit / requestWithdraw / redeem, depth sync and repeg (ETH, positions open)."""
    rows = []
    pool, usdc, amm, ch = s.pool, s.collateral, s.amm, s.clearing_house
    lp = accounts[6]
    # The liquidation rows left ETH's index 10 % under its vAMM: LP flows would wait (LpFlowsSuspended)
    # until the vAMM follows. Each feed is set to its vAMM price, as arbitrage would bring them together.
    for m in s.markets.values():
        spot = ch.spotPrice(m.id)
        m.oracle.updateAnswer(spot // 10 ** (18 - m.config.oracle_decimals), sender=accounts[0])
    units = s.units(100_000)
    usdc.mint(lp, 2 * units, sender=lp)
    usdc.approve(pool, 2 * units, sender=lp)
    tx = pool.deposit(units, lp, sender=lp)
    rows.append(("pool deposit (first, new LP)", tx.gas_used, "ERC-4626 deposit: NAV over every market, tokens on to the Vault"))
    tx = pool.deposit(units, lp, sender=lp)
    rows.append(("pool deposit (existing LP)", tx.gas_used, "same, LP already holds shares"))
    shares = pool.balanceOf(lp) // 2
    tx = pool.requestWithdraw(shares, sender=lp)
    rows.append(("pool requestWithdraw", tx.gas_used, "step 1 of a withdrawal"))
    chain.pending_timestamp += pool.poolParams().withdrawCooldown
    for m in s.markets.values():  # feeds refreshed at their price after the cooldown
        m.oracle.updateAnswer(m.oracle.latestRoundData()[1], sender=accounts[0])
    tx = pool.redeem(shares, lp, lp, sender=lp)
    rows.append(("pool redeem", tx.gas_used, "step 2 after the cooldown: request, reserve and cash checks"))
    tx = amm.syncDepth(1, sender=lp)
    rows.append(("syncDepth", tx.gas_used, "rescale one market's reserves to the pool (price kept)"))
    # Push the index away from the vAMM long enough for the TWAPs to diverge, then repeg.
    eth = s.markets["ETH"]
    eth.oracle.updateAnswer(eth.oracle.latestRoundData()[1] * 90 // 100, sender=accounts[0])
    chain.pending_timestamp += 10
    ch.pokeFunding(1, sender=lp)  # the TWAPs see the new index from here
    chain.pending_timestamp += 3600
    ch.pokeFunding(1, sender=lp)
    chain.pending_timestamp += 10
    tx = amm.repeg(1, sender=lp)
    rows.append(("repeg", tx.gas_used, "move one market's vAMM price toward the index (bounded)"))
    return rows


def _measure_nav(accounts, chain) -> list[tuple[str, int, str]]:
    """Gas of the pool's NAV (a view, estimated as a call: includes the 21,000 base) with 1, 5, 20 markets."""
    rows = []
    deployer, trader = accounts[0], accounts[7]
    base = default_config()
    for n in (1, 5, 20):
        markets = [replace(base.markets[0], symbol=f"N{i}") for i in range(n)]
        s = deploy(deployer, base.with_markets(*markets))
        # One isolated sub-account per market: an account may hold at most 16 markets, the pool has no limit.
        for m in s.markets.values():
            s.fund(trader, 50_000, subaccount=m.id)
            s.clearing_house.openPosition(m.id, m.id, WAD, BIG, _deadline(chain), sender=trader)
        gas = s.pool.navWad.estimate_gas_cost(sender=trader)
        rows.append((f"pool NAV with {n} market(s)", gas, "navWad() as an eth_call estimate (incl. 21,000 base); one position per market"))
    return rows
