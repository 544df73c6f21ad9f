"""A newcomer's path, end to end: an Anvil started by hand, `ape run deploy --rpc URL`, then docs/cast.md.

The module starts Anvil on a free port with a chain id that is not Anvil's default (7357), as a user
would in a terminal of their own (with its genesis at a fixed time: GENESIS below), and drives it only through the commands the docs give: the deploy
command as a subprocess, then every `sh` block of docs/cast.md in order, as written (the page is the
script, so it cannot drift from what works). Two lines are pointed at the test's own node and folder:
`export ETH_RPC_URL=...` and `DEP=deployments/...` (records go to a temporary folder through
$VPERP_DEPLOYMENTS, and cast's signature cache to a temporary $HOME). Before the deploy, records of
other chains are put where the deploy looks: they must neither block it nor be taken for this chain.

Also here: docs/integrators.md's web3.py walkthrough, run as written against an Anvil of its own; the refusals of
the deploy command (an unreachable URL, two targets, a host Ape would not
use), each a one-line message, a nonzero exit and nothing written; and abi/signatures.json against
the ABI files it is generated from.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest

from vperp.chain_io import free_port
from vperp.units import GAS_HEADROOM_PER_MARKET

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "cast.md"
CHAIN_ID = 7357  # not Anvil's default 31337, nor Ape's local 1337
# Anvil's genesis block, one minute into an hour: its blocks follow the wall clock from there, so the page's run
# (seconds; section 8 moves the clock a day and a second) never meets an hour boundary by chance and measures the
# same gas on every run. What a boundary does to gas is tests/sdk/test_gas_headroom.py's; this module checks that the
# page's gas limit covers its calls with that headroom.
GENESIS = 1_800_000_060
DOC_RPC_LINE = "export ETH_RPC_URL=http://127.0.0.1:8545"
DOC_DEP_PREFIX = "DEP=deployments/"
SKIP_MARK = "<!-- not run by the test"


def _native(tool: str) -> Path | None:
    """The platform binary npm installed (the npm wrapper in node_modules/.bin hides exit codes)."""
    found = sorted((ROOT / "node_modules" / "@foundry-rs").glob(f"{tool}-*/bin/{tool}"))
    return found[0] if found else None


pytestmark = pytest.mark.skipif(_native("anvil") is None or _native("cast") is None or shutil.which("jq") is None,
                                reason="needs Anvil and cast from npm (./run.sh setup) and jq")


def doc_script(text: str, rpc: str, deployments: Path) -> str:
    """The `sh` blocks of docs/cast.md as one bash script, the two test-specific lines replaced."""
    lines = text.splitlines()
    blocks, i = [], 0
    while i < len(lines):
        fence = re.match(r"^(\s*)```sh\s*$", lines[i])
        if not fence:
            i += 1
            continue
        indent, j = fence.group(1), i + 1
        while not re.match(r"^\s*```\s*$", lines[j]):
            j += 1
        before = next((line for line in reversed(lines[:i]) if line.strip()), "")
        if not before.startswith(SKIP_MARK):
            blocks.append("\n".join(line[len(indent):] for line in lines[i + 1:j]))
        i = j + 1
    script = "\n".join(blocks)
    assert script.count(DOC_RPC_LINE) == 1 and script.count(DOC_DEP_PREFIX) == 1, "the doc's setup lines moved"
    script = script.replace(DOC_RPC_LINE, f"export ETH_RPC_URL={rpc}")
    script = script.replace(DOC_DEP_PREFIX, f"DEP={deployments}/")
    return "set -euo pipefail\n" + script + "\n"


def _rpc(url: str, method: str, params=()):
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}).encode()
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        return json.loads(resp.read())["result"]


@contextmanager
def _own_anvil():
    """An Anvil of the user's own: a free port, chain id 7357, the fixed genesis; stopped on leaving."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([str(_native("anvil")), "--port", str(port), "--chain-id", str(CHAIN_ID), "--silent",
                             "--timestamp", str(GENESIS)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        for _ in range(1200):
            if proc.poll() is not None:
                pytest.fail(f"anvil exited: {proc.stderr.read().decode()}")
            try:
                _rpc(url, "eth_chainId")
                break
            except OSError:
                time.sleep(0.05)  # waits for a process, not chain time
        else:
            pytest.fail("anvil did not answer within 60 s")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def anvil():
    """The module's Anvil (`_own_anvil`), shared by its tests."""
    with _own_anvil() as url:
        yield url


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """The subprocesses' environment: records and cast's cache in temporary folders."""
    home = tmp_path_factory.mktemp("home")
    deployments = tmp_path_factory.mktemp("deployments")
    e = dict(os.environ, HOME=str(home), VPERP_DEPLOYMENTS=str(deployments), NO_COLOR="1", COLUMNS="200")
    e.pop("APE_FOUNDRY_HOST", None)
    return e


def _run(args, env, timeout=120):
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def _deploy(env, *args):
    return _run(["./run.sh", "ape", "run", "deploy", *args], env)


def test_deploy_by_url_then_the_cast_page_places_a_trade_and_decodes_a_revert(anvil, env):
    deployments = Path(env["VPERP_DEPLOYMENTS"])
    genesis = _rpc(anvil, "eth_getBlockByNumber", ["0x0", False])["hash"]
    # records of other chains where the deploy looks: an old-format one (no genesis) for chain 1337, and
    # one for this chain id written by an Anvil since restarted (another block 0)
    template = {"format": "vperp-deployment/1", "network": "local", "block": 1, "markets": {}, "config": {},
                "abi": {}, "contracts": {n: "0x" + "11" * 20 for n in ("Vault", "ClearingHouse", "LiquidationEngine",
                                                                        "LiquidityPool", "AmmController", "collateral")}}
    (deployments / "local.json").write_text(json.dumps({**template, "chain_id": 1337}))
    stale = {**template, "format": "vperp-deployment/2", "chain_id": CHAIN_ID, "genesis": "0x" + "ab" * 32}
    (deployments / f"local-{CHAIN_ID}.json").write_text(json.dumps(stale))

    script = doc_script(DOC.read_text(), anvil, deployments)
    done = _run(["bash", "-c", script], env, timeout=240)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-4000:]

    # the deploy reached the node the user named and said which chain it is
    assert f"deploying vPerp to 'local' at {anvil} (chain id {CHAIN_ID})" in out
    assert "ignoring" in out and "earlier chain" in out  # the restarted chain's record, named and passed over
    record = json.loads((deployments / f"local-{CHAIN_ID}.json").read_text())
    assert (record["chain_id"], record["genesis"], record["format"]) == (CHAIN_ID, genesis, "vperp-deployment/2")
    assert json.loads((deployments / "local.json").read_text())["chain_id"] == 1337  # left as it was
    assert _rpc(anvil, "eth_getCode", [record["contracts"]["ClearingHouse"], "latest"]) != "0x"

    # the trade of section 3: 2 ETH bought by account 1, read back by section 4
    assert re.search(r"^2000000000000000000 \[2e18\]$", out, re.M), out[-4000:]
    # ... and its PositionChanged event found and decoded: quoteDelta, the ~6,001 USD paid, is negative
    assert re.search(r"^-\d+ \[-6\.\d+e21\]$", out, re.M), out[-4000:]
    # the revert of section 6, named from the signatures cast loaded
    assert re.search(r"reverted: SlippageExceeded\(int256,uint256\) -\d+ \[-3e21\] 1", out), out[-4000:]
    # section 7's kick and take, section 8's cooldown then redeem
    assert "reverted: CooldownNotPassed(uint256,uint256)" in out
    assert "status               1 (success)" in out and "(failed)" not in out
    # the page's gas limit: every transaction's gas, plus the headroom of the deployment's two markets, fits under it
    limit = int(re.search(r"^export ETH_GAS_LIMIT=(\d+)", DOC.read_text(), re.M).group(1))
    used = [int(g) for g in re.findall(r"^gasUsed\s+(\d+)$", out, re.M)]
    assert len(used) >= 15 and max(used) + 2 * GAS_HEADROOM_PER_MARKET <= limit, (max(used), limit)

    # the same command again: already deployed, nothing sent
    head = _rpc(anvil, "eth_blockNumber")
    again = _deploy(env, "--rpc", anvil, "--config", "deployments/config/plain.yaml")
    assert again.returncode == 0 and "already deployed" in again.stdout + again.stderr, again.stderr[-2000:]
    assert _rpc(anvil, "eth_blockNumber") == head


def test_the_web3_walkthrough_runs_as_written(env, tmp_path):
    """docs/integrators.md's web3.py walkthrough, saved as trade.py and run as the page says (from a folder holding
    `deployments/` and `abi/`), against an Anvil of its own with the page's deploy command: it deposits, trades,
    reads and closes, each transaction sent with its gas headroom."""
    text = (ROOT / "docs" / "integrators.md").read_text()
    code = re.search(r"## Worked example with web3.py.*?```python\n(.*?)\n```", text, re.S).group(1)
    assert "fn.estimate_gas() + 120_000 * len(dep[\"markets\"])" in code  # the headroom of "Gas limits"
    assert GAS_HEADROOM_PER_MARKET == 120_000
    (tmp_path / "deployments").mkdir()
    env = dict(env, VPERP_DEPLOYMENTS=str(tmp_path / "deployments"))
    with _own_anvil() as anvil:
        done = _deploy(env, "--rpc", anvil, "--config", "deployments/config/plain.yaml")
        assert done.returncode == 0, done.stderr[-2000:]
        (tmp_path / "abi").symlink_to(ROOT / "abi")
        (tmp_path / "trade.py").write_text(code)
        run = subprocess.run([sys.executable, "trade.py"], cwd=tmp_path, env=dict(env, RPC_URL=anvil),
                             capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    assert re.search(r"^bought 2\.0 ETH for [\d,]+\.\d\d USD", run.stdout, re.M), run.stdout
    assert re.search(r"^new: 0x\w+ -2\.0 realized", run.stdout, re.M), run.stdout


@pytest.mark.parametrize("args, message", [
    (["--rpc", "http://127.0.0.1:{closed}"], "cannot reach http://127.0.0.1:{closed}"),
    (["--rpc", "127.0.0.1:8545"], "--rpc wants an http(s) URL"),
    (["--rpc", "{anvil}", "--network", "ethereum:local:foundry"], "give one target"),
    (["--network", "ethereum:local:foundry", "--provider-settings", '{{"host": "{anvil}"}}'],
     "type `./run.sh ape run deploy --rpc {anvil}`"),
    (["--network", "ethereum:local:{anvil}"], "has chain id 7357, but Ape's 'local' network would sign for chain id 1337"),
], ids=["unreachable", "not a URL", "two targets", "host Ape would not use", "URL network with another chain id"])
def test_deploy_refuses_bad_targets_in_one_line_and_writes_nothing(anvil, env, tmp_path, args, message):
    closed = free_port()
    env = dict(env, VPERP_DEPLOYMENTS=str(tmp_path))
    head = _rpc(anvil, "eth_blockNumber")
    done = _deploy(env, *[a.format(anvil=anvil, closed=closed) for a in args])
    assert done.returncode != 0
    errors = [line for line in done.stderr.splitlines() if line.startswith("Error")]
    assert len(errors) == 1 and message.format(anvil=anvil, closed=closed) in errors[0], done.stderr[-2000:]
    assert list(tmp_path.iterdir()) == []
    assert _rpc(anvil, "eth_blockNumber") == head  # nothing sent either


def test_shipped_signatures_match_the_abi_files():
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import export_abi
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    shipped = json.loads((ROOT / "abi" / "signatures.json").read_text())
    assert shipped == export_abi.signatures_of(ROOT / "abi"), "run `./run.sh ape run export_abi`"
    # what the cast page relies on
    assert shipped["errors"]["0xc0816290"] == "SlippageExceeded(int256,uint256)"
    assert "openPosition(uint32,uint32,int256,uint256,uint256)" in shipped["functions"].values()
    assert any(sig.startswith("PositionChanged(") for sig in shipped["events"].values())


def test_records_are_found_by_chain_id_and_block_0_and_old_records_still_read(tmp_path):
    from vperp.client import deployment_path, find_deployment

    folder = tmp_path / "deployments"
    folder.mkdir()
    base = {"network": "local", "block": 1, "markets": {}, "config": {}, "abi": {},
            "contracts": {n: "0x" + "11" * 20 for n in ("Vault", "ClearingHouse", "LiquidationEngine", "LiquidityPool",
                                                         "AmmController", "collateral")}}
    here, gone = "0x" + "aa" * 32, "0x" + "bb" * 32

    def put(name, **fields):
        (folder / name).write_text(json.dumps({**base, **fields}))
        return folder / name

    old = put("local.json", format="vperp-deployment/1", chain_id=31337)  # written before `genesis` was kept
    put("sepolia.json", format="vperp-deployment/1", chain_id=11155111)
    (folder / "notes.json").write_text("[1, 2]")  # not a record: skipped
    found, earlier = find_deployment(31337, here, tmp_path)
    assert found.path == old and earlier == []  # an old record matches on the chain id alone
    restarted = put("local-31337.json", format="vperp-deployment/2", chain_id=31337, genesis=gone)
    found, earlier = find_deployment(31337, here, tmp_path)
    assert found.path == old and [f.path for f in earlier] == [restarted]  # another block 0: not this chain
    current = put("local-31337-copy.json", format="vperp-deployment/2", chain_id=31337, genesis=here)
    found, _ = find_deployment(31337, here, tmp_path)
    assert found.path == current  # the same block 0 wins over an old record
    assert find_deployment(4242, here, tmp_path) == (None, [])
    assert deployment_path(31337, "ethereum", "local", tmp_path) == folder / "local-31337.json"
    assert deployment_path(10, "optimism", "mainnet", tmp_path) == folder / "optimism-mainnet-10.json"
