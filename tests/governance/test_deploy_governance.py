"""The deploy script hands a deployment to governance from the YAML config's `governance:` section (issue 17).

One governed deployment for the module (deployments/config/governed.yaml, written by scripts/deploy.py to a
temporary record): the record says `"mode": "timelock"` with the timelock, governor, breaker, admin, guardian and
delay, every one of them read back from the chain; a second run reuses it and sends nothing; a config without
the section keeps a direct owner; a bad section is a one-line error naming the field before anything is sent.
The keeper pokes the breaker named by the record every pass and logs what trips and clears. Chain time moves
only by setting it.
"""
from __future__ import annotations

import json
import logging
from decimal import Decimal
from pathlib import Path

import click
import pytest
from helpers.scripts import load_script
import yaml
from ape import project
from ape.exceptions import ContractLogicError

from vperp.client import missing_code
from vperp.config_file import ConfigError, load_config, parse_config
from vperp.keeper import BreakerLog, Keeper

ROOT = Path(__file__).resolve().parents[2]
GOVERNED = ROOT / "deployments/config/governed.yaml"
LOCAL = ROOT / "deployments/config/local.yaml"
from vperp.units import WAD
ADMIN = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"  # test account 1
GUARDIAN = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"  # test account 2




deploy_script = load_script("deploy")
keeper_script = load_script("keeper")


def _config(governance, markets=None) -> str:
    data = {"pool_seed": 1000, "markets": markets or [{"symbol": "ETH", "price": 3000}]}
    if governance is not ...:
        data["governance"] = governance
    return yaml.safe_dump(data, sort_keys=False)


# ============================================================================ config


def _gov(**changes):
    g = {"admin": ADMIN, "guardian": GUARDIAN, "timelock_delay": 172_800}
    g.update(changes)
    return {k: v for k, v in g.items() if v is not None}


BAD_GOVERNANCE = {
    "delay below a day": (_gov(timelock_delay=86_399), "governance.timelock_delay", "at least 86400"),
    "delay above 30 days": (_gov(timelock_delay=30 * 86_400 + 1), "governance.timelock_delay", "at most 2592000"),
    "delay not an integer": (_gov(timelock_delay=86_400.5), "governance.timelock_delay", "must be an integer"),
    "zero admin": (_gov(admin="0x" + "00" * 20), "governance.admin", "zero address"),
    "zero guardian": (_gov(guardian="0x" + "00" * 20), "governance.guardian", "zero address"),
    "short admin": (_gov(admin=ADMIN[:-2]), "governance.admin", "0x-prefixed 20-byte address"),
    "admin not hex": (_gov(admin="0x" + "zz" * 20), "governance.admin", "0x-prefixed 20-byte address"),
    "bad checksum": (_gov(guardian=GUARDIAN[:-1] + "c"), "governance.guardian", "bad EIP-55 checksum"),
    "admin as a number": (_gov(admin=0x70997970C51812dc3A010C7d01b50e0d17dc79C8), "governance.admin", "in quotes"),
    "missing guardian": (_gov(guardian=None), "governance.guardian", "missing required field"),
    "unknown field": (_gov(timelock=1), "governance.timelock", "unknown field"),
    "not a mapping": ("yes", "governance", "must be a mapping"),
    # the breaker's per-market thresholds: the CircuitBreaker's bounds, listed markets only
    "breaker move above 50 %": (_gov(breaker={"markets": {"ETH": {"move_threshold": 0.51}}}),
                                "governance.breaker.markets.ETH.move_threshold", "at most 0.5"),
    "breaker move below 1 %": (_gov(breaker={"markets": {"ETH": {"move_threshold": 0.0099}}}),
                               "governance.breaker.markets.ETH.move_threshold", "at least 0.01"),
    "breaker divergence below 0.5 %": (_gov(breaker={"markets": {"ETH": {"divergence_threshold": 0.004}}}),
                                       "governance.breaker.markets.ETH.divergence_threshold", "at least 0.005"),
    "breaker duration below a minute": (_gov(breaker={"markets": {"ETH": {"divergence_duration": 59}}}),
                                        "governance.breaker.markets.ETH.divergence_duration", "at least 60"),
    "breaker skew above 1000 %": (_gov(breaker={"markets": {"ETH": {"max_skew_share": 10.5}}}),
                                  "governance.breaker.markets.ETH.max_skew_share", "at most 10"),
    "breaker market not listed": (_gov(breaker={"markets": {"BTC": {"move_threshold": 0.2}}}),
                                  "governance.breaker.markets.BTC", "not a market of this config"),
    "breaker unknown field": (_gov(breaker={"markets": {"ETH": {"move": 0.2}}}),
                              "governance.breaker.markets.ETH.move", "unknown field"),
    "breaker empty market": (_gov(breaker={"markets": {"ETH": {}}}), "governance.breaker.markets.ETH",
                             "an empty mapping"),
    "breaker not a mapping": (_gov(breaker=[1]), "governance.breaker", "must be a mapping"),
}


@pytest.mark.parametrize("governance, field, phrase", BAD_GOVERNANCE.values(), ids=BAD_GOVERNANCE.keys())
def test_bad_governance_section_is_a_named_one_line_error(tmp_path, governance, field, phrase):
    path = tmp_path / "bad.yaml"
    path.write_text(_config(governance))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert err.value.field == field and message.startswith(f"{path}: {field}"), message
    assert phrase in message and "\n" not in message, message


def test_bad_governance_refused_by_the_command_before_anything_is_sent(tmp_path, chain):
    head = chain.blocks.head.number
    for name, (governance, field, _) in BAD_GOVERNANCE.items():
        path, out = tmp_path / "bad.yaml", tmp_path / "x.json"
        path.write_text(_config(governance))
        with pytest.raises(click.ClickException) as err:
            deploy_script.cli.callback(network=None, account=None, config_path=str(path), out=str(out), force=False)
        assert field in err.value.message and "\n" not in err.value.message, name
        assert not out.exists(), name
    assert chain.blocks.head.number == head


def test_governance_section_parses_with_the_default_delay_and_round_trips():
    config = parse_config(yaml.safe_load(_config({"admin": ADMIN.lower(), "guardian": GUARDIAN})))
    g = config.governance
    assert (g.admin, g.guardian, g.timelock_delay) == (ADMIN, GUARDIAN, 172_800)  # checksummed, 48 h default
    governed = load_config(GOVERNED)
    assert governed.governance.timelock_delay == 172_800 and load_config(LOCAL).governance is None
    from vperp.config_file import config_to_dict

    assert parse_config(json.loads(json.dumps(config_to_dict(governed)))) == governed
    assert "governance" not in config_to_dict(load_config(LOCAL))  # direct-owner records stay as they were
    # the example is local.yaml's system plus the section
    assert governed.markets == load_config(LOCAL).markets


def test_an_admin_nobody_here_can_sign_for(tmp_path, chain, accounts):
    """A multisig admin: the deployer wires the breaker once when the governor allows it (RiskGovernor.deployer);
    on a build whose governor does not, the config is refused before anything is sent."""
    from vperp.deployment import deployer_may_wire

    stranger = accounts.generate_test_account().address  # not the deployer, not a test account of the chain
    path, out = tmp_path / "multisig.yaml", tmp_path / "x.json"
    path.write_text(_config(_gov(admin=stranger)))
    head = chain.blocks.head.number
    if deployer_may_wire():
        g = deploy_script.run(path, out=out, echo=lambda *_: None).record["governance"]
        gov = project.RiskGovernor.at(g["governor"])
        assert (g["admin"], gov.admin(), gov.breaker(), gov.deployer()) == (stranger, stranger, g["breaker"],
                                                                          accounts[0].address)
        return
    with pytest.raises(click.ClickException) as err:
        deploy_script.cli.callback(network=None, account=None, config_path=str(path), out=str(out), force=False)
    assert err.value.message.startswith(f"governance.admin {stranger}: this deploy cannot sign for the admin")
    assert "\n" not in err.value.message and not out.exists() and chain.blocks.head.number == head


# ============================================================================ a governed deployment


@pytest.fixture(scope="module")
def governed(tmp_path_factory):
    out = tmp_path_factory.mktemp("deployments") / "governed.json"
    said = []
    result = deploy_script.run(GOVERNED, out=out, echo=said.append)
    return result, said


def test_record_names_the_timelock_governor_and_breaker(governed, chain, accounts):
    result, _ = governed
    record = json.loads(result.path.read_text())
    assert record == result.record and not result.reused
    g = record["governance"]
    assert set(g) == {"mode", "timelock", "governor", "breaker", "admin", "guardian", "delay"}
    assert (g["mode"], g["admin"], g["guardian"], g["delay"]) == ("timelock", ADMIN, GUARDIAN, 172_800)
    c = record["contracts"]
    assert (c["GovernanceTimelock"], c["RiskGovernor"], c["CircuitBreaker"]) == (g["timelock"], g["governor"],
                                                                              g["breaker"])
    for name in ("GovernanceTimelock", "RiskGovernor", "CircuitBreaker"):
        assert record["abi"][name] == f"abi/{name}.json" and json.loads((ROOT / record["abi"][name]).read_text())
    assert missing_code(record, chain.provider) == []
    # what the chain says
    deployer = accounts[0]
    tl = project.GovernanceTimelock.at(g["timelock"])
    gov = project.RiskGovernor.at(g["governor"])
    breaker = project.CircuitBreaker.at(g["breaker"])
    assert tl.getMinDelay() == 172_800 and gov.timelock() == tl.address
    assert (gov.admin(), gov.guardian(), gov.breaker()) == (ADMIN, GUARDIAN, breaker.address)
    assert breaker.governor() == gov.address
    assert tl.hasRole(tl.PROPOSER_ROLE(), gov) and tl.hasRole(tl.CANCELLER_ROLE(), gov)
    assert tl.hasRole(tl.EXECUTOR_ROLE(), "0x" + "00" * 20)  # open executor
    assert not tl.hasRole(tl.DEFAULT_ADMIN_ROLE(), deployer) and not tl.hasRole(tl.PROPOSER_ROLE(), deployer)
    for name in ("Vault", "ClearingHouse", "LiquidationEngine", "LiquidityPool", "AmmController"):
        module = getattr(project, name).at(c[name])
        assert module.owner() == gov.address and module.pendingOwner() == "0x" + "00" * 20, name
    assert project.Vault.at(c["Vault"]).guardian() == GUARDIAN
    # the liquid markets' own breaker thresholds (governed.yaml), set before the wiring; the rest global
    ch = project.ClearingHouse.at(c["ClearingHouse"])
    assert ch.marketCount() == 2
    for market_id in (1, 2):
        assert tuple(breaker.thresholdOverrides(market_id)) == (15 * WAD // 100, WAD // 10, 0, 75 * WAD // 100)
        assert tuple(breaker.marketThresholds(market_id)) == (15 * WAD // 100, WAD // 10, 1800, 75 * WAD // 100)
    with pytest.raises(ContractLogicError):  # the deployer's window closed at the wiring
        breaker.setMarketThresholds(1, (WAD // 5, 0, 0, 0), sender=deployer)
    # deployed and seeded before the hand-over, as local.yaml is
    vault = project.Vault.at(c["Vault"])
    assert vault.poolBalance() == 10_000_000 * WAD and vault.insuranceFund() == 100_000 * WAD
    assert gov.vault() == c["Vault"] and gov.ammController() == c["AmmController"]


def test_the_deployer_keeps_no_power(governed, accounts):
    result, _ = governed
    c = result.record["contracts"]
    vault = project.Vault.at(c["Vault"])
    with pytest.raises(ContractLogicError) as err:  # no longer the owner nor the guardian
        vault.setPauseLevel(1, sender=accounts[0])
    assert type(err.value).__name__ == "NotGuardian"
    with pytest.raises(ContractLogicError) as err:
        vault.setGuardian(accounts[0], sender=accounts[0])
    assert type(err.value).__name__ == "OwnableUnauthorizedAccount"
    # the guardian raises the pause at once through the governor (risk-reducing); the deployer may not
    gov = project.RiskGovernor.at(c["RiskGovernor"])
    data = vault.setPauseLevel.encode_input(1)
    with pytest.raises(ContractLogicError) as err:
        gov.act(vault, data, sender=accounts[0])
    assert type(err.value).__name__ == "NotGuardianOrAdmin"
    gov.act(vault, data, sender=accounts[2])
    assert vault.pauseLevel() == 1


def test_a_second_run_reuses_the_governed_deployment(governed, chain):
    result, _ = governed
    head = chain.blocks.head.number
    said = []
    again = deploy_script.run(GOVERNED, out=result.path, echo=said.append)
    assert again.reused and again.record == result.record and chain.blocks.head.number == head
    assert any("already deployed" in str(s) for s in said)
    assert not any("differs" in str(s) for s in said)
    # the same deployment named by a config without the section: reused, and the difference is named
    said = []
    assert deploy_script.run(LOCAL, out=result.path, echo=said.append).reused
    notes = [str(s) for s in said if "differs" in str(s)]
    assert len(notes) == 1 and "(governance)" in notes[0] and chain.blocks.head.number == head


def test_a_governed_record_whose_governor_is_gone_is_redeployed_on_a_local_chain(governed, tmp_path, chain, accounts):
    result, _ = governed
    record = json.loads(json.dumps(result.record))
    nobody = accounts.generate_test_account().address
    record["contracts"]["RiskGovernor"] = record["governance"]["governor"] = nobody
    assert missing_code(record, chain.provider) == [f"RiskGovernor {nobody}"]
    path = tmp_path / "gone.json"
    path.write_text(json.dumps(record))
    said = []
    fresh = deploy_script.run(GOVERNED, out=path, echo=said.append)
    assert not fresh.reused and fresh.record["governance"]["governor"] != nobody
    assert any(f"no code at RiskGovernor {nobody}" in str(s) for s in said)


def test_without_the_section_the_deployer_stays_the_owner(tmp_path, accounts):
    path, out = tmp_path / "plain.yaml", tmp_path / "plain.json"
    path.write_text(_config(...))
    record = deploy_script.run(path, out=out, echo=lambda *_: None).record
    deployer = accounts[0].address
    assert record["governance"] == {"mode": "direct-owner", "owner": deployer, "guardian": deployer}
    assert not {"GovernanceTimelock", "RiskGovernor", "CircuitBreaker"} & set(record["contracts"])
    assert project.ClearingHouse.at(record["contracts"]["ClearingHouse"]).owner() == deployer
    assert "governance" not in record["config"]


def test_the_admin_may_be_the_deployer(tmp_path, accounts):
    deployer = accounts[0].address
    path, out = tmp_path / "self.yaml", tmp_path / "self.json"
    path.write_text(_config(_gov(admin=deployer, timelock_delay=86_400)))
    g = deploy_script.run(path, out=out, echo=lambda *_: None).record["governance"]
    assert (g["mode"], g["admin"], g["delay"]) == ("timelock", deployer, 86_400)
    assert project.RiskGovernor.at(g["governor"]).breaker() == g["breaker"]


# ============================================================================ the keeper pokes the breaker


@pytest.fixture
def keeper_on(governed, accounts):
    result, _ = governed
    said = []
    keeper, client = keeper_script.start(account=accounts[3], deployment=result.path, kick_only=True,
                                         log=said.append)
    keeper.follow_peg = False  # the breaker's log is timed to the block; the peg upkeep is tested in test_peg_follow
    return keeper, client, said


def _breaker_logs(keeper):
    return [r for r in keeper.pass_records if isinstance(r, BreakerLog)]


def test_keeper_pokes_the_breaker_each_pass_and_logs_trips_and_clears(keeper_on, chain, caplog):
    keeper, client, said = keeper_on
    breaker = keeper.breaker
    assert breaker.address == client.record["governance"]["breaker"]
    assert any(f"pokes circuit breaker {breaker.address}" in str(s) for s in said)
    eth = client.market_id("ETH")
    oracle = client.oracles["ETH"]  # the mock feed: anyone may update it

    # a quiet pass: one pokeAll, nothing tripped
    actions = keeper.run_once(chain)
    pokes = [a for a in actions if a.kind == "breaker"]
    assert len(pokes) == 1 and pokes[0].detail == {} and pokes[0].gas > 0 and _breaker_logs(keeper) == []
    assert breaker.breakerState(eth).holding == 0

    # the index jumps 20 % above its TWAP, past ETH's own 15 % (governed.yaml): index-move trips, reduce-only
    oracle.updateAnswer(3600 * 10**8, sender=keeper.account)
    with caplog.at_level(logging.INFO, logger="vperp.keeper"):
        actions = keeper.run_once(chain)
    (poke,) = [a for a in actions if a.kind == "breaker"]
    assert poke.detail == {"tripped": "ETH:index-move"}
    tripped, restriction = _breaker_logs(keeper)
    cool_off = int(breaker.params().coolOff)
    assert (tripped.event, tripped.symbol, tripped.breaker) == ("tripped", "ETH", "index-move")
    assert tripped.threshold == Decimal(breaker.marketThresholds(eth).moveThreshold) / WAD == Decimal("0.15")
    # 3600 against the index TWAP, near 3000 (its window is 15 minutes): the round counts from its own time, so
    # the TWAP holds the seconds between the update and the keeper's poke; the log reports the event's figure.
    (event,) = breaker.BreakerTripped.from_receipt(chain.provider.get_receipt(tripped.tx_hash))
    assert tripped.value == Decimal(event.value) / WAD and Decimal("0.19") < tripped.value <= Decimal("0.2")
    assert tripped.until == chain.blocks.head.timestamp + cool_off
    assert (restriction.event, restriction.symbol, restriction.cap, restriction.reduce_only) == (
        "restriction", "ETH", None, True)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [r.getMessage() for r in warnings] == [str(tripped)] and "TRIPPED on ETH" in str(tripped)
    assert client.clearing_house.marketParams(eth).maxOiPoolRatio == 1  # nothing may grow

    # back to the TWAP: the move clears at the next pass, reduce-only runs out its cool-off
    oracle.updateAnswer(3000 * 10**8, sender=keeper.account)
    # (no accrual needed: the round at 3000 counts from its own time, so the TWAP does not hold 3600 for the time
    # until the market next accrues)
    keeper.run_once(chain)
    (cleared,) = _breaker_logs(keeper)
    assert (cleared.event, cleared.breaker, str(cleared).startswith("breaker index-move cleared on ETH")) == (
        "cleared", "index-move", True)
    assert breaker.breakerState(eth).reduceOnly

    # a poke one second before the cool-off ends: still reduce-only, nothing logged; at its end: lifted (the
    # keeper's own poke step, so its block's timestamp is the one set: a pass pokes funding first)
    chain.pending_timestamp = tripped.until - 1
    keeper.pass_records = []
    (poke,) = keeper._poke_breaker()
    assert poke.kind == "breaker" and _breaker_logs(keeper) == [] and breaker.breakerState(eth).reduceOnly
    assert chain.blocks.head.timestamp == tripped.until - 1
    keeper._poke_breaker()
    assert chain.blocks.head.timestamp == tripped.until
    (lifted,) = _breaker_logs(keeper)
    assert (lifted.event, lifted.cap, lifted.reduce_only) == ("restriction", None, False)
    assert not breaker.breakerState(eth).reduceOnly
    assert client.clearing_house.marketParams(eth).maxOiPoolRatio == 2 * WAD  # the configured cap is back


def test_a_failing_breaker_poke_never_stops_the_pass(keeper_on, chain, caplog):
    keeper, client, _ = keeper_on

    class Broken:
        address = "0x" + "00" * 20

        def pokeAll(self, sender=None):
            raise ContractLogicError("NotBreaker(0x0000000000000000000000000000000000000000)")

    keeper.breaker = Broken()
    chain.pending_timestamp = chain.pending_timestamp + 3600  # funding is due: the pass still pokes it
    with caplog.at_level(logging.WARNING, logger="vperp.keeper"):
        actions = keeper.run_once(chain)
    kinds = [a.kind for a in actions]
    assert "breaker-failed" in kinds and "poke" in kinds
    assert any("breaker pokeAll failed: ContractLogicError" in r.getMessage() for r in caplog.records)


def test_no_breaker_no_poke(governed, tmp_path, chain, accounts):
    """A direct-owner record names no breaker: the keeper pokes none."""
    path, out = tmp_path / "plain.yaml", tmp_path / "plain.json"
    path.write_text(_config(...))
    deploy_script.run(path, out=out, echo=lambda *_: None)
    said = []
    keeper, _ = keeper_script.start(account=accounts[3], deployment=out, kick_only=True, log=said.append)
    assert keeper.breaker is None and any("no circuit breaker" in str(s) for s in said)
    assert not [a for a in keeper.run_once(chain) if a.kind.startswith("breaker")]
    assert Keeper(keeper.system, accounts[3]).breaker is None


def test_keeper_fresh_deploys_a_governed_config(tmp_path, chain, accounts):
    out = tmp_path / "fresh.json"
    keeper, client = keeper_script.start(account=accounts[0], deployment=out, fresh=True, config_path=GOVERNED,
                                         kick_only=True, log=lambda *_: None)
    g = client.record["governance"]
    assert g["mode"] == "timelock" and keeper.breaker.address == g["breaker"]
    assert project.RiskGovernor.at(g["governor"]).breaker() == g["breaker"]


def test_breaker_thresholds_are_checked_before_anything_is_sent():
    """vperp.governance.check_breaker_markets (deploy_governance's first step): a symbol that is not deployed or
    a value outside the breaker's bound raises, naming it; valid ones become the contract's tuple (0: global)."""
    from types import SimpleNamespace

    from vperp.config import BreakerThresholds
    from vperp.governance import check_breaker_markets

    system = SimpleNamespace(markets={"ETH": SimpleNamespace(id=1), "BTC": SimpleNamespace(id=2)})
    assert check_breaker_markets(system, {"BTC": BreakerThresholds(move_threshold=0.15, max_skew_share=0.75)}) == [
        (2, (15 * WAD // 100, 0, 0, 75 * WAD // 100))]
    for bad, phrase in (({"SOL": BreakerThresholds(move_threshold=0.2)}, "SOL: not a deployed market"),
                        ({"ETH": BreakerThresholds(move_threshold=0.6)}, "breaker.markets.ETH.move_threshold"),
                        ({"ETH": BreakerThresholds(divergence_duration=30)}, "ETH.divergence_duration"),
                        ({"ETH": BreakerThresholds(max_skew_share=0.001)}, "ETH.max_skew_share"),
                        ({"ETH": BreakerThresholds()}, "set at least one")):
        with pytest.raises(ValueError, match=phrase):
            check_breaker_markets(system, bad)
