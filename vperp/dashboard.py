"""Operators' dashboard: one local web page over a deployment record, refreshed by polling.

    python -m vperp.dashboard --rpc http://127.0.0.1:8545 --deployment deployments/local-31337.json
    ./run.sh ape run dashboard --network ethereum:local:foundry [--deployment FILE] [--port P] [--refresh S]

`Dashboard(w3, record, path)` reads the whole state through plain web3.py (the ABI files the record names,
so no Ape project or network is needed) at one block: every call is made at the block number read first,
so the figures on the page belong together. `serve(dashboard, port=..., refresh=...)` starts a
`ThreadingHTTPServer` on 127.0.0.1 with two routes:

- `/`: one self-contained HTML page (inline CSS and vanilla JS, nothing fetched from elsewhere) that polls
  `/api/state` every `refresh` seconds and shows an error banner, keeping the last figures, while the node
  cannot be read;
- `/api/state`: JSON. Every figure is `{"raw": "<integer as a string>", "decimals": d, "unit": "...",
  "text": "<the same, formatted with its unit>"}`: `raw` is exactly what the contract returned (WAD
  fractions stay fractions; `text` shows them as percentages), so a reader can check it to the wei.
  A node that cannot be read answers HTTP 503 with `{"ok": false, "error": "..."}`.

Per market: `PerpReader.marketSummary` when the record has a reader, else the ClearingHouse's own views
(`marketState`, `marketParams`, `fundingState`, `indexPrice`) and the Vault's `poolBalance`/`pauseLevel`.
Auctions: the engine keeps no list of live ids, so ids 1..`auctionCount()` are walked and finished ones
(size 0) skipped; each live one's discount is `discountAt(market, block time - startTime)` and its price
the engine's `_price` rule on that discount and the live index (`client.auction_price`). docs/dashboard.md
says which view each panel comes from.
"""
from __future__ import annotations

import datetime as dt
import json
import threading
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import click

from .client import (ABI_FILES, WAD, DeploymentError, auction_price, check_chain, read_deployment)
from .units import AUCTION_CURVES, PAUSE_NO_NEW_RISK, PAUSE_NO_TRADING, PAUSE_WITHDRAW_ONLY

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_REFRESH = 5  # [s]
CURVES = dict(enumerate(AUCTION_CURVES))
PAUSE_LEVELS = {0: "none", PAUSE_NO_NEW_RISK: "no new risk", PAUSE_NO_TRADING: "no trading",
                PAUSE_WITHDRAW_ONLY: "withdrawals only"}


# Positions in the ABI tuples web3 returns (IClearingHouse.MarketState / MarketParams).
S_SPOT, S_LONG_OI, S_SHORT_OI, S_LAST_UPDATE = 2, 3, 4, 9
P_MAX_OI_POOL_RATIO, P_MAX_OPEN_INTEREST = 7, 8


class DashboardError(Exception):
    """Bad input (deployment file, chain, port): one line, nothing started."""


# ----------------------------------------------------------------------------- formatting


def fig(raw: int, decimals: int, unit: str, places: int = 2, percent: bool = False) -> dict:
    """One figure: the exact integer, its scale and unit, and its text (`percent`: a fraction shown x100)."""
    raw = int(raw)
    value = Decimal(raw).scaleb(-decimals)
    if percent:
        value *= 100
    q = value.quantize(Decimal(1).scaleb(-places)) if places else value.quantize(Decimal(1))
    text = f"{q:,.{places}f}"
    return {"raw": str(raw), "decimals": decimals, "unit": unit, "text": f"{text} {unit}".rstrip()}


def _symbol(raw) -> str:
    b = bytes(raw)
    return b.rstrip(b"\0").decode("utf-8", "replace")


def _iso(ts: int) -> str:
    return dt.datetime.fromtimestamp(int(ts), dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


# ----------------------------------------------------------------------------- reading the chain


def load_record(path: str | Path, chain_id: int | None = None, genesis: str | None = None) -> dict:
    """The deployment record at `path`, refused (DashboardError) when missing, malformed or for another chain."""
    try:
        record = read_deployment(path)
        if chain_id is not None:
            check_chain(record, int(chain_id), path, genesis)
    except DeploymentError as e:
        raise DashboardError(str(e)) from None
    if not isinstance(record["markets"], dict) or not all(
            isinstance(m, dict) and isinstance(m.get("id"), int) for m in record["markets"].values()):
        raise DashboardError(f"{path}: markets must map each symbol to an object with an integer id")
    return record


def resolve_abi(record_path: str | Path, rel: str) -> Path:
    """An ABI file the record names: next to its deployments/ folder, in the working directory, or here."""
    p = Path(rel)
    candidates = [p] if p.is_absolute() else [Path(record_path).resolve().parent.parent / p, Path.cwd() / p, ROOT / p]
    for c in candidates:
        if c.is_file():
            return c
    raise DashboardError(f"ABI file {rel} not found (looked in {', '.join(str(c.parent) for c in candidates)})")


class Dashboard:
    """Reads one deployment's state through `w3` (any web3.py `Web3`: HTTP, or Ape's provider's)."""

    def __init__(self, w3, record: dict, path: str | Path):
        self.w3 = w3
        self.record = record
        self.path = Path(path)
        self.lock = threading.Lock()  # one read at a time (the embedded chain is not thread-safe)
        c, abi = record["contracts"], record["abi"]

        def contract(name, address, rel=None):
            file = resolve_abi(self.path, rel or ABI_FILES[name])
            return w3.eth.contract(address=w3.to_checksum_address(address), abi=json.loads(file.read_text()))

        self.vault = contract("Vault", c["Vault"], abi.get("Vault"))
        self.ch = contract("ClearingHouse", c["ClearingHouse"], abi.get("ClearingHouse"))
        self.engine = contract("LiquidationEngine", c["LiquidationEngine"], abi.get("LiquidationEngine"))
        self.pool = contract("LiquidityPool", c["LiquidityPool"], abi.get("LiquidityPool"))
        self.reader = contract("PerpReader", c["PerpReader"], abi.get("PerpReader")) if c.get("PerpReader") else None
        self.markets = {sym: int(m["id"]) for sym, m in record["markets"].items()}
        self._meta = None  # token decimals and symbols, read once

    # -- plumbing

    def _call(self, fn, block):
        return fn.call(block_identifier=block)

    def meta(self, block) -> dict:
        if self._meta is None:
            pool_decimals = self._call(self.pool.functions.decimals(), block)
            try:
                pool_symbol = self._call(self.pool.functions.symbol(), block)
            except Exception:  # noqa: BLE001 - optional metadata
                pool_symbol = "shares"
            token_scale = self._call(self.pool.functions.tokenScale(), block)
            token_decimals = 18 - len(str(token_scale)) + 1
            try:
                erc20 = self.w3.eth.contract(address=self.w3.to_checksum_address(self.record["contracts"]["collateral"]),
                                             abi=json.loads(resolve_abi(self.path, ABI_FILES["IERC20Metadata"]).read_text()))
                token = self._call(erc20.functions.symbol(), block)
            except Exception:  # noqa: BLE001 - a token without symbol(): a neutral name
                token = "tokens"
            self._meta = {"pool_decimals": pool_decimals, "pool_symbol": pool_symbol,
                          "token_decimals": token_decimals, "token": token}
        return self._meta

    # -- the state

    def state(self) -> dict:
        with self.lock:
            head = self.w3.eth.get_block("latest")
            block, ts = int(head["number"]), int(head["timestamp"])
            meta = self.meta(block)
            out = {"ok": True, "chain_id": int(self.record["chain_id"]), "deployment": str(self.path),
                   "block": {"number": block, "timestamp": ts, "time": _iso(ts)},
                   "reader": self.reader is not None}
            out["markets"] = [self.market(sym, mid, block, ts)
                              for sym, mid in sorted(self.markets.items(), key=lambda x: x[1])]
            out["auctions"] = self.auctions(block, ts)
            out["pool"] = self.pool_state(block, meta)
            out["vault"] = self.vault_state(block)
            return out

    def market(self, sym: str, mid: int, block, ts: int) -> dict:
        ch = self.ch.functions
        if self.reader is not None:
            s = self._call(self.reader.functions.marketSummary(mid), block)
            (_, symbol, index_valid, index, spot, mark_twap, index_twap, applied, target, premium, p1, p8,
             pool_balance, oi_cap, _max_long, _max_short, _share, pause, state, params, _fp, _ap) = s
            symbol = _symbol(symbol) or sym
            source = "PerpReader.marketSummary"
        else:
            state = self._call(ch.marketState(mid), block)
            params = self._call(ch.marketParams(mid), block)
            applied, target, premium, mark_twap, index_twap, p1, p8 = self._call(ch.fundingState(mid), block)
            try:
                index, index_valid = self._call(ch.indexPrice(mid), block), True
            except Exception:  # noqa: BLE001 - a stale or invalid feed reverts: shown as such
                index, index_valid = 0, False
            spot = state[S_SPOT]
            pool_balance = self._call(self.vault.functions.poolBalance(), block)
            ratio = params[P_MAX_OI_POOL_RATIO]
            oi_cap = max(pool_balance, 0) * ratio // WAD
            pause = self._call(self.vault.functions.pauseLevel(), block)
            symbol = sym
            source = "ClearingHouse views"
        long_oi, short_oi = state[S_LONG_OI], state[S_SHORT_OI]
        usd = "USD"
        return {
            "symbol": symbol, "id": mid, "source": source, "index_valid": bool(index_valid),
            "index": fig(index, 18, usd), "spot": fig(spot, 18, usd),
            "mark_twap": fig(mark_twap, 18, usd), "index_twap": fig(index_twap, 18, usd),
            "premium": fig(premium, 18, "%", 4, percent=True),
            "applied_rate": fig(applied, 18, "%/h", 5, percent=True),
            "target_rate": fig(target, 18, "%/h", 5, percent=True),
            "projected_1h": fig(p1, 18, "%/h", 5, percent=True),
            "projected_8h": fig(p8, 18, "%/h", 5, percent=True),
            "long_oi": fig(long_oi, 18, symbol, 4), "short_oi": fig(short_oi, 18, symbol, 4),
            "max_open_interest": fig(params[P_MAX_OPEN_INTEREST], 18, symbol, 4),
            "max_oi_pool_ratio": fig(params[P_MAX_OI_POOL_RATIO], 18, "%", 2, percent=True),
            "oi_notional_cap": fig(oi_cap, 18, usd),
            "pool_balance": fig(pool_balance, 18, usd),
            "pause_level": {"raw": str(int(pause)), "text": f"{int(pause)} ({PAUSE_LEVELS.get(int(pause), '?')})"},
            "last_update": int(state[S_LAST_UPDATE]),
            "funding_sample": funding_sample(int(state[S_LAST_UPDATE]), ts),
        }

    def auctions(self, block, ts: int) -> list[dict]:
        e = self.engine.functions
        count = self._call(e.auctionCount(), block)
        out = []
        symbols = {mid: sym for sym, mid in self.markets.items()}
        for aid in range(1, count + 1):
            a = self._call(e.auction(aid), block)
            owner, sub, mid, redos, size, start_index, start_time, notional = a
            if size == 0:
                continue
            sym = symbols.get(mid, f"#{mid}")
            age = max(ts - start_time, 0)
            discount = self._call(e.discountAt(mid, age), block)
            expired = bool(self._call(e.isExpired(aid), block))
            try:
                index = self._call(self.ch.functions.indexPrice(mid), block)
            except Exception:  # noqa: BLE001 - stale feed: no price
                index = None
            price = None if index is None or expired else auction_price(size, index, discount)
            out.append({
                "id": aid, "owner": owner, "subaccount": sub, "market": sym, "market_id": mid, "redos": redos,
                "side": "long" if size > 0 else "short", "size": fig(size, 18, sym, 4),
                "start_index": fig(start_index, 18, "USD"), "start_time": start_time, "age": age,
                "age_text": f"{age // 60} min {age % 60} s", "discount": fig(discount, 18, "%", 4, percent=True),
                "expired": expired, "index": None if index is None else fig(index, 18, "USD"),
                "price": None if price is None else fig(price, 18, "USD"), "notional": fig(notional, 18, "USD"),
            })
        return out

    def pool_state(self, block, meta: dict) -> dict:
        p = self.pool.functions
        d, sd, tok = meta["token_decimals"], meta["pool_decimals"], meta["token"]
        supply = self._call(p.totalSupply(), block)
        million = 10 ** (sd + 6)  # a million shares: the price to 6 more decimals than a token unit
        per_million = self._call(p.convertToAssets(million), block)
        suspended, market = self._call(p.lpFlowsSuspended(), block)
        return {
            "nav": fig(self._call(p.navWad(), block), 18, "USD"),
            "total_assets": fig(self._call(p.totalAssets(), block), d, tok),
            "deposit_assets": fig(self._call(p.depositAssets(), block), d, tok),
            "total_supply": fig(supply, sd, meta["pool_symbol"]),
            "share_price": fig(per_million, d + 6, f"{tok}/share", d + 2),
            "reserve_required": fig(self._call(p.reserveRequired(), block), 18, "USD"),
            "withdrawable": fig(self._call(p.withdrawableAssets(), block), d, tok),
            "uncovered_bad_debt": fig(self._call(p.uncoveredBadDebt(), block), 18, "USD"),
            "lp_flows_suspended": bool(suspended),
            "suspended_by": int(market),
        }

    def vault_state(self, block) -> dict:
        v = self.vault.functions
        pause = self._call(v.pauseLevel(), block)
        return {
            "insurance_fund": fig(self._call(v.insuranceFund(), block), 18, "USD"),
            "pool_balance": fig(self._call(v.poolBalance(), block), 18, "USD"),
            "pending_bad_debt": fig(self._call(v.pendingBadDebt(), block), 18, "USD"),
            "pause_level": {"raw": str(int(pause)), "text": f"{int(pause)} ({PAUSE_LEVELS.get(int(pause), '?')})"},
        }


# ----------------------------------------------------------------------------- the page

PAGE = (Path(__file__).resolve().parent / "dashboard_static" / "index.html")


def page(refresh: float) -> bytes:
    return PAGE.read_text().replace("__REFRESH_MS__", str(int(refresh * 1000))).encode()


def one_line(err: BaseException) -> str:
    text = "; ".join(line.strip() for line in str(err).splitlines() if line.strip())
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def make_handler(dashboard: Dashboard, refresh: float):
    html = page(refresh)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # quiet: the terminal shows only what the CLI prints
            pass

        def _send(self, code: int, body: bytes, kind: str):
            self.send_response(code)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):  # noqa: N802 - http.server's name
            route = self.path.split("?", 1)[0]
            if route in ("/", "/index.html"):
                self._send(200, html, "text/html; charset=utf-8")
            elif route == "/api/state":
                try:
                    body, code = dashboard.state(), 200
                except Exception as e:  # noqa: BLE001 - a node that is gone or answers nonsense: say so
                    body, code = {"ok": False, "error": one_line(e)}, 503
                self._send(code, json.dumps(body).encode(), "application/json")
            else:
                self._send(404, b"not found", "text/plain")

    return Handler


def serve(dashboard: Dashboard, port: int = 0, refresh: float = DEFAULT_REFRESH, host: str = "127.0.0.1"):
    """Start serving in a daemon thread; returns the server (`server.server_address[1]` is the port,
    `server.shutdown()` stops it)."""
    check_port(port)
    if not refresh > 0:
        raise DashboardError(f"--refresh must be a positive number of seconds, got {refresh}")
    try:
        server = ThreadingHTTPServer((host, port), make_handler(dashboard, refresh))
    except OSError as e:
        raise DashboardError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True, name="vperp-dashboard").start()
    return server


def check_port(port) -> None:
    if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
        raise DashboardError(f"--port must be 0..65535, got {port!r}")


# ----------------------------------------------------------------------------- state worth showing


def funding_sample(last_update: int, now: int) -> dict:
    """Whether the market's funding target was re-sampled every hour up to `now`: the ClearingHouse samples it in the
    first block of an hour that touches the market; an hour no block touched is charged at the next touch's sample
    (docs/funding.md), so hours without samples mean the keeper is not poking. `unsampled_hours`: whole hours since
    the last accrual's hour with no sample; `stale` when there is one."""
    hours = max(0, now // 3600 - last_update // 3600 - 1)
    age = max(0, now - last_update)
    text = f"{age // 60} min ago" if age < 3600 else f"{age / 3600:.1f} h ago"
    if hours:
        text += f"; {hours} h without a funding sample"
    return {"age": age, "unsampled_hours": hours, "stale": hours > 0, "text": text}


def demo_state(system, accounts, chain) -> dict:
    """Deploy-side helper for the tests and `ape run dashboard --demo`: an LP deposit, trades in both
    markets, funding under way, and an auction kicked after an ETH index drop. Returns the actors."""
    deployer, trader, whale, lp, keeper = accounts[0], accounts[1], accounts[2], accounts[3], accounts[4]
    ch, pool, usdc = system.clearing_house, system.pool, system.collateral
    units = system.units(200_000)
    usdc.mint(lp, units, sender=lp)
    usdc.approve(pool, units, sender=lp)
    pool.deposit(units, lp, sender=lp)
    system.fund(whale, 200_000)
    system.fund(trader, 3_000)
    system.fund(keeper, 50_000)

    def trade(who, sym, base):
        m = system.markets[sym]
        q, _ = ch.quote(m.id, base)
        limit = (-q) * 1005 // 1000 if base > 0 else q * 995 // 1000
        system.trade(who, 0, sym, base, limit, chain.pending_timestamp + 600)  # through the router where delayed

    trade(whale, "ETH", 40 * WAD)
    trade(whale, "BTC", -WAD)
    trade(trader, "ETH", 8 * WAD)
    for _ in range(3):  # three hours: funding accrues (mark above index in ETH, below in BTC)
        chain.pending_timestamp += 3600
        system.set_price("ETH", 3000)
        system.set_price("BTC", 60_000)
        ch.pokeFunding(system.markets["ETH"].id, sender=deployer)
        ch.pokeFunding(system.markets["BTC"].id, sender=deployer)
    system.set_price("ETH", 2750)
    system.set_price("BTC", 60_000)
    tx = system.liquidation.kick(trader, 0, system.markets["ETH"].id, keeper, sender=keeper)
    chain.pending_timestamp += 300  # five minutes into the auction
    system.set_price("ETH", 2750)
    system.set_price("BTC", 60_000)
    return {"trader": trader, "whale": whale, "lp": lp, "keeper": keeper, "kick": tx}


# ----------------------------------------------------------------------------- python -m vperp.dashboard


def open_http(rpc: str, deployment: str | Path):
    """Web3 over `rpc` and a Dashboard over `deployment`, checked against the node's chain id and block 0."""
    from web3 import HTTPProvider, Web3

    if not rpc.startswith(("http://", "https://")):
        raise DashboardError(f"--rpc must be an http(s) URL, got {rpc!r}")
    w3 = Web3(HTTPProvider(rpc, request_kwargs={"timeout": 10}))
    record = load_record(deployment)  # the file first: a bad file is an error whatever the node
    try:
        chain_id = w3.eth.chain_id
        h = w3.eth.get_block(0)["hash"]
        genesis = "0x" + bytes(h).hex()
    except Exception as e:  # noqa: BLE001 - unreachable node
        raise DashboardError(f"cannot reach {rpc}: {one_line(e)}") from None
    load_record(deployment, chain_id, genesis)
    return Dashboard(w3, record, deployment)


def run_forever(dashboard: Dashboard, port: int, refresh: float, echo=click.echo) -> None:
    server = serve(dashboard, port, refresh)
    host, bound = server.server_address[:2]
    echo(f"vPerp dashboard for {dashboard.path} (chain id {dashboard.record['chain_id']}): "
         f"http://{host}:{bound}/ (refresh {refresh:g} s); Ctrl-C stops it")
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
        echo("stopped")


@click.command()
@click.option("--rpc", default="http://127.0.0.1:8545", show_default=True, help="the node's JSON-RPC URL")
@click.option("--deployment", required=True, type=click.Path(dir_okay=False), help="deployment record (JSON)")
@click.option("--port", default=8050, show_default=True, type=int, help="port on 127.0.0.1 (0: any free port)")
@click.option("--refresh", default=DEFAULT_REFRESH, show_default=True, type=float, help="seconds between polls")
def cli(rpc, deployment, port, refresh):
    """Serve the operators' dashboard for a deployment on the node at --rpc."""
    try:
        check_port(port)
        if not refresh > 0:
            raise DashboardError(f"--refresh must be a positive number of seconds, got {refresh}")
        dashboard = open_http(rpc, deployment)
        run_forever(dashboard, port, refresh)
    except DashboardError as e:
        raise click.ClickException(str(e)) from None


if __name__ == "__main__":
    cli()
