"""Integrator SDK over a deployment file (`deployments/<network>-<chain id>.json`, written by `ape run deploy`).

    from ape import accounts
    from vperp.client import Client

    c = Client.from_deployment(account=accounts.test_accounts[1])  # the record for the connected chain
    c = Client.from_deployment("deployments/local-31337.json", account=...)  # or a file by name
    c.deposit(10_000)                          # human units of the collateral token (approves as needed)
    trade = c.open("ETH", 1.5, slippage_bps=50)  # quoteLimit from `quote`, deadline now + 10 min
    c.position("ETH")                          # Position(size=Decimal('1.5'), entry_price=..., ...)
    c.health()                                 # Health(account_value=..., free_collateral=..., liquidatable=False)
    c.funding("ETH")                           # Funding(applied_pct_per_hour=..., target_pct_per_hour=..., ...)
    c.close("ETH", slippage_bps=50)
    c.trades(since_block=c.start_block)        # [Trade(...), ...] decoded PositionChanged events
    c.funding_projection("ETH", hours=8)       # where the rate goes and what the position pays over 8 h
    kick = c.kick(owner)                       # Kick(...); c.auction(kick.auction_id, min_discount_bps=100).ready_at
    c.take(kick.auction_id, slippage_bps=10)   # Take(...); also redo, cancel, backstop
    c.lp_deposit(5_000); c.lp_request_withdraw(); c.lp_redeem()   # the pool's two-step exit
    feed = EventFeed(c, cursor_file="feed.json")   # every event of the protocol's contracts, as typed records,
    feed.poll()                                    # from a cursor that survives restarts

Everything returned is in human units as `Decimal` (exact: WAD integers divided by 10**18); amounts
passed in are human numbers (int, str, Decimal; floats go through their repr). The contracts are
reached through the ABI files the deployment file names (`abi/*.json`, written by `ape run
export_abi`), so the SDK needs no compiled project; inside this repository the compiled contract types
are the fallback when a file is missing. The account is only needed for transactions. The funding,
liquidation and LP helpers check their arguments first (a bad one is a one-line `ClientError`, nothing
sent) and dry-run what they send, so a call the chain refuses raises its named custom error and sends
nothing.
docs/integrators.md has a section per family of helpers, with examples `tests/sdk/test_sdk_docs.py` runs.

This module also defines the layout of `abi/` (`ABI_FILES`, `abi_json`) and reads deployment records
(`read_deployment`, `find_deployment`, `missing_code`), shared by `scripts/deploy.py`,
`scripts/export_abi.py` and `scripts/keeper.py`.

A record belongs to one chain: its chain id and the hash of its block 0 (`genesis`). Records are found
by what they say, not by their file name, so a file left over from another chain (another id, or an
Anvil that was restarted under the same id) is never taken for the connected chain. Records written
before the genesis hash was kept (`vperp-deployment/1`) are still read; they match on the chain id alone.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Context, Decimal, localcontext
from pathlib import Path
from typing import Any

from .units import AUCTION_CURVES, WAD, gas_limit
_CTX = Context(prec=80)
FORMAT = "vperp-deployment/2"  # /2 added `genesis`; /1 records are still read

# ----------------------------------------------------------------------------- sending with gas headroom


def _network_estimates_gas() -> bool:
    """Whether Ape sets a transaction's gas limit from an estimate on the connected network (`auto`, the default on
    live networks; the development chains use `max`, their block's limit, and an integer is the user's choice)."""
    from ape import networks
    from ape.types.gas import AutoGasLimit

    setting = networks.provider.network.gas_limit
    return setting in (None, "auto") or isinstance(setting, AutoGasLimit)


def _auto_multiplier() -> float:
    """The multiplier of the connected network's `auto` gas limit (1.0 unless the Ape configuration sets one)."""
    from ape import networks

    return float(networks.provider.network.auto_gas_multiplier)


def transact(method, *args, sender, markets: int, **kwargs):
    """Send `method(*args)` from `sender`. Where Ape would set the gas limit from an estimate, set it to the estimate
    plus the headroom `markets` markets need (`vperp.units.gas_limit`): the same call costs more in a market's
    first block of an hour than in the block it was estimated in (docs/integrators.md "Gas limits"); a larger
    limit from the configuration's `auto` multiplier wins. One estimate per transaction (`_estimate`). An estimate
    that fails raises the call's named error and sends nothing. A `gas_limit` (or `gas`) given is used as it is."""
    if "gas_limit" not in kwargs and "gas" not in kwargs and _network_estimates_gas():
        estimate = _estimate(method, *args, sender=sender, **kwargs)
        kwargs["gas_limit"] = max(gas_limit(estimate, markets), int(estimate * _auto_multiplier()))
    return method(*args, sender=sender, **kwargs)


# The gas limit `_estimate` prepares its transaction with, only so that Ape's preparation does not estimate: never
# sent and never estimated with. The least any transaction has (the intrinsic gas), so that a balance check made
# against it is no stricter than the one the send makes with the real limit.
_PREPARE_ONLY_GAS = 21_000


def _estimate(method, *args, sender, **kwargs) -> int:
    """One `eth_estimateGas` of `method(*args)` from `sender`, for the block the node estimates in. Not Ape's
    `method.estimate_gas_cost`: that prepares the transaction with `as_transaction`, whose preparation on a network
    with an `auto` limit estimates once to set the limit, then estimates the prepared transaction again (two runs
    of the call, two round trips). Here the transaction is prepared with a limit given (Ape fills in the fee caps
    from the base fee, the nonce and the chain id, and checks the balance, without estimating), and estimated once
    by the provider with the limit left out, as Ape's own `auto` estimate is. A call the chain refuses raises the
    provider's ContractLogicError, the contract's named custom error. The transaction `transact` sends is built
    afresh by `method(...)` with its limit, as before: its fee caps and Ape's balance check are those of a send with
    that limit."""
    from ape import networks

    txn = method.as_transaction(*args, sender=sender, gas_limit=_PREPARE_ONLY_GAS, **kwargs)
    return networks.provider.estimate_gas_cost(txn.model_copy(update={"gas_limit": None}))


# ----------------------------------------------------------------------------- the abi/ directory

CORE_CONTRACTS = ("Vault", "ClearingHouse", "LiquidationEngine", "LiquidityPool", "AmmController")
# Stateless views over the core; records written before it existed lack it (the SDK's helpers then say so).
PERIPHERY = ("PerpReader", "OrderRouter")
INTERFACES = ("IVault", "IClearingHouse", "ILiquidationEngine", "ILiquidityPool", "IAmmController",
              "AggregatorV3Interface", "IPerpReader", "IOrderRouter", "IRiskGovernor", "ICircuitBreaker")
# Governance (docs/governance.md): the timelock, the modules' owner and the breakers of a governed deployment.
GOVERNANCE = ("GovernanceTimelock", "RiskGovernor", "CircuitBreaker")
ERC20_INTERFACE = "IERC20Metadata"  # the standard ERC-20 surface (with name/symbol/decimals) of the collateral
MOCKS = ("MockERC20", "MockAggregator")  # local chains: mintable collateral, settable price feed
ERC20_NAMES = {"name", "symbol", "decimals", "totalSupply", "balanceOf", "transfer", "allowance", "approve",
               "transferFrom", "Transfer", "Approval"}


def abi_relpath(name: str) -> str:
    """Where `name`'s ABI lives, relative to the project root."""
    return f"abi/mocks/{name}.json" if name in MOCKS else f"abi/{name}.json"


ABI_FILES = {name: abi_relpath(name) for name in (*CORE_CONTRACTS, *PERIPHERY, *GOVERNANCE, *INTERFACES, ERC20_INTERFACE,
                                                   *MOCKS)}


def abi_json(contract_type) -> list[dict]:
    """A contract type's ABI as the JSON list web3.py, ethers and Ape all read."""
    return [entry.model_dump(by_alias=True, mode="json", exclude_none=True) for entry in contract_type.abi]


def erc20_abi(mock_erc20_type) -> list[dict]:
    """The standard ERC-20 (+ metadata) entries and OpenZeppelin's ERC-20 errors, from the compiled mock."""
    return [e for e in abi_json(mock_erc20_type)
            if e.get("name") in ERC20_NAMES or (e["type"] == "error" and e["name"].startswith("ERC20"))]


def expected_abis(project) -> dict[str, list[dict]]:
    """Every file of `abi/` (relative path -> ABI list) from the compiled project."""
    out = {abi_relpath(name): abi_json(getattr(project, name).contract_type)
           for name in (*CORE_CONTRACTS, *PERIPHERY, *GOVERNANCE, *INTERFACES, *MOCKS)}
    out[abi_relpath(ERC20_INTERFACE)] = erc20_abi(project.MockERC20.contract_type)
    return out


def dump_abi(abi: list[dict]) -> str:
    """The exact text of an ABI file (stable, so a re-export of unchanged contracts is a no-op)."""
    return json.dumps(abi, indent=2) + "\n"


# ----------------------------------------------------------------------------- deployment records


class DeploymentError(Exception):
    """A deployment file that is missing, malformed, or for another chain."""


_REQUIRED = {"chain_id": int, "network": str, "block": int, "contracts": dict, "markets": dict,
             "config": dict, "abi": dict}


def read_deployment(path: str | Path) -> dict:
    """Load and sanity-check a deployment file (does not look at the chain)."""
    path = Path(path)
    if not path.is_file():
        raise DeploymentError(f"deployment file not found: {path} (run `ape run deploy --rpc URL` or "
                              "`ape run deploy --network ...` first)")
    try:
        record = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DeploymentError(f"{path}: not valid JSON (line {e.lineno}): {e.msg}") from None
    if not isinstance(record, dict):
        raise DeploymentError(f"{path}: not a deployment record (expected a JSON object)")
    for key, kind in _REQUIRED.items():
        if not isinstance(record.get(key), kind) or isinstance(record.get(key), bool):
            raise DeploymentError(f"{path}: field '{key}' is missing or not a {kind.__name__}")
    for name in (*CORE_CONTRACTS, "collateral"):
        if name not in record["contracts"]:
            raise DeploymentError(f"{path}: contracts.{name} is missing")
    return record


def build_record(system, config, chain, first_block: int) -> dict:
    """The deployment record of a `System` just deployed on the connected chain (`first_block`: the block
    of its first transaction or earlier; event scans start there)."""
    import datetime as dt

    from .config_file import config_to_dict

    net = chain.provider.network
    contracts = {"Vault": system.vault.address, "ClearingHouse": system.clearing_house.address,
                 "LiquidationEngine": system.liquidation.address, "LiquidityPool": system.pool.address,
                 "AmmController": system.amm.address, "collateral": system.collateral.address}
    if getattr(system, "reader", None) is not None:
        contracts["PerpReader"] = system.reader.address
    if getattr(system, "router", None) is not None:
        contracts["OrderRouter"] = system.router.address
    abi = {name: abi_relpath(name) for name in (*CORE_CONTRACTS, *(n for n in PERIPHERY if n in contracts))}
    abi["collateral"] = abi_relpath("MockERC20" if config.collateral == "mock" else "IERC20Metadata")
    markets = {sym: {"id": m.id, "oracle": m.oracle.address, "mock": m.config.oracle == "mock",
                     "abi": abi_relpath("MockAggregator" if m.config.oracle == "mock" else "AggregatorV3Interface")}
               for sym, m in system.markets.items()}
    return {
        "format": FORMAT,
        "network": net.name,
        "ecosystem": net.ecosystem.name,
        "provider": chain.provider.name,
        "chain_id": chain.chain_id,
        "genesis": genesis_hash(chain),  # block 0's hash: tells two chains with the same id apart
        "block": first_block,  # first block of the deployment: scan events from here
        "block_end": chain.blocks.head.number,
        "timestamp": dt.datetime.fromtimestamp(chain.blocks.head.timestamp, dt.timezone.utc).isoformat(),
        "deployer": system.deployer.address,
        "contracts": contracts,
        "markets": markets,
        "config": config_to_dict(config),
        "abi": abi,
    }


def write_record(path: Path, record: dict) -> None:
    """Write atomically (a reader never sees half a file)."""
    import os

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(tmp, path)


def check_chain(record: dict, chain_id: int, path: str | Path = "deployment file", genesis: str | None = None) -> None:
    """Refuse a record written for another chain (another id, or the same id with another block 0)."""
    if record["chain_id"] != chain_id:
        raise DeploymentError(
            f"{path} was written for chain id {record['chain_id']} ({record['network']}), but the connected "
            f"chain has id {chain_id}: connect to that network, or use another deployment file")
    if genesis and record.get("genesis") and record["genesis"] != genesis:
        raise DeploymentError(
            f"{path} was written for another chain with id {chain_id} (block 0 {record['genesis'][:10]}..., "
            f"the connected chain's is {genesis[:10]}...; a restarted Anvil is a new chain): deploy again")


def genesis_hash(chain) -> str:
    """`0x...` hash of the connected chain's block 0."""
    h = chain.blocks[0].hash
    return h if isinstance(h, str) else "0x" + bytes(h).hex()


def deployments_dir(root: str | Path | None = None) -> Path:
    """`<root>/deployments`; without `root`, the folder named by $VPERP_DEPLOYMENTS (tests use a temporary
    one) or the project's `deployments/`."""
    import os

    if root is not None:
        return Path(root) / "deployments"
    if os.environ.get("VPERP_DEPLOYMENTS"):
        return Path(os.environ["VPERP_DEPLOYMENTS"])
    from ape import project

    return Path(project.path) / "deployments"


def deployment_path(chain_id: int, ecosystem: str = "ethereum", network: str = "local",
                    root: str | Path | None = None) -> Path:
    """Where `ape run deploy` writes the record of chain `chain_id`: `deployments/<network>-<chain id>.json`
    (`local-31337.json`, `sepolia-11155111.json`)."""
    return deployments_dir(root) / f"{network_file_stem(ecosystem, network)}-{int(chain_id)}.json"


@dataclass(frozen=True)
class FoundRecord:
    path: Path
    record: dict


def find_deployment(chain_id: int, genesis: str | None, root: str | Path | None = None,
                    ) -> tuple[FoundRecord | None, list[FoundRecord]]:
    """The record in `<root>/deployments/*.json` for the chain (`chain_id`, `genesis`), and the records
    with that id written for another block 0 (a chain that is gone: listed so callers can say so).

    A record with the same genesis hash wins over an old record without one (matched on the id alone);
    among equals the most recently written file wins. Files that are not records are skipped."""
    same, legacy, other = [], [], []
    for path in sorted(deployments_dir(root).glob("*.json")):
        try:
            record = read_deployment(path)
        except DeploymentError:
            continue
        if record["chain_id"] != chain_id:
            continue
        if not record.get("genesis"):
            legacy.append(FoundRecord(path, record))
        elif genesis is None or record["genesis"] == genesis:
            same.append(FoundRecord(path, record))
        else:
            other.append(FoundRecord(path, record))
    newest = [max(group, key=lambda f: f.path.stat().st_mtime) for group in (same, legacy) if group]
    return (newest[0] if newest else None), other


def record_addresses(record: dict) -> dict[str, str]:
    """Every address a deployment owns or depends on: the contracts, the collateral, each market's oracle."""
    out = dict(record["contracts"])
    for sym, m in record["markets"].items():
        out[f"oracle {sym}"] = m["oracle"]
    return out


def missing_code(record: dict, provider) -> list[str]:
    """Names of the record's addresses with no code on the connected chain (empty: all present)."""
    return [f"{name} {addr}" for name, addr in record_addresses(record).items() if not provider.get_code(addr)]


# ----------------------------------------------------------------------------- results


def from_wad(x: int) -> Decimal:
    """A WAD integer as an exact Decimal."""
    return _CTX.divide(Decimal(int(x)), Decimal(WAD))  # exact; 3000e18 -> Decimal('3000'), 15e17 -> '1.5'


def _wad_int(x: Decimal) -> int:
    """The WAD integer of a Decimal the SDK made with `from_wad` (exact: at most 18 decimals)."""
    return int(_CTX.multiply(x, Decimal(WAD)))


def to_wad(x) -> int:
    """An exact WAD integer of a human number (refuses more than 18 decimals)."""
    with localcontext(_CTX):
        d = Decimal(str(x)) * WAD
    if d != d.to_integral_value():
        raise ValueError(f"{x!r} has more than 18 decimals")
    return int(d)


# ----------------------------------------------------------------------------- auction prices


def auction_price(size: int, index: int, discount: int) -> int:
    """What a taker pays (long slice) or receives (short slice) per base at `index` and `discount` [wad]:
    `LiquidationEngine._price`, long `ceil(index x (1 - d))`, short `floor(index x (1 + d))` (both against
    the taker). Kept here only to turn the engine's `discountAt` into the price a keeper compares."""
    if size > 0:
        return -(-index * (WAD - discount) // WAD)
    return index * (WAD + discount) // WAD


def taker_discount(size: int, index: int, price: int) -> int:
    """How much better than `index` an auction `price` is for the taker [wad, rounded down]: `(index -
    price) / index` for a long slice, `(price - index) / index` for a short one. `Keeper` decides on it."""
    better = index - price if size > 0 else price - index
    return better * WAD // index


def seconds_to_discount(engine, market_id: int, size: int, index: int, threshold: int, duration: int) -> int | None:
    """The first second `e` of an auction's life (0..duration) at which the taker's discount, at `index`,
    reaches `threshold` [wad]; None when it never does before the auction expires. Reads the curve from the
    engine (`discountAt(marketId, e)`, non-decreasing in e), by bisection: about log2(duration) + 1 calls."""

    def reached(elapsed: int) -> bool:
        d = int(engine.discountAt(market_id, elapsed))
        return taker_discount(size, index, auction_price(size, index, d)) >= threshold

    if not reached(duration):
        return None
    lo, hi = 0, duration
    while lo < hi:
        mid = (lo + hi) // 2
        if reached(mid):
            hi = mid
        else:
            lo = mid + 1
    return lo


@dataclass(frozen=True)
class Position:
    symbol: str
    market_id: int
    owner: str
    subaccount: int
    size: Decimal  # base, > 0 long
    open_notional: Decimal  # signed quote cost (long: paid > 0; short: received < 0)
    pending_funding: Decimal  # owed since last settlement (> 0 = owed)
    entry_price: Decimal | None  # open_notional / size
    index_price: Decimal
    notional: Decimal  # |size| x index
    unrealized_pnl: Decimal  # floor(size x index) - open_notional, as the Vault values it
    auctioned_size: Decimal  # part of the position in liquidation auctions

    @property
    def side(self) -> str:
        return "long" if self.size > 0 else "short" if self.size < 0 else "flat"


@dataclass(frozen=True)
class Health:
    owner: str
    subaccount: int
    collateral: Decimal  # settled collateral
    account_value: Decimal  # collateral + unrealized PnL - pending funding
    free_collateral: Decimal  # min(collateral - funding, value) - initial
    initial_requirement: Decimal
    maintenance_requirement: Decimal
    liquidatable: bool  # account_value < maintenance

    @property
    def margin_ratio(self) -> Decimal | None:
        """account value / maintenance requirement (< 1: liquidatable); None without positions."""
        if not self.maintenance_requirement:
            return None
        return (self.account_value / self.maintenance_requirement).quantize(Decimal("0.0001"))


@dataclass(frozen=True)
class Funding:
    """`fundingState` in human units: rates in % per hour, premium in %, TWAPs in quote per base."""

    symbol: str
    applied_pct_per_hour: Decimal
    target_pct_per_hour: Decimal
    premium_pct: Decimal
    mark_twap: Decimal
    index_twap: Decimal
    projected_1h_pct_per_hour: Decimal
    projected_8h_pct_per_hour: Decimal
    raw: tuple  # the WAD tuple as returned by the contract


@dataclass(frozen=True)
class AuctionInfo:
    id: int
    owner: str
    subaccount: int
    symbol: str
    market_id: int
    size: Decimal  # remaining slice, signed like the position
    start_index: Decimal
    start_time: int
    redos: int
    expired: bool  # must be redone (or backstopped) before anyone can take it
    price: Decimal | None  # what a taker pays now (None when expired)
    index_price: Decimal
    discount_pct: Decimal | None  # how much better than the index the price is for the taker
    # With `auctions(min_discount_bps=...)`: the threshold and the first timestamp at which the taker's
    # discount reaches it at today's index (from the engine's curve, `discountAt`); None: never before expiry.
    threshold_pct: Decimal | None = None
    ready_at: int | None = None


@dataclass(frozen=True)
class ChainEvent:
    """Where a decoded event was emitted: block, transaction and position in the block. Every record the
    SDK decodes (`Trade`, `Kick`, `Take`, ..., `EventFeed`'s deliveries) starts with these three fields;
    records sort in chain order by `(block, log_index)`."""

    block: int
    tx_hash: str
    log_index: int


@dataclass(frozen=True)
class Trade(ChainEvent):
    """A decoded `PositionChanged` event."""

    owner: str
    subaccount: int
    symbol: str
    market_id: int
    base_delta: Decimal
    quote_delta: Decimal  # signed quote flow to the trader (negative = paid)
    fee: Decimal
    realized_pnl: Decimal
    funding_paid: Decimal
    new_size: Decimal
    new_open_notional: Decimal
    price_after: Decimal

    @property
    def previous_size(self) -> Decimal:
        """The position's size before this change: `new_size - base_delta`."""
        return _CTX.subtract(self.new_size, self.base_delta)

    @property
    def flipped(self) -> bool:
        """The change took the position through zero to the other side (`new_size` and `new_size -
        base_delta` of opposite signs)."""
        before = self.previous_size
        return (self.new_size > 0 and before < 0) or (self.new_size < 0 and before > 0)

    @property
    def execution_price(self) -> Decimal:
        """|quote_delta| / |base_delta| in quote per base, rounded down to the wei (18 decimals): the price
        of a holder's order, and the chain's own figure for a backstop (`Settlement.price`). An auction
        fill's price is the auction's (`Settlement.price`, `Take.price`); its quote is base x price rounded
        against each side, so this ratio can differ from it by a wei or so."""
        base = abs(_wad_int(self.base_delta))
        return from_wad(abs(_wad_int(self.quote_delta)) * WAD // base) if base else Decimal(0)

    @property
    def collateral_delta(self) -> Decimal:
        """What the change moved in the account's Vault collateral: realized_pnl - fee - funding_paid
        (exactly what `ClearingHouse` passes to `Vault.settleTrade`)."""
        return from_wad(_wad_int(self.realized_pnl) - _wad_int(self.fee) - _wad_int(self.funding_paid))


@dataclass(frozen=True)
class MarketSummary:
    """`PerpReader.marketSummary` in human units (prices in quote per base, rates in % per hour)."""

    symbol: str
    market_id: int
    index_price: Decimal | None  # None while the feed is stale or invalid
    spot_price: Decimal
    mark_twap: Decimal
    index_twap: Decimal
    applied_pct_per_hour: Decimal
    target_pct_per_hour: Decimal
    premium_pct: Decimal
    long_open_interest: Decimal
    short_open_interest: Decimal
    max_open_interest: Decimal  # per side, base
    oi_notional_cap: Decimal  # per side, quote: pool balance x maxOiPoolRatio
    max_long: Decimal  # largest buy the band and caps allow now (0 while the index is invalid)
    max_short: Decimal
    base_reserve: Decimal
    quote_reserve: Decimal
    pause_level: int
    raw: Any  # the struct as the contract returned it (WAD integers, nested state/params)


# ----------------------------------------------------------------------------- event records
# One frozen dataclass per event the protocol's contracts emit that an integrator acts on; every other
# event of the protocol's contracts arrives as `OtherEvent`. WAD amounts are exact `Decimal`s (from_wad), token
# amounts are in human units of the collateral, LP shares in human units of the pool's share token.
# Take, Redo, Backstop and AuctionCancelled carry only the auction id on chain: the SDK adds the auction's
# owner, sub-account and market from `auction(id)` (fields that never change for an auction).


ORDER_STATUS = ("none", "pending", "executable", "lapsed")  # IOrderRouter.Status, by value


@dataclass(frozen=True)
class OrderInfo:
    """A delayed order (`OrderRouter.order` and `orderStatus`, docs/orders.md) in human units. A `close` order closes
    the position's free part at execution, at most `base` (the free part when it was committed); `status` is one of
    `ORDER_STATUS`; `executable_until` is the last second it may execute (0 when none); `cancel_bounty_wei` is what
    cancelling it now pays a caller other than its owner (its fee if its deadline passed with the feed still on the
    round of its commit and fresh, else 0: `OrderRouter.cancelBounty`)."""

    order_id: int
    status: str
    executable_until: int
    owner: str
    subaccount: int
    symbol: str
    base: Decimal
    close: bool
    quote_limit: Decimal
    deadline: int
    keeper_fee_wei: int
    committed_at: int
    committed_round: int
    cancel_bounty_wei: int = 0


@dataclass(frozen=True)
class FundingSample(ChainEvent):
    """`FundingSampled`: the funding target re-sampled from the day-long TWAPs and mean skew (once an hour)."""

    symbol: str
    market_id: int
    premium_pct: Decimal  # (markTwap - indexTwap) / indexTwap, in %
    target_pct_per_hour: Decimal
    applied_pct_per_hour: Decimal  # the applied rate at this moment
    cumulative_funding: Decimal  # the market's funding index [quote per base]: what one long base has paid
    mark_twap: Decimal
    index_twap: Decimal


@dataclass(frozen=True)
class ReservesChange(ChainEvent):
    """`ReservesSet`: the AMM controller rescaled (depth sync) or re-priced (repeg) a market's vAMM."""

    symbol: str
    market_id: int
    base_reserve: Decimal
    quote_reserve: Decimal


@dataclass(frozen=True)
class Kick(ChainEvent):
    """`Kick`: `size` of the account's position (its sign) went into auction `auction_id` at `start_index`."""

    auction_id: int
    owner: str
    subaccount: int
    symbol: str
    market_id: int
    size: Decimal
    start_index: Decimal
    keeper: str
    keeper_reward: Decimal
    penalty: Decimal


@dataclass(frozen=True)
class Take(ChainEvent):
    """`Take`: `amount` base of the auction went to `taker` at `price`; `remaining` (signed) is left."""

    auction_id: int
    taker: str
    taker_subaccount: int
    amount: Decimal  # unsigned; the taker gets the slice's side (a long slice makes the taker long)
    price: Decimal
    remaining: Decimal
    owner: str  # from auction(id)
    subaccount: int
    symbol: str
    market_id: int


@dataclass(frozen=True)
class Redo(ChainEvent):
    """`Redo`: the expired auction restarted at `start_index`; `keeper` got `tip`."""

    auction_id: int
    redos: int
    start_index: Decimal
    keeper: str
    tip: Decimal
    owner: str  # from auction(id)
    subaccount: int
    symbol: str
    market_id: int


@dataclass(frozen=True)
class AuctionCancel(ChainEvent):
    """`AuctionCancelled`: the account recovered; `size` went back to its free position, nobody was paid."""

    auction_id: int
    size: Decimal
    account_value: Decimal
    requirement: Decimal
    owner: str  # from auction(id)
    subaccount: int
    symbol: str
    market_id: int


@dataclass(frozen=True)
class Backstop(ChainEvent):
    """`Backstop`: `size` of the auction was closed against the vAMM for `quote` (signed flow to the owner)."""

    auction_id: int
    size: Decimal
    quote: Decimal
    owner: str  # from auction(id)
    subaccount: int
    symbol: str
    market_id: int


@dataclass(frozen=True)
class BadDebt(ChainEvent):
    """`BadDebt`: an account left with no position and negative collateral was reset; the loss was paid
    `from_insurance` then `from_pool`."""

    owner: str
    subaccount: int
    amount: Decimal
    from_insurance: Decimal
    from_pool: Decimal


@dataclass(frozen=True)
class Shortfall(ChainEvent):
    """`ShortfallRecorded`: the engine's estimate of the bad debt an account in liquidation will leave
    became `shortfall` (0 clears it); `total` is the sum over all accounts (what NAV sets aside)."""

    owner: str
    subaccount: int
    shortfall: Decimal
    total: Decimal


@dataclass(frozen=True)
class LiquidationCharge(ChainEvent):
    """`LiquidationCharged`: the liquidated account paid the keeper's reward and the penalty."""

    owner: str
    subaccount: int
    keeper: str
    keeper_reward: Decimal
    penalty: Decimal


@dataclass(frozen=True)
class CollateralDeposit(ChainEvent):
    """The Vault's `Deposit`: `amount` (human collateral units) credited to `(owner, subaccount)`."""

    caller: str
    owner: str
    subaccount: int
    amount: Decimal
    amount_wad: Decimal


@dataclass(frozen=True)
class CollateralWithdraw(ChainEvent):
    """The Vault's `Withdraw`: `amount` (human collateral units) paid out of `(owner, subaccount)`."""

    caller: str
    owner: str
    subaccount: int
    amount: Decimal
    amount_wad: Decimal


@dataclass(frozen=True)
class MarginTransfer(ChainEvent):
    """`MarginTransferred` between two sub-accounts of `owner`."""

    caller: str
    owner: str
    from_subaccount: int
    to_subaccount: int
    amount: Decimal


@dataclass(frozen=True)
class LpDeposit(ChainEvent):
    """The pool's ERC-4626 `Deposit`: `assets` (human collateral units) for `shares` (human share units)."""

    sender: str
    owner: str
    assets: Decimal
    shares: Decimal


@dataclass(frozen=True)
class LpWithdraw(ChainEvent):
    """The pool's ERC-4626 `Withdraw` (a `redeem` or a `withdraw`): `shares` of `owner` burnt for `assets`."""

    sender: str
    receiver: str
    owner: str
    assets: Decimal
    shares: Decimal


@dataclass(frozen=True)
class LpWithdrawRequest(ChainEvent):
    """`WithdrawRequested`: `owner` may redeem `shares` from `unlock_at` for the pool's window."""

    owner: str
    shares: Decimal
    unlock_at: int


@dataclass(frozen=True)
class DepthSync(ChainEvent):
    """`DepthSynced`: the vAMM's depth followed the pool's capital."""

    symbol: str
    market_id: int
    base_before: Decimal
    quote_before: Decimal
    base_after: Decimal
    quote_after: Decimal
    nav: Decimal


@dataclass(frozen=True)
class DepthSyncCost(ChainEvent):
    """`DepthSyncCost`: what a depth sync cost the pool (`cost`) and the running total."""

    symbol: str
    market_id: int
    cost: Decimal
    total_cost: Decimal


@dataclass(frozen=True)
class DepthCharge(ChainEvent):
    """`DepthCharged`: a depth sync moved the net position's exit value by `exit_change` and charged it back
    through the funding index: `charge_per_base` is what one long base pays (negative: receives), in quote."""

    symbol: str
    market_id: int
    exit_change: Decimal
    charge_per_base: Decimal


@dataclass(frozen=True)
class Repeg(ChainEvent):
    """`Repeg`: the vAMM price moved from `price_before` to `price_after` toward `index_price`, at `cost`."""

    symbol: str
    market_id: int
    price_before: Decimal
    price_after: Decimal
    index_price: Decimal
    cost: Decimal


@dataclass(frozen=True)
class Settlement(ChainEvent):
    """`PositionSettled`: the `Trade` (PositionChanged) just before it in the same transaction, of the same
    owner, sub-account and market, was a liquidation's, not the holder's order. `cause`: "auction_fill"
    (the liquidated account's side of a take), "auction_take" (the taker's side) or "backstop" (the
    liquidated account's slice closed on the vAMM); `price` the execution price (the auction's price for
    a fill, |quote| / |base| rounded down for a backstop)."""

    owner: str
    subaccount: int
    symbol: str
    market_id: int
    cause: str  # "auction_fill" | "auction_take" | "backstop"
    price: Decimal


@dataclass(frozen=True)
class BuilderApproval(ChainEvent):
    """The Vault's `BuilderFeeApproved`: `owner` lets `builder` charge its trades at most `max_fee_rate` (a
    fraction of the trade's |quote|; 0: revoked)."""

    owner: str
    builder: str
    max_fee_rate: Decimal


@dataclass(frozen=True)
class BuilderFee(ChainEvent):
    """The Vault's `BuilderFeePaid`: `amount` (WAD, exact) left `(owner, subaccount)`'s collateral for `builder`'s
    balance, in the same transaction as the trade (`Trade`) it was charged on."""

    owner: str
    subaccount: int
    builder: str
    amount: Decimal


@dataclass(frozen=True)
class BuilderClaim(ChainEvent):
    """The Vault's `BuilderFeesClaimed`: `builder` was paid `amount` (human collateral units; `amount_wad` off its
    balance) to `to`."""

    builder: str
    to: str
    amount: Decimal
    amount_wad: Decimal


@dataclass(frozen=True)
class OrderCommit(ChainEvent):
    """The OrderRouter's `OrderCommitted`: `owner` committed delayed order `order_id` (docs/orders.md); a `close`
    carries the free part it was committed for (its most); the limit and deadline as stored (saturated)."""

    order_id: int
    owner: str
    subaccount: int
    symbol: str
    market_id: int
    base: Decimal
    close: bool
    quote_limit: Decimal
    deadline: int
    keeper_fee_wei: int
    committed_round: int


@dataclass(frozen=True)
class OrderExecution(ChainEvent):
    """The OrderRouter's `OrderExecuted`: `keeper` executed order `order_id` and was paid its fee; the trade (also a
    `Trade` record of the same transaction) as `openPosition` returns it: base, quote (negative = paid), fee."""

    order_id: int
    keeper: str
    base: Decimal
    quote: Decimal
    fee: Decimal
    keeper_fee_wei: int


@dataclass(frozen=True)
class OrderFailure(ChainEvent):
    """The OrderRouter's `OrderFailed`: `keeper` executed order `order_id`, the ClearingHouse refused the trade (its
    revert data in `reason`, hex, and `error`, the custom error's name when the SDK knows it), and the order was used
    up all the same, the keeper paid."""

    order_id: int
    keeper: str
    reason: str
    error: str
    keeper_fee_wei: int


@dataclass(frozen=True)
class OrderCancel(ChainEvent):
    """The OrderRouter's `OrderCancelled`: `caller` cancelled order `order_id`; `refunded_wei` went back to its owner
    (sent, or credited to claim), or 0 when the fee paid the caller (an `OrderBounty` of the same transaction)."""

    order_id: int
    caller: str
    refunded_wei: int


@dataclass(frozen=True)
class OrderBounty(ChainEvent):
    """The OrderRouter's `CancelBountyPaid`: `caller` cancelled order `order_id`, past its deadline with the feed
    still on the round of its commit, and was paid its keeper fee, `amount_wei`."""

    order_id: int
    caller: str
    amount_wei: int


@dataclass(frozen=True)
class OtherEvent(ChainEvent):
    """Any other event of the protocol's contracts (parameter changes, ownership, LP share transfers, funding
    of the pool or insurance, the order router's refund credits...), with its arguments as decoded, raw
    integers."""

    contract: str
    event: str
    args: dict


# ----------------------------------------------------------------------------- other results


@dataclass(frozen=True)
class AuctionCurve:
    """A market's `auctionParams`: the discount curve an auction of it follows."""

    symbol: str
    curve: str  # "linear" | "exponential" | "stairstep"
    duration: int  # [s] to the full discount; after it the auction must be redone
    step: int  # [s] stairstep width
    max_discount_pct: Decimal
    reset_drop_pct: Decimal  # index move in the account's favour that ends an auction early
    raw: tuple


@dataclass(frozen=True)
class FundingProjection:
    """Where funding goes over the next `hours` if the premium stays where it is (the model behind
    `fundingState`'s projected1h/8h), and what that means for one position."""

    symbol: str
    hours: int
    applied_pct_per_hour: Decimal  # now
    target_pct_per_hour: Decimal  # what the TWAPs imply now
    rate_at_horizon_pct_per_hour: Decimal  # applied rate after `hours`
    funding_per_base: Decimal  # quote one long base pays over the horizon (< 0: longs receive), at today's index
    size: Decimal  # the position's size (0 without one)
    pending_funding: Decimal  # owed now, not yet settled (> 0: the position pays)
    projected_payment: Decimal  # what the position pays over the horizon (> 0: pays), rounded up like the chain
    index_price: Decimal

    @property
    def owed_at_horizon(self) -> Decimal:
        """pending_funding + projected_payment: what the position will owe at the horizon, unsettled."""
        return self.pending_funding + self.projected_payment


@dataclass(frozen=True)
class LpRequest:
    """A pending two-step withdrawal (`withdrawRequest`) and where it stands at `now`."""

    owner: str
    shares: Decimal
    unlock_at: int | None  # first timestamp it can execute (None: no request)
    expires_at: int | None  # last timestamp it can execute
    status: str  # "none" | "cooling" (before unlock_at) | "open" | "expired"


@dataclass(frozen=True)
class LpPosition:
    owner: str
    shares: Decimal
    value: Decimal  # previewRedeem(shares): what they redeem for now, human collateral units
    share_price: Decimal  # value of one whole share now (collateral per share)
    max_redeem: Decimal  # shares `lp_redeem` accepts now
    max_withdraw: Decimal  # assets `lp_withdraw` accepts now
    request: LpRequest


@dataclass(frozen=True)
class KickPreview:
    """`kickPreview`: what a kick of the account would do now."""

    owner: str
    subaccount: int
    symbol: str
    market_id: int
    size: Decimal  # the slice (the position's sign)
    notional: Decimal
    keeper_reward: Decimal
    penalty: Decimal


_CURVES = dict(enumerate(AUCTION_CURVES))  # ILiquidationEngine.Curve: its number on chain -> its name
SETTLEMENT_CAUSES = {0: "auction_fill", 1: "auction_take", 2: "backstop"}  # IClearingHouse.SettlementCause
RECORD_KINDS = (Trade, FundingSample, ReservesChange, Kick, Take, Redo, AuctionCancel, Backstop, BadDebt, Shortfall,
                LiquidationCharge, CollateralDeposit, CollateralWithdraw, MarginTransfer, LpDeposit, LpWithdraw,
                LpWithdrawRequest, DepthSync, DepthSyncCost, DepthCharge, Repeg, OtherEvent, Settlement,
                BuilderApproval, BuilderFee, BuilderClaim, OrderCommit, OrderExecution, OrderFailure, OrderCancel,
                OrderBounty)


def _record_kinds(kinds) -> tuple:
    """Check a filter of record classes (an iterable of RECORD_KINDS members)."""
    try:
        kinds = tuple(kinds or ())
    except TypeError:
        raise ClientError(f"kinds must be record classes such as (Trade, Kick), got {kinds!r}") from None
    bad = [k for k in kinds if k not in RECORD_KINDS]
    if bad:
        raise ClientError(f"kinds must be record classes of vperp.client (Trade, Kick, ...), got {bad[0]!r}")
    return kinds


def _plain(value):
    """An event argument as plain Python (ints, str, bytes as 0x..., structs as dicts)."""
    if isinstance(value, (bytes, bytearray)):
        return "0x" + bytes(value).hex()
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value)
    if hasattr(value, "items"):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def error_selectors(contract_types) -> dict[bytes, str]:
    """Every custom error of the contract types by its 4-byte selector (the first name seen for a selector)."""
    from eth_utils import keccak

    out: dict[bytes, str] = {}
    for contract_type in contract_types:
        for abi in contract_type.errors:
            out.setdefault(keccak(text=abi.selector)[:4], abi.name)
    return out


def event_abis(contract_types) -> list:
    """Every event ABI of the contract types, once per selector (refuses two events that share a selector
    but decode differently: one log query decodes all five contracts by selector)."""
    from eth_utils import keccak

    by_selector: dict[bytes, Any] = {}
    for contract_type in contract_types:
        for abi in contract_type.events:
            selector = keccak(text=abi.selector)
            seen = by_selector.get(selector)
            if seen is None:
                by_selector[selector] = abi
            elif [(i.type, i.indexed) for i in seen.inputs] != [(i.type, i.indexed) for i in abi.inputs]:
                raise DeploymentError(f"events {seen.name} and {abi.name} share a selector but not their indexed "
                                      "arguments: decode them per contract")
    return list(by_selector.values())


class ClientError(Exception):
    """A problem on the SDK's side (no account, unknown market, nothing to close, a bad argument)."""


class FeedError(ClientError):
    """An `EventFeed` that cannot go on: a cursor file that is unreadable or written for another chain or
    deployment, or bad arguments."""


class ReorgError(FeedError):
    """The block the feed delivered last is no longer on the chain: a reorganisation replaced blocks whose
    events were already delivered. The cursor is left where it was."""


# ----------------------------------------------------------------------------- the client


class Client:
    """Typed access to one vPerp deployment. Build it with `Client.from_deployment`."""

    def __init__(self, record: dict, path: str | Path, account=None):
        from ape import chain

        self.record = record
        self.path = Path(path)
        self.account = account
        self.chain = chain
        c = record["contracts"]
        abi = record["abi"]
        self.vault = self._contract("Vault", c["Vault"], abi.get("Vault"))
        self.clearing_house = self._contract("ClearingHouse", c["ClearingHouse"], abi.get("ClearingHouse"))
        self.liquidation = self._contract("LiquidationEngine", c["LiquidationEngine"], abi.get("LiquidationEngine"))
        self.pool = self._contract("LiquidityPool", c["LiquidityPool"], abi.get("LiquidityPool"))
        self.amm = self._contract("AmmController", c["AmmController"], abi.get("AmmController"))
        # Records written before the reader existed have none: its helpers raise ClientError then.
        self.reader = (self._contract("PerpReader", c["PerpReader"], abi.get("PerpReader"))
                       if c.get("PerpReader") else None)
        # Likewise the order router (delayed orders): its helpers raise ClientError on records without one.
        self.router = (self._contract("OrderRouter", c["OrderRouter"], abi.get("OrderRouter"))
                       if c.get("OrderRouter") else None)
        self._subaccount_scan: dict[str, tuple[int, set[int]]] = {}  # owner -> (next block to scan, subs seen)
        mock_collateral = record["config"].get("collateral") == "mock"
        self.collateral = self._contract("MockERC20" if mock_collateral else "IERC20Metadata", c["collateral"],
                                         abi.get("collateral"))
        self.oracles = {sym: self._contract("MockAggregator" if m.get("mock") else "AggregatorV3Interface",
                                            m["oracle"], m.get("abi")) for sym, m in record["markets"].items()}
        self.market_ids = {sym: int(m["id"]) for sym, m in record["markets"].items()}
        self.symbols = {mid: sym for sym, mid in self.market_ids.items()}
        self.decimals = int(record["config"].get("decimals", 6))
        self._system = None
        # The five contracts whose events the SDK decodes (`events`, `EventFeed`, the helpers' receipts); they name
        # the deployment in an EventFeed cursor.
        self._addresses = {name: getattr(self, attr).address for name, attr in (
            ("Vault", "vault"), ("ClearingHouse", "clearing_house"), ("LiquidationEngine", "liquidation"),
            ("LiquidityPool", "pool"), ("AmmController", "amm"))}
        # The order router's events too, when the deployment has one; kept out of `_addresses`, which names the
        # deployment in an EventFeed's cursor file (a cursor written before the router existed stays valid).
        self._log_addresses = dict(self._addresses, **({"OrderRouter": self.router.address} if self.router else {}))
        self._contract_names = {address.lower(): name for name, address in self._log_addresses.items()}
        self._event_abis = event_abis(getattr(self, attr).contract_type for attr in (
            "vault", "clearing_house", "liquidation", "pool", "amm") + (("router",) if self.router else ()))
        self._auction_meta: dict[int, tuple[str, int, int]] = {}  # auction id -> (owner, subaccount, market)
        self._error_selectors: dict[bytes, str] | None = None  # error selector -> name (OrderFailure records)
        self._share_decimals: int | None = None

    @classmethod
    def from_deployment(cls, path: str | Path | None = None, account=None) -> "Client":
        """Open `path` (checks that it was written for the connected chain); without `path`, the record in
        `deployments/` for the connected chain (its id and block 0)."""
        from ape import chain

        genesis = genesis_hash(chain)
        if path is None:
            path = find_deployment_for_connected_chain()
        record = read_deployment(path)
        check_chain(record, chain.chain_id, path, genesis)
        return cls(record, path, account)

    # ------------------------------------------------------------- plumbing

    @property
    def start_block(self) -> int:
        """First block of the deployment: scan events from here."""
        return int(self.record["block"])

    def _resolve(self, rel: str | None) -> Path | None:
        if not rel:
            return None
        p = Path(rel)
        candidates = [p] if p.is_absolute() else [self.path.resolve().parent.parent / p, Path.cwd() / p]
        try:
            from ape import project

            candidates.append(Path(project.path) / p)
        except Exception:  # noqa: BLE001 - outside an Ape project there is no project path
            pass
        return next((c for c in candidates if c.is_file()), None)

    def _contract(self, name: str, address: str, abi_path: str | None):
        from ethpm_types import ContractType

        file = self._resolve(abi_path or abi_relpath(name))
        if file is not None:
            contract_type = ContractType(contractName=name, abi=json.loads(file.read_text()))
        else:  # inside this repository: the compiled contract (the mock token carries the ERC-20 surface)
            from ape import project

            try:
                contract_type = getattr(project, "MockERC20" if name == ERC20_INTERFACE else name).contract_type
            except Exception as e:  # noqa: BLE001 - no file and no compiled project: say which file is missing
                raise DeploymentError(f"ABI file {abi_path or abi_relpath(name)} for {name} not found "
                                      f"(looked next to {self.path} and in {Path.cwd()}): {e}") from None
        return self.chain.contracts.instance_at(address, contract_type=contract_type, fetch_from_explorer=False,
                                                detect_proxy=False)

    @property
    def _all_markets(self) -> int:
        """The markets a call may read, for its gas headroom (`transact`): every market of the deployment."""
        return len(self.market_ids)

    def _sender(self):
        if self.account is None:
            raise ClientError("this Client has no account: pass account=... to Client.from_deployment to send")
        return self.account

    def _owner(self, owner) -> str:
        if owner is not None:
            return owner if isinstance(owner, str) else owner.address
        return self._sender().address

    def market_id(self, symbol: str) -> int:
        try:
            return self.market_ids[symbol]
        except KeyError:
            raise ClientError(f"unknown market {symbol!r}; this deployment lists {', '.join(self.market_ids)}") from None

    def units(self, amount) -> int:
        """Token units of a human amount of collateral (refuses more decimals than the token has)."""
        try:
            with localcontext(_CTX):
                d = Decimal(str(amount)) * 10**self.decimals
        except ArithmeticError:  # InvalidOperation: not a number
            raise ClientError(f"amount must be a number, got {amount!r}") from None
        if not d.is_finite() or d < 0:
            raise ClientError(f"amount must be a non-negative number, got {amount!r}")
        if d != d.to_integral_value():
            raise ClientError(f"{amount} has more decimals than the collateral's {self.decimals}")
        return int(d)

    def _deadline(self, seconds: int) -> int:
        try:
            now = self.chain.pending_timestamp
        except Exception:  # noqa: BLE001 - a node without a pending block
            now = self.chain.blocks.head.timestamp
        return int(now) + int(seconds)

    @property
    def system(self):
        """A `vperp.deployment.System` over this deployment (what `vperp.keeper.Keeper` needs)."""
        if self._system is None:
            from .config_file import parse_config
            from .deployment import Market, System

            config = parse_config(self.record["config"], source=f"{self.path} (config)")
            by_symbol = {m.symbol: m for m in config.markets}
            markets = {sym: Market(sym, mid, self.oracles[sym], by_symbol[sym]) for sym, mid in self.market_ids.items()}
            self._system = System(vault=self.vault, clearing_house=self.clearing_house, collateral=self.collateral,
                                  markets=markets, deployer=self.record.get("deployer"), config=config,
                                  liquidation=self.liquidation, pool=self.pool, funding=self.clearing_house,
                                  amm=self.amm, reader=self.reader, router=self.router)
        return self._system

    # ------------------------------------------------------------- money

    def deposit(self, amount, sub: int = 0):
        """Deposit `amount` (human units) into the account's sub-account `sub`; approves the Vault if needed."""
        sender = self._sender()
        units = self.units(amount)
        if self.collateral.allowance(sender, self.vault) < units:
            self.collateral.approve(self.vault, units, sender=sender)
        return transact(self.vault.deposit, sub, units, sender=sender, markets=0)

    def withdraw(self, amount, sub: int = 0):
        """Withdraw `amount` (human units) from sub-account `sub` to the account."""
        return transact(self.vault.withdraw, sub, self.units(amount), sender=self._sender(), markets=self._all_markets)

    def withdraw_all(self, sub: int = 0):
        """Withdraw everything free in sub-account `sub` (`withdraw(sub, type(uint256).max)`: whole token
        units of min(free collateral, collateral), computed when the transaction runs)."""
        return transact(self.vault.withdraw, sub, 2**256 - 1, sender=self._sender(), markets=self._all_markets)

    def withdrawable(self, sub: int = 0, owner=None) -> Decimal:
        """What `withdraw_all` would pay now, in human collateral units (`PerpReader.withdrawable`)."""
        amount, _ = self._reader().withdrawable(self._owner(owner), sub)
        return _CTX.divide(Decimal(int(amount)), Decimal(10**self.decimals))

    # ------------------------------------------------------------- trading

    def quote(self, symbol: str, base) -> tuple[Decimal, Decimal]:
        """(signed quote flow to the trader, vAMM price after) for a trade of `base` now; fee excluded."""
        q, price_after = self.clearing_house.quote(self.market_id(symbol), to_wad(base))
        return from_wad(q), from_wad(price_after)

    def quote_limit(self, symbol: str, base_wad: int, slippage_bps: int) -> int:
        """`quoteLimit` (WAD) for a trade of `base_wad`: the exact quote worsened by `slippage_bps`.
        A buy pays at most ceil(paid x (1 + bps)); a sell receives at least floor(received x (1 - bps))."""
        if not 0 <= slippage_bps < 10_000:
            raise ClientError(f"slippage_bps must be in [0, 10000), got {slippage_bps}")
        q, _ = self.clearing_house.quote(self.market_id(symbol), base_wad)
        if base_wad > 0:
            return -(q * (10_000 + slippage_bps) // 10_000)  # q < 0 is what is paid: ceil(-q x (1 + bps))
        return max(q * (10_000 - slippage_bps) // 10_000, 0)

    def open(self, symbol: str, base, slippage_bps: int = 50, sub: int = 0, deadline_seconds: int = 600,
             builder=None, builder_fee_rate=0) -> Trade:
        """Buy (`base` > 0) or sell `base` (human base units) with a slippage bound and a deadline.

        `builder` and `builder_fee_rate` (a fraction of the trade's |quote|, e.g. 0.0005 for 5 bps) send the trade
        through `openPositionWithBuilder`: the builder is paid ceil(|quote| x rate) from the account on top of
        the taker fee; the account's owner must have approved at least that rate (`approve_builder_fee`)."""
        base_wad = to_wad(base)
        if base_wad == 0:
            raise ClientError("base must not be zero")
        self._check_direct(symbol, "open")
        mid = self.market_id(symbol)
        limit = self.quote_limit(symbol, base_wad, slippage_bps)
        dl = self._deadline(deadline_seconds)
        if builder is None:
            tx = transact(self.clearing_house.openPosition, sub, mid, base_wad, limit, dl, sender=self._sender(),
                          markets=self._all_markets)
        else:
            rate = self._wad(builder_fee_rate, "builder_fee_rate", positive=False)
            tx = self._transact(self.clearing_house.openPositionWithBuilder, sub, mid, base_wad, limit, dl,
                                self._address(builder, "builder"), rate)
        return self._trade_of(tx)

    # ------------------------------------------------------------- builder fees

    def approve_builder_fee(self, builder, max_fee_rate):
        """Approve `builder` (a front end, a bot) to charge this account's trades at most `max_fee_rate` (a
        fraction of |quote|, at most 0.001 = 10 bps; 0 revokes), for every sub-account (`Vault.approveBuilderFee`)."""
        rate = self._wad(max_fee_rate, "max_fee_rate", positive=False)
        return self._transact(self.vault.approveBuilderFee, self._address(builder, "builder"), rate)

    def builder_fee_approval(self, builder, owner=None) -> Decimal:
        """The most `builder` may charge `owner`'s trades, as a fraction of |quote| (0: not approved)."""
        return from_wad(self.vault.builderFeeApproval(self._owner(owner), self._address(builder, "builder")))

    def builder_fees(self, builder=None) -> Decimal:
        """Builder fees accrued to `builder` (default: this account) and not yet claimed, in collateral units."""
        who = self._owner(builder)
        return _CTX.divide(Decimal(int(self.vault.builderFees(who))), Decimal(10**18))

    def claim_builder_fees(self, to=None):
        """Pay this account's accrued builder fees (whole token units; the rest below one unit stays) to `to`
        (default: this account) (`Vault.claimBuilderFees`)."""
        receiver = self._sender().address if to is None else self._address(to, "to")
        return self._transact(self.vault.claimBuilderFees, receiver)

    def close(self, symbol: str, slippage_bps: int = 50, sub: int = 0, deadline_seconds: int = 600) -> Trade:
        """Close the free part of the position (what is not in a liquidation auction)."""
        self._check_direct(symbol, "close")
        sender = self._sender()
        mid, free = self._free_to_close(symbol, sub)
        limit = self.quote_limit(symbol, -free, slippage_bps)
        tx = transact(self.clearing_house.closePosition, sub, mid, limit, self._deadline(deadline_seconds), sender=sender,
                      markets=self._all_markets)
        return self._trade_of(tx)

    def _check_direct(self, symbol: str, what: str) -> None:
        """ClientError, before anything is sent, when `symbol`'s market takes delayed orders only (every shipped
        market): the ClearingHouse would revert DelayedOrdersOnly."""
        if self.delayed_orders(symbol):
            raise ClientError(f"{symbol} takes delayed orders only: use commit_order / commit_close instead of {what} "
                              "(docs/orders.md)")

    def _free_to_close(self, symbol: str, sub: int) -> tuple[int, int]:
        """(market id, the free part of this account's position [wad base]: what is not in a liquidation auction);
        ClientError when there is none."""
        sender = self._sender()
        mid = self.market_id(symbol)
        size, _, _ = self.clearing_house.position(sender, sub, mid)
        free = size - self.clearing_house.auctionedSize(sender, sub, mid)
        if free == 0:
            raise ClientError(f"no free {symbol} position to close in sub-account {sub}")
        return mid, free

    def _trade_of(self, tx) -> Trade:
        logs = [log for log in tx.decode_logs(self.clearing_house.PositionChanged)
                if log.contract_address == self.clearing_house.address]
        return self._trade(logs[0])

    # ------------------------------------------------------------- views

    def position(self, symbol: str, sub: int = 0, owner=None) -> Position:
        owner = self._owner(owner)
        ch = self.clearing_house
        mid = self.market_id(symbol)
        size, notional, pending = ch.position(owner, sub, mid)
        index = ch.indexPrice(mid)
        pnl = size * index // WAD - notional if size else 0  # floor(size x index) - openNotional
        return Position(
            symbol=symbol, market_id=mid, owner=owner, subaccount=sub, size=from_wad(size),
            open_notional=from_wad(notional), pending_funding=from_wad(pending),
            entry_price=(from_wad(notional) / from_wad(size)).quantize(Decimal(1).scaleb(-18), context=_CTX)
            if size else None,
            index_price=from_wad(index), notional=from_wad(abs(size) * index // WAD),
            unrealized_pnl=from_wad(pnl), auctioned_size=from_wad(ch.auctionedSize(owner, sub, mid)))

    def positions(self, sub: int = 0, owner=None) -> list[Position]:
        """Every non-zero position of the account's sub-account `sub`."""
        return [p for p in (self.position(sym, sub, owner) for sym in self.market_ids) if p.size]

    def health(self, sub: int = 0, owner=None) -> Health:
        owner = self._owner(owner)
        value, free, initial, maintenance = self.vault.health(owner, sub)
        return Health(owner=owner, subaccount=sub, collateral=from_wad(self.vault.collateral(owner, sub)),
                      account_value=from_wad(value), free_collateral=from_wad(free),
                      initial_requirement=from_wad(initial), maintenance_requirement=from_wad(maintenance),
                      liquidatable=bool(self.vault.isLiquidatable(owner, sub)))

    def funding(self, symbol: str) -> Funding:
        raw = tuple(self.clearing_house.fundingState(self.market_id(symbol)))
        applied, target, premium, mark_twap, index_twap, p1, p8 = raw

        def pct(x):  # WAD fraction -> percent
            return _CTX.divide(Decimal(int(x)), Decimal(10**16))

        return Funding(symbol=symbol, applied_pct_per_hour=pct(applied), target_pct_per_hour=pct(target),
                       premium_pct=pct(premium), mark_twap=from_wad(mark_twap), index_twap=from_wad(index_twap),
                       projected_1h_pct_per_hour=pct(p1), projected_8h_pct_per_hour=pct(p8), raw=raw)

    def _reader(self):
        if self.reader is None:
            raise ClientError(f"{self.path} has no PerpReader (written before it existed): deploy again to get one")
        return self.reader

    def liquidation_price(self, symbol: str, sub: int = 0, owner=None) -> Decimal | None:
        """The index of `symbol` at which the account becomes liquidatable, everything else held
        (`PerpReader.liquidationPrice`): a long is liquidatable at this price and at none above it, a short at
        this price and at none below it. None when no price applies (no position; a long no positive index
        liquidates)."""
        price = self._reader().liquidationPrice(self._owner(owner), sub, self.market_id(symbol))
        return from_wad(price) if price else None

    def max_trade_size(self, symbol: str, is_long: bool) -> Decimal:
        """Largest base a new position may take on one side now, by the price band and open-interest caps."""
        return from_wad(self._reader().maxTradeSize(self.market_id(symbol), bool(is_long)))

    def market_summary(self, symbol: str) -> MarketSummary:
        """A market's state in one call (`PerpReader.marketSummary`)."""
        mid = self.market_id(symbol)
        r = self._reader().marketSummary(mid)

        def pct(x):  # WAD fraction -> percent
            return _CTX.divide(Decimal(int(x)), Decimal(10**16))

        return MarketSummary(
            symbol=symbol, market_id=mid, index_price=from_wad(r.indexPrice) if r.indexValid else None,
            spot_price=from_wad(r.spotPrice), mark_twap=from_wad(r.markTwap), index_twap=from_wad(r.indexTwap),
            applied_pct_per_hour=pct(r.appliedRate), target_pct_per_hour=pct(r.targetRate), premium_pct=pct(r.premium),
            long_open_interest=from_wad(r.state.longOpenInterest), short_open_interest=from_wad(r.state.shortOpenInterest),
            max_open_interest=from_wad(r.params.maxOpenInterest), oi_notional_cap=from_wad(r.oiNotionalCap),
            max_long=from_wad(r.maxLong), max_short=from_wad(r.maxShort), base_reserve=from_wad(r.state.baseReserve),
            quote_reserve=from_wad(r.state.quoteReserve), pause_level=int(r.pauseLevel), raw=r)

    def peg_price(self, symbol: str) -> Decimal:
        """`AmmController.pegPrice`: the curve's price where the traders' net position would be zero (the mark
        is this times ((x + net) / x)^2: the skew premium). Trades do not move it; `repeg` moves it toward the
        index (docs/pool.md "Repeg")."""
        return from_wad(self.amm.pegPrice(self.market_id(symbol)))

    def peg_held_until(self, symbol: str) -> int:
        """`AmmController.pegHeldUntil` [s]: until when the market's peg guard holds its peg, as the index stands now
        (0 without a guard; the end of the peg's window once the peg has moved the move threshold within it; 0 with
        the move not live, the index within the threshold of the peg and room left in the window). Before it `repeg` reverts `PegHeld`, and trades in the direction a repeg would
        favour revert `PegStale` (docs/governance.md "Peg guard")."""
        return int(self.amm.pegHeldUntil(self.market_id(symbol)))

    def peg_tolerance(self, symbol: str) -> int:
        """`ClearingHouse.pegTolerance` [bps]: while the peg is more than this below the index a buy reverts `PegStale`,
        while it is more above a sell does (reduces and closes too); 0: the rule is off (docs/pool.md "The stale-peg
        rule")."""
        return int(self.clearing_house.pegTolerance(self.market_id(symbol)))

    def peg_is_stale(self, symbol: str) -> bool:
        """Whether the peg is outside the stale-peg rule's band now, so that trades in one direction (buys below the
        index, sells above) would be refused (`repeg` first, then trade): `ClearingHouseTradeRules._checkPeg`'s band on the
        live index and the peg."""
        from .model import peg_holds

        tol = self.peg_tolerance(symbol)
        if tol == 0:
            return False
        mid = self.market_id(symbol)
        index, peg = int(self.clearing_house.indexPrice(mid)), int(self.amm.pegPrice(mid))
        return peg_holds(peg, index, tol, buy=True) or peg_holds(peg, index, tol, buy=False)

    # ------------------------------------------------------------- delayed orders (docs/orders.md)

    def _order_router(self):
        if self.router is None:
            raise ClientError(f"{self.path} has no OrderRouter (written before it existed): deploy again to get one")
        return self.router

    def delayed_orders(self, symbol: str) -> bool:
        """`ClearingHouse.delayedOrders`: whether the market trades only through the order router (every shipped
        market; then `open` and `close` raise ClientError before sending, as the ClearingHouse would revert
        `DelayedOrdersOnly`: use `commit_order` / `commit_close`)."""
        return bool(self.clearing_house.delayedOrders(self.market_id(symbol)))

    def approve_router(self, approved: bool = True):
        """Let the order router trade for this account (`Vault.setOperator(router, approved)`): needed once before
        `commit_order`. The router trades only the orders this account commits."""
        return self._transact(self.vault.setOperator, self._order_router().address, bool(approved))

    def commit_order(self, symbol: str, base, slippage_bps: int = 50, sub: int = 0,
                     deadline_seconds: int | None = None, keeper_fee_wei: int | None = None) -> int:
        """Commit a delayed order to buy (`base` > 0) or sell `base`; returns its id. It executes (a keeper's
        `execute_order`) once the market's oracle publishes a round newer than this block's, at the price then;
        the limit is today's quote worsened by `slippage_bps`. The keeper fee (ETH, default the router's minimum)
        is sent with the order and refunded on a cancel. The default deadline is when the market's feed goes stale
        without a new round (its latest answer's time plus the market's heartbeat) plus the router's execution
        window: by then either a round came or the feed is stale, so the order never pays its fee to another
        canceller (an order past its deadline with the feed fresh and still on the round of its commit does); the execution window, not the deadline, bounds how late after that round it trades, and
        the limit bounds the price. To step back from a pending order, cancel it (`cancel_order`)."""
        base_wad = to_wad(base)
        if base_wad == 0:
            raise ClientError("base must not be zero (commit_close closes a position)")
        limit = self.quote_limit(symbol, base_wad, self._bps(slippage_bps))
        return self._commit(symbol, base_wad, limit, sub, deadline_seconds, keeper_fee_wei)

    def commit_close(self, symbol: str, slippage_bps: int = 50, sub: int = 0, deadline_seconds: int | None = None,
                     keeper_fee_wei: int | None = None) -> int:
        """Commit a delayed order that closes the free part of the position when it executes (at most the free part
        now; less if a liquidation took some, its limit scaled down); the limit is today's quote of closing it,
        worsened by `slippage_bps`. Returns the order's id. The deadline defaults as `commit_order`'s."""
        _, free = self._free_to_close(symbol, sub)
        limit = self.quote_limit(symbol, -free, self._bps(slippage_bps))
        return self._commit(symbol, 0, limit, sub, deadline_seconds, keeper_fee_wei)

    def _commit(self, symbol: str, base_wad: int, limit: int, sub, deadline_seconds: int | None, fee) -> int:
        router = self._order_router()
        fee = int(router.minKeeperFee()) if fee is None else self._int(fee, "keeper_fee_wei", 0, 2**80 - 1)
        if deadline_seconds is None:
            deadline = self._default_order_deadline(symbol, router)
        else:
            deadline = self._deadline(deadline_seconds)
        sender = self._sender()
        args = (self._subaccount(sub), self.market_id(symbol), base_wad, limit, deadline)
        router.commitOrder.call(*args, sender=sender, value=fee)  # a refusal raises its named error, sends nothing
        tx = transact(router.commitOrder, *args, sender=sender, value=fee, markets=self._all_markets)
        (ev,) = [log for log in tx.decode_logs(router.OrderCommitted) if log.contract_address == router.address]
        return int(ev.orderId)

    def _default_order_deadline(self, symbol: str, router) -> int:
        """The second the market's feed goes stale unless it publishes a round (its latest answer's time plus the
        market's heartbeat, the ClearingHouse's staleness limit; now, if it is stale already), plus the router's
        execution window. By then a round after the commit has come, or the feed is stale: either way a cancel
        refunds the owner (the bounty needs the feed fresh and still on the commit's round), and the order waits
        no longer than the feed's own promise."""
        heartbeat = int(self.clearing_house.marketParams(self.market_id(symbol)).heartbeat)
        updated_at = int(self.oracles[symbol].latestRoundData()[3])
        return max(self._deadline(0), updated_at + heartbeat) + int(router.executionWindow())

    def order(self, order_id: int) -> OrderInfo:
        """A delayed order and where it stands now (`OrderRouter.order`, `orderStatus`)."""
        router = self._order_router()
        oid = self._int(order_id, "order_id", 1)
        o = router.order(oid)
        status, until = router.orderStatus(oid)
        symbols = {v: k for k, v in self.market_ids.items()}
        return OrderInfo(order_id=oid, status=ORDER_STATUS[int(status)], executable_until=int(until),
                         owner=o.owner, subaccount=int(o.subaccount), symbol=symbols.get(int(o.marketId), ""),
                         base=from_wad(o.baseAmount), close=bool(o.close), quote_limit=from_wad(o.quoteLimit),
                         deadline=int(o.deadline),
                         keeper_fee_wei=int(o.keeperFee), committed_at=int(o.committedAt),
                         committed_round=int(o.committedRound), cancel_bounty_wei=int(router.cancelBounty(oid)))

    def open_orders(self, symbol: str) -> list[OrderInfo]:
        """The market's open orders (pending, executable or lapsed), oldest first: the order they execute in."""
        router = self._order_router()
        out = []
        oid, _ = router.queue(self.market_id(symbol))
        while int(oid):
            info = self.order(int(oid))
            out.append(info)
            oid = router.order(int(oid)).next
        return out

    def execute_order(self, order_id: int) -> Trade | None:
        """Execute an executable order (anyone; the keeper fee is paid to this account); returns the trade, or None
        when the ClearingHouse refused it: the order is used up all the same (`OrderFailed`, docs/orders.md)."""
        router = self._order_router()
        tx = self._transact(router.executeOrder, self._int(order_id, "order_id", 1))
        if not [log for log in tx.decode_logs(router.OrderExecuted) if log.contract_address == router.address]:
            return None
        return self._trade_of(tx)

    def cancel_order(self, order_id: int):
        """Cancel a pending order of this account, or anyone's lapsed order (the keeper fee goes back to its
        owner; for an order past its deadline with the feed fresh and still on the round of its commit, to this
        account: `OrderInfo.cancel_bounty_wei`)."""
        return self._transact(self._order_router().cancelOrder, self._int(order_id, "order_id", 1))

    def concentration(self, symbol: str) -> tuple[Decimal, Decimal, Decimal]:
        """`AmmController.concentration`: (range, amplification set, amplification a depth sync applies now) as
        fractions and factors (0, 0, 1 without a concentration; docs/pool.md "Concentrated depth")."""
        r, a, eff = self.amm.concentration(self.market_id(symbol))
        return from_wad(r), from_wad(a), from_wad(eff)

    def repeg(self, symbol: str):
        """`AmmController.repeg` (permissionless): move the market's peg toward the index; the receipt's `Repeg`
        event carries the spot before and after and the cost to the pool."""
        return self._transact(self.amm.repeg, self.market_id(symbol))

    def subaccounts(self, owner=None, to_block: int | None = None, chunk: int = 10_000) -> list[int]:
        """Every sub-account of `owner` that ever received collateral, sorted: the `subaccount` of the Vault's
        `Deposit` events for `owner` (deposits and depositFor) and the `toSubaccount` of its
        `MarginTransferred` events. No sub-account holds anything, or may trade, without one of the two.
        Scans from the deployment's first block the first time and from where the last call stopped after
        that (a cursor per owner), `chunk` blocks per log query."""
        owner = self._owner(owner)
        head = self.chain.blocks.head.number if to_block is None else int(to_block)
        start, seen = self._subaccount_scan.get(owner, (self.start_block, set()))
        seen = set(seen)
        while start <= head:
            stop = min(start + chunk, head + 1)
            for log in self.vault.Deposit.range(start, stop, search_topics={"owner": owner}):
                seen.add(int(log.subaccount))
            for log in self.vault.MarginTransferred.range(start, stop, search_topics={"owner": owner}):
                seen.add(int(log.toSubaccount))
            start = stop
        self._subaccount_scan[owner] = (start, seen)
        return sorted(seen)

    # ------------------------------------------------------------- argument checks
    # SDK-side checks of every argument the helpers below take: bad input raises ClientError with one line
    # and sends nothing. What only the chain can judge (an auction not expired yet, a cooldown not over) is
    # its named custom error, raised as Ape's ContractLogicError by a dry run before anything is sent
    # (`_transact`).

    @staticmethod
    def _int(value, name: str, lo: int = 0, hi: int = 2**256 - 1) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ClientError(f"{name} must be an integer, got {value!r}")
        if not lo <= value <= hi:
            raise ClientError(f"{name} must be in [{lo}, {hi}], got {value}")
        return int(value)

    def _subaccount(self, sub, name: str = "sub") -> int:
        return self._int(sub, name, 0, 2**32 - 1)

    @staticmethod
    def _bps(bps, name: str = "slippage_bps") -> int:
        if isinstance(bps, bool) or not isinstance(bps, int) or not 0 <= bps < 10_000:
            raise ClientError(f"{name} must be an integer in [0, 10000), got {bps!r}")
        return bps

    @staticmethod
    def _wad(value, name: str, positive: bool = True) -> int:
        """An exact WAD integer of a human number > 0 (or >= 0 with positive=False)."""
        if isinstance(value, bool):
            raise ClientError(f"{name} must be a number, got {value!r}")
        try:
            w = to_wad(value)
        except (ValueError, ArithmeticError, TypeError):
            raise ClientError(f"{name} must be a finite number with at most 18 decimals, got {value!r}") from None
        if w < 0 or (positive and w == 0):
            raise ClientError(f"{name} must be {'positive' if positive else 'non-negative'}, got {value!r}")
        return w

    @staticmethod
    def _address(value, name: str = "owner") -> str:
        from eth_utils import is_address, to_checksum_address

        address = value if isinstance(value, str) else getattr(value, "address", None)
        if not isinstance(address, str) or not is_address(address):
            raise ClientError(f"{name} must be an address or an account, got {value!r}")
        if int(address, 16) == 0:
            raise ClientError(f"{name} must not be the zero address")
        return to_checksum_address(address)

    def _auction_id(self, auction_id) -> int:
        if isinstance(auction_id, bool) or not isinstance(auction_id, int):
            raise ClientError(f"auction_id must be an integer, got {auction_id!r}")
        count = int(self.liquidation.auctionCount())
        if not 1 <= auction_id <= count:
            known = f"auctions 1..{count}" if count else "no auctions yet"
            raise ClientError(f"unknown auction {auction_id}: this deployment has {known}")
        return auction_id

    @property
    def share_decimals(self) -> int:
        """Decimals of the pool's share token (the collateral's plus the pool's offset)."""
        if self._share_decimals is None:
            self._share_decimals = int(self.pool.decimals())
        return self._share_decimals

    def _shares(self, value, name: str = "shares") -> int:
        """Share units of a human number of LP shares (> 0; refuses more decimals than the share token has)."""
        try:
            with localcontext(_CTX):
                d = Decimal(str(value)) * 10**self.share_decimals
        except (ArithmeticError, TypeError):
            d = None
        if isinstance(value, bool) or d is None or not d.is_finite():
            raise ClientError(f"{name} must be a number, got {value!r}")
        if d <= 0:
            raise ClientError(f"{name} must be positive, got {value!r}")
        if d != d.to_integral_value():
            raise ClientError(f"{name} {value} has more decimals than the pool share's {self.share_decimals}")
        return int(d)

    def _positive_units(self, amount, name: str = "amount") -> int:
        units = self.units(amount)
        if units == 0:
            raise ClientError(f"{name} must be positive, got {amount!r}")
        return units

    def _from_units(self, units: int) -> Decimal:
        return _CTX.divide(Decimal(int(units)), Decimal(10**self.decimals))

    def _from_shares(self, shares: int) -> Decimal:
        return _CTX.divide(Decimal(int(shares)), Decimal(10**self.share_decimals))

    def _now(self) -> int:
        """Timestamp of the next block (what a transaction sent now sees)."""
        try:
            return int(self.chain.pending_timestamp)
        except Exception:  # noqa: BLE001 - a node without a pending block
            return int(self.chain.blocks.head.timestamp)

    def _transact(self, handler, *args):
        """Send `handler(*args)` from this account after a dry run (`eth_call`) against the latest block: a
        call the chain refuses raises its named custom error (Ape's ContractLogicError) and nothing is sent,
        on every network (Ape sends a doomed transaction on its local chains, where it does not estimate
        gas first). Sent with the gas headroom of every market of the deployment (`transact`)."""
        sender = self._sender()
        handler.call(*args, sender=sender)
        return transact(handler, *args, sender=sender, markets=self._all_markets)

    @staticmethod
    def _error_names(contract) -> set[str]:
        return {abi.name for abi in contract.contract_type.errors}

    def _records_of(self, tx, *kinds: type) -> list:
        """The SDK's records of the protocol's events in a receipt, in log order (only `kinds` if given)."""
        out = []
        for log in tx.decode_logs(self._event_abis):
            record = self._record(log)
            if record is not None and (not kinds or isinstance(record, kinds)):
                out.append(record)
        return out

    def _one(self, tx, *kinds: type):
        records = self._records_of(tx, *kinds)
        return records[0] if records else None

    # ------------------------------------------------------------- funding

    def pending_funding(self, symbol: str, sub: int = 0, owner=None) -> Decimal:
        """Funding the position owes now and has not settled (> 0: it pays; < 0: it receives)."""
        mid = self.market_id(symbol)
        owner = self._address(owner) if owner is not None else self._owner(None)
        _, _, pending = self.clearing_house.position(owner, self._subaccount(sub), mid)
        return from_wad(pending)

    def funding_projection(self, symbol: str, hours: int = 8, sub: int = 0, owner=None) -> FundingProjection:
        """Funding over the next `hours` if the premium stays where it is: the applied rate moves toward the
        target the TWAPs imply now with the contract's own kernel (`vperp.funding.evolve`, the exact mirror
        of FundingMath: at 1 h and 8 h its rate is `fundingState`'s projected1h/8h to the wei), accrued at
        today's index. With an account (or `owner`), also the position's pending funding and what it would
        pay over the horizon. An estimate: a premium, index or parameter change moves it."""
        from .funding import HOUR, evolve

        mid = self.market_id(symbol)
        hours = self._int(hours, "hours", 1, 24 * 366)
        sub = self._subaccount(sub)
        applied, target = (int(x) for x in tuple(self.clearing_house.fundingState(mid))[:2])
        params = self.clearing_house.fundingParams(mid)
        index = int(self.clearing_house.indexPrice(mid))
        rate, area = evolve(applied, target, hours * HOUR, int(params.smoothingTau), int(params.maxRateVelocity))
        per_base = area * index // (HOUR * WAD)  # ClearingHouseAccrual._fundingAccrual: floor
        size = pending = 0
        if owner is not None or self.account is not None:
            owner = self._address(owner) if owner is not None else self._owner(None)
            size, _, pending = (int(x) for x in self.clearing_house.position(owner, sub, mid))
        payment = -(-size * per_base // WAD)  # sMulWadUp: what a position owes rounds up

        def pct(x):
            return _CTX.divide(Decimal(int(x)), Decimal(10**16))

        return FundingProjection(symbol=symbol, hours=hours, applied_pct_per_hour=pct(applied),
                                 target_pct_per_hour=pct(target), rate_at_horizon_pct_per_hour=pct(rate),
                                 funding_per_base=from_wad(per_base), size=from_wad(size),
                                 pending_funding=from_wad(pending), projected_payment=from_wad(payment),
                                 index_price=from_wad(index))

    def poke_funding(self, symbol: str) -> FundingSample | None:
        """`pokeFunding`: accrue the market's funding and TWAPs to now; returns the `FundingSample` when the
        poke was the market's first touch of a new hour (a new target), else None."""
        tx = self._transact(self.clearing_house.pokeFunding, self.market_id(symbol))
        return self._one(tx, FundingSample)

    # ------------------------------------------------------------- liquidations

    def auction_params(self, symbol: str) -> AuctionCurve:
        """The market's auction curve (`auctionParams`: the engine's defaults until governance sets its own)."""
        raw = tuple(int(x) for x in tuple(self.liquidation.auctionParams(self.market_id(symbol))))
        curve, duration, step, max_discount, reset_drop = raw
        return AuctionCurve(symbol=symbol, curve=_CURVES.get(curve, str(curve)), duration=duration, step=step,
                            max_discount_pct=_CTX.divide(Decimal(max_discount), Decimal(10**16)),
                            reset_drop_pct=_CTX.divide(Decimal(reset_drop), Decimal(10**16)), raw=raw)

    def discount_at(self, symbol: str, elapsed: int) -> Decimal:
        """The discount [%] an auction of `symbol` has `elapsed` seconds after its (re)start (`discountAt`)."""
        elapsed = self._int(elapsed, "elapsed", 0, 2**64 - 1)
        return _CTX.divide(Decimal(int(self.liquidation.discountAt(self.market_id(symbol), elapsed))), Decimal(10**16))

    def auction(self, auction_id: int, min_discount_bps: int | None = None) -> AuctionInfo:
        """One auction (live or finished: a finished one has size 0 and no price). With `min_discount_bps`,
        also the first timestamp at which its taker's discount reaches that threshold at today's index
        (`ready_at`, from the engine's curve; None when it never does before the auction expires, or when
        it is expired or finished)."""
        aid = self._auction_id(auction_id)
        threshold = None if min_discount_bps is None else self._bps(min_discount_bps, "min_discount_bps")
        return self._auction_info(aid, threshold)

    def auctions(self, min_discount_bps: int | None = None) -> list[AuctionInfo]:
        """Live liquidation auctions (remaining size not zero), with the price a taker gets now; with
        `min_discount_bps`, when each reaches that discount (see `auction`)."""
        threshold = None if min_discount_bps is None else self._bps(min_discount_bps, "min_discount_bps")
        out = []
        for aid in range(1, self.liquidation.auctionCount() + 1):
            a = self.liquidation.auction(aid)
            if int(a.size) != 0:  # a finished auction's market is not read (its feed may be stale by now)
                out.append(self._auction_info(aid, threshold, a))
        return out

    def auction_ready_at(self, auction_id: int, min_discount_bps: int) -> int | None:
        """The first timestamp at which auction `auction_id` gives its taker at least `min_discount_bps` off
        the index (at today's index; None: not before it expires)."""
        return self.auction(auction_id, min_discount_bps).ready_at

    def _auction_info(self, aid: int, threshold_bps: int | None, a=None) -> AuctionInfo:
        engine, ch = self.liquidation, self.clearing_house
        a = engine.auction(aid) if a is None else a
        mid, size = int(a.marketId), int(a.size)
        self._auction_meta[aid] = (a.owner, int(a.subaccount), mid)
        index = int(ch.indexPrice(mid))
        live = size != 0
        expired = bool(engine.isExpired(aid)) if live else False
        price = engine.auctionPrice(aid) if live and not expired else None
        discount = ready_at = threshold_pct = None
        if price is not None:
            better = index - price if size > 0 else price - index
            discount = _CTX.divide(Decimal(better * 100), Decimal(index)).quantize(Decimal("0.000001"))
        if threshold_bps is not None:
            threshold_pct = Decimal(threshold_bps) / 100
            if price is not None:
                duration = int(engine.auctionParams(mid).duration)
                e = seconds_to_discount(engine, mid, size, index, threshold_bps * 10**14, duration)
                ready_at = None if e is None else int(a.startTime) + e
        return AuctionInfo(
            id=aid, owner=a.owner, subaccount=int(a.subaccount), symbol=self.symbols.get(mid, "?"),
            market_id=mid, size=from_wad(size), start_index=from_wad(a.startIndex), start_time=int(a.startTime),
            redos=int(a.redos), expired=expired, price=None if price is None else from_wad(price),
            index_price=from_wad(index), discount_pct=discount, threshold_pct=threshold_pct, ready_at=ready_at)

    def kick_preview(self, owner, sub: int = 0, symbol: str | None = None) -> KickPreview:
        """What `kick` would do now: the market (`bestMarketToKick` without `symbol`), the slice, its notional,
        the keeper's reward and the penalty. Raises ClientError when the account is not liquidatable."""
        owner, sub = self._address(owner), self._subaccount(sub)
        mid = self._kick_market(owner, sub, symbol)
        slice_, notional, reward, penalty = (int(x) for x in self.liquidation.kickPreview(owner, sub, mid))
        return KickPreview(owner=owner, subaccount=sub, symbol=self.symbols.get(mid, "?"), market_id=mid,
                           size=from_wad(slice_), notional=from_wad(notional), keeper_reward=from_wad(reward),
                           penalty=from_wad(penalty))

    def _kick_market(self, owner: str, sub: int, symbol: str | None) -> int:
        if symbol is not None:
            mid = self.market_id(symbol)
            if not self.vault.isLiquidatable(owner, sub):
                raise ClientError(f"{owner} sub-account {sub} is not liquidatable")
            return mid
        mid = int(self.liquidation.bestMarketToKick(owner, sub))
        if mid == 0:
            raise ClientError(f"{owner} sub-account {sub} is not liquidatable (bestMarketToKick is 0)")
        return mid

    def kick(self, owner, sub: int = 0, symbol: str | None = None, keeper=None) -> Kick:
        """Start an auction of the smallest slice of `(owner, sub)`'s position that restores its target health,
        in `symbol` or, by default, the market `bestMarketToKick` names; `keeper` (default: this account) is
        paid the reward. Returns the decoded `Kick`."""
        sender = self._sender()
        owner, sub = self._address(owner), self._subaccount(sub)
        keeper = self._address(keeper if keeper is not None else sender, "keeper")
        mid = self._kick_market(owner, sub, symbol)
        tx = self._transact(self.liquidation.kick, owner, sub, mid, keeper)
        return self._one(tx, Kick)

    def take_limit(self, auction_id: int, slippage_bps: int = 50) -> int:
        """The `limitPrice` (WAD) `take` sends: the auction's price now, worsened for the taker by
        `slippage_bps` (a long slice: pay at most ceil(price x (1 + bps)); a short slice: receive at least
        floor(price x (1 - bps))). The index may move before the take lands; the discount only grows."""
        aid = self._auction_id(auction_id)
        bps = self._bps(slippage_bps)
        size = int(self.liquidation.auction(aid).size)
        price = int(self.liquidation.auctionPrice(aid))
        if size > 0:
            return -(-price * (10_000 + bps) // 10_000)
        return price * (10_000 - bps) // 10_000

    def take(self, auction_id: int, max_base=None, slippage_bps: int = 50, sub: int = 0,
             limit_price=None) -> Take:
        """Take up to `max_base` (human base units, default the whole remainder) of auction `auction_id` into
        sub-account `sub`, at the auction's price when the transaction runs, no worse than `limit_price`
        (human quote per base) or, by default, the price now worsened by `slippage_bps`. Returns the `Take`."""
        self._sender()
        aid = self._auction_id(auction_id)
        sub = self._subaccount(sub)
        amount = None if max_base is None else self._wad(max_base, "max_base")
        limit = None if limit_price is None else self._wad(limit_price, "limit_price")
        self._bps(slippage_bps)
        a = self.liquidation.auction(aid)
        if int(a.size) == 0:
            raise ClientError(f"auction {aid} is finished (nothing left to take)")
        amount = abs(int(a.size)) if amount is None else amount
        limit = self.take_limit(aid, slippage_bps) if limit is None else limit
        tx = self._transact(self.liquidation.take, aid, amount, limit, sub)
        return self._one(tx, Take)

    def redo(self, auction_id: int, keeper=None) -> Redo | AuctionCancel:
        """Restart an expired auction from the live index (`keeper`, default this account, gets the tip); a
        recovered account's auction is cancelled instead. Returns the `Redo` or the `AuctionCancel`."""
        sender = self._sender()
        aid = self._auction_id(auction_id)
        keeper = self._address(keeper if keeper is not None else sender, "keeper")
        tx = self._transact(self.liquidation.redo, aid, keeper)
        return self._one(tx, Redo, AuctionCancel)

    def cancel(self, auction_id: int) -> AuctionCancel:
        """End the auction of an account that has recovered (anyone may; nobody is paid)."""
        self._sender()
        tx = self._transact(self.liquidation.cancel, self._auction_id(auction_id))
        return self._one(tx, AuctionCancel)

    def backstop(self, auction_id: int) -> Backstop | AuctionCancel:
        """Close what the band and the auction's last price allow of an auction redone `maxRedos` times against
        the vAMM (the rest stays in the auction); a recovered account's is cancelled instead."""
        self._sender()
        tx = self._transact(self.liquidation.backstop, self._auction_id(auction_id))
        return self._one(tx, Backstop, AuctionCancel)

    # ------------------------------------------------------------- liquidity pool

    def lp_deposit(self, amount, receiver=None) -> LpDeposit:
        """Deposit `amount` (human collateral units) into the pool for shares minted to `receiver` (default this
        account); approves the pool when needed. Returns the pool's `Deposit` as an `LpDeposit`."""
        sender = self._sender()
        units = self._positive_units(amount)
        receiver = self._address(receiver if receiver is not None else sender, "receiver")
        if self.collateral.allowance(sender, self.pool) < units:
            # The pool checks pause, LP-flow suspension and share amount before it pulls the tokens: a dry run
            # names those before an approval is spent on a deposit that cannot go through.
            from ape.exceptions import ContractLogicError

            try:
                self.pool.deposit.call(units, receiver, sender=sender)
            except ContractLogicError as e:
                name = type(e).__name__  # the missing allowance itself (ERC20Insufficient...) is expected here
                if name in self._error_names(self.pool) and not name.startswith(("ERC20", "SafeERC20")):
                    raise
            self.collateral.approve(self.pool, units, sender=sender)
        tx = self._transact(self.pool.deposit, units, receiver)
        return self._one(tx, LpDeposit)

    def lp_request_withdraw(self, shares=None) -> LpWithdrawRequest:
        """Ask to withdraw `shares` (human share units; default all this account holds): redeemable from the
        cooldown's end for the pool's window. A new request replaces the last one."""
        sender = self._sender()
        if shares is None:
            units = int(self.pool.balanceOf(sender))
            if units == 0:
                raise ClientError(f"{sender.address} holds no pool shares to request")
        else:
            units = self._shares(shares)
        tx = self._transact(self.pool.requestWithdraw, units)
        return self._one(tx, LpWithdrawRequest)

    def lp_redeem(self, shares=None, receiver=None) -> LpWithdraw:
        """Redeem `shares` (human share units; default `maxRedeem`, all the matured request allows now) for
        collateral paid to `receiver` (default this account). Returns the pool's `Withdraw` as `LpWithdraw`."""
        sender = self._sender()
        receiver = self._address(receiver if receiver is not None else sender, "receiver")
        if shares is None:
            units = int(self.pool.maxRedeem(sender))
            if units == 0:
                r = self.lp_request()
                raise ClientError(f"nothing redeemable now for {sender.address}: request {r.status}"
                                  + (f" (unlocks at {r.unlock_at}, expires at {r.expires_at})" if r.unlock_at else "")
                                  + "; maxRedeem is 0")
        else:
            units = self._shares(shares)
        tx = self._transact(self.pool.redeem, units, receiver, sender)
        return self._one(tx, LpWithdraw)

    def lp_withdraw(self, amount, receiver=None) -> LpWithdraw:
        """Withdraw `amount` (human collateral units) against the matured request, paid to `receiver`."""
        sender = self._sender()
        units = self._positive_units(amount)
        receiver = self._address(receiver if receiver is not None else sender, "receiver")
        tx = self._transact(self.pool.withdraw, units, receiver, sender)
        return self._one(tx, LpWithdraw)

    def lp_request(self, owner=None) -> LpRequest:
        """`owner`'s withdrawal request and its status at the next block's timestamp: "none", "cooling" (before
        `unlock_at`), "open" (redeemable, up to `expires_at` included) or "expired"."""
        owner = self._address(owner if owner is not None else self._sender(), "owner")
        r = self.pool.withdrawRequest(owner)
        shares, unlock = int(r.shares), int(r.unlockAt)
        if shares == 0:
            return LpRequest(owner=owner, shares=Decimal(0), unlock_at=None, expires_at=None, status="none")
        expires = unlock + int(self.pool.poolParams().withdrawWindow)
        now = self._now()
        status = "cooling" if now < unlock else "open" if now <= expires else "expired"
        return LpRequest(owner=owner, shares=self._from_shares(shares), unlock_at=unlock, expires_at=expires,
                         status=status)

    def lp_max_redeem(self, owner=None) -> Decimal:
        """Shares `redeem` accepts now (`maxRedeem`: 0 without a matured request, while LP flows are suspended...)."""
        owner = self._address(owner if owner is not None else self._sender(), "owner")
        return self._from_shares(self.pool.maxRedeem(owner))

    def lp_max_withdraw(self, owner=None) -> Decimal:
        """Collateral `withdraw` accepts now (`maxWithdraw`), human units."""
        owner = self._address(owner if owner is not None else self._sender(), "owner")
        return self._from_units(self.pool.maxWithdraw(owner))

    def lp_position(self, owner=None) -> LpPosition:
        """`owner`'s shares, what they redeem for now, the share price, `maxRedeem`/`maxWithdraw` and the request."""
        owner = self._address(owner if owner is not None else self._sender(), "owner")
        shares = int(self.pool.balanceOf(owner))
        million = 10**(self.share_decimals + 6)  # a million shares: the price to 12 decimals of a token unit
        return LpPosition(owner=owner, shares=self._from_shares(shares),
                          value=self._from_units(self.pool.previewRedeem(shares)) if shares else Decimal(0),
                          share_price=self._from_units(self.pool.convertToAssets(million)) / 10**6,
                          max_redeem=self.lp_max_redeem(owner), max_withdraw=self.lp_max_withdraw(owner),
                          request=self.lp_request(owner))

    # ------------------------------------------------------------- decoding events

    def _auction_of(self, aid: int) -> tuple[str, int, int]:
        """(owner, subaccount, market id) of an auction: fixed at its kick, read once from `auction(id)`."""
        meta = self._auction_meta.get(aid)
        if meta is None:
            a = self.liquidation.auction(aid)
            meta = self._auction_meta[aid] = (a.owner, int(a.subaccount), int(a.marketId))
        return meta

    def _record(self, log) -> ChainEvent | None:
        """The SDK's record of a decoded log of one of the five contracts or the order router; None for any other
        address."""
        name = self._contract_names.get(str(log.contract_address).lower())
        if name is None:
            return None
        event = log.event_name
        args = log.event_arguments
        tx_hash = log.transaction_hash
        where = dict(block=int(log.block_number),
                     tx_hash=tx_hash if isinstance(tx_hash, str) else "0x" + bytes(tx_hash).hex(),
                     log_index=int(log.log_index))
        w = from_wad

        def market(mid):
            mid = int(mid)
            return dict(symbol=self.symbols.get(mid, "?"), market_id=mid)

        def auction(aid):
            owner, sub, mid = self._auction_of(int(aid))
            return dict(auction_id=int(aid), owner=owner, subaccount=sub, **market(mid))

        def pct(x):
            return _CTX.divide(Decimal(int(x)), Decimal(10**16))

        key = (name, event)
        if key == ("ClearingHouse", "PositionChanged"):
            return self._trade(log)
        if key == ("ClearingHouse", "PositionSettled"):
            cause = int(args["cause"])
            return Settlement(**where, owner=args["owner"], subaccount=int(args["subaccount"]),
                              **market(args["marketId"]), cause=SETTLEMENT_CAUSES.get(cause, f"cause {cause}"),
                              price=w(args["price"]))
        if key == ("ClearingHouse", "FundingSampled"):
            return FundingSample(**where, **market(args["marketId"]), premium_pct=pct(args["premium"]),
                                 target_pct_per_hour=pct(args["targetRate"]),
                                 applied_pct_per_hour=pct(args["appliedRate"]),
                                 cumulative_funding=w(args["cumulativeFunding"]), mark_twap=w(args["markTwap"]),
                                 index_twap=w(args["indexTwap"]))
        if key == ("ClearingHouse", "ReservesSet"):
            return ReservesChange(**where, **market(args["marketId"]), base_reserve=w(args["baseReserve"]),
                                  quote_reserve=w(args["quoteReserve"]))
        if key == ("LiquidationEngine", "Kick"):
            aid, mid = int(args["auctionId"]), int(args["marketId"])
            self._auction_meta[aid] = (args["owner"], int(args["subaccount"]), mid)
            return Kick(**where, auction_id=aid, owner=args["owner"], subaccount=int(args["subaccount"]),
                        **market(mid), size=w(args["size"]), start_index=w(args["startIndex"]),
                        keeper=args["keeper"], keeper_reward=w(args["keeperReward"]), penalty=w(args["penalty"]))
        if key == ("LiquidationEngine", "Take"):
            return Take(**where, taker=args["taker"], taker_subaccount=int(args["takerSubaccount"]),
                        amount=w(args["amount"]), price=w(args["price"]), remaining=w(args["remaining"]),
                        **auction(args["auctionId"]))
        if key == ("LiquidationEngine", "Redo"):
            return Redo(**where, redos=int(args["redos"]), start_index=w(args["startIndex"]), keeper=args["keeper"],
                        tip=w(args["tip"]), **auction(args["auctionId"]))
        if key == ("LiquidationEngine", "AuctionCancelled"):
            return AuctionCancel(**where, size=w(args["size"]), account_value=w(args["accountValue"]),
                                 requirement=w(args["requirement"]), **auction(args["auctionId"]))
        if key == ("LiquidationEngine", "Backstop"):
            return Backstop(**where, size=w(args["size"]), quote=w(args["quote"]), **auction(args["auctionId"]))
        if key == ("Vault", "BadDebt"):
            return BadDebt(**where, owner=args["owner"], subaccount=int(args["subaccount"]), amount=w(args["amount"]),
                           from_insurance=w(args["fromInsurance"]), from_pool=w(args["fromPool"]))
        if key == ("Vault", "ShortfallRecorded"):
            return Shortfall(**where, owner=args["owner"], subaccount=int(args["subaccount"]),
                             shortfall=w(args["shortfall"]), total=w(args["total"]))
        if key == ("Vault", "BuilderFeeApproved"):
            return BuilderApproval(**where, owner=args["owner"], builder=args["builder"],
                                   max_fee_rate=w(args["maxFeeRate"]))
        if key == ("Vault", "BuilderFeePaid"):
            return BuilderFee(**where, owner=args["owner"], subaccount=int(args["subaccount"]), builder=args["builder"],
                              amount=w(args["amountWad"]))
        if key == ("Vault", "BuilderFeesClaimed"):
            return BuilderClaim(**where, builder=args["builder"], to=args["to"],
                                amount=self._from_units(int(args["amount"])), amount_wad=w(args["amountWad"]))
        if key == ("Vault", "LiquidationCharged"):
            return LiquidationCharge(**where, owner=args["owner"], subaccount=int(args["subaccount"]),
                                     keeper=args["keeper"], keeper_reward=w(args["keeperReward"]),
                                     penalty=w(args["penalty"]))
        if key in (("Vault", "Deposit"), ("Vault", "Withdraw")):
            kind = CollateralDeposit if event == "Deposit" else CollateralWithdraw
            return kind(**where, caller=args["caller"], owner=args["owner"], subaccount=int(args["subaccount"]),
                        amount=self._from_units(args["amount"]), amount_wad=w(args["amountWad"]))
        if key == ("Vault", "MarginTransferred"):
            return MarginTransfer(**where, caller=args["caller"], owner=args["owner"],
                                  from_subaccount=int(args["fromSubaccount"]), to_subaccount=int(args["toSubaccount"]),
                                  amount=w(args["amountWad"]))
        if key == ("LiquidityPool", "Deposit"):
            return LpDeposit(**where, sender=args["sender"], owner=args["owner"],
                             assets=self._from_units(args["assets"]), shares=self._from_shares(args["shares"]))
        if key == ("LiquidityPool", "Withdraw"):
            return LpWithdraw(**where, sender=args["sender"], receiver=args["receiver"], owner=args["owner"],
                              assets=self._from_units(args["assets"]), shares=self._from_shares(args["shares"]))
        if key == ("LiquidityPool", "WithdrawRequested"):
            return LpWithdrawRequest(**where, owner=args["owner"], shares=self._from_shares(args["shares"]),
                                     unlock_at=int(args["unlockAt"]))
        if key == ("AmmController", "DepthSynced"):
            return DepthSync(**where, **market(args["marketId"]), base_before=w(args["baseBefore"]),
                             quote_before=w(args["quoteBefore"]), base_after=w(args["baseAfter"]),
                             quote_after=w(args["quoteAfter"]), nav=w(args["nav"]))
        if key == ("AmmController", "DepthSyncCost"):
            return DepthSyncCost(**where, **market(args["marketId"]), cost=w(args["cost"]),
                                 total_cost=w(args["totalCost"]))
        if key == ("AmmController", "DepthCharged"):
            return DepthCharge(**where, **market(args["marketId"]), exit_change=w(args["exitChange"]),
                               charge_per_base=w(args["chargePerBase"]))
        if key == ("AmmController", "Repeg"):
            return Repeg(**where, **market(args["marketId"]), price_before=w(args["priceBefore"]),
                         price_after=w(args["priceAfter"]), index_price=w(args["indexPrice"]), cost=w(args["cost"]))
        if key == ("OrderRouter", "OrderCommitted"):
            return OrderCommit(**where, order_id=int(args["orderId"]), owner=args["owner"],
                               subaccount=int(args["subaccount"]), **market(args["marketId"]),
                               base=w(args["baseAmount"]), close=bool(args["close"]), quote_limit=w(args["quoteLimit"]),
                               deadline=int(args["deadline"]), keeper_fee_wei=int(args["keeperFee"]),
                               committed_round=int(args["committedRound"]))
        if key == ("OrderRouter", "OrderExecuted"):
            return OrderExecution(**where, order_id=int(args["orderId"]), keeper=args["keeper"], base=w(args["base"]),
                                  quote=w(args["quote"]), fee=w(args["fee"]), keeper_fee_wei=int(args["keeperFee"]))
        if key == ("OrderRouter", "OrderFailed"):
            reason = bytes(args["reason"])
            return OrderFailure(**where, order_id=int(args["orderId"]), keeper=args["keeper"],
                                reason="0x" + reason.hex(), error=self._error_name(reason),
                                keeper_fee_wei=int(args["keeperFee"]))
        if key == ("OrderRouter", "OrderCancelled"):
            return OrderCancel(**where, order_id=int(args["orderId"]), caller=args["caller"],
                               refunded_wei=int(args["keeperFeeRefunded"]))
        if key == ("OrderRouter", "CancelBountyPaid"):
            return OrderBounty(**where, order_id=int(args["orderId"]), caller=args["caller"],
                               amount_wei=int(args["amount"]))
        return OtherEvent(**where, contract=name, event=event, args={k: _plain(v) for k, v in dict(args).items()})

    def _error_name(self, data: bytes) -> str:
        """The name of the custom error `data` starts with, among the protocol's contracts' errors ("" if unknown)."""
        if self._error_selectors is None:
            self._error_selectors = error_selectors(
                c.contract_type for c in (self.vault, self.clearing_house, self.liquidation, self.pool, self.amm,
                                          self.router) if c is not None)
        return self._error_selectors.get(bytes(data[:4]), "")

    def events(self, since_block: int | None = None, to_block: int | None = None, kinds: tuple = ()) -> list:
        """Every event of the five contracts and the order router in blocks `since_block` (default: the
        deployment's first) to `to_block` (default: the head), decoded as the SDK's records, in chain order; only
        `kinds` (record classes) if given. One pass, no cursor: `EventFeed` follows the chain."""
        start = self.start_block if since_block is None else self._int(since_block, "since_block")
        stop = self.chain.blocks.head.number if to_block is None else self._int(to_block, "to_block")
        kinds = _record_kinds(kinds)
        return [r for r in self._fetch_records(start, stop) if not kinds or isinstance(r, kinds)]

    def _fetch_records(self, start: int, stop: int) -> list:
        """Records of blocks start..stop (both included), one log query (Ape pages it), in chain order."""
        from ape.types import LogFilter

        if start > stop:
            return []
        log_filter = LogFilter(addresses=list(self._log_addresses.values()), events=self._event_abis,
                               start_block=start, stop_block=stop)
        logs = sorted(self.chain.provider.get_contract_logs(log_filter),
                      key=lambda log: (int(log.block_number), int(log.log_index)))
        return [r for r in (self._record(log) for log in logs) if r is not None]

    # ------------------------------------------------------------- events

    def _trade(self, log) -> Trade:
        mid = int(log.marketId)
        tx_hash = log.transaction_hash
        return Trade(
            block=int(log.block_number), tx_hash=tx_hash if isinstance(tx_hash, str) else "0x" + bytes(tx_hash).hex(),
            log_index=int(log.log_index), owner=log.owner, subaccount=int(log.subaccount),
            symbol=self.symbols.get(mid, "?"), market_id=mid, base_delta=from_wad(log.baseDelta),
            quote_delta=from_wad(log.quoteDelta), fee=from_wad(log.fee), realized_pnl=from_wad(log.realizedPnl),
            funding_paid=from_wad(log.fundingPaid), new_size=from_wad(log.newSize),
            new_open_notional=from_wad(log.newOpenNotional), price_after=from_wad(log.priceAfter))

    def trades(self, since_block: int | None = None, owner=None, to_block: int | None = None) -> list[Trade]:
        """`PositionChanged` events from `since_block` (default: the deployment's first block) to the head,
        optionally only `owner`'s, oldest first."""
        start = self.start_block if since_block is None else int(since_block)
        stop = (self.chain.blocks.head.number if to_block is None else int(to_block)) + 1
        if start >= stop:
            return []
        topics = {"owner": self._owner(owner)} if owner is not None else None
        logs = self.clearing_house.PositionChanged.range(start, stop, search_topics=topics)
        return [self._trade(log) for log in logs]


# ----------------------------------------------------------------------------- live subscriptions

CURSOR_FORMAT = "vperp-cursor/1"


def write_json_atomically(path: Path, data: dict) -> None:
    """Write `data` to `path` so that a reader (or a process restarted after a crash at any point) finds either
    the previous file or the new one, never a mix: a temporary file in the same folder, flushed and synced,
    then renamed over `path` (`os.replace` is atomic on POSIX and Windows), then the folder synced."""
    import os
    import tempfile

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(data, indent=2) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    try:  # the rename itself survives a power cut once the folder is synced (POSIX; best effort elsewhere)
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


class EventFeed:
    """Live subscription to the protocol's events by polling `eth_getLogs` from a block cursor.

        feed = EventFeed(client, cursor_file="state/feed.json")      # resumes where the last run stopped
        for record in feed.poll():                                   # one batch of blocks, committed
            ...                                                      # Trade, FundingSample, Kick, Take, ...
        feed.follow(handle, interval=2)                              # poll forever; at-least-once delivery

    Each poll reads the logs of the five contracts (and the order router) in blocks `next_block .. min(head - confirmations,
    next_block + batch_blocks - 1)` in one query, decodes them into the SDK's records (`RECORD_KINDS`) in
    chain order, then moves the cursor past the last block read and, with `cursor_file`, writes it
    atomically (`write_json_atomically`). A process restarted with the same file resumes at the first block
    it has not delivered: no duplicates, no gaps. The file also names the chain (id and block 0's hash) and
    the deployment's contracts, and a feed refuses a file written for another (`FeedError`).

    Reorganisations: the cursor keeps the hash of the last block it delivered, which commits to every block
    before it. Each poll first checks that this block is still on the chain; if a reorganisation replaced it
    (or any earlier delivered block) the poll raises `ReorgError` and delivers nothing: the feed does not
    roll back what a consumer already processed. `confirmations=N` delivers a block only once N blocks are on
    top of it, so a reorganisation shallower than N never reaches the consumer. A reorganisation of blocks
    not yet delivered is invisible and harmless (they are read after it). Local chains (Anvil, the embedded
    chain) do not reorganise; a restarted Anvil is a new chain, refused by block 0's hash.
    """

    def __init__(self, client: Client, cursor_file: str | Path | None = None, start_block: int | None = None,
                 batch_blocks: int = 2_000, confirmations: int = 0, kinds: tuple = ()):
        self.client = client
        self.batch_blocks = Client._int(batch_blocks, "batch_blocks", 1, 1_000_000)
        self.confirmations = Client._int(confirmations, "confirmations", 0, 10_000)
        self.kinds = _record_kinds(kinds)
        self.cursor_file = None if cursor_file is None else Path(cursor_file)
        chain = client.chain
        self._identity = {"chain_id": int(chain.chain_id), "genesis": genesis_hash(chain),
                          "contracts": dict(client._addresses)}
        if start_block is not None:
            start_block = Client._int(start_block, "start_block")
        self.next_block = client.start_block if start_block is None else start_block
        self.last_block_hash: str | None = None  # hash of block next_block - 1 once something was delivered
        self._read: tuple[int, str] | None = None  # (last block, its hash) of the last fetch
        if self.cursor_file is not None and self.cursor_file.exists():
            self._load()  # the file wins over start_block: it is where the last run stopped

    # ----------------------------------------------------------- cursor

    def _load(self) -> None:
        path = self.cursor_file
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise FeedError(f"cursor file {path} is unreadable ({type(e).__name__}): delete it to start over "
                            "from start_block") from None
        if not isinstance(data, dict) or data.get("format") != CURSOR_FORMAT:
            raise FeedError(f"{path} is not an EventFeed cursor (format {CURSOR_FORMAT})")
        for key, want in self._identity.items():
            if data.get(key) != want:
                raise FeedError(f"cursor file {path} was written for another {key.replace('_', ' ')} "
                                f"({data.get(key)!r}, this chain's is {want!r}): use another file")
        nb, h = data.get("next_block"), data.get("last_block_hash")
        if isinstance(nb, bool) or not isinstance(nb, int) or nb < 0 or not (h is None or isinstance(h, str)):
            raise FeedError(f"cursor file {path}: next_block/last_block_hash are malformed")
        self.next_block, self.last_block_hash = nb, h

    def _save(self) -> None:
        if self.cursor_file is not None:
            write_json_atomically(self.cursor_file, {"format": CURSOR_FORMAT, **self._identity,
                                                     "next_block": self.next_block,
                                                     "last_block_hash": self.last_block_hash})

    def _block_hash(self, number: int) -> str:
        h = self.client.chain.blocks[number].hash
        return h if isinstance(h, str) else "0x" + bytes(h).hex()

    # ----------------------------------------------------------- reading

    @property
    def safe_head(self) -> int:
        """The last block a poll may read now: the head less `confirmations`."""
        return self.client.chain.blocks.head.number - self.confirmations

    def _check_reorg(self) -> None:
        if self.last_block_hash is None:
            return
        last = self.next_block - 1
        head = self.client.chain.blocks.head.number
        if last > head or self._block_hash(last) != self.last_block_hash:
            raise ReorgError(f"block {last}, the last this feed delivered, is no longer on the chain (head {head}): "
                             f"a reorganisation replaced delivered blocks; the cursor stays at {self.next_block}")

    def fetch(self) -> tuple[list, int | None]:
        """Read the next batch without moving the cursor: (records, last block read or None when caught up).
        `commit(last)` then moves the cursor; `poll` does both."""
        self._check_reorg()
        stop = min(self.safe_head, self.next_block + self.batch_blocks - 1)
        if stop < self.next_block:
            return [], None
        self._read = (stop, self._block_hash(stop))  # the block as it was before its logs were read
        records = self.client._fetch_records(self.next_block, stop)
        if self.kinds:
            records = [r for r in records if isinstance(r, self.kinds)]
        return records, stop

    def commit(self, last_block: int) -> None:
        """Mark every block up to `last_block` delivered (and write the cursor file)."""
        last_block = Client._int(last_block, "last_block")
        if last_block < self.next_block - 1:
            raise FeedError(f"cannot commit block {last_block}: the cursor is already at {self.next_block}")
        block_hash = self._block_hash(last_block)
        if self._read is not None and self._read[0] == last_block and self._read[1] != block_hash:
            raise ReorgError(f"block {last_block} changed while its logs were read (a reorganisation): "
                             f"nothing delivered, the cursor stays at {self.next_block}")
        self.last_block_hash = block_hash
        self.next_block = last_block + 1
        self._save()

    def poll(self) -> list:
        """The records of the next batch of blocks (empty when caught up), delivered: the cursor moves past
        them before they are returned (at-most-once if the caller then fails; `follow` is at-least-once)."""
        records, last = self.fetch()
        if last is not None:
            self.commit(last)
        return records

    def read_to_head(self) -> list:
        """Poll until caught up with `safe_head`; every record on the way, in chain order."""
        out = []
        while True:
            records, last = self.fetch()
            if last is None:
                return out
            self.commit(last)
            out += records

    def follow(self, handler, interval: float = 2.0, sleep=None, polls: int | None = None) -> int:
        """Call `handler(record)` for every record, forever (or `polls` polls), sleeping `interval` seconds when
        caught up. The cursor moves past a batch only after the handler has returned for all of it: if the
        handler raises, the error propagates and a restarted feed delivers that batch again (at-least-once;
        make the handler idempotent, e.g. keyed by `(block, log_index)`). Returns the records handled."""
        import time

        if polls is not None:
            polls = Client._int(polls, "polls", 1)
        if isinstance(interval, bool) or not isinstance(interval, (int, float)) or not interval >= 0:
            raise FeedError(f"interval must be a number of seconds >= 0, got {interval!r}")
        sleep = sleep or time.sleep
        handled = done = 0
        while polls is None or done < polls:
            records, last = self.fetch()
            done += 1
            for record in records:
                handler(record)
                handled += 1
            if last is not None:
                self.commit(last)
            if last is None or last >= self.safe_head:
                if polls is None or done < polls:
                    sleep(interval)
        return handled


def network_file_stem(ecosystem: str, network: str) -> str:
    """`local`, `sepolia`, `mainnet` for Ethereum networks; `<ecosystem>-<network>` for others."""
    return network if ecosystem == "ethereum" else f"{ecosystem}-{network}"


def default_deployment_path(root: str | Path | None = None) -> Path:
    """The deployment file of the connected chain: the record `find_deployment` picks for it (an older
    `deployments/local.json` included), else where a new one goes,
    `<project>/deployments/<network>-<chain id>.json`. (`scripts/keeper.py` reads and writes here.)"""
    from ape import chain

    found, _ = find_deployment(chain.chain_id, genesis_hash(chain), root)
    if found is not None:
        return found.path
    net = chain.provider.network
    return deployment_path(chain.chain_id, net.ecosystem.name, net.name, root)


def find_deployment_for_connected_chain(root: str | Path | None = None) -> Path:
    """The path of the record for the connected chain (`find_deployment`), or a DeploymentError saying
    what is there instead."""
    from ape import chain

    chain_id, genesis = chain.chain_id, genesis_hash(chain)
    found, gone = find_deployment(chain_id, genesis, root)
    if found is not None:
        return found.path
    hint = ""
    if gone:
        hint = (f"; {', '.join(str(f.path) for f in gone)} {'was' if len(gone) == 1 else 'were'} written for an "
                "earlier chain with the same id (another block 0)")
    raise DeploymentError(f"no deployment record for chain id {chain_id} in {deployments_dir(root)}{hint}: run "
                          "`./run.sh ape run deploy --rpc URL` (or --network ...) first")


# ----------------------------------------------------------------------------- accounts rebuilt from events
# What an indexer keeps per account, from the records alone (docs/integrators.md, "Rebuilding accounts from
# events"): positions from each `Trade`'s new size and open notional, the cause and execution price of every
# change (a `Settlement` right after a `Trade` marks a liquidation's), and the Vault collateral from every
# event that moves it. Integer WAD inside, so the collateral is exact to the wei.


@dataclass(frozen=True)
class PositionChange:
    """One `Trade` with its cause and execution price (`position_changes`)."""

    trade: Trade
    cause: str  # "trade" | "flip" (the holder's order) | "auction_fill" | "auction_take" | "backstop"
    price: Decimal  # the settlement's price for a liquidation's change, else trade.execution_price
    settlement: Settlement | None  # the PositionSettled that followed the trade (None: the holder's order)


@dataclass(frozen=True)
class LedgerEntry:
    """One movement of an account's Vault collateral and the record that reports it."""

    block: int
    tx_hash: str
    log_index: int
    kind: str  # "deposit" | "withdraw" | "transfer_in" | "transfer_out" | a PositionChange cause |
    #            "liquidation_charge" | "keeper_reward" | "keeper_bounty" | "bad_debt" | "builder_fee"
    amount: Decimal  # signed change of the collateral
    record: ChainEvent


@dataclass(frozen=True)
class RebuiltPosition:
    symbol: str
    market_id: int
    size: Decimal
    open_notional: Decimal


@dataclass
class AccountHistory:
    """One account `(owner, subaccount)` rebuilt from records (`rebuild_accounts`)."""

    owner: str
    subaccount: int
    collateral_wad: int = 0  # Vault.collateral(owner, subaccount), exact
    positions: dict = None  # market id -> RebuiltPosition (closed positions stay, at size 0)
    changes: list = None  # PositionChange, oldest first
    ledger: list = None  # LedgerEntry, oldest first
    shortfall: Decimal = Decimal(0)  # the last ShortfallRecorded estimate (not a balance: collateral is unmoved)
    bad_debt: Decimal = Decimal(0)  # total written off by BadDebt (the account reset to zero)

    def __post_init__(self):
        self.positions = {} if self.positions is None else self.positions
        self.changes = [] if self.changes is None else self.changes
        self.ledger = [] if self.ledger is None else self.ledger

    @property
    def collateral(self) -> Decimal:
        return from_wad(self.collateral_wad)

    def position(self, market_id: int) -> RebuiltPosition:
        """The rebuilt position in `market_id` (size 0 when the account never held one)."""
        return self.positions.get(int(market_id)) or RebuiltPosition("?", int(market_id), Decimal(0), Decimal(0))

    def _move(self, record: ChainEvent, kind: str, amount_wad: int) -> None:
        self.collateral_wad += amount_wad
        self.ledger.append(LedgerEntry(record.block, record.tx_hash, record.log_index, kind, from_wad(amount_wad),
                                       record))


def _chain_order(records) -> list:
    return sorted((r for r in records if isinstance(r, ChainEvent)), key=lambda r: (r.block, r.log_index))


def position_changes(records) -> list[PositionChange]:
    """Every `Trade` of `records` with its cause: the `Settlement` emitted right after it (same transaction,
    next log index, same owner, sub-account and market) gives a liquidation's cause and price; without one
    the change is the holder's order, "flip" when it crossed zero, else "trade", at `execution_price`.
    `records` must hold the Settlements (do not filter them out); a Settlement with no Trade before it
    raises ClientError (records are missing)."""
    ordered = _chain_order(records)
    trades = {(r.tx_hash, r.log_index): r for r in ordered if isinstance(r, Trade)}
    paired: dict[tuple[str, int], Settlement] = {}
    for s in (r for r in ordered if isinstance(r, Settlement)):
        t = trades.get((s.tx_hash, s.log_index - 1))
        if t is None or (t.owner, t.subaccount, t.market_id) != (s.owner, s.subaccount, s.market_id):
            raise ClientError(f"the Settlement at block {s.block} log {s.log_index} follows no Trade of "
                              f"{s.owner} sub {s.subaccount} market {s.market_id}: records are missing")
        paired[(t.tx_hash, t.log_index)] = s
    out = []
    for t in trades.values():
        s = paired.get((t.tx_hash, t.log_index))
        if s is not None:
            out.append(PositionChange(t, s.cause, s.price, s))
        else:
            out.append(PositionChange(t, "flip" if t.flipped else "trade", t.execution_price, None))
    return out


def trade_causes(records) -> list[tuple[Trade, str]]:
    """(trade, cause) for every `Trade` of `records` (`position_changes` without the prices)."""
    return [(c.trade, c.cause) for c in position_changes(records)]


def rebuild_accounts(records, accounts: dict | None = None) -> dict[tuple[str, int], AccountHistory]:
    """Every account's positions and Vault collateral rebuilt from `records` alone (`Client.events()` from
    the deployment's first block, unfiltered), keyed `(owner, subaccount)`. Given `accounts` (an earlier
    result), the records continue it, updated in place and returned: an `EventFeed`'s batches one after
    the other (a batch is whole blocks, so a Trade and its Settlement never part). The collateral moves by:
    Deposit +amount_wad; Withdraw -amount_wad; MarginTransferred -amount from one sub-account, +amount to
    the other; each PositionChanged realized_pnl - fee - funding_paid (fee 0 for a liquidation's); a
    LiquidationCharged -(keeper_reward + penalty) on the account, +keeper_reward on the keeper's
    sub-account 0; a Vault KeeperBounty (an `OtherEvent`) +amount on the keeper's sub-account 0; BadDebt
    +amount (the account reset to zero); a BuilderFee (the Vault's BuilderFeePaid) -amount on the trader's
    account (the builder's balance is outside the accounts). ShortfallRecorded moves nothing (an estimate)."""
    accounts = {} if accounts is None else accounts

    def acct(owner, sub) -> AccountHistory:
        key = (str(owner), int(sub))
        if key not in accounts:
            accounts[key] = AccountHistory(*key)
        return accounts[key]

    changes = {(c.trade.tx_hash, c.trade.log_index): c for c in position_changes(records)}
    for r in _chain_order(records):
        if isinstance(r, Trade):
            change = changes[(r.tx_hash, r.log_index)]
            a = acct(r.owner, r.subaccount)
            a.positions[r.market_id] = RebuiltPosition(r.symbol, r.market_id, r.new_size, r.new_open_notional)
            a.changes.append(change)
            a._move(r, change.cause, _wad_int(r.collateral_delta))
        elif isinstance(r, CollateralDeposit):
            acct(r.owner, r.subaccount)._move(r, "deposit", _wad_int(r.amount_wad))
        elif isinstance(r, CollateralWithdraw):
            acct(r.owner, r.subaccount)._move(r, "withdraw", -_wad_int(r.amount_wad))
        elif isinstance(r, MarginTransfer):
            acct(r.owner, r.from_subaccount)._move(r, "transfer_out", -_wad_int(r.amount))
            acct(r.owner, r.to_subaccount)._move(r, "transfer_in", _wad_int(r.amount))
        elif isinstance(r, LiquidationCharge):
            reward = _wad_int(r.keeper_reward)
            acct(r.owner, r.subaccount)._move(r, "liquidation_charge", -(reward + _wad_int(r.penalty)))
            if reward:
                acct(r.keeper, 0)._move(r, "keeper_reward", reward)
        elif isinstance(r, OtherEvent) and (r.contract, r.event) == ("Vault", "KeeperBounty"):
            acct(r.args["keeper"], 0)._move(r, "keeper_bounty", int(r.args["amount"]))
        elif isinstance(r, BuilderFee):
            acct(r.owner, r.subaccount)._move(r, "builder_fee", -_wad_int(r.amount))
        elif isinstance(r, BadDebt):
            a = acct(r.owner, r.subaccount)
            a._move(r, "bad_debt", _wad_int(r.amount))
            a.bad_debt = _CTX.add(a.bad_debt, r.amount)
        elif isinstance(r, Shortfall):
            acct(r.owner, r.subaccount).shortfall = r.shortfall
    return accounts
