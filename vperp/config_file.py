"""Deployment configuration files: YAML -> `DeployConfig`, every field validated.

A file looks like `deployments/config/local.yaml`:

    collateral: mock            # "mock" (a mintable test token, local networks only) or an ERC-20 address
    decimals: 6                 # the collateral token's decimals
    pool_seed: 10000000         # collateral the deployer deposits into the liquidity pool (human units)
    insurance_seed: 100000      # collateral the deployer grants to the insurance fund
    markets:
      - symbol: ETH
        oracle: mock            # "mock" (local only, then `price` is required) or a Chainlink-style feed
        price: 3000
        min_position_size: 0.01
        peg_guard: false        # true: hold the peg while an index move holds the market (needs governance)
        # ... any other `MarketConfig` field; omitted fields take the defaults of vperp/config.py
    governance:                 # optional: without it the deployer stays the owner (local demos)
      admin: "0x..."            # the RiskGovernor's admin (a multisig): proposes, acts on risk-reducing changes
      guardian: "0x..."         # acts at once on risk-reducing changes, cancels proposals; the Vault's guardian
      timelock_delay: 172800    # [s] at least 86400 (RiskGovernor.MIN_DELAY), at most 30 days; default 48 h
      breaker:                  # optional: per-market thresholds of the move, divergence and skew breakers
        markets:                # symbol -> any of the four; a field left out (or a market not listed): global
          ETH: {move_threshold: 0.2, divergence_threshold: 0.1, divergence_duration: 1800, max_skew_share: 1}

Every problem raises `ConfigError` whose message starts with the file and names the field
(`markets[1].imr`, `pool_seed`, ...): unknown fields (with a suggestion), wrong types, values outside
the bounds the contracts enforce (the same bounds, so a config that loads does not revert at listing),
missing required fields, duplicate keys or symbols. Addresses must be quoted in YAML: an unquoted
`0x...` is read as a number by YAML, which the loader reports.

`check_network` refuses mock oracles and mock collateral on a network that is not local.
"""
from __future__ import annotations

import dataclasses
import difflib
import re
from decimal import Context, Decimal, InvalidOperation, localcontext
from pathlib import Path
from typing import Any

import yaml

from .config import (BREAKER_THRESHOLD_BOUNDS, DEFAULT_TIMELOCK_DELAY, MAX_TIMELOCK_DELAY, MIN_TIMELOCK_DELAY,
                     BreakerThresholds, DeployConfig, GovernanceConfig, MarketConfig, OrderRouterConfig,
                     max_amplification, wad)

LOCAL_CHAIN_IDS = (1337, 31337)
from .units import AUCTION_CURVES, EXECUTION_WINDOW_BOUNDS, MAX_MIN_KEEPER_FEE_ETH  # noqa: E402
from .units import cap_fee_hours, INT96_MAX, max_funding_cap, MAX_FUNDING_PERIOD_HOURS, MAX_PEG_TOLERANCE_BPS, SLOW_SMOOTHING_TAU, SMOOTHING_TAU_BOUNDS, UINT64_MAX, WAD  # noqa: E402 - int96: every position fits an auction; uint64: AmmParams' ratios


def _wad_to_human(raw: int) -> Decimal:
    """An exact human value of a WAD integer (Decimal's default 28 digits would round INT96_MAX / WAD up)."""
    return Decimal(raw).scaleb(-18, Context(prec=80))


class ConfigError(ValueError):
    """A deployment configuration problem; the message names the field."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


# ----------------------------------------------------------------------------- field rules
# (kind, low, high, low_inclusive, high_inclusive); None = unbounded. Bounds mirror the contracts'
# `ParameterOutOfBounds` checks (ClearingHouse, LiquidationEngine, AmmController), in human units.

_INT, _NUM = "integer", "number"

MARKET_RULES: dict[str, tuple] = {
    "oracle_decimals": (_INT, 0, 18, True, True),
    "heartbeat": (_INT, 60, 2 * 86_400, True, True),
    "twap_window": (_INT, 60, 4 * 3_600, True, True),
    "imr": (_NUM, 0, 1, False, True),  # and > mmr (checked below)
    "mmr": (_NUM, Decimal("0.005"), Decimal("0.5"), True, True),
    "taker_fee": (_NUM, 0, Decimal("0.01"), True, True),
    "insurance_fee_share": (_NUM, 0, 1, True, True),
    "max_spread": (_NUM, Decimal("0.005"), Decimal("0.5"), True, True),
    "max_oi_pool_ratio": (_NUM, 0, 10, False, True),
    "max_open_interest": (_NUM, 0, _wad_to_human(INT96_MAX), False, True),
    "min_position_size": (_NUM, 0, _wad_to_human(INT96_MAX), False, True),
    "base_reserve": (_NUM, 1, Decimal(10) ** 18, True, True),
    "auction_duration": (_INT, 60, 86_400, True, True),
    "auction_step": (_INT, 1, None, True, True),  # and <= auction_duration
    "auction_max_discount": (_NUM, 0, Decimal("0.5"), False, True),
    "auction_reset_drop": (_NUM, Decimal("0.005"), Decimal("0.5"), True, True),
    "depth_ratio": (_NUM, 0, _wad_to_human(UINT64_MAX), False, True),  # the field's type, below MAX_DEPTH_RATIO
    "depth_range": (_NUM, Decimal("0.01"), Decimal("0.5"), True, True),  # and null: no concentration
    # and <= maxAmplification(depth_range) (checked below); the static ceiling is the cap at the smallest range
    "depth_amplification": (_NUM, 1, _wad_to_human(max_amplification(10**16)), True, True),
    "max_depth_change": (_NUM, 0, Decimal("0.5"), False, True),
    "repeg_threshold": (_NUM, Decimal("0.001"), 1, True, True),
    "max_repeg_step": (_NUM, 0, Decimal("0.1"), False, True),
    "max_repeg_cost": (_NUM, 0, Decimal("0.01"), True, True),
    "repeg_interval": (_INT, 0, 86_400, True, True),
    "depth_interval": (_INT, 60, 86_400, True, True),
    "max_depth_cost": (_NUM, 0, Decimal("0.01"), True, True),
    "skew_funding": (_NUM, 0, Decimal("0.01"), True, True),  # and a whole number of millionths (MarketConfig)
    "peg_tolerance_bps": (_INT, 0, MAX_PEG_TOLERANCE_BPS, True, True),
    "funding_period_hours": (_INT, 1, MAX_FUNDING_PERIOD_HOURS, True, True),
    "funding_smoothing_tau": (_INT, *SMOOTHING_TAU_BOUNDS, True, True),
    # and at most taker_fee / cap_fee_hours(funding_smoothing_tau) (checked below); the static ceiling is that at the
    # largest fee (1 %) and a slow time constant, below the contract's hard bound MAX_FUNDING_RATE
    "max_funding_rate": (_NUM, 0, _wad_to_human(max_funding_cap(10**16, SLOW_SMOOTHING_TAU)), True, True),
    "price": (_NUM, 0, None, False, True),
}
CURVES = AUCTION_CURVES  # ILiquidationEngine.Curve's names, in enum order
MARKET_FIELDS = tuple(f.name for f in dataclasses.fields(MarketConfig))
TOP_FIELDS = ("markets", "collateral", "decimals", "pool_seed", "insurance_seed", "governance", "order_router")
# OrderRouter's constructor bounds (ParameterOutOfBounds): the least keeper fee [ETH] and the execution window [s].
ROUTER_RULES: dict[str, tuple] = {
    "min_keeper_fee": (_NUM, 0, Decimal(str(MAX_MIN_KEEPER_FEE_ETH)), True, True),
    "execution_window": (_INT, *EXECUTION_WINDOW_BOUNDS, True, True),
}
GOVERNANCE_FIELDS = ("admin", "guardian", "timelock_delay", "breaker")
BREAKER_FIELDS = ("markets",)
# CircuitBreaker's bounds (ParameterOutOfBounds), human units: the same for a market's own thresholds.
BREAKER_RULES: dict[str, tuple] = {
    "move_threshold": (_NUM, *BREAKER_THRESHOLD_BOUNDS["move_threshold"], True, True),
    "divergence_threshold": (_NUM, *BREAKER_THRESHOLD_BOUNDS["divergence_threshold"], True, True),
    "divergence_duration": (_INT, *BREAKER_THRESHOLD_BOUNDS["divergence_duration"], True, True),
    "max_skew_share": (_NUM, *BREAKER_THRESHOLD_BOUNDS["max_skew_share"], True, True),
}
_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")


# ----------------------------------------------------------------------------- YAML loading


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (PyYAML silently keeps the last one)."""


def _mapping_no_duplicates(loader, node, deep=False):
    seen: dict = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise ConfigError(f"{key}: duplicate key (line {key_node.start_mark.line + 1})", field=str(key))
        seen[key] = True
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_no_duplicates)


def load_config(path: str | Path) -> DeployConfig:
    """Read and validate a deployment YAML file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.load(path.read_text(), Loader=_StrictLoader)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}", field=e.field) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{path}: not valid YAML{where}: {problem}") from None
    return parse_config(data, source=str(path))


# ----------------------------------------------------------------------------- validation


def parse_config(data: Any, source: str = "config") -> DeployConfig:
    """Validate a parsed YAML/JSON mapping and build the `DeployConfig`."""

    def fail(field: str, msg: str, note: str = ""):
        raise ConfigError(f"{source}: {field}{f' ({note})' if note else ''}: {msg}", field=field)

    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the file must be a mapping with a 'markets' list, not {_kind(data)}")
    _unknown(data, TOP_FIELDS, "", fail)
    defaults = DeployConfig()

    if "markets" not in data:
        fail("markets", "missing required field (a list of markets, each with at least 'symbol')")
    markets = data["markets"]
    if not isinstance(markets, list) or not markets:
        fail("markets", f"must be a non-empty list of markets, got {_kind(markets) if markets != [] else 'an empty list'}")
    if len(markets) > 128:
        fail("markets", f"at most 128 markets per deployment, got {len(markets)}")

    collateral = data.get("collateral", defaults.collateral)
    collateral = _address_or_mock("collateral", collateral, fail)
    decimals = _number("decimals", data.get("decimals", defaults.collateral_decimals), (_INT, 0, 18, True, True), fail)
    seeds = {}
    for name in ("pool_seed", "insurance_seed"):
        value = _number(name, data.get(name, getattr(defaults, name)), (_NUM, 0, None, True, True), fail)
        with localcontext() as ctx:
            ctx.prec = 100
            units = Decimal(str(value)) * 10**decimals
            if units != units.to_integral_value():
                fail(name, f"{value} has more decimals than the collateral's {decimals}")
        seeds[name] = value

    parsed = []
    seen_symbols: dict[str, int] = {}
    for i, m in enumerate(markets):
        mc = _market(i, m, decimals, fail)
        if mc.symbol in seen_symbols:
            fail(f"markets[{i}].symbol", f"duplicate symbol {mc.symbol!r} (also markets[{seen_symbols[mc.symbol]}])")
        seen_symbols[mc.symbol] = i
        parsed.append(mc)
    governance = _governance(data["governance"], fail) if "governance" in data else None
    if governance is None:
        for i, mc in enumerate(parsed):
            if mc.peg_guard:
                fail(f"markets[{i}].peg_guard", "needs a governance section: the guard is the circuit breaker it deploys")
    if governance is not None:
        for sym, _ in governance.breaker_markets:
            if sym not in seen_symbols:
                fail(f"governance.breaker.markets.{sym}",
                     f"not a market of this config (markets: {', '.join(seen_symbols)})")
    router = _order_router(data["order_router"], fail) if "order_router" in data else OrderRouterConfig()
    return DeployConfig(markets=tuple(parsed), collateral=collateral, collateral_decimals=decimals,
                        pool_seed=seeds["pool_seed"], insurance_seed=seeds["insurance_seed"], governance=governance,
                        order_router=router)


def _order_router(r: Any, fail) -> OrderRouterConfig:
    if not isinstance(r, dict):
        fail("order_router", f"must be a mapping (min_keeper_fee, execution_window), got {_kind(r)}")
    _unknown(r, tuple(ROUTER_RULES), "order_router.", fail)
    kwargs = {name: _number(f"order_router.{name}", r[name], rule, fail) for name, rule in ROUTER_RULES.items()
              if name in r}
    if "min_keeper_fee" in kwargs:
        with localcontext() as ctx:
            ctx.prec = 100
            wei = Decimal(str(kwargs["min_keeper_fee"])) * 10**18
        if wei != wei.to_integral_value():
            fail("order_router.min_keeper_fee", f"{kwargs['min_keeper_fee']} has more than 18 decimals")
    return OrderRouterConfig(**kwargs)


def _governance(g: Any, fail) -> GovernanceConfig:
    """The `governance:` section: admin and guardian (required, non-zero addresses), timelock_delay."""
    if not isinstance(g, dict):
        fail("governance", f"must be a mapping with 'admin' and 'guardian' (and optionally 'timelock_delay'), "
                           f"got {_kind(g)}; leave the section out to keep the deployer as the owner")
    _unknown(g, GOVERNANCE_FIELDS, "governance.", fail)
    addresses = {}
    for name in ("admin", "guardian"):
        if name not in g:
            fail(f"governance.{name}", "missing required field (a quoted 0x address)")
        addresses[name] = _address(f"governance.{name}", g[name], fail, "an account")
    delay = _number("governance.timelock_delay", g.get("timelock_delay", DEFAULT_TIMELOCK_DELAY),
                    (_INT, MIN_TIMELOCK_DELAY, MAX_TIMELOCK_DELAY, True, True), fail)
    breaker_markets = _breaker(g["breaker"], fail) if "breaker" in g else ()
    return GovernanceConfig(admin=addresses["admin"], guardian=addresses["guardian"], timelock_delay=int(delay),
                            breaker_markets=breaker_markets)


def _breaker(b: Any, fail) -> tuple[tuple[str, BreakerThresholds], ...]:
    """`governance.breaker`: `markets`, symbol -> the market's own breaker thresholds, each within the
    CircuitBreaker's bound (so the deployment's setMarketThresholds cannot revert)."""
    if not isinstance(b, dict):
        fail("governance.breaker", f"must be a mapping with 'markets', got {_kind(b)}")
    _unknown(b, BREAKER_FIELDS, "governance.breaker.", fail)
    markets = b.get("markets", {})
    if not isinstance(markets, dict):
        fail("governance.breaker.markets", f"must be a mapping of market symbol -> thresholds, got {_kind(markets)}")
    out = []
    for sym, t in markets.items():
        where = f"governance.breaker.markets.{sym}"
        if not isinstance(t, dict) or not t:
            fail(where, f"must be a mapping with any of {', '.join(BREAKER_RULES)}, got "
                        f"{_kind(t) if t != {} else 'an empty mapping'}")
        _unknown(t, tuple(BREAKER_RULES), f"{where}.", fail)
        values = {name: _number(f"{where}.{name}", t[name], rule, fail)
                  for name, rule in BREAKER_RULES.items() if name in t}
        if "divergence_duration" in values:
            values["divergence_duration"] = int(values["divergence_duration"])
        out.append((str(sym), BreakerThresholds(**values)))
    return tuple(out)


def _market(i: int, m: Any, decimals: int, fail_) -> MarketConfig:
    where = f"markets[{i}]"
    if not isinstance(m, dict):
        fail_(where, f"must be a mapping with at least 'symbol', got {_kind(m)}")
    note = m["symbol"] if isinstance(m.get("symbol"), str) else ""

    def fail(field, msg):  # names the market's symbol next to the field, when there is one
        fail_(field, msg, note)

    _unknown(m, MARKET_FIELDS, f"{where}.", fail)
    if "symbol" not in m:
        fail(f"{where}.symbol", "missing required field")
    symbol = m["symbol"]
    if not isinstance(symbol, str) or not symbol.strip():
        fail(f"{where}.symbol", f"must be a non-empty string, got {_kind(symbol)}")
    if symbol != symbol.strip() or any(c.isspace() for c in symbol):
        fail(f"{where}.symbol", f"must not contain whitespace: {symbol!r}")
    if len(symbol.encode()) > 32:
        fail(f"{where}.symbol", f"at most 32 bytes (it is stored as bytes32), got {len(symbol.encode())}")

    kwargs: dict[str, Any] = {"symbol": symbol}
    oracle = _address_or_mock(f"{where}.oracle", m.get("oracle", "mock"), fail)
    kwargs["oracle"] = oracle
    for name, rule in MARKET_RULES.items():
        if name in m:
            if m[name] is None and name in ("depth_range", "depth_amplification", "max_funding_rate"):
                kwargs[name] = None  # no concentration; the listing's funding cap
                continue
            kwargs[name] = _number(f"{where}.{name}", m[name], rule, fail)
    for flag in ("delayed_orders", "peg_guard"):
        if flag in m:
            if not isinstance(m[flag], bool):
                fail(f"{where}.{flag}", f"must be true or false, got {_kind(m[flag])}")
            kwargs[flag] = m[flag]
    if "auction_curve" in m:
        curve = m["auction_curve"]
        if curve not in CURVES:
            fail(f"{where}.auction_curve", f"must be one of {', '.join(CURVES)}, got {curve!r}")
        kwargs["auction_curve"] = curve

    # price: required for a mock feed (its first answer), meaningless for a real one
    if oracle == "mock":
        if "price" not in m:
            fail(f"{where}.price", "missing required field (the mock oracle's initial price)")
    else:
        if "price" in m:
            fail(f"{where}.price", f"only for oracle: mock (the feed at {oracle} sets the price); remove it")
        kwargs["price"] = 0

    mc = MarketConfig(**kwargs)
    # cross-field rules, as the contracts check them
    if Decimal(str(mc.imr)) <= Decimal(str(mc.mmr)):
        fail(f"{where}.imr", f"must be greater than mmr ({mc.mmr}), got {mc.imr}")
    if (mc.depth_range is None) != (mc.depth_amplification is None):
        fail(f"{where}.depth_amplification", "depth_range and depth_amplification are set together (or both null)")
    if mc.depth_range is not None and mc.depth_amplification is not None:
        cap = max_amplification(wad(mc.depth_range))
        if wad(mc.depth_amplification) > cap:
            fail(f"{where}.depth_amplification",
                 f"must be at most maxAmplification(depth_range) = {Decimal(cap) / WAD} for a range of {mc.depth_range}, got {mc.depth_amplification}")
    if mc.delayed_orders and not mc.peg_tolerance_bps:
        fail(f"{where}.delayed_orders", "needs peg_tolerance_bps > 0 (an order executes only at a peg within it of "
             "the index; the contract refuses PegToleranceRequired)")
    if mc.delayed_orders and Decimal(mc.peg_tolerance_bps) / 10_000 <= Decimal(str(mc.repeg_threshold)):
        fail(f"{where}.peg_tolerance_bps",
             f"with delayed_orders it must be above repeg_threshold ({mc.repeg_threshold} = "
             f"{Decimal(str(mc.repeg_threshold)) * 10_000:g} bps), got {mc.peg_tolerance_bps}: a peg between the two "
             "would hold every order (PegStale) while repeg refuses to move it (RepegNotNeeded)")
    cap_bound = max_funding_cap(wad(mc.taker_fee), mc.funding_smoothing_tau)
    if mc.max_funding_rate is not None and wad(mc.max_funding_rate) > cap_bound:
        fail(f"{where}.max_funding_rate",
             f"must be at most taker_fee / {cap_fee_hours(mc.funding_smoothing_tau)} per hour at a time constant of "
             f"{mc.funding_smoothing_tau} s ({Decimal(cap_bound) / WAD}), got {mc.max_funding_rate}: a position "
             "flipped between sides about daily would be paid too much of its fees in funding (the contract refuses "
             "ParameterOutOfBounds)")
    if mc.auction_step > mc.auction_duration:
        fail(f"{where}.auction_step", f"must be at most auction_duration ({mc.auction_duration}), got {mc.auction_step}")
    if Decimal(str(mc.min_position_size)) > Decimal(str(mc.max_open_interest)):
        fail(f"{where}.min_position_size",
             f"must be at most max_open_interest ({mc.max_open_interest}), got {mc.min_position_size}")
    if oracle == "mock":
        with localcontext() as ctx:
            ctx.prec = 100
            answer = Decimal(str(mc.price)) * 10**mc.oracle_decimals
            quote_reserve = Decimal(str(mc.base_reserve)) * Decimal(str(mc.price))
        if answer != answer.to_integral_value():
            fail(f"{where}.price", f"{mc.price} has more decimals than oracle_decimals ({mc.oracle_decimals})")
        if answer >= 2**255:
            fail(f"{where}.price", f"too large for the feed's int256 answer: {mc.price}")
        if quote_reserve > Decimal(10) ** 18:
            fail(f"{where}.base_reserve",
                 f"base_reserve x price (the vAMM's quote reserve) must be at most 1e18, got {quote_reserve:.6g}")
    return mc


def _unknown(mapping: dict, allowed: tuple, prefix: str, fail) -> None:
    for key in mapping:
        if key not in allowed:
            hint = difflib.get_close_matches(str(key), allowed, n=1)
            suggestion = f"; did you mean '{hint[0]}'?" if hint else f" (allowed: {', '.join(allowed)})"
            fail(f"{prefix}{key}", f"unknown field{suggestion}")


def _kind(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, (int, float)):
        return f"a number ({value})"
    if isinstance(value, str):
        return f"a string ({value!r})"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _number(field: str, value: Any, rule: tuple, fail):
    """Validate a numeric field; returns an int, a float, or a Decimal (for a quoted number)."""
    kind, lo, hi, lo_inc, hi_inc = rule
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        fail(field, f"must be {'an integer' if kind == _INT else 'a number'}, got {_kind(value)}")
    if isinstance(value, str):
        try:
            parsed = Decimal(value.strip().replace("_", ""))
        except InvalidOperation:
            fail(field, f"must be {'an integer' if kind == _INT else 'a number'}, got {_kind(value)}")
        if not parsed.is_finite():
            fail(field, f"must be a finite number, got {value!r}")
        value = int(parsed) if kind == _INT and parsed == parsed.to_integral_value() else parsed
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        fail(field, f"must be a finite number, got {value}")
    if kind == _INT and not isinstance(value, int):
        fail(field, f"must be an integer, got {_kind(value) if not isinstance(value, Decimal) else value}")
    d = Decimal(str(value))
    with localcontext() as ctx:
        ctx.prec = 100
        if d * WAD != (d * WAD).to_integral_value():
            fail(field, f"{value} has more than 18 decimals")
    if lo is not None and (d < lo or (d == lo and not lo_inc)):
        fail(field, f"must be {'at least' if lo_inc else 'greater than'} {lo}, got {value}")
    if hi is not None and (d > hi or (d == hi and not hi_inc)):
        fail(field, f"must be {'at most' if hi_inc else 'less than'} {_fmt(hi)}, got {value}")
    return value


def _fmt(x) -> str:
    d = Decimal(str(x))
    return f"{d:.6g}" if d > 10**9 else str(x)


def _address_or_mock(field: str, value: Any, fail) -> str:
    if value == "mock":
        return "mock"
    return _address(field, value, fail, "a contract", or_mock=True)


def _address(field: str, value: Any, fail, what: str, or_mock: bool = False) -> str:
    """A checksummed address from a quoted 0x string (any case; mixed case must be EIP-55), never zero."""
    mock = ', or "mock"' if or_mock else ""
    if isinstance(value, int) and not isinstance(value, bool):
        fail(field, f"got a number: put the address in quotes (YAML reads an unquoted 0x... as a number){mock}")
    if not isinstance(value, str) or not _ADDRESS.match(value):
        either = '"mock" or ' if or_mock else ""
        fail(field, f"must be {either}a 0x-prefixed 20-byte address, got {_kind(value)}")
    if int(value, 16) == 0:
        fail(field, f"the zero address is not {what}")
    from eth_utils import is_checksum_address, to_checksum_address

    if value != value.lower() and value != value.upper().replace("0X", "0x") and not is_checksum_address(value):
        fail(field, f"bad EIP-55 checksum: {value} (expected {to_checksum_address(value)})")
    return to_checksum_address(value)


# ----------------------------------------------------------------------------- networks and records


def is_local_network(chain_id: int, network_name: str) -> bool:
    """Local chains: the embedded test chain and Anvil/Hardhat (chain id 1337/31337), any network named
    "local", and forks (ephemeral: "mainnet-fork", ...)."""
    return chain_id in LOCAL_CHAIN_IDS or network_name == "local" or network_name.endswith("-fork")


def check_network(config: DeployConfig, chain_id: int, network_name: str) -> None:
    """Refuse mock oracles and mock collateral anywhere but a local network."""
    if is_local_network(chain_id, network_name):
        return
    mocks = [f"markets[{i}].oracle ({m.symbol})" for i, m in enumerate(config.markets) if m.oracle == "mock"]
    if config.collateral == "mock":
        mocks.insert(0, "collateral")
    if mocks:
        raise ConfigError(
            f"{', '.join(mocks)}: 'mock' is only allowed on local networks (chain id 1337/31337), but "
            f"'{network_name}' is chain id {chain_id}: set real addresses",
            field=mocks[0].split(" ")[0])


def config_to_dict(config: DeployConfig) -> dict:
    """The config as a YAML/JSON mapping that `parse_config` reads back to an equal `DeployConfig`.
    Market fields equal to their defaults are left out."""
    base = {f.name: f.default for f in dataclasses.fields(MarketConfig) if f.default is not dataclasses.MISSING}

    def plain(v):
        return str(v) if isinstance(v, Decimal) else v

    markets = []
    for m in config.markets:
        d: dict[str, Any] = {"symbol": m.symbol, "oracle": m.oracle}
        if m.oracle == "mock":
            d["price"] = plain(m.price)
        for f in dataclasses.fields(MarketConfig):
            if f.name in ("symbol", "oracle", "price"):
                continue
            v = getattr(m, f.name)
            if v != base.get(f.name):
                d[f.name] = plain(v)
        markets.append(d)
    out = {"collateral": config.collateral, "decimals": config.collateral_decimals,
           "pool_seed": plain(config.pool_seed), "insurance_seed": plain(config.insurance_seed),
           "markets": markets}
    if config.order_router != OrderRouterConfig():  # left out at the defaults, so older records read the same
        out["order_router"] = {k: plain(v) for k, v in dataclasses.asdict(config.order_router).items()}
    if config.governance is not None:  # left out when absent, so records of direct-owner deployments are unchanged
        g = config.governance
        out["governance"] = {"admin": g.admin, "guardian": g.guardian, "timelock_delay": g.timelock_delay}
        if g.breaker_markets:
            out["governance"]["breaker"] = {"markets": {
                sym: {k: plain(v) for k, v in dataclasses.asdict(t).items() if v is not None}
                for sym, t in g.breaker_markets}}
    return out
