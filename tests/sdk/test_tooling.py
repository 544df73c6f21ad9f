"""Tooling: config files, the deploy / export_abi / keeper scripts, and the integrator SDK (vperp.client).

The scripts are loaded from scripts/*.py and their functions called in-process against the test chain
(one deployment for the module, written by the deploy script to a temporary deployment file)."""
import json
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import click
import pytest
import yaml
from ape import project
from ape.logging import logger

from helpers.clock import next_hour
from helpers.scripts import load_script
from vperp import MarketConfig, default_config
from vperp.config import concentrated_config, plain_config
from vperp.client import Client, ClientError, DeploymentError, missing_code, read_deployment
from vperp.config_file import ConfigError, check_network, config_to_dict, is_local_network, load_config, parse_config

ROOT = Path(__file__).resolve().parents[2]
from vperp.units import WAD
USDC = 10**6
SEPOLIA = 11_155_111
ETH_FEED = "0x5f4eC3Df9cbd43714FE2740f5E3616155c5b8419"  # Chainlink ETH/USD on mainnet (EIP-55)
TOKEN = "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48"  # USDC on mainnet (EIP-55)




deploy_script = load_script("deploy")
keeper_script = load_script("keeper")
export_script = load_script("export_abi")


# ============================================================================ config files

def _base():
    return {"collateral": "mock", "decimals": 6, "pool_seed": 1000,
            "markets": [{"symbol": "ETH", "price": 3000}, {"symbol": "BTC", "price": 60000}]}


def _with(top=None, market=None, drop_top=(), drop_market=()):
    data = _base()
    data.update(top or {})
    data["markets"][0].update(market or {})
    for k in drop_top:
        del data[k]
    for k in drop_market:
        del data["markets"][0][k]
    return yaml.safe_dump(data, sort_keys=False)


BAD_CONFIGS = {
    "unknown top field": (_with({"colateral": "mock"}), "colateral", "did you mean 'collateral'"),
    "unknown market field": (_with(market={"leverage": 10}), "markets[0].leverage", "unknown field"),
    "number as text": (_with(market={"imr": "ten"}), "markets[0].imr", "must be a number"),
    "boolean for integer": (_with(market={"heartbeat": True}), "markets[0].heartbeat", "must be an integer"),
    "fraction for integer": (_with(market={"twap_window": 900.5}), "markets[0].twap_window", "must be an integer"),
    "list for number": (_with({"pool_seed": [1, 2]}), "pool_seed", "must be a number"),
    "mmr above bound": (_with(market={"mmr": 0.6}), "markets[0].mmr", "at most 0.5"),
    "imr not above mmr": (_with(market={"imr": 0.05}), "markets[0].imr", "greater than mmr"),
    "taker fee above bound": (_with(market={"taker_fee": 0.02}), "markets[0].taker_fee", "at most 0.01"),
    "heartbeat below bound": (_with(market={"heartbeat": 30}), "markets[0].heartbeat", "at least 60"),
    "funding period of 0 h": (_with(market={"funding_period_hours": 0}), "markets[0].funding_period_hours",
                              "at least 1"),
    "funding period above 720 h": (_with(market={"funding_period_hours": 721}), "markets[0].funding_period_hours",
                                   "at most 720"),
    "funding time constant under a minute": (_with(market={"funding_smoothing_tau": 59}),
                                             "markets[0].funding_smoothing_tau", "at least 60"),
    "funding time constant over a week": (_with(market={"funding_smoothing_tau": 604_801}),
                                          "markets[0].funding_smoothing_tau", "at most 604800"),
    "funding cap over the largest fee's bound": (_with(market={"max_funding_rate": 0.0017}),
                                                 "markets[0].max_funding_rate", "at most 0.001666666666666666"),
    # the funding oscillation's bound (docs/security.md): at most the taker fee / 9 per hour under a 12-hour time
    # constant, / 6 from 12 hours; one unit of the last decimal above each is refused, the bound itself is accepted
    "funding cap above the fee / 9 (tau 2 h)": (_with(market={"taker_fee": 0.0009, "max_funding_rate": 0.000100000000000001}),
                                                "markets[0].max_funding_rate", "at most taker_fee / 9 per hour"),
    "funding cap above the fee / 6 (tau 12 h)": (_with(market={"taker_fee": 0.0015, "funding_smoothing_tau": 43_200,
                                                               "max_funding_rate": 0.000250000000000001}),
                                                 "markets[0].max_funding_rate", "at most taker_fee / 6 per hour"),
    "the slow bound's cap at a faster tau": (_with(market={"taker_fee": 0.0015, "funding_smoothing_tau": 43_199,
                                                           "max_funding_rate": 0.00025}),
                                             "markets[0].max_funding_rate", "at most taker_fee / 9 per hour"),
    "negative funding cap": (_with(market={"max_funding_rate": -0.0001}), "markets[0].max_funding_rate",
                             "at least 0"),
    "zero open-interest cap": (_with(market={"max_open_interest": 0}), "markets[0].max_open_interest",
                               "greater than 0"),
    "decimals above 18": (_with({"decimals": 19}), "decimals", "at most 18"),
    "negative seed": (_with({"pool_seed": -5}), "pool_seed", "at least 0"),
    "seed finer than token": (_with({"pool_seed": 0.0000001}), "pool_seed", "more decimals than the collateral"),
    "ratio finer than wad": (_with(market={"taker_fee": "0.0000000000000000001"}), "markets[0].taker_fee",
                             "more than 18 decimals"),
    "missing markets": (_with(drop_top=("markets",)), "markets", "missing required field"),
    "empty markets": (yaml.safe_dump({"markets": []}), "markets", "non-empty list"),
    "missing symbol": (_with(drop_market=("symbol",)), "markets[0].symbol", "missing required field"),
    "missing mock price": (_with(drop_market=("price",)), "markets[0].price", "missing required field"),
    "price with a real feed": (_with(market={"oracle": ETH_FEED}), "markets[0].price", "only for oracle: mock"),
    "price finer than feed": (_with(market={"price": 3000.123456789}), "markets[0].price",
                              "more decimals than oracle_decimals"),
    "unknown curve": (_with(market={"auction_curve": "square"}), "markets[0].auction_curve", "must be one of"),
    "step longer than duration": (_with(market={"auction_step": 4000}), "markets[0].auction_step",
                                  "at most auction_duration"),
    "quote reserve too deep": (_with(market={"base_reserve": 10**15}), "markets[0].base_reserve", "at most 1e18"),
    "duplicate symbol": (yaml.safe_dump({"markets": [{"symbol": "ETH", "price": 1}, {"symbol": "ETH", "price": 2}]}),
                         "markets[1].symbol", "duplicate symbol"),
    "collateral neither mock nor address": (_with({"collateral": "usdc"}), "collateral", '"mock" or a 0x'),
    "bad checksum": (_with(market={"oracle": ETH_FEED[:-1] + "8"}, drop_market=("price",)), "markets[0].oracle",
                     "checksum"),
    "unquoted address": ("markets:\n  - symbol: ETH\n    oracle: 0x5f4eC3Df9cbd43714FE2740f5E3616155c5b8419\n",
                         "markets[0].oracle", "in quotes"),
    "duplicate key": ("pool_seed: 1\npool_seed: 2\nmarkets:\n  - {symbol: ETH, price: 1}\n", "pool_seed",
                      "duplicate key"),
}


@pytest.mark.parametrize("text, field, phrase", BAD_CONFIGS.values(), ids=BAD_CONFIGS.keys())
def test_config_errors_name_the_field(tmp_path, text, field, phrase):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert err.value.field == field
    message = str(err.value)
    assert message.startswith(f"{path}: {field}"), message
    assert phrase in message, message
    assert "\n" not in message


def test_config_file_level_errors(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("markets:\n  - symbol: ETH\n   price: 1\n")
    with pytest.raises(ConfigError, match=r"not valid YAML \(line 3"):
        load_config(broken)
    listed = tmp_path / "list.yaml"
    listed.write_text("- symbol: ETH\n")
    with pytest.raises(ConfigError, match="must be a mapping with a 'markets' list"):
        load_config(listed)


def test_shipped_local_config_is_the_default_system():
    assert load_config(ROOT / "deployments/config/local.yaml") == default_config()
    assert load_config(ROOT / "deployments/config/plain.yaml") == plain_config()


def test_the_concentrated_yaml_is_concentrated_config_with_delayed_orders():
    """deployments/config/concentrated.yaml, the setting the simulator measures, is `concentrated_config` with delayed
    orders on in every market (their stale-peg tolerance above the repeg threshold, as the loader requires); the
    function without them is the same curve for the tests that trade it directly."""
    loaded = load_config(ROOT / "deployments/config/concentrated.yaml")
    assert loaded == concentrated_config(delayed_orders=True)
    assert all(m.delayed_orders and m.peg_tolerance_bps / 10_000 > m.repeg_threshold for m in loaded.markets)
    direct = concentrated_config()
    assert not any(m.delayed_orders for m in direct.markets)
    assert direct.with_markets(*(replace(m, delayed_orders=True) for m in direct.markets)) == loaded


def test_the_shipped_yaml_is_the_concentrated_yaml_with_a_fee_and_funding_settings():
    """deployments/config/local.yaml, the shipped setting, differs from concentrated.yaml only in the 15 bps taker
    fee, the 3-hour funding period and the 12-hour time constant of every market; and from plain.yaml in the depth,
    the skew term and delayed orders besides (`vperp.config.SHIPPED_CHANGES`)."""
    from vperp.config import SHIPPED_CHANGES, SHIPPED_DEPTH

    shipped = load_config(ROOT / "deployments/config/local.yaml")
    base = load_config(ROOT / "deployments/config/concentrated.yaml")
    assert shipped == base.with_markets(*(replace(m, taker_fee=0.0015, funding_period_hours=3,
                                                  funding_smoothing_tau=43_200, max_funding_rate=0.00025)
                                          for m in base.markets))
    plain = load_config(ROOT / "deployments/config/plain.yaml")
    assert shipped == plain.with_markets(*(replace(m, base_reserve=SHIPPED_DEPTH[m.symbol], **SHIPPED_CHANGES)
                                           for m in plain.markets))


def test_deploy_sets_a_markets_funding_period(accounts):
    """`funding_period_hours`, `funding_smoothing_tau` and `max_funding_rate` reach the chain through setFundingParams,
    the other funding parameters kept at the listing's; a market that leaves them out keeps the listing's 24 hours,
    2 hours and its taker fee / 9 per hour."""
    from vperp.deployment import deploy
    from vperp.units import DEFAULT_FUNDING_PERIOD_HOURS, DEFAULT_SMOOTHING_TAU, listing_funding_cap

    config = parse_config(yaml.safe_load(_with(market={"funding_period_hours": 2, "funding_smoothing_tau": 28_800,
                                                       "taker_fee": 0.0045, "max_funding_rate": 0.0005})))
    s = deploy(accounts[0], config)
    ch = s.clearing_house
    eth, btc = ch.fundingParams(s.markets["ETH"].id), ch.fundingParams(s.markets["BTC"].id)
    assert (eth.fundingPeriodHours, eth.smoothingTau, eth.maxFundingRate) == (2, 28_800, 5 * 10**14)
    assert (btc.fundingPeriodHours, btc.smoothingTau, btc.maxFundingRate) == (
        DEFAULT_FUNDING_PERIOD_HOURS, DEFAULT_SMOOTHING_TAU, listing_funding_cap(ch.marketParams(s.markets["BTC"].id).takerFee))
    assert eth[1:3] == btc[1:3]  # velocity and baseline: the listing's


def test_config_round_trips_through_the_record_form():
    text = _with({"decimals": 18, "pool_seed": "2500000.5", "insurance_seed": 1000},
                 {"imr": 0.2, "mmr": 0.1, "auction_curve": "stairstep", "auction_step": 120, "heartbeat": 3600})
    config = parse_config(yaml.safe_load(text))
    eth = config.markets[0]
    assert (config.collateral_decimals, config.pool_seed, config.insurance_seed) == (18, Decimal("2500000.5"), 1000)
    assert (eth.imr, eth.mmr, eth.auction_curve, eth.auction_step, eth.heartbeat) == (0.2, 0.1, "stairstep", 120, 3600)
    assert config.markets[1] == MarketConfig("BTC", price=60000)
    assert parse_config(json.loads(json.dumps(config_to_dict(config)))) == config


def test_mocks_refused_on_a_non_local_network():
    assert is_local_network(1337, "local") and is_local_network(31337, "anything") and is_local_network(1, "mainnet-fork")
    assert not is_local_network(SEPOLIA, "sepolia")
    check_network(default_config(), 1337, "local")  # mocks are fine locally
    check_network(default_config(), 31337, "local")
    with pytest.raises(ConfigError) as err:
        check_network(default_config(), SEPOLIA, "sepolia")
    message = str(err.value)
    for field in ("collateral", "markets[0].oracle (ETH)", "markets[1].oracle (BTC)", "sepolia", str(SEPOLIA)):
        assert field in message
    real_feeds = parse_config({"collateral": TOKEN, "markets": [{"symbol": "ETH", "oracle": ETH_FEED}]})
    check_network(real_feeds, SEPOLIA, "sepolia")  # no mocks: accepted
    mock_feed = parse_config({"collateral": TOKEN, "markets": [{"symbol": "ETH", "price": 3000}]})
    with pytest.raises(ConfigError) as err:
        check_network(mock_feed, SEPOLIA, "sepolia")
    assert err.value.field == "markets[0].oracle" and "collateral" not in str(err.value)


# ============================================================================ deploy script

# The deploy script's and the SDK's tests run on the plain markets, where a trade is one direct call; the shipped
# markets (local.yaml) take delayed orders, which tests/sdk/test_sdk_orders.py drives through the SDK.
PLAIN_YAML = ROOT / "deployments/config/plain.yaml"


@pytest.fixture(scope="module")
def deployed(tmp_path_factory):
    """One deployment for the module, made by the deploy script from plain.yaml and recorded in a temporary file."""
    out = tmp_path_factory.mktemp("deployments") / "local.json"
    said = []
    result = deploy_script.run(PLAIN_YAML, out=out, echo=said.append)
    return result, said


def test_deploy_writes_a_complete_record(deployed, chain, accounts):
    result, said = deployed
    record = json.loads(result.path.read_text())
    assert not result.reused and record == result.record
    assert record["chain_id"] == chain.chain_id == 1337 and record["network"] == "local"
    assert record["deployer"] == accounts[0].address  # test account 0 when no --account on a local chain
    c = record["contracts"]
    assert set(c) == {"Vault", "ClearingHouse", "LiquidationEngine", "LiquidityPool", "AmmController", "PerpReader",
                      "OrderRouter", "collateral"}
    vault = project.Vault.at(c["Vault"])
    ch = project.ClearingHouse.at(c["ClearingHouse"])
    # the wiring, read from the chain, matches the record
    assert vault.clearingHouse() == c["ClearingHouse"] and vault.liquidationEngine() == c["LiquidationEngine"]
    assert vault.liquidityPool() == c["LiquidityPool"] and ch.ammController() == c["AmmController"]
    assert vault.collateralToken() == c["collateral"] and ch.orderRouter() == c["OrderRouter"]
    assert {s: m["id"] for s, m in record["markets"].items()} == {"ETH": 1, "BTC": 2}
    for sym, m in record["markets"].items():
        assert ch.marketParams(m["id"]).oracle == m["oracle"] and m["mock"] is True
        assert ch.symbolOf(m["id"]).rstrip(b"\0").decode() == sym
    assert ch.indexPrice(1) == 3000 * WAD and ch.indexPrice(2) == 60_000 * WAD
    assert vault.poolBalance() == 10_000_000 * WAD  # the pool seed
    assert record["block"] <= record["block_end"] <= chain.blocks.head.number
    assert parse_config(record["config"]) == plain_config()
    for rel in [*record["abi"].values(), *(m["abi"] for m in record["markets"].values())]:
        assert json.loads((ROOT / rel).read_text())
    assert missing_code(record, chain.provider) == []


def test_the_config_file_takes_a_funding_cap_at_the_fees_bound():
    """The bound itself is accepted at both time constants (the refusals one unit above are in BAD_CONFIGS), and a
    market that leaves `max_funding_rate` out (or null) gets the listing's: the fee / 9 per hour."""
    from vperp.config import plain_config

    at_bound = parse_config(yaml.safe_load(_with(market={"taker_fee": 0.0015, "funding_smoothing_tau": 43_200,
                                                         "max_funding_rate": 0.00025})))
    assert at_bound.markets[0].funding_cap_wad() == 25 * 10**13
    fast = parse_config(yaml.safe_load(_with(market={"taker_fee": 0.0009, "max_funding_rate": 0.0001})))
    assert fast.markets[0].funding_cap_wad() == 10**14
    listing = parse_config(yaml.safe_load(_with(market={"taker_fee": 0.001, "max_funding_rate": None})))
    assert listing.markets[0].max_funding_rate is None and listing.markets[0].funding_cap_wad() == 10**15 // 9
    assert [m.funding_cap_wad() for m in plain_config().markets] == [10**15 // 9] * 2


def test_deploy_is_idempotent(deployed, chain):
    result, _ = deployed
    head = chain.blocks.head.number
    said = []
    again = deploy_script.run(PLAIN_YAML, out=result.path, echo=said.append)
    assert again.reused and again.record == result.record
    assert any("already deployed" in str(s) for s in said)
    assert chain.blocks.head.number == head  # nothing was sent
    assert json.loads(result.path.read_text()) == result.record


def test_deploy_refuses_a_file_for_another_chain(deployed, tmp_path, chain):
    result, _ = deployed
    other = tmp_path / "local.json"
    other.write_text(json.dumps({**result.record, "chain_id": 31337}))
    with pytest.raises(DeploymentError) as err:
        deploy_script.run(PLAIN_YAML, out=other, echo=lambda *_: None)
    assert "chain id 31337" in str(err.value) and f"id {chain.chain_id}" in str(err.value)
    # the command turns it into a one-line click error (no traceback)
    with pytest.raises(click.ClickException) as err:
        deploy_script.cli.callback(network=None, account=None, config_path=str(PLAIN_YAML),
                                   out=str(other), force=False)
    assert "chain id 31337" in err.value.message and "\n" not in err.value.message
    with pytest.raises(DeploymentError, match="chain id 31337"):
        Client.from_deployment(other)


def test_deploy_command_reports_a_bad_config_in_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(_with(market={"mmr": 0.9}))
    with pytest.raises(click.ClickException) as err:
        deploy_script.cli.callback(network=None, account=None, config_path=str(bad), out=str(tmp_path / "x.json"),
                                   force=False)
    assert "markets[0].mmr" in err.value.message and "\n" not in err.value.message
    assert not (tmp_path / "x.json").exists()


def test_deployment_with_code_gone_is_detected(deployed, tmp_path, chain, accounts):
    result, _ = deployed
    record = json.loads(json.dumps(result.record))
    nobody = accounts.generate_test_account().address
    record["contracts"]["Vault"] = nobody
    record["markets"]["BTC"]["oracle"] = nobody
    assert missing_code(record, chain.provider) == [f"Vault {nobody}", f"oracle BTC {nobody}"]
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(DeploymentError, match="not valid JSON"):
        read_deployment(broken)


def test_deploy_with_real_token_and_feed_addresses(tmp_path, accounts, chain):
    """No mocks in the config: the addresses are checked before anything is sent, then used as given."""
    deployer, trader = accounts[0], accounts[8]
    token = project.MockERC20.deploy("Dollar", "USD", 18, sender=deployer)
    feed = project.MockAggregator.deploy(8, 2_000 * 10**8, "ETH / USD", sender=deployer)
    config, out = tmp_path / "real.yaml", tmp_path / "real.json"

    def attempt(**top):
        config.write_text(yaml.safe_dump({"collateral": token.address, "decimals": 18, "pool_seed": 1_000_000,
                                          "markets": [{"symbol": "ETH", "oracle": feed.address, "heartbeat": 3600}],
                                          **top}))
        return deploy_script.run(config, out=out, echo=lambda *_: None)

    with pytest.raises(DeploymentError, match=r"^decimals: the config says 6 but the collateral token .* has 18"):
        attempt(decimals=6)
    with pytest.raises(DeploymentError, match="pool_seed \\+ insurance_seed need 1100000"):
        attempt()
    token.mint(deployer, 1_100_000 * WAD, sender=deployer)  # pool seed + the default insurance seed
    feed.updateRoundData(7, 2_000 * 10**8, chain.pending_timestamp - 7_200, 0, sender=deployer)
    with pytest.raises(DeploymentError, match=r"markets\[0\]\.oracle \(ETH\): .* more than heartbeat 3600 s"):
        attempt()
    assert not out.exists()
    feed.updateAnswer(2_000 * 10**8, sender=deployer)
    record = attempt().record
    assert record["contracts"]["collateral"] == token.address and record["abi"]["collateral"] == "abi/IERC20Metadata.json"
    assert record["markets"]["ETH"] == {"id": 1, "oracle": feed.address, "mock": False,
                                        "abi": "abi/AggregatorV3Interface.json"}
    assert token.balanceOf(deployer) == 0 and project.Vault.at(record["contracts"]["Vault"]).poolBalance() == 1_000_000 * WAD
    assert project.Vault.at(record["contracts"]["Vault"]).insuranceFund() == 100_000 * WAD

    c = Client.from_deployment(out, account=trader)
    token.mint(trader, 5_000 * WAD, sender=trader)
    c.deposit(5_000)
    c.open("ETH", "0.5", slippage_bps=20)
    p = c.position("ETH")
    assert (p.size, p.index_price) == (Decimal("0.5"), 2_000) and c.health().initial_requirement == 100


# ============================================================================ export_abi

def test_export_abi_writes_usable_json(tmp_path):
    from web3 import Web3

    written = export_script.export(project, tmp_path)
    names = {p.relative_to(tmp_path).as_posix() for p, changed in written}
    assert all(changed for _, changed in written)
    expected = {"Vault", "ClearingHouse", "LiquidationEngine", "LiquidityPool", "AmmController", "IVault",
                "IClearingHouse", "ILiquidationEngine", "ILiquidityPool", "IAmmController", "AggregatorV3Interface",
                "IERC20Metadata", "PerpReader", "IPerpReader", "OrderRouter", "IOrderRouter", "GovernanceTimelock", "RiskGovernor", "CircuitBreaker",
                "IRiskGovernor", "ICircuitBreaker"}
    assert names == {f"{n}.json" for n in expected} | {"mocks/MockERC20.json", "mocks/MockAggregator.json",
                                                        "signatures.json"}

    def members(name, kind="function", root=tmp_path):
        abi = json.loads((root / f"{name}.json").read_text())
        return {e["name"] for e in abi if e["type"] == kind}

    for root in (tmp_path, ROOT / "abi"):  # the fresh export and the committed files
        assert {"openPosition", "closePosition", "quote", "position", "fundingState"} <= members("ClearingHouse", root=root)
        assert {"kick", "take", "redo", "backstop", "auctionPrice"} <= members("LiquidationEngine", root=root)
        assert {"requestWithdraw", "deposit", "redeem", "totalAssets"} <= members("LiquidityPool", root=root)
        assert {"deposit", "withdraw", "health", "freeCollateral"} <= members("Vault", root=root)
        assert {"syncDepth", "repeg"} <= members("AmmController", root=root)
        assert "PositionChanged" in members("IClearingHouse", "event", root) and "Kick" in members(
            "ILiquidationEngine", "event", root)
        assert "SlippageExceeded" in members("IClearingHouse", "error", root)
        assert members("IERC20Metadata", root=root) == {"name", "symbol", "decimals", "totalSupply", "balanceOf",
                                                        "transfer", "allowance", "approve", "transferFrom"}
        assert {"updateAnswer", "latestRoundData"} <= members("mocks/MockAggregator", root=root)
        assert {"propose", "execute", "cancel", "act", "classify", "pendingProposals"} <= members("IRiskGovernor", root=root)
        assert {"poke", "pokeAll", "check", "breakerState"} <= members("ICircuitBreaker", root=root)
        assert {"BreakerTripped", "BreakerCleared"} <= members("ICircuitBreaker", "event", root)
        assert {"schedule", "execute", "getMinDelay"} <= members("GovernanceTimelock", root=root)
    # web3.py reads the files as they are
    ch = Web3().eth.contract(address="0x" + "11" * 20, abi=json.loads((tmp_path / "ClearingHouse.json").read_text()))
    data = ch.encode_abi("openPosition", args=[0, 1, WAD, 3100 * WAD, 2**32])
    selector = bytes(Web3.keccak(text="openPosition(uint32,uint32,int256,uint256,uint256)"))[:4].hex()
    assert data[:10] == "0x" + selector and len(data) == 2 + 8 + 5 * 64
    # stable output: a second export changes nothing
    assert not any(changed for _, changed in export_script.export(project, tmp_path))


# ============================================================================ SDK

def _ceil_div(a, b):
    return -(-a // b)


def test_sdk_open_close_position_health(deployed, accounts, chain):
    result, _ = deployed
    alice = accounts[1]
    c = Client.from_deployment(result.path, account=alice)
    c.collateral.mint(alice, 10_000 * USDC, sender=alice)
    c.deposit(10_000)
    h = c.health()
    assert (h.collateral, h.account_value, h.free_collateral, h.maintenance_requirement) == (10_000, 10_000, 10_000, 0)
    assert not h.liquidatable and h.margin_ratio is None

    # open 1 ETH long: the constant-product cost, rounded up, and the limit 50 bps above it
    st = c.clearing_house.marketState(1)
    x, y = st.baseReserve, st.quoteReserve
    cost = _ceil_div(y * WAD, x - WAD)
    fee = _ceil_div(cost * 10**15, WAD)  # 0.1 % taker fee
    assert c.quote_limit("ETH", WAD, 50) == _ceil_div(cost * 10_050, 10_000)
    assert c.quote_limit("ETH", -WAD, 50) == (y * WAD // (x + WAD)) * 9_950 // 10_000
    trade = c.open("ETH", 1, slippage_bps=50)
    assert (trade.symbol, trade.owner, trade.subaccount, trade.base_delta, trade.new_size) == ("ETH", alice.address, 0, 1, 1)
    assert trade.quote_delta == -Decimal(cost) / WAD and trade.fee == Decimal(fee) / WAD
    assert trade.realized_pnl == 0 and trade.new_open_notional == Decimal(cost) / WAD

    p = c.position("ETH")
    assert (p.size, p.side, p.open_notional, p.index_price) == (1, "long", Decimal(cost) / WAD, 3000)
    assert p.entry_price == Decimal(cost) / WAD and p.notional == 3000
    assert p.unrealized_pnl == 3000 - Decimal(cost) / WAD and p.auctioned_size == 0
    h = c.health()
    collateral = Decimal(10_000) - Decimal(fee) / WAD
    value = collateral + p.unrealized_pnl - p.pending_funding
    assert h.collateral == collateral and h.account_value == value
    assert (h.initial_requirement, h.maintenance_requirement) == (300, 150)  # 3000 x 10 %, 3000 x 5 %
    assert h.free_collateral == min(collateral - p.pending_funding, value) - 300
    assert not h.liquidatable and h.margin_ratio == (value / 150).quantize(Decimal("0.0001"))
    assert c.positions() == [p]

    # close: a sell of 1 against the reserves after the open, rounded down
    st = c.clearing_house.marketState(1)
    received = st.quoteReserve * WAD // (st.baseReserve + WAD)
    closed = c.close("ETH", slippage_bps=50)
    assert closed.base_delta == -1 and closed.new_size == 0 and closed.quote_delta == Decimal(received) / WAD
    assert closed.realized_pnl == Decimal(received - cost) / WAD
    assert c.position("ETH").size == 0 and c.positions() == []
    with pytest.raises(ClientError, match="no free ETH position"):
        c.close("ETH")

    # events: both trades, decoded the same way as the receipts
    mine = c.trades(owner=alice)
    assert [t.tx_hash for t in mine] == [trade.tx_hash, closed.tx_hash] and mine == [trade, closed]
    assert c.trades(since_block=closed.block + 1) == []
    assert c.trades(owner=accounts[5]) == []

    # withdraw returns tokens 1:1
    wallet = c.collateral.balanceOf(alice)
    c.withdraw(1_000)
    assert c.collateral.balanceOf(alice) == wallet + 1_000 * USDC
    assert c.health().collateral == collateral + Decimal(received - cost) / WAD - Decimal(
        closed.fee) - closed.funding_paid - 1_000
    with pytest.raises(ClientError, match="more decimals"):
        c.deposit("0.0000001")
    with pytest.raises(ClientError, match="unknown market 'DOGE'"):
        c.position("DOGE")


def test_sdk_funding_in_percent_per_hour(deployed, accounts, chain):
    result, _ = deployed
    bob = accounts[2]
    c = Client.from_deployment(result.path, account=bob)
    c.collateral.mint(bob, 50_000 * USDC, sender=bob)
    c.deposit(50_000)
    c.open("ETH", 20, slippage_bps=100)  # the vAMM now sits above the index: longs pay
    # the first block of the next hour samples the premium (the target is re-sampled once an hour), then a poke
    # every quarter window of that hour moves the applied rate toward it
    h = next_hour(chain.pending_timestamp)
    for k in range(4):
        chain.pending_timestamp = h + 900 * k
        for sym, price in (("ETH", 3000), ("BTC", 60_000)):
            c.oracles[sym].updateAnswer(price * 10**8, sender=bob)
        c.clearing_house.pokeFunding(1, sender=bob)
    assert c.clearing_house.marketState(1).targetRate > 0  # sampled
    f = c.funding("ETH")
    applied, target, premium, mark_twap, index_twap, p1, p8 = c.clearing_house.fundingState(1)
    assert f.raw == (applied, target, premium, mark_twap, index_twap, p1, p8)
    assert f.applied_pct_per_hour == Decimal(applied) / 10**16 and f.target_pct_per_hour == Decimal(target) / 10**16
    assert f.projected_8h_pct_per_hour == Decimal(p8) / 10**16 and f.index_twap == 3000
    assert f.mark_twap > f.index_twap and f.premium_pct > 0 and f.applied_pct_per_hour > 0
    expected_premium = (f.mark_twap - f.index_twap) / f.index_twap * 100
    assert abs(f.premium_pct - expected_premium) < Decimal("1e-12")


# ============================================================================ keeper script

def test_keeper_once_kicks_a_crashed_account(deployed, accounts, chain):
    result, _ = deployed
    dave, keeper_account = accounts[3], accounts[4]
    c = Client.from_deployment(result.path, account=dave)
    c.collateral.mint(dave, 1_000 * USDC, sender=dave)
    c.deposit(1_000)
    c.open("ETH", 3, slippage_bps=100)  # 9,000 notional on 1,000: about 9x

    logs = []
    keeper, kc = keeper_script.start(account=keeper_account, deployment=result.path, deposit=20_000, log=logs.append)
    assert kc.health(owner=keeper_account).collateral == 20_000  # minted (mock collateral) and deposited
    assert keeper_script.run_loop(keeper, chain, once=True, log=logs.append) == 1
    assert (dave.address, 0) in keeper.accounts and kc.liquidation.auctionCount() == 0

    c.oracles["ETH"].updateAnswer(2_800 * 10**8, sender=dave)  # -6.7 %
    h = c.health()
    pnl = 3 * 2_800 - c.position("ETH").open_notional
    assert h.account_value == h.collateral + pnl - c.position("ETH").pending_funding
    assert h.maintenance_requirement == 420  # 3 x 2,800 x 5 %
    assert h.account_value < h.maintenance_requirement and h.liquidatable

    keeper_before = kc.vault.collateral(keeper_account, 0)
    logs.clear()
    keeper_script.run_loop(keeper, chain, once=True, log=logs.append)
    assert any("kick(" in str(line) for line in logs), logs
    engine = kc.liquidation
    assert engine.auctionCount() == 1
    a = engine.auction(1)
    assert a.owner == dave.address and a.marketId == 1 and a.startIndex == 2_800 * WAD
    assert 0 < a.size < 3 * WAD  # a slice: the account keeps the rest
    (kick,) = engine.Kick.range(result.record["block"], chain.blocks.head.number + 1)
    assert kc.vault.collateral(keeper_account, 0) == keeper_before + kick.keeperReward  # the keeper was paid
    assert not c.health().liquidatable  # the smallest slice restores health (docs/liquidation.md)
    assert c.position("ETH").auctioned_size == Decimal(a.size) / WAD

    (live,) = c.auctions()
    assert (live.id, live.owner, live.symbol, live.size, live.start_index) == (1, dave.address, "ETH",
                                                                               Decimal(a.size) / WAD, 2_800)
    assert not live.expired and live.price == Decimal(engine.auctionPrice(1)) / WAD
    assert 2_800 * (1 - Decimal("0.02")) <= live.price <= 2_800 and 0 <= live.discount_pct <= 2


def test_keeper_refuses_accounts_without_gas_or_collateral(deployed, accounts):
    result, _ = deployed
    c = Client.from_deployment(result.path)
    broke = accounts.generate_test_account()
    with pytest.raises(keeper_script.KeeperError, match="has no ETH"):
        keeper_script.check_keeper_funds(c, broke)
    no_collateral = accounts[6]
    with pytest.raises(keeper_script.KeeperError, match="holds no collateral"):
        keeper_script.check_keeper_funds(c, no_collateral)
    assert keeper_script.check_keeper_funds(c, no_collateral, kick_only=True) == []
    # the command says so in one line
    level = logger.level
    try:
        with pytest.raises(click.ClickException) as err:
            keeper_script.cli.callback(network=None, account=no_collateral, deployment=str(result.path), fresh=False,
                                       config_path="", once=True, interval=0, deposit=None, kick_only=False,
                                       min_discount_bps=100)
    finally:
        logger.set_level(level)
    assert "holds no collateral (USDC 0x" in err.value.message and "\n" not in err.value.message


def test_keeper_loop_stops_cleanly_on_ctrl_c(deployed, accounts, chain):
    result, _ = deployed
    keeper, _ = keeper_script.start(account=accounts[7], deployment=result.path, deposit=1_000, log=lambda *_: None)
    logs, naps = [], []

    def interrupted_sleep(seconds):
        naps.append(seconds)
        if len(naps) == 2:
            raise KeyboardInterrupt

    passes = keeper_script.run_loop(keeper, chain, interval=7, log=logs.append, sleep=interrupted_sleep)
    assert passes == 2 and naps == [7, 7]
    assert "stopped after 2 passes" in logs[-1]


def test_keeper_script_shows_the_keepers_own_log_once():
    """`ape run keeper` routes the `vperp.keeper` log (waits, takes' PnL, bad debt: docs/keeper.md) to its
    output; routing twice does not print twice, and warnings say so."""
    import logging

    log = logging.getLogger("vperp.keeper")
    saved = (list(log.handlers), log.level, log.propagate)  # other tests read this logger through caplog
    lines = []
    try:
        keeper_script.route_keeper_log(lines.append)
        keeper_script.route_keeper_log(lines.append)
        log.info("auction %d waits", 7)
        log.warning("bad debt seen")
        log.debug("not shown")
    finally:
        log.handlers[:], log.level, log.propagate = saved
    assert lines == ["auction 7 waits", "WARNING: bad debt seen"]


def test_the_demo_runs_to_the_end():
    """`ape run demo`, the README's first command, end to end in its own process (the embedded chain, and Anvil for
    its simulator part): it exits 0 and says it finished. A demo step that reverts fails here, not on a newcomer's
    machine."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    ape = Path(sys.executable).with_name("ape")  # the console script beside this interpreter
    out = subprocess.run([str(ape), "run", "demo"], cwd=root, capture_output=True, text=True,
                         env={**os.environ, "COLUMNS": "200"}, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "demo finished in" in out.stdout
