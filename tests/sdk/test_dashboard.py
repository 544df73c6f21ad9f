"""The operators' dashboard (vperp/dashboard.py, scripts/dashboard.py; docs/dashboard.md).

State worth showing is made on the embedded chain (`demo_state`: an LP deposit, trades in both markets,
three hours of funding, an ETH index drop and a kick five minutes old); the server reads it through the
Ape provider's web3 object. Checked:
- `/api/state` equals the contracts' own views to the wei, field by field, with and without a PerpReader;
- the page in headless Chromium (Debian's `chromium`) renders each market's symbol, the auction's discount
  and the pool's share price, and its screenshot is a PNG of the asked size that is not one colour;
- a node that is gone gives HTTP 503 with the reason and a banner on the page, not a blank page;
- bad input (missing or malformed file, a record of another chain, a bad port, an unreachable node) is a
  one-line error and nothing starts.
Chain time is set explicitly (tests/helpers/clock.py); nothing here reads the wall clock.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner
from web3 import HTTPProvider, Web3

from vperp import dashboard as dash
from vperp.chain_io import free_port
from vperp.client import WAD, auction_price, build_record, write_record

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium")
NO_CHROMIUM = "chromium is not installed (Debian package `chromium`; ./run.sh setup installs it when run as root)"
WIDTH, HEIGHT = 1280, 1600
SERVERS = {}  # url -> the server (its read counter)


def get(url: str):
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def chromium(*args: str, url: str) -> str:
    out = subprocess.run([CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
                          "--disable-extensions", "--hide-scrollbars", f"--window-size={WIDTH},{HEIGHT}",
                          "--virtual-time-budget=4000", *args, url],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


@pytest.fixture(scope="module")
def shown(system, accounts, chain):
    return dash.demo_state(system, accounts, chain)


@pytest.fixture(scope="module")
def record_file(system, chain, shown, tmp_path_factory):
    path = tmp_path_factory.mktemp("deployments") / f"local-{chain.chain_id}.json"
    write_record(path, build_record(system, system.config, chain, 1))
    return path


@pytest.fixture(scope="module")
def server(chain, record_file):
    d = dash.Dashboard(chain.provider.web3, dash.load_record(record_file), record_file)
    reads = []
    read = d.state
    d.state = lambda: reads.append(1) or read()  # counts the page's polls
    srv = dash.serve(d, port=0, refresh=1)
    srv.reads = reads
    SERVERS[f"http://127.0.0.1:{srv.server_address[1]}"] = srv
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def state_of(url: str) -> dict:
    code, body = get(url + "/api/state")
    assert code == 200, body
    return json.loads(body)


def raw(x) -> int:
    return int(x["raw"])


# ============================================================================ /api/state


def test_api_state_equals_the_chain_views_to_the_wei(system, chain, shown, server):
    s = state_of(server)
    head = chain.blocks.head
    assert s["ok"] and s["block"] == {"number": head.number, "timestamp": head.timestamp, "time": dash._iso(head.timestamp)}
    assert s["chain_id"] == chain.chain_id and s["reader"] is True
    ch, reader, vault, pool, engine = system.clearing_house, system.reader, system.vault, system.pool, system.liquidation

    assert [m["symbol"] for m in s["markets"]] == ["ETH", "BTC"]
    for m in s["markets"]:
        mid = system.markets[m["symbol"]].id
        summary = reader.marketSummary(mid)
        applied, target, premium, mark_twap, index_twap, p1, p8 = ch.fundingState(mid)
        state, params = ch.marketState(mid), ch.marketParams(mid)
        assert m["source"] == "PerpReader.marketSummary" and m["index_valid"] is True
        expected = {
            "index": ch.indexPrice(mid), "spot": ch.spotPrice(mid), "mark_twap": mark_twap, "index_twap": index_twap,
            "premium": premium, "applied_rate": applied, "target_rate": target, "projected_1h": p1,
            "projected_8h": p8, "long_oi": state.longOpenInterest, "short_oi": state.shortOpenInterest,
            "max_open_interest": params.maxOpenInterest, "max_oi_pool_ratio": params.maxOiPoolRatio,
            "oi_notional_cap": max(vault.poolBalance(), 0) * params.maxOiPoolRatio // WAD,
            "pool_balance": vault.poolBalance(),
        }
        assert {k: raw(m[k]) for k in expected} == expected
        assert summary.oiNotionalCap == expected["oi_notional_cap"]
        assert m["pause_level"]["raw"] == str(vault.pauseLevel())
        assert m["last_update"] == state.lastUpdate
        fs = m["funding_sample"]
        assert fs["age"] == head.timestamp - state.lastUpdate
        assert fs["unsampled_hours"] == max(0, head.timestamp // 3600 - state.lastUpdate // 3600 - 1)
        assert fs["stale"] is (fs["unsampled_hours"] > 0)
    eth = s["markets"][0]
    assert raw(eth["applied_rate"]) != 0 and raw(eth["premium"]) > 0  # funding is under way
    assert raw(eth["long_oi"]) == 48 * WAD and raw(s["markets"][1]["short_oi"]) == WAD
    for m in s["markets"]:  # every number carries its unit
        for k, v in m.items():
            if isinstance(v, dict) and "decimals" in v:
                assert v["unit"] and v["text"].endswith(v["unit"]), (k, v)

    # auctions: the one kicked, five minutes old
    (a,) = s["auctions"]
    (kick,) = shown["kick"].events.filter(engine.Kick)
    aid = kick.auctionId
    on_chain = engine.auction(aid)
    assert (a["id"], a["owner"], a["subaccount"], a["market"]) == (aid, on_chain.owner, on_chain.subaccount, "ETH")
    assert (raw(a["size"]), raw(a["start_index"]), a["start_time"], a["redos"], raw(a["notional"])) == (
        on_chain.size, on_chain.startIndex, on_chain.startTime, on_chain.redos, on_chain.notional)
    age = head.timestamp - on_chain.startTime
    assert a["age"] == age and 300 <= age < 310
    discount = engine.discountAt(on_chain.marketId, age)
    index = ch.indexPrice(on_chain.marketId)
    assert raw(a["discount"]) == discount > 0 and raw(a["index"]) == index == 2750 * WAD
    assert raw(a["price"]) == auction_price(on_chain.size, index, discount) and a["expired"] is False
    assert engine.auctionPrice(aid) == raw(a["price"])  # the engine's own price, read at the same block

    p = s["pool"]
    dec = pool.decimals()
    assert (raw(p["nav"]), raw(p["total_assets"]), raw(p["deposit_assets"]), raw(p["total_supply"]),
            raw(p["share_price"]), raw(p["reserve_required"]), raw(p["withdrawable"]),
            raw(p["uncovered_bad_debt"])) == (
        pool.navWad(), pool.totalAssets(), pool.depositAssets(), pool.totalSupply(),
        pool.convertToAssets(10 ** (dec + 6)), pool.reserveRequired(), pool.withdrawableAssets(),
        pool.uncoveredBadDebt())
    assert (p["lp_flows_suspended"], p["suspended_by"]) == tuple(pool.lpFlowsSuspended())
    assert p["share_price"]["unit"] == "USDC/share" and p["total_supply"]["decimals"] == dec
    v = s["vault"]
    assert (raw(v["insurance_fund"]), raw(v["pool_balance"]), raw(v["pending_bad_debt"]), v["pause_level"]["raw"]) == (
        vault.insuranceFund(), vault.poolBalance(), vault.pendingBadDebt(), str(vault.pauseLevel()))
    assert raw(v["insurance_fund"]) > 0


def test_funding_sample_marks_an_hour_no_block_touched():
    """The state's `funding_sample` (docs/dashboard.md): whole hours since the last accrual's hour count as
    unsampled; the hour after it does not (its first block samples)."""
    h = 1_000 * 3600
    assert dash.funding_sample(h + 10, h + 10) == {"age": 0, "unsampled_hours": 0, "stale": False, "text": "0 min ago"}
    assert dash.funding_sample(h + 3599, 2 * 3600 + h - 1)["unsampled_hours"] == 0  # the next hour: not yet missed
    s = dash.funding_sample(h + 3599, h + 2 * 3600)
    assert s["unsampled_hours"] == 1 and s["stale"] and s["text"] == "1.0 h ago; 1 h without a funding sample"
    assert dash.funding_sample(h, h + 5 * 3600 + 30)["unsampled_hours"] == 4


def test_api_state_without_a_reader_reads_the_clearing_house_views(system, chain, server, record_file, tmp_path):
    record = json.loads(record_file.read_text())
    del record["contracts"]["PerpReader"], record["abi"]["PerpReader"]
    path = tmp_path / "old.json"
    write_record(path, record)
    d = dash.Dashboard(chain.provider.web3, dash.load_record(path), path)
    old, new = d.state(), state_of(server)
    assert old["reader"] is False and all(m["source"] == "ClearingHouse views" for m in old["markets"])
    for a, b in zip(old["markets"], new["markets"]):
        assert {k: v for k, v in a.items() if k != "source"} == {k: v for k, v in b.items() if k != "source"}
    assert (old["auctions"], old["pool"], old["vault"]) == (new["auctions"], new["pool"], new["vault"])


def test_page_is_self_contained_and_polls_at_the_refresh_interval(server):
    code, body = get(server + "/")
    html = body.decode()
    assert code == 200 and "const REFRESH_MS = 1000;" in html and "setTimeout(poll, REFRESH_MS)" in html
    assert "<style>" in html and "<script>" in html
    assert not re.search(r"(src|href)=\"(https?:)?//", html)  # nothing fetched from elsewhere
    assert dash.page(2.5).decode().count("const REFRESH_MS = 2500;") == 1


def test_figures_are_formatted_with_their_units():
    assert dash.fig(3_000 * WAD + WAD // 2, 18, "USD") == {
        "raw": str(3_000 * WAD + WAD // 2), "decimals": 18, "unit": "USD", "text": "3,000.50 USD"}
    assert dash.fig(-125 * 10**12, 18, "%/h", 5, percent=True)["text"] == "-0.01250 %/h"
    assert dash.fig(1_000_123, 6, "USDC", 2)["text"] == "1.00 USDC"


# ============================================================================ the page in Chromium


@pytest.mark.skipif(CHROMIUM is None, reason=NO_CHROMIUM)
def test_page_in_headless_chromium_shows_markets_auction_and_share_price(server, tmp_path):
    from PIL import Image

    s = state_of(server)
    reads = SERVERS[server].reads
    before = len(reads)
    dom = chromium("--dump-dom", url=server + "/")
    assert len(reads) - before >= 2  # it polled again after the first read (refresh 1 s, 4 s of page time)
    for m in s["markets"]:
        assert f"<b>{m['symbol']}</b>" in dom
    (a,) = s["auctions"]
    assert a["discount"]["text"] in dom and a["price"]["text"] in dom
    assert s["pool"]["share_price"]["text"] in dom and s["pool"]["nav"]["text"] in dom
    assert f"block {s['block']['number']} " in dom and s["block"]["time"] in dom
    assert re.search(r'<div id="banner" role="alert"( class="")?></div>', dom)  # no error

    shot = tmp_path / "dashboard.png"
    chromium(f"--screenshot={shot}", url=server + "/")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(shot) as img:
        assert img.size == (WIDTH, HEIGHT)
        colours = img.convert("RGB").getcolors(maxcolors=1_000_000)
    assert colours is not None and len(colours) > 50  # text, panels and the header, not a blank page
    if os.environ.get("VPERP_DASHBOARD_SCREENSHOT"):  # docs/img/dashboard.png is written this way
        shutil.copyfile(shot, os.environ["VPERP_DASHBOARD_SCREENSHOT"])


@pytest.mark.skipif(CHROMIUM is None, reason=NO_CHROMIUM)
def test_page_shows_an_error_banner_when_the_node_is_gone(record_file, tmp_path):
    gone = Web3(HTTPProvider(f"http://127.0.0.1:{free_port()}", request_kwargs={"timeout": 2}))
    srv = dash.serve(dash.Dashboard(gone, dash.load_record(record_file), record_file), port=0, refresh=1)
    url = f"http://127.0.0.1:{srv.server_address[1]}"
    try:
        code, body = get(url + "/api/state")
        answer = json.loads(body)
        assert code == 503 and answer["ok"] is False and "Connection" in answer["error"]
        assert "\n" not in answer["error"]
        dom = chromium("--dump-dom", url=url + "/")
        assert 'id="banner" role="alert" class="show">Cannot read the chain: ' in dom
        assert "waiting for the first read" in dom  # the panels stay, empty; the page is not blank
    finally:
        srv.shutdown()
        srv.server_close()


def test_api_state_answers_503_when_the_node_is_gone(record_file):
    gone = Web3(HTTPProvider(f"http://127.0.0.1:{free_port()}", request_kwargs={"timeout": 2}))
    srv = dash.serve(dash.Dashboard(gone, dash.load_record(record_file), record_file), port=0, refresh=1)
    try:
        code, body = get(f"http://127.0.0.1:{srv.server_address[1]}/api/state")
        assert code == 503 and json.loads(body)["ok"] is False
        code, body = get(f"http://127.0.0.1:{srv.server_address[1]}/nothing")
        assert code == 404
    finally:
        srv.shutdown()
        srv.server_close()


# ============================================================================ bad input


def run_cli(*args: str):
    return CliRunner().invoke(dash.cli, list(args))


def one_line_error(result) -> str:
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    return lines[0]


def test_cli_refuses_a_missing_or_malformed_deployment_file(tmp_path):
    assert "deployment file not found" in one_line_error(run_cli("--deployment", str(tmp_path / "none.json")))
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert "not valid JSON (line 1)" in one_line_error(run_cli("--deployment", str(bad)))
    bad.write_text(json.dumps({"chain_id": 1}))
    assert "field 'network' is missing" in one_line_error(run_cli("--deployment", str(bad)))


def test_cli_refuses_a_bad_port_refresh_or_rpc(record_file):
    for port in ("-1", "70000"):
        assert "--port must be 0..65535" in one_line_error(run_cli("--deployment", str(record_file), "--port", port))
    assert "--refresh must be a positive" in one_line_error(
        run_cli("--deployment", str(record_file), "--refresh", "0"))
    assert "--rpc must be an http(s) URL" in one_line_error(
        run_cli("--deployment", str(record_file), "--rpc", "ws://x"))
    dead = f"http://127.0.0.1:{free_port()}"
    assert f"cannot reach {dead}" in one_line_error(run_cli("--deployment", str(record_file), "--rpc", dead))


def test_serve_refuses_a_port_in_use(chain, record_file):
    d = dash.Dashboard(chain.provider.web3, dash.load_record(record_file), record_file)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        with pytest.raises(dash.DashboardError, match="cannot listen on 127.0.0.1"):
            dash.serve(d, port=s.getsockname()[1])


def test_ape_script_refuses_a_missing_deployment_file(tmp_path):
    ape = shutil.which("ape")
    if ape is None:
        pytest.skip("ape is not on PATH (run through ./run.sh test)")
    out = subprocess.run([ape, "run", "dashboard", "--deployment", str(tmp_path / "none.json"), "--port", "0"],
                         capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 1
    lines = [line for line in (out.stdout + out.stderr).splitlines() if line.strip()]
    assert lines == [f"Error: deployment file not found: {tmp_path / 'none.json'} (run `ape run deploy --rpc URL` "
                     "or `ape run deploy --network ...` first)"], lines


def test_cli_refuses_a_record_of_another_chain(record_file, chain):
    anvil = ROOT / "node_modules" / ".bin" / "anvil"
    if not anvil.exists():
        pytest.skip("anvil is not installed (./run.sh setup installs it from npm)")
    port = free_port()
    proc = subprocess.Popen([str(anvil), "--port", str(port), "--host", "127.0.0.1", "--silent",
                             "--chain-id", "4242"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        w3 = Web3(HTTPProvider(f"http://127.0.0.1:{port}"))
        for _ in range(400):  # waits for a process to listen, not for chain time
            if proc.poll() is not None:
                pytest.fail("anvil exited at start")
            try:
                w3.eth.block_number
                break
            except Exception:  # noqa: BLE001 - not listening yet
                time.sleep(0.05)  # waits for a process, not chain time
        line = one_line_error(run_cli("--deployment", str(record_file), "--rpc", f"http://127.0.0.1:{port}"))
        assert f"was written for chain id {chain.chain_id}" in line and "has id 4242" in line
    finally:
        proc.terminate()
        proc.wait(10)


def test_demo_state_trades_through_the_router_on_the_shipped_markets(accounts, chain):
    """`ape run dashboard --demo` deploys the shipped markets, which take delayed orders: the demo's trades are orders
    the deployer executes after the next round (`System.trade`), and the state it shows is reached there too."""
    from vperp import deploy
    from vperp.config import default_config

    s = deploy(accounts[0], default_config())
    assert all(s.clearing_house.delayedOrders(m.id) for m in s.markets.values())
    actors = dash.demo_state(s, accounts, chain)
    assert s.router.nextOrderId() == 4  # three orders, each executed
    eth, btc = s.markets["ETH"].id, s.markets["BTC"].id
    assert s.clearing_house.position(actors["whale"], 0, eth)[0] == 40 * WAD
    assert s.clearing_house.position(actors["whale"], 0, btc)[0] == -WAD
    assert s.liquidation.auction(1).size > 0 and actors["kick"].status == 1
