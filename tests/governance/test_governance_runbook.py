"""docs/governance.md against the contracts, so the runbook cannot drift.

- Every bounded parameter: the parameter tables (header `| name | setter | unit | hard bound | ...`) are parsed,
  and each row's bound is compared with the contract's own, read from the Solidity source: every `Bounds.check(...)`
  call and every explicit `ParameterOutOfBounds` revert, their constants evaluated. A bound changed in a
  contract and not in the page fails, and so does a bounded parameter without a row (or a row for none).
- Every default: the first figure of each row's default column against the value a fresh deployment reads
  (the contracts' own defaults, the shipped config's per-market values, the breaker's `defaultParams`).
- Every `cast` command of the page's `sh` blocks names a function of the exported ABIs, with the return types
  the ABI gives it.
- The runbook's flows on a governed deployment: the instant levers, cancelling a bad proposal, unpausing
  through the timelock, replacing a guardian; and the known limit (a guardian can cancel its own replacement)
  as a strict xfail, so the page is revisited when the governor changes.
"""
from __future__ import annotations

import json
import re
from decimal import Decimal
from pathlib import Path

import pytest
from ape.exceptions import ContractLogicError

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs/governance.md"
from vperp.units import WAD
BOUNDED = ("ClearingHouse", "LiquidationEngine", "LiquidityPool", "AmmController", "governance/CircuitBreaker")
# A contract whose code lives in more than one file: the ClearingHouse's setters run in its configurator.
# ParameterOutOfBounds sites that check a call's own argument, not a parameter anyone governs: no row on the page.
# builderFeeRate: a trade's builder fee rate, refused past 96 bits (it travels packed with the builder's address);
# its real bound is the trader's own approval, at most Vault.MAX_BUILDER_FEE_RATE (docs/integrators.md).
CALL_ARGUMENTS = {("ClearingHouse", "builderFeeRate")}
SOURCES = {"ClearingHouse": ("ClearingHouse", "clearinghouse/ClearingHouseStorage", "clearinghouse/ClearingHouseAccrual",
                             "clearinghouse/ClearingHouseSettlement",
                             "clearinghouse/ClearingHouseConfigurator")}
UNITS = {"s": 1, "min": 60, "h": 3600, "d": 86400}
TIME_WORDS = {"seconds": 1, "minutes": 60, "hours": 3600, "days": 86400}
# Symbolic bounds: the page's spelling -> the contract's expression.
SYMBOLS = {"mmr+1wei": "uint256(p.mmr) + 1", "tip": "p.tip", "duration": "p.duration",
           "maxFundingRate": "p.maxFundingRate", "maxOpenInterest": "p.maxOpenInterest",
           "maxAmplification(range)": "maxAmplification(range)",
           # the funding oscillation's bound: the cap times the hours of it the taker fee must cover
           "min(0.01,takerFee/capFeeHours(smoothingTau))":
               "Math.min(MAX_FUNDING_RATE, m.takerFee / _capFeeHours(p.smoothingTau))",
           "capFeeHours(smoothingTau)xmaxFundingRate": "uint256(f.maxFundingRate) * _capFeeHours(f.smoothingTau)",
           "max(0.00000001,maxFundingRate/4)": "Math.max(MIN_RATE_VELOCITY, p.maxFundingRate / RATE_VELOCITY_CAP_DIVISOR)"}
TYPE_MAX = {"int96max": 2**95 - 1, "uint128max": 2**128 - 1}


# ============================================================================ the contracts' bounds


def _args(text: str, start: int) -> tuple[list[str], int]:
    """The comma-separated arguments of the call whose '(' is at `start` (top-level commas only)."""
    depth, out, cur = 0, [], ""
    for i in range(start, len(text)):
        ch = text[i]
        if ch == "(":
            depth += 1
            if depth == 1:
                continue
        elif ch == ")":
            depth -= 1
            if depth == 0:
                out.append(cur.strip())
                return out, i
        if ch == "," and depth == 1:
            out.append(cur.strip())
            cur = ""
        else:
            cur += ch
    raise ValueError("unbalanced call")


def _evaluate(expr: str, constants: dict):
    """An int for a constant expression; the expression itself (str) for one that depends on the arguments."""
    expr = expr.strip()
    if expr in constants:
        return constants[expr]
    if expr == "type(uint128).max":
        return 2**128 - 1
    if expr == "uint256(uint96(type(int96).max))":
        return 2**95 - 1
    m = re.fullmatch(r"([\d_]+(?:\.\d+)?)(?:e(\d+))?(?:\s+(seconds|minutes|hours|days))?", expr)
    if m:
        value = Decimal(m.group(1).replace("_", "")) * 10 ** int(m.group(2) or 0) * TIME_WORDS.get(m.group(3), 1)
        assert value == value.to_integral_value(), expr
        return int(value)
    return expr


def contract_bounds() -> dict[tuple[str, str], tuple]:
    """(contract, name) -> (low, high) from every ParameterOutOfBounds site of the bounded contracts."""
    out: dict[tuple[str, str], tuple] = {}
    for rel in BOUNDED:
        src = "\n".join((ROOT / "contracts" / f"{f}.sol").read_text() for f in SOURCES.get(rel, (rel,)))
        name = rel.split("/")[-1]
        constants = {"WAD": WAD}
        for c, e in re.findall(r"constant\s+(\w+)\s*=\s*([^;]+);", src):
            constants[c] = _evaluate(e, constants)
        found: dict[str, set] = {}
        for m in re.finditer(r"\bBounds\.check\(", src):
            args, _ = _args(src, m.end() - 1)
            label = args[0].strip('"')
            found.setdefault(label, set()).add((_evaluate(args[2], constants), _evaluate(args[3], constants)))
        for m in re.finditer(r"if \(([^{;]*?)\)\s*\{?\s*revert (?:IClearingHouse\.|IErrors\.)?ParameterOutOfBounds\(\"(\w+)\"", src):
            cond, label = m.group(1), m.group(2)
            if (name, label) in CALL_ARGUMENTS:
                continue
            lo, hi = 0, None
            for part in cond.split("||"):
                part = part.strip()
                if (mm := re.fullmatch(r"[\w.]+ < (\w+)", part)):
                    lo = _evaluate(mm.group(1), constants)
                elif (mm := re.fullmatch(r"[\w.]+ > (\w+)", part)):
                    hi = _evaluate(mm.group(1), constants)
                elif re.fullmatch(r"[\w.]+ == 0", part):
                    lo = 1
                else:
                    raise AssertionError(f"{name}: cannot read the bound of {label!r} from `{cond}`")
            found.setdefault(label, set()).add((lo, hi))
        for label, bounds in found.items():
            assert len(bounds) == 1, f"{name}.{label}: two different bounds in the source: {bounds}"
            out[(name, label)] = bounds.pop()
    return out


# ============================================================================ the page's tables


def doc_rows() -> list[dict]:
    rows, header = [], None
    for line in DOC.read_text().splitlines():
        if not line.startswith("|"):
            header = None
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells[:4] == ["name", "setter", "unit", "hard bound"]:
            header = cells
            continue
        if header is None or set(cells[0]) <= {"-"}:
            continue
        row = dict(zip(header, cells))
        row["name"] = row["name"].strip("`")
        row["contract"], row["function"] = row["setter"].split(".")
        rows.append(row)
    return rows


def _side(text: str, unit: str):
    text = text.strip()
    key = text.replace(" ", "")
    if key in SYMBOLS:
        return SYMBOLS[key]
    if key in TYPE_MAX:
        return TYPE_MAX[key]
    m = re.fullmatch(r"([\d.]+(?:e\d+)?)(s|min|h|d)?", key)
    assert m, f"cannot read {text!r}"
    value = Decimal(m.group(1))
    if unit == "wad":
        value *= WAD
    elif unit == "s":
        value *= UNITS[m.group(2) or "s"]
    assert value == value.to_integral_value(), text
    return int(value)


def doc_bound(row) -> tuple:
    m = re.fullmatch(r"`(.+) \.\. (.+)`", row["hard bound"])
    assert m, f"{row['name']}: the bound must read `low .. high`, not {row['hard bound']!r}"
    return _side(m.group(1), row["unit"]), _side(m.group(2), row["unit"])


def test_every_bounded_parameter_has_a_row_with_the_contracts_bound():
    code = contract_bounds()
    rows = doc_rows()
    assert len(code) >= 45  # every _bound / ParameterOutOfBounds site of the five contracts
    documented = {}
    for row in rows:
        key = (row["contract"], row["name"])
        assert key not in documented, f"two rows for {key}"
        documented[key] = doc_bound(row)
    assert set(documented) == set(code), (f"in the contracts, not on the page: {sorted(set(code) - set(documented))}; "
                                          f"on the page, not in the contracts: {sorted(set(documented) - set(code))}")
    wrong = {k: (documented[k], code[k]) for k in code if documented[k] != code[k]}
    assert not wrong, f"page vs contract: {wrong}"


def test_the_parser_reads_what_the_contracts_say():
    """Spot checks of the reader itself (so the comparison above is not vacuous)."""
    code = contract_bounds()
    assert code[("ClearingHouse", "mmr")] == (5 * 10**15, 5 * 10**17)
    assert code[("ClearingHouse", "imr")] == ("uint256(p.mmr) + 1", WAD)
    assert code[("ClearingHouse", "heartbeat")] == (60, 2 * 86400)
    assert code[("ClearingHouse", "quoteReserve")] == (1, 10**36)
    assert code[("LiquidityPool", "withdrawCooldown")] == (0, 30 * 86400)
    assert code[("LiquidityPool", "withdrawWindow")] == (3600, 30 * 86400)
    assert code[("LiquidationEngine", "maxAuctionNotional")] == (1, 2**128 - 1)
    assert code[("CircuitBreaker", "coolOff")] == (300, 86400)
    assert code[("CircuitBreaker", "maxSkewShare")] == (10**16, 10 * WAD)
    rows = {(r["contract"], r["name"]): r for r in doc_rows()}
    assert doc_bound(rows[("ClearingHouse", "maxOpenInterest")]) == (1, 2**95 - 1)
    assert doc_bound(rows[("CircuitBreaker", "coolOff")]) == (300, 86400)


# ============================================================================ defaults


@pytest.fixture(scope="module")
def governed(system, accounts):
    """The session's system handed to governance once for the module (each test's own changes are reverted)."""
    from vperp.governance import deploy_governance

    return deploy_governance(system, system.deployer, accounts[7], accounts[8])


def _first_figure(text: str, unit: str):
    m = re.match(r"([\d,]+(?:\.\d+)?)\s*(s|min|h|day|days|USD|ETH)?\b", text)
    if not m:
        return None
    value = Decimal(m.group(1).replace(",", ""))
    word = m.group(2)
    if unit == "wad":
        return int(value * WAD)
    if unit == "s":
        return int(value * {"s": 1, "min": 60, "h": 3600, "day": 86400, "days": 86400}.get(word or "s"))
    return int(value)


@pytest.fixture(scope="module")
def shipped(deployer, accounts):
    """The shipped deployment (the session's `system` lists the lagging peg, docs/testing.md), handed to
    governance."""
    from vperp import deploy
    from vperp.config import default_config
    from vperp.governance import deploy_governance

    system = deploy(deployer, default_config())
    return system, deploy_governance(system, system.deployer, accounts[7], accounts[8])


def test_defaults_are_what_a_deployment_reads(shipped):
    system, g = shipped
    ch, engine, pool, amm = system.clearing_house, system.liquidation, system.pool, system.amm
    eth = system.markets["ETH"].id
    views = {
        "setMarketParams": lambda n: (ch.insuranceFeeShare(eth) if n == "insuranceFeeShare"
                                      else getattr(ch.marketParams(eth), n)),
        "listMarket": lambda n: {"baseReserve": ch.marketState(eth).baseReserve}.get(n),
        "setFundingParams": lambda n: getattr(ch.fundingParams(eth), n),
        "setSkewFunding": lambda n: ch.skewFunding(eth)[0],
        "setPegTolerance": lambda n: ch.pegTolerance(eth),
        "setAuctionParams": lambda n: getattr(engine.auctionParams(eth), n),
        "setLiquidationParams": lambda n: getattr(engine.liquidationParams(), n),
        "setAmmParams": lambda n: getattr(amm.ammParams(eth), n),
        "setConcentration": lambda n: amm.concentration(eth)[{"range": 0, "amplification": 1}[n]],
        "setPoolParams": lambda n: getattr(pool.poolParams(), n),
        "setParams": lambda n: getattr(g.breaker.params(), n),
    }
    checked = 0
    for row in doc_rows():
        expected = _first_figure(row["default"], row["unit"])
        if expected is None:  # derived (quoteReserve)
            continue
        actual = views[row["function"]](row["name"])
        assert int(actual) == expected, f"{row['setter']} {row['name']}: page says {row['default']!r}, chain {actual}"
        checked += 1
    assert checked == len(doc_rows()) - 1
    assert g.breaker.params() == g.breaker.defaultParams()


# ============================================================================ the cast commands


def _abi_functions() -> dict[str, set[tuple]]:
    from helpers.scripts import load_script

    export = load_script("export_abi")
    out: dict[str, set[tuple]] = {}
    for path in (ROOT / "abi").glob("*.json"):
        if path.name == "signatures.json":
            continue
        for e in json.loads(path.read_text()):
            if e.get("type") == "function":
                outputs = tuple(export.canonical_type(o) for o in e.get("outputs", []))
                out.setdefault(export.signature(e), set()).add(outputs)
    return out


def _split_signature(sig: str) -> tuple[str, str | None]:
    """'f(a,b)(c)' -> ('f(a,b)', 'c'); 'f(a)' -> ('f(a)', None)."""
    start = sig.index("(")
    _, end = _args(sig, start)
    call = sig[:end + 1]
    rest = sig[end + 1:]
    if not rest:
        return call, None
    assert rest.startswith("(") and rest.endswith(")"), sig
    return call, rest[1:-1]


def _top_level(types: str) -> tuple:
    return tuple(_args(f"({types})", 0)[0]) if types else ()


def test_every_cast_command_names_a_real_function():
    blocks = re.findall(r"```sh\n(.*?)```", DOC.read_text(), re.S)
    text = "\n".join(blocks) + "\n" + "\n".join(re.findall(r"`(cast [^`]+)`", DOC.read_text()))
    functions = _abi_functions()
    sigs = re.findall(r"cast (?:send|call|calldata) [^\n\"]*?\"(\w+\([^\"]*\))\"", text)
    assert len(sigs) >= 15
    for sig in sigs:
        call, returns = _split_signature(sig)
        assert call in functions, f"{call}: no such function in abi/"
        if returns is not None:
            assert _top_level(returns) in functions[call], f"{sig}: the ABI returns {functions[call]}"


# ============================================================================ the runbook's flows


def _pid(g, tx):
    (log,) = g.governor.Proposed.from_receipt(tx)
    return log.proposalId, log.eta


def test_instant_levers_and_unpausing_through_the_timelock(system, governed, chain, accounts):
    g, vault, ch = governed, system.vault, system.clearing_house
    eth = system.markets["ETH"].id
    # cap a market's growth at once: maxOpenInterest down, every other field as configured
    p, share = g.governor.configuredMarketParams(eth)
    p = tuple(p)  # (oracle, heartbeat, twapWindow, imr, mmr, takerFee, maxSpread, maxOiPoolRatio, maxOpenInterest,
    #                minPositionSize)
    tighter = p[:8] + (p[8] // 2, p[9])
    g.governor.act(ch, ch.setMarketParams.encode_input(eth, tighter, share), sender=g.guardian)
    assert ch.marketParams(eth).maxOpenInterest == p[8] // 2
    # pause level 1 at once, through the governor and directly on the Vault; lowering refused at once
    g.governor.act(vault, vault.setPauseLevel.encode_input(1), sender=g.guardian)
    vault.setPauseLevel(2, sender=g.guardian)
    assert vault.pauseLevel() == 2
    with pytest.raises(ContractLogicError) as err:
        g.governor.act(vault, vault.setPauseLevel.encode_input(0), sender=g.admin)
    assert type(err.value).__name__ == "NotRiskReducing"
    # unpausing: proposed, executable by anyone from eta on
    pid, eta = _pid(g, g.governor.propose(vault, vault.setPauseLevel.encode_input(0), sender=g.admin))
    assert eta == chain.blocks.head.timestamp + 48 * 3600
    chain.pending_timestamp = eta - 1
    with pytest.raises(ContractLogicError):
        g.governor.execute(pid, sender=accounts[9])
    chain.pending_timestamp = eta
    g.governor.execute(pid, sender=accounts[9])
    assert vault.pauseLevel() == 0


def test_a_bad_proposal_is_cancelled_by_the_guardian(system, governed, chain, accounts):
    g, pool = governed, system.pool
    bad = (30 * 86400, 3600, 0)  # a 30-day cooldown and no reserve: within bounds, but unwanted
    pid, eta = _pid(g, g.governor.propose(pool, pool.setPoolParams.encode_input(bad), sender=g.admin))
    assert pid in g.governor.pendingProposals()
    g.governor.cancel(pid, sender=g.guardian)
    assert g.governor.proposal(pid).state == 3 and pid not in g.governor.pendingProposals()
    chain.pending_timestamp = eta
    with pytest.raises(ContractLogicError) as err:
        g.governor.execute(pid, sender=accounts[9])
    assert type(err.value).__name__ == "ProposalNotPending"
    assert tuple(pool.poolParams()) == (86400, 2 * 86400, WAD // 5)


def test_replacing_a_lost_guardian(system, governed, chain, accounts):
    g, vault = governed, system.vault
    new = accounts[6]
    ids = [_pid(g, g.governor.propose(target, target.setGuardian.encode_input(new), sender=g.admin))
           for target in (g.governor, vault)]
    chain.pending_timestamp = max(eta for _, eta in ids)
    for pid, _ in ids:
        g.governor.execute(pid, sender=accounts[9])
    assert g.governor.guardian() == vault.guardian() == new.address
    g.governor.act(vault, vault.setPauseLevel.encode_input(1), sender=new)
    with pytest.raises(ContractLogicError):
        g.governor.act(vault, vault.setPauseLevel.encode_input(2), sender=g.guardian)


def _declares(contract, error: str) -> bool:
    return any(e.name == error for e in contract.contract_type.errors)


def test_the_guardian_cannot_veto_its_replacement_or_an_unpause(system, governed, accounts):
    """The runbook's "A guardian key lost": the admin replaces the guardian, and the guardian may not cancel
    that (nor an unpause, nor any of the governor's own setters); it may still cancel anything else."""
    g, vault, pool = governed, system.vault, system.pool
    if not _declares(g.governor, "GuardianCannotCancel"):
        pytest.xfail("this build's governor lets the guardian cancel every proposal (docs/governance.md)")
    g.governor.act(vault, vault.setPauseLevel.encode_input(1), sender=g.guardian)
    vetoed = [(g.governor, g.governor.setGuardian.encode_input(accounts[6])),
              (vault, vault.setGuardian.encode_input(accounts[6])),
              (vault, vault.setPauseLevel.encode_input(0)),
              (g.governor, g.governor.setAdmin.encode_input(accounts[6]))]
    for target, data in vetoed:
        pid, _ = _pid(g, g.governor.propose(target, data, sender=g.admin))
        with pytest.raises(ContractLogicError) as err:
            g.governor.cancel(pid, sender=g.guardian)
        assert type(err.value).__name__ == "GuardianCannotCancel"
        g.governor.cancel(pid, sender=g.admin)  # the admin may
    pid, _ = _pid(g, g.governor.propose(pool, pool.setPoolParams.encode_input((0, 3600, 0)), sender=g.admin))
    g.governor.cancel(pid, sender=g.guardian)
