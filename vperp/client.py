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

Everything returned is in human units as `Decimal` (exact: WAD integers divided by 10**18); amounts
passed in are human numbers (int, str, Decimal; floats go through their repr). The contracts are
reached through the ABI files the deployment file names (`abi/*.json`, written by `ape run
export_abi`), so the SDK needs no compiled project; inside this repository the compiled contract types
are the fallback when a file is missing. The account is only needed for transactions.

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

WAD = 10**18
_CTX = Context(prec=80)
FORMAT = "vperp-deployment/2"  # /2 added `genesis`; /1 records are still read

# ----------------------------------------------------------------------------- the abi/ directory

CORE_CONTRACTS = ("Vault", "ClearingHouse", "LiquidationEngine", "LiquidityPool", "AmmController")
# Stateless views over the core; records written before it existed lack it (the SDK's helpers then say so).
PERIPHERY = ("PerpReader",)
INTERFACES = ("IVault", "IClearingHouse", "ILiquidationEngine", "ILiquidityPool", "IAmmController",
              "AggregatorV3Interface", "IPerpReader")
ERC20_INTERFACE = "IERC20Metadata"  # the standard ERC-20 surface (with name/symbol/decimals) of the collateral
MOCKS = ("MockERC20", "MockAggregator")  # local chains: mintable collateral, settable price feed
ERC20_NAMES = {"name", "symbol", "decimals", "totalSupply", "balanceOf", "transfer", "allowance", "approve",
               "transferFrom", "Transfer", "Approval"}


def abi_relpath(name: str) -> str:
    """Where `name`'s ABI lives, relative to the project root."""
    return f"abi/mocks/{name}.json" if name in MOCKS else f"abi/{name}.json"


ABI_FILES = {name: abi_relpath(name) for name in (*CORE_CONTRACTS, *PERIPHERY, *INTERFACES, ERC20_INTERFACE, *MOCKS)}


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
           for name in (*CORE_CONTRACTS, *PERIPHERY, *INTERFACES, *MOCKS)}
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


def to_wad(x) -> int:
    """An exact WAD integer of a human number (refuses more than 18 decimals)."""
    with localcontext(_CTX):
        d = Decimal(str(x)) * WAD
    if d != d.to_integral_value():
        raise ValueError(f"{x!r} has more than 18 decimals")
    return int(d)


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


@dataclass(frozen=True)
class Trade:
    """A decoded `PositionChanged` event."""

    block: int
    tx_hash: str
    log_index: int
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


class ClientError(Exception):
    """A problem on the SDK's side (no account, unknown market, nothing to close)."""


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
                                  amm=self.amm, reader=self.reader)
        return self._system

    # ------------------------------------------------------------- money

    def deposit(self, amount, sub: int = 0):
        """Deposit `amount` (human units) into the account's sub-account `sub`; approves the Vault if needed."""
        sender = self._sender()
        units = self.units(amount)
        if self.collateral.allowance(sender, self.vault) < units:
            self.collateral.approve(self.vault, units, sender=sender)
        return self.vault.deposit(sub, units, sender=sender)

    def withdraw(self, amount, sub: int = 0):
        """Withdraw `amount` (human units) from sub-account `sub` to the account."""
        return self.vault.withdraw(sub, self.units(amount), sender=self._sender())

    def withdraw_all(self, sub: int = 0):
        """Withdraw everything free in sub-account `sub` (`withdraw(sub, type(uint256).max)`: whole token
        units of min(free collateral, collateral), computed when the transaction runs)."""
        return self.vault.withdraw(sub, 2**256 - 1, sender=self._sender())

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

    def open(self, symbol: str, base, slippage_bps: int = 50, sub: int = 0, deadline_seconds: int = 600) -> Trade:
        """Buy (`base` > 0) or sell `base` (human base units) with a slippage bound and a deadline."""
        base_wad = to_wad(base)
        if base_wad == 0:
            raise ClientError("base must not be zero")
        mid = self.market_id(symbol)
        limit = self.quote_limit(symbol, base_wad, slippage_bps)
        tx = self.clearing_house.openPosition(sub, mid, base_wad, limit, self._deadline(deadline_seconds),
                                              sender=self._sender())
        return self._trade_of(tx)

    def close(self, symbol: str, slippage_bps: int = 50, sub: int = 0, deadline_seconds: int = 600) -> Trade:
        """Close the free part of the position (what is not in a liquidation auction)."""
        sender = self._sender()
        mid = self.market_id(symbol)
        size, _, _ = self.clearing_house.position(sender, sub, mid)
        free = size - self.clearing_house.auctionedSize(sender, sub, mid)
        if free == 0:
            raise ClientError(f"no free {symbol} position to close in sub-account {sub}")
        limit = self.quote_limit(symbol, -free, slippage_bps)
        tx = self.clearing_house.closePosition(sub, mid, limit, self._deadline(deadline_seconds), sender=sender)
        return self._trade_of(tx)

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

    def auctions(self) -> list[AuctionInfo]:
        """Live liquidation auctions (remaining size not zero), with the price a taker gets now."""
        engine, ch = self.liquidation, self.clearing_house
        out = []
        for aid in range(1, engine.auctionCount() + 1):
            a = engine.auction(aid)
            if a.size == 0:
                continue
            index = ch.indexPrice(a.marketId)
            expired = bool(engine.isExpired(aid))
            price = None if expired else engine.auctionPrice(aid)
            discount = None
            if price is not None:
                better = index - price if a.size > 0 else price - index
                discount = _CTX.divide(Decimal(better * 100), Decimal(index)).quantize(Decimal("0.000001"))
            out.append(AuctionInfo(
                id=aid, owner=a.owner, subaccount=int(a.subaccount), symbol=self.symbols.get(int(a.marketId), "?"),
                market_id=int(a.marketId), size=from_wad(a.size), start_index=from_wad(a.startIndex),
                start_time=int(a.startTime), redos=int(a.redos), expired=expired,
                price=None if price is None else from_wad(price), index_price=from_wad(index),
                discount_pct=discount))
        return out

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
