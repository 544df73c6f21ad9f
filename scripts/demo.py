"""`ape run demo` (the README's first command): deploy vPerp on the local chain and walk through it.

What it shows, with every figure read back from the chain:
  1. the deployment (addresses, markets, pool seed, the price impact of 100k to 10M orders on the
     concentrated curve, the skew term);
  2. a deposit / withdraw round trip (token balance and WAD ledger agree);
  3. the liquidity pool: an LP deposit (shares minted at NAV, NAV before/after) and a two-step
     redemption request (an early redemption reverts with CooldownNotPassed);
  4. a cross-margin account holding ETH and BTC, and an isolated sub-account; every trade is an order
     committed through the OrderRouter with a slippage bound and a deadline, and executed after the
     market's next oracle round (the shipped markets take delayed orders only);
  5. eight hours of funding: the vAMM sits above the index, the target follows the premium, the
     applied rate follows the target smoothly, longs pay, shorts and the pool receive;
  6. an index move, the margin views, a close with realized PnL, and a withdrawal of everything free;
  7. a drop: a levered account becomes liquidatable, the keeper kicks a slice into a Dutch auction and
     takes it once the discount pays, the account keeps the rest of its position;
  8. delayed orders: a direct trade refused, an order the keeper executes for its fee;
  9. the ledger at the end: pool NAV along the way, insurance fund, and the conservation check;
 10. a short simulated crash (the agent-based simulator, `vperp.sim`, on its own Anvil chain), whose
     CSV and plots are written to out/demo/.
"""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import click
from ape import accounts, chain
from ape.cli import ConnectedProviderCommand, network_option
from ape.exceptions import ContractLogicError
from eth_abi import decode as abi_decode
from eth_utils import keccak
from ape.logging import logger
from rich.console import Console
from rich.table import Table

from vperp import deploy
from vperp.keeper import Keeper

from vperp.units import HOUR, WAD
DEMO_OUT = Path("out/demo")
SIM_STEPS = 48  # 4 simulated hours at 5 min per step: the crash starts in the first hour
console = Console(width=110)


def fmt(x: int, digits: int = 2) -> str:
    """A WAD fixed-point integer as a human number."""
    return f"{x / WAD:,.{digits}f}"


def pct(x: int, digits: int = 4) -> str:
    return f"{x / WAD * 100:+.{digits}f} %"


def with_slippage(ch, market_id: int, base: int, tolerance_bps: int = 50) -> int:
    """quoteLimit for a trade of `base`: the quoted flow worsened by `tolerance_bps`."""
    q, _ = ch.quote(market_id, base)
    if base > 0:  # a buy pays -q: allow paying up to (1 + tol) times that
        return -q * (10_000 + tolerance_bps) // 10_000
    return q * (10_000 - tolerance_bps) // 10_000  # a sell receives q: accept down to (1 - tol)


def custom_error(contract, err) -> tuple[str, dict]:
    """The custom error of a revert and its arguments: as Ape decoded it, or, when Ape left the revert data raw
    (seen now and then on the embedded chain), decoded here from `contract`'s ABI by its selector."""
    if hasattr(err, "inputs"):
        return type(err).__name__, dict(err.inputs)
    raw = err.args[0] if err.args and isinstance(err.args[0], bytes) else b""
    for abi in contract.contract_type.errors:
        if raw[:4] == keccak(text=abi.selector)[:4]:
            values = abi_decode([i.canonical_type for i in abi.inputs], raw[4:])
            return abi.name, dict(zip([i.name for i in abi.inputs], values))
    return type(err).__name__, {}


def trade(s, who, sub: int, symbol: str, base: int, gas: dict, label: str, executor=None):
    """A trade as the shipped markets take it (delayed orders, docs/orders.md): `who` commits an order through the
    OrderRouter, the market's feed publishes its next round (the mock, at the same price), and `executor` (the
    deployer unless given: anyone may) executes it at the price that round set."""
    ch = s.clearing_house
    commit, tx = s.trade(who, sub, symbol, base, with_slippage(ch, s.markets[symbol].id, base),
                         chain.pending_timestamp + 600, executor)
    oid = commit.decode_logs(s.router.OrderCommitted)[0].orderId
    ev = tx.decode_logs(ch.PositionChanged)[0]
    gas[f"{label}: commit"] = commit.gas_used
    gas[f"{label}: execute"] = tx.gas_used
    side = "buy " if base > 0 else "sell"
    console.print(
        f"  {side} {fmt(abs(base), 3)} {symbol} sub {sub}: order {oid} executed after the next round, paid/received "
        f"{fmt(ev.quoteDelta)} USD, fee {fmt(ev.fee, 4)}, vAMM price after {fmt(ev.priceAfter)}  "
        f"[dim]({commit.gas_used:,} + {tx.gas_used:,} gas)[/]"
    )
    return ev


def positions_table(s, owners) -> Table:
    ch, vault = s.clearing_house, s.vault
    t = Table(title="positions and margin", show_lines=False)
    for col in ("account", "market", "size", "open notional", "pending funding", "account value",
                "free collateral", "maint. req."):
        t.add_column(col, justify="right")
    for name, who, sub in owners:
        _, maint = vault.marginRequirements(who, sub)
        first = True
        for sym, m in s.markets.items():
            size, notional, pending = ch.position(who, sub, m.id)
            if size == 0:
                continue
            t.add_row(f"{name}/{sub}" if first else "", sym, fmt(size, 3), fmt(notional), fmt(pending, 4),
                      fmt(vault.accountValue(who, sub)) if first else "",
                      fmt(vault.freeCollateral(who, sub)) if first else "", fmt(maint) if first else "")
            first = False
    return t


def ledger_total(s, owners) -> int:
    v = s.vault
    return v.poolBalance() + v.insuranceFund() + sum(v.collateral(w, sub) for _, w, sub in owners)


@click.command(cls=ConnectedProviderCommand)
@network_option()
def cli(network):
    """Deploy the protocol and run the demonstration."""
    logger.set_level("WARNING")  # one line per transaction would drown the story
    started = time.perf_counter()
    deployer, alice, bob, carol, dave, keeper_account, erin = accounts.test_accounts[:7]
    gas: dict[str, int] = {}

    console.rule("[bold]1. deploy")
    s = deploy(deployer)
    ch, vault, usdc = s.clearing_house, s.vault, s.collateral
    t = Table(show_header=False)
    t.add_row("network", f"{chain.provider.network.ecosystem.name}:{chain.provider.network.name}:"
              f"{chain.provider.name} (chain id {chain.chain_id})")
    t.add_row("Vault", vault.address)
    t.add_row("ClearingHouse (also funding)", ch.address)
    t.add_row("collateral (mock USDC, 6 dp)", usdc.address)
    for sym, m in s.markets.items():
        st = ch.marketState(m.id)
        t.add_row(f"market {m.id} {sym}", f"oracle {m.oracle.address}  index {fmt(ch.indexPrice(m.id))}  "
                  f"virtual reserves {fmt(st.baseReserve, 0)} x {fmt(st.quoteReserve, 0)}")
    t.add_row("pool balance (seed)", f"{fmt(vault.poolBalance())} USD")
    eth_id, eth_index = s.markets["ETH"].id, ch.indexPrice(s.markets["ETH"].id)
    fee = ch.marketParams(eth_id).takerFee
    costs = []
    for notional in (100_000, 1_000_000, 10_000_000):
        base = notional * WAD * WAD // eth_index
        paid = -ch.quote(eth_id, base)[0]  # quote(): what buying `base` would pay now, fee excluded
        costs.append(f"{notional:,} USD {(paid * (WAD + fee) // WAD - notional * WAD) / (notional * WAD) * 1e4:,.0f} bps")
    t.add_row("price impact, ETH buy incl. fee", "; ".join(costs) + "  (docs/economics.md#price-impact)")
    rng, amp, eff = s.amm.concentration(eth_id)
    depth = (f"concentrated on prices within {rng / 1e16:g} % of the peg, amplified {eff / 1e18:g}x (bound "
             f"{s.amm.maxAmplification(rng) / 1e18:.2f})" if rng else
             "not concentrated")
    t.add_row("ETH depth", f"{depth}; peg {fmt(s.amm.pegPrice(eth_id))}, moved toward the index by repeg "
              "(docs/pool.md)")
    ppm, _ = ch.skewFunding(eth_id)
    t.add_row("funding's skew term", f"{ppm:,} ppm/h per unit of skew: {ppm / 1e4 * 0.05:.3f} %/h charged to the heavier "
              "side at a 5 % skew, paid to the pool that carries it (docs/funding.md)")
    console.print(t)

    console.rule("[bold]2. deposit / withdraw round trip")
    units = s.units(10_000)
    usdc.mint(alice, units, sender=alice)
    usdc.approve(vault, 2**256 - 1, sender=alice)
    tx = vault.deposit(0, units, sender=alice)
    gas["deposit"] = tx.gas_used
    console.print(f"  alice deposits 10,000 USDC: ledger {fmt(vault.collateral(alice, 0))} WAD-USD, "
                  f"wallet {usdc.balanceOf(alice) / 1e6:,.2f}  [dim]({tx.gas_used:,} gas)[/]")
    tx = vault.withdraw(0, s.units(2_500), sender=alice)
    gas["withdraw"] = tx.gas_used
    console.print(f"  alice withdraws 2,500: ledger {fmt(vault.collateral(alice, 0))}, "
                  f"wallet {usdc.balanceOf(alice) / 1e6:,.2f}  [dim]({tx.gas_used:,} gas)[/]")
    vault.deposit(0, s.units(2_500), sender=alice)
    assert vault.collateral(alice, 0) == units * s.token_scale, "round trip must restore the ledger"
    console.print("  deposited back: round trip exact to the wei")
    s.fund(bob, 5_000, subaccount=1)
    s.fund(carol, 20_000)
    console.print("  bob funds isolated sub-account 1 with 5,000; carol funds her cross account with 20,000")
    owners = [("alice", alice, 0), ("bob", bob, 1), ("carol", carol, 0)]

    console.rule("[bold]3. the liquidity pool: an LP deposits, then asks to redeem (two steps)")
    pool = s.pool
    nav: dict[str, int] = {"at deployment (seed)": pool.navWad()}
    units = s.units(250_000)
    usdc.mint(erin, units, sender=erin)
    usdc.approve(pool, units, sender=erin)
    price_before = pool.convertToAssets(10**pool.decimals())
    tx = pool.deposit(units, erin, sender=erin)
    gas["pool deposit"] = tx.gas_used
    shares = pool.balanceOf(erin)
    nav["after erin's deposit"] = pool.navWad()
    console.print(f"  erin deposits 250,000 USDC into the pool: {shares / 10**pool.decimals():,.2f} vLP shares at "
                  f"{price_before / 1e6:.6f} USDC per share; pool NAV {fmt(nav['at deployment (seed)'])} -> "
                  f"{fmt(pool.navWad())}  [dim]({tx.gas_used:,} gas)[/]")
    tx = pool.requestWithdraw(shares // 2, sender=erin)
    gas["pool requestWithdraw"] = tx.gas_used
    request = pool.withdrawRequest(erin)
    params = pool.poolParams()
    console.print(f"  erin requests to redeem half her shares: executable from t+{request.unlockAt - chain.blocks.head.timestamp:,} s "
                  f"(cooldown {params.withdrawCooldown // HOUR} h), for a window of {params.withdrawWindow // HOUR} h")
    try:
        pool.redeem(shares // 2, erin, erin, sender=erin)
        raise AssertionError("a redemption before the cooldown must revert")
    except ContractLogicError as err:
        name, args = custom_error(pool, err)
        console.print(f"  redeeming at once reverts: [yellow]{name}[/]"
                      f"({', '.join(f'{k}={v}' for k, v in args.items())}): the shares stay in the pool "
                      "until the cooldown ends, and then only above the reserve that backs open interest")
    start_total = ledger_total(s, owners)

    console.rule("[bold]4. trades: cross margin across two markets, one isolated sub-account")
    trade(s, alice, 0, "ETH", 10 * WAD, gas, "open long (new)")
    trade(s, alice, 0, "BTC", -WAD // 10, gas, "open short (second market)")
    trade(s, bob, 1, "ETH", -3 * WAD, gas, "open short (isolated)")
    trade(s, carol, 0, "ETH", 20 * WAD, gas, "open long (carol)")
    console.print(positions_table(s, owners))

    console.rule("[bold]5. eight hours of funding (index flat, vAMM above it: longs pay)")
    eth = s.markets["ETH"]
    t = Table()
    for col in ("hour", "mark TWAP", "index TWAP", "premium", "skew term /h", "target /h", "applied /h",
                "alice pending"):
        t.add_column(col, justify="right")
    for hour in range(1, 9):
        chain.pending_timestamp += HOUR
        # The mock oracles are refreshed like a live feed would be (same price, new timestamp).
        s.set_price("ETH", 3000)
        s.set_price("BTC", 60_000)
        tx = s.funding.pokeFunding(eth.id, sender=deployer)
        gas["pokeFunding"] = tx.gas_used
        applied, target, premium, mark_twap, index_twap, p1, p8 = s.funding.fundingState(eth.id)
        t.add_row(str(hour), fmt(mark_twap), fmt(index_twap), pct(premium), pct(ch.skewFunding(eth.id)[1]),
                  pct(target), pct(applied), fmt(ch.position(alice, 0, eth.id)[2], 4))
    console.print(t)
    applied, target, *_ , p1, p8 = s.funding.fundingState(eth.id)
    console.print(f"  projected applied rate if the premium holds: in 1 h {pct(p1)}, in 8 h {pct(p8)} "
                  f"(target {pct(target)}): the rate approaches the target, never jumps to it")

    console.rule("[bold]6. ETH index +5 %, the keeper repegs, then alice closes ETH and withdraws what is free")
    s.set_price("ETH", 3150)
    s.set_price("BTC", 60_000)
    peg0 = s.amm.pegPrice(eth.id)
    tx = s.amm.repeg(eth.id, sender=keeper_account)  # what the keeper does after every oracle round
    gas["repeg"] = tx.gas_used
    ev = tx.decode_logs(s.amm.Repeg)[0]
    console.print(f"  the keeper repegs ETH: peg {fmt(peg0)} -> {fmt(s.amm.pegPrice(eth.id))} (the index "
                  f"{fmt(ch.indexPrice(eth.id))}), paid by the pool to the traders' net position: {fmt(ev.cost)}  "
                  f"[dim]({tx.gas_used:,} gas)[/]")
    console.print(positions_table(s, owners))
    size, _, _ = ch.position(alice, 0, eth.id)
    ev = trade(s, alice, 0, "ETH", -size, gas, "close (alice)")
    console.print(f"  alice closed {fmt(size, 3)} ETH: realized PnL {fmt(ev.realizedPnl)}, funding settled "
                  f"{fmt(ev.fundingPaid, 4)}, fee {fmt(ev.fee, 4)}")
    free = vault.freeCollateral(alice, 0)
    # The view reads this block; the withdrawal is the next one, a second of her BTC short's funding later: she
    # leaves 0.1 % of it.
    amount = free // s.token_scale * 999 // 1000
    tx = vault.withdraw(0, amount, sender=alice)
    console.print(f"  alice withdraws her free collateral (all but 0.1 %), {amount / 1e6:,.2f} USDC, keeping her BTC "
                  f"short margined  [dim]({tx.gas_used:,} gas)[/]")
    console.print(positions_table(s, owners))

    nav["before the crash"] = pool.navWad()
    console.rule("[bold]7. a drop: ETH -8 % in three steps, the keeper liquidates by Dutch auction")
    s.fund(dave, 3_000)
    s.fund(keeper_account, 50_000)
    extra = s.units(3_000 + 50_000) * s.token_scale  # new deposits, for the conservation check
    owners += [("dave", dave, 0), ("keeper", keeper_account, 0)]
    trade(s, dave, 0, "ETH", 8 * WAD, gas, "open long (dave, 8x)")
    keeper = Keeper(s, keeper_account)
    keeper.run_once(chain)  # learns the accounts; nothing to do yet
    for price in (3050, 2950, 2900):
        s.set_price("ETH", price)
        s.set_price("BTC", 60_000)
        v, _, _, maint = vault.health(dave, 0)
        console.print(f"  ETH index {price:,}: dave's account value {fmt(v)}, maintenance {fmt(maint)}"
                      f"{'  [red]liquidatable[/]' if v < maint else ''}")
    for label, wait in (("keeper pass", 0), ("keeper pass 15 min later", 900)):
        chain.pending_timestamp += wait
        s.set_price("ETH", 2900)
        s.set_price("BTC", 60_000)
        actions = keeper.run_once(chain)
        console.print(f"  {label}: " + ("; ".join(str(a) for a in actions) if actions else "nothing to do"))
        for a in actions:
            gas[a.kind] = a.gas
    engine = s.liquidation
    a = engine.auction(1)
    size, _, _ = ch.position(dave, 0, s.markets["ETH"].id)
    v, _, _, maint = vault.health(dave, 0)
    state = "healthy again" if v >= maint else "[red]still liquidatable[/]"
    console.print(f"  dave keeps {fmt(size, 3)} ETH (auction remainder {fmt(a.size, 3)}), account value {fmt(v)} vs "
                  f"maintenance {fmt(maint)} (health {v / maint if maint else float('inf'):.2f}): {state}; the keeper's repegs kept the vAMM "
                  f"at the index ({fmt(ch.spotPrice(s.markets['ETH'].id))})")
    console.print(positions_table(s, owners))

    console.rule("[bold]8. delayed orders: every trade above was an order through the router (docs/orders.md)")
    btc = s.markets["BTC"]
    router = s.router
    try:
        ch.openPosition(0, btc.id, WAD // 100, with_slippage(ch, btc.id, WAD // 100), chain.pending_timestamp + 600,
                        sender=carol)
        raise AssertionError("a direct trade must be refused in a market with delayed orders")
    except ContractLogicError as err:
        console.print(f"  carol buys BTC directly: refused, [yellow]{custom_error(ch, err)[0]}[/] (on the deep curve an "
                      "order bought just before an oracle update it saw coming would take the update's move from the "
                      "pool for little impact)")
    fee_wei = router.minKeeperFee()
    tx = router.commitOrder(0, btc.id, WAD // 100, with_slippage(ch, btc.id, WAD // 100, 100),
                            chain.pending_timestamp + 600, sender=carol, value=fee_wei)
    gas["commitOrder"] = tx.gas_used
    oid = tx.decode_logs(router.OrderCommitted)[0].orderId
    status = ("none", "pending", "executable", "lapsed")
    console.print(f"  carol commits a 0.01 BTC buy with a {fee_wei / 1e18:g} ETH keeper fee: order {oid}, "
                  f"{status[router.orderStatus(oid)[0]]} until BTC's next oracle round  [dim]({tx.gas_used:,} gas)[/]")
    s.set_price("BTC", 60_000)  # the feed's next round
    actions = keeper.run_once(chain)
    for a in actions:
        gas[a.kind] = a.gas
    done = [a for a in actions if a.kind == "execute"]
    size, _, _ = ch.position(carol, 0, btc.id)
    console.print("  the feed publishes a round; the keeper's pass executes it and earns the fee: "
                  + ("; ".join(str(a) for a in done) if done else "[red]not executed[/]")
                  + f"; carol holds {fmt(size, 3)} BTC at the price that round set")
    assert done and size == WAD // 100, "the delayed order must execute after the next round"

    console.rule("[bold]9. the ledger")
    end_total = ledger_total(s, owners) + amount * s.token_scale - extra
    t = Table(show_header=False)
    t.add_row("pool balance", f"{fmt(vault.poolBalance())} USD (seed 10,000,000.00: fees, funding imbalance "
              "and traders' realized PnL)")
    nav["at the end"] = pool.navWad()
    t.add_row("pool NAV", "; ".join(f"{k} {fmt(v)}" for k, v in nav.items()) + " USD: the pool's cash minus what "
              "closing every open position against the vAMMs would pay traders, less bad debt set aside "
              "beyond the insurance fund (ERC-4626 vLP shares)")
    t.add_row("insurance fund", f"{fmt(vault.insuranceFund(), 4)} USD (20 % of fees + liquidation penalties)")
    t.add_row("conservation", f"traders + pool + insurance before {fmt(start_total)}, after (incl. withdrawn) "
              f"{fmt(end_total)}: {'exact' if start_total == end_total else 'MISMATCH'}")
    console.print(t)
    assert start_total == end_total, "the ledger must be conserved to the wei"
    g = Table(title="gas used in this run")
    g.add_column("operation")
    g.add_column("gas", justify="right")
    for k, v in gas.items():
        g.add_row(k, f"{v:,}")
    console.print(g)
    simulate(console)
    console.print(f"[bold green]demo finished[/] in {time.perf_counter() - started:.0f} s; the simulator's plots are "
                  f"in {DEMO_OUT}/ (docs/simulator.md explains them)")


def simulate(console: Console) -> None:
    """Section 10: a short crash simulation with the agent-based simulator, on its own Anvil chain (the
    embedded chain runs the EVM in Python, several times slower for this many transactions)."""
    console.rule(f"[bold]10. a simulated crash: {SIM_STEPS} steps of 5 min, traders, LPs and the keeper as agents")
    cmd = [sys.executable, "-m", "vperp.sim", "--network", "ethereum:local:foundry", "--scenario", "crash",
           "--steps", str(SIM_STEPS), "--seed", "1", "--out", str(DEMO_OUT)]
    console.print(f"  [dim]$ python -m vperp.sim {' '.join(cmd[3:])}[/]")
    result = subprocess.run(cmd, text=True, capture_output=True)
    if result.returncode != 0:
        raise click.ClickException(f"the simulation failed:\n{result.stdout}{result.stderr}")
    for line in result.stdout.splitlines():
        if line.startswith("  "):
            console.print(line.rstrip(), soft_wrap=True)
    plots = sorted(p.name for p in DEMO_OUT.glob("*.png"))
    console.print(f"  plots in [bold]{DEMO_OUT.resolve()}[/]: {', '.join(plots)}; per-step state in steps.csv")
