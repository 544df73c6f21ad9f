"""`deploy(deployer, config=None) -> System`: the whole protocol on the connected Ape network.

`deploy_governed(system, admin_signer)` then hands it to governance when the config has a `governance:`
section (`vperp.governance.deploy_governance`: timelock, RiskGovernor, CircuitBreaker); `governance_record`
is what the deployment record says about who owns the modules (docs/governance.md).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from .config import DeployConfig, GovernanceConfig, MarketConfig, default_config, wad

# The governance contracts a governed deployment adds to its record (`contracts` and `abi`), by record name.
GOVERNANCE_CONTRACTS = ("GovernanceTimelock", "RiskGovernor", "CircuitBreaker")


@dataclass
class Market:
    symbol: str
    id: int
    oracle: Any  # contract instance of the feed (MockAggregator on local chains)
    config: MarketConfig


@dataclass
class System:
    """Handles to every deployed contract. `.funding` is the contract with `pokeFunding`/`fundingState`."""

    vault: Any
    clearing_house: Any
    collateral: Any
    markets: dict[str, Market]
    deployer: Any
    config: DeployConfig
    liquidation: Any = None
    pool: Any = None
    funding: Any = None
    amm: Any = None  # AmmController: depth follows the pool, repeg follows the index
    reader: Any = None  # PerpReader: periphery views (withdrawable, liquidationPrice, maxTradeSize, marketSummary)
    router: Any = None  # OrderRouter: delayed orders (commit, execute after the next oracle round, cancel)
    extra: dict = field(default_factory=dict)

    @property
    def token_scale(self) -> int:
        return 10 ** (18 - self.config.collateral_decimals)

    def units(self, amount) -> int:
        """Token units of a human amount of collateral (e.g. 1000 -> 1000 * 10**decimals)."""
        return int(Decimal(str(amount)) * 10**self.config.collateral_decimals)

    def fund(self, account, amount, subaccount: int = 0) -> int:
        """Mint (mock collateral only) and deposit `amount` human units for `account`; returns token units."""
        units = self.units(amount)
        self.collateral.mint(account, units, sender=account)
        self.collateral.approve(self.vault, units, sender=account)
        self.vault.deposit(subaccount, units, sender=account)
        return units

    def set_price(self, symbol: str, price, sender=None) -> None:
        """Move a mock oracle to `price` (human units)."""
        m = self.markets[symbol]
        answer = int(Decimal(str(price)) * 10**m.config.oracle_decimals)
        m.oracle.updateAnswer(answer, sender=sender or self.deployer)

    def trade(self, who, subaccount: int, symbol: str, base: int, quote_limit: int, deadline: int, executor=None):
        """A trade on a local deployment, whichever way the market takes it; returns (commit receipt or None, the
        receipt with the trade's `PositionChanged`). Direct (`openPosition`) in a market without delayed orders. In
        one with them (the shipped markets, docs/orders.md): `who` approves the router once and commits the order
        with the least keeper fee, the mock feed publishes its next round at the same price, and `executor` (the
        deployer unless given: anyone may) executes it. Mock oracles only: the next round is posted here."""
        ch, m = self.clearing_house, self.markets[symbol]
        if not ch.delayedOrders(m.id):
            return None, ch.openPosition(subaccount, m.id, base, quote_limit, deadline, sender=who)
        router = self.router
        if not self.vault.isOperator(who, router):
            self.vault.setOperator(router, True, sender=who)
        commit = router.commitOrder(subaccount, m.id, base, quote_limit, deadline, sender=who,
                                    value=router.minKeeperFee())
        order_id = commit.decode_logs(router.OrderCommitted)[0].orderId
        self.set_price(symbol, Decimal(ch.indexPrice(m.id)) / 10**18)  # the feed's next round, same price
        return commit, router.executeOrder(order_id, sender=executor or self.deployer)


def deploy(deployer, config: DeployConfig | None = None) -> System:
    """Deploy vPerp with `deployer` as owner and guardian on the connected network."""
    from ape import project

    config = config or default_config()
    if config.collateral == "mock":
        collateral = project.MockERC20.deploy("USD Coin (mock)", "USDC", config.collateral_decimals, sender=deployer)
    else:
        collateral = project.MockERC20.at(config.collateral)
    vault = project.Vault.deploy(collateral, deployer, sender=deployer)
    ch = project.ClearingHouse.deploy(vault, deployer, sender=deployer)
    vault.setClearingHouse(ch, sender=deployer)
    engine = project.LiquidationEngine.deploy(vault, ch, deployer, sender=deployer)
    ch.setLiquidationEngine(engine, sender=deployer)
    vault.setLiquidationEngine(engine, sender=deployer)
    pool = project.LiquidityPool.deploy(collateral, vault, ch, deployer, sender=deployer)
    vault.setLiquidityPool(pool, sender=deployer)
    amm = project.AmmController.deploy(ch, pool, deployer, sender=deployer)
    ch.setAmmController(amm, sender=deployer)

    markets: dict[str, Market] = {}
    for mc in config.markets:
        if mc.oracle == "mock":
            answer = int(Decimal(str(mc.price)) * 10**mc.oracle_decimals)
            oracle = project.MockAggregator.deploy(mc.oracle_decimals, answer, f"{mc.symbol} / USD", sender=deployer)
        else:
            oracle = project.MockAggregator.at(mc.oracle)
        symbol = mc.symbol.encode().ljust(32, b"\0")
        receipt = ch.listMarket(
            symbol, mc.to_params(oracle.address), wad(mc.insurance_fee_share), wad(mc.base_reserve), sender=deployer
        )
        (listed,) = [log for log in receipt.events if log.event_name == "MarketListed"]
        market_id = listed.marketId
        markets[mc.symbol] = Market(mc.symbol, int(market_id), oracle, mc)
        engine.setAuctionParams(market_id, mc.to_auction_params(), sender=deployer)
        amm.setAmmParams(market_id, mc.to_amm_params(), sender=deployer)
        if mc.to_concentration() is not None:
            amm.setConcentration(market_id, *mc.to_concentration(), sender=deployer)
        if mc.skew_funding_ppm() != ch.DEFAULT_SKEW_FUNDING_PPM():  # listed with the default
            ch.setSkewFunding(market_id, mc.skew_funding_ppm(), sender=deployer)
        if mc.peg_tolerance_bps:  # listed with the rule off
            ch.setPegTolerance(market_id, mc.peg_tolerance_bps, sender=deployer)
        f = ch.fundingParams(market_id)  # the listing's
        if (mc.funding_cap_wad(), mc.funding_period_hours, mc.funding_smoothing_tau) != (
                f.maxFundingRate, f.fundingPeriodHours, f.smoothingTau):
            ch.setFundingParams(market_id, (mc.funding_cap_wad(), f.maxRateVelocity, f.baselineRate,
                                            mc.funding_smoothing_tau, mc.funding_period_hours), sender=deployer)

    # Funding lives in the ClearingHouse (pokeFunding / fundingState), so `.funding` is it.
    system = System(vault=vault, clearing_house=ch, collateral=collateral, markets=markets,
                    deployer=deployer, config=config, funding=ch,
                    liquidation=engine, pool=pool, amm=amm)
    # The pool seed is an LP deposit by the deployer (it holds the shares); the insurance seed a grant.
    for seed, spender, fn in ((config.pool_seed, pool, lambda u: pool.deposit(u, deployer, sender=deployer)),
                              (config.insurance_seed, vault, lambda u: vault.fundInsurance(u, sender=deployer))):
        if seed:
            units = system.units(seed)
            if config.collateral == "mock":
                collateral.mint(deployer, units, sender=deployer)
            collateral.approve(spender, units, sender=deployer)
            fn(units)
    # Last, so every other address (nonce-derived) is what it was before the reader existed.
    system.reader = project.PerpReader.deploy(vault, ch, engine, sender=deployer)
    # The order router after it, for the same reason; then the markets that trade only through it.
    rc = config.order_router
    system.router = project.OrderRouter.deploy(ch, int(Decimal(str(rc.min_keeper_fee)) * 10**18), rc.execution_window,
                                               sender=deployer)
    ch.setOrderRouter(system.router, sender=deployer)
    for m in markets.values():
        if m.config.delayed_orders:
            ch.setDelayedOrders(m.id, True, sender=deployer)
    return system


# ----------------------------------------------------------------------------- governance


def admin_signer(governance: GovernanceConfig, deployer, local: bool):
    """The account that signs the one-time wiring of the circuit breaker (`RiskGovernor.setBreaker`, while none
    is set): the deployer when it is the admin, on a local chain the test account at the admin's address, and
    otherwise the deployer when the compiled governor lets the account that deployed it wire the breaker once
    (`RiskGovernor.deployer`), so an admin that is a multisig never signs. None when nobody here may: the
    deploy refuses such a config before sending anything (docs/governance.md, "Deploying a governed system")."""
    if governance.admin == deployer.address:
        return deployer
    if local:
        from ape import accounts

        for account in accounts.test_accounts:
            if account.address == governance.admin:
                return account
    return deployer if deployer_may_wire() else None


def deployer_may_wire() -> bool:
    """Whether the compiled RiskGovernor accepts the one-time `setBreaker` from the account that deployed it."""
    from ape import project

    return any(m.name == "deployer" for m in project.RiskGovernor.contract_type.view_methods)


def deploy_governed(system: System, signer):
    """Hand `system` (deployed and seeded by `deploy`) to governance as its config says: a GovernanceTimelock
    with `timelock_delay`, a RiskGovernor with the config's admin and guardian owning the five modules (the
    Vault's guardian becomes the config's guardian), and a CircuitBreaker with the shipped parameters, wired by
    `signer` (the admin's account, `admin_signer`). Returns `vperp.governance.Governance`, or None when the
    config has no `governance:` section (the deployer stays the owner)."""
    from .governance import deploy_governance

    g = system.config.governance
    if g is None:
        return None
    gov = deploy_governance(system, system.deployer, g.admin, g.guardian, g.timelock_delay, admin_sender=signer,
                            breaker_markets=g.breaker_markets)
    system.extra["governance"] = gov
    return gov


def governance_record(system: System, gov) -> dict:
    """The deployment record's `governance` entry: `{"mode": "direct-owner", "owner", "guardian"}` or
    `{"mode": "timelock", "timelock", "governor", "breaker", "admin", "guardian", "delay"}`, read from the
    chain (not from the config) so the record says what is deployed."""
    if gov is None:
        return {"mode": "direct-owner", "owner": system.vault.owner(), "guardian": system.vault.guardian()}
    return {"mode": "timelock", "timelock": gov.timelock.address, "governor": gov.governor.address,
            "breaker": gov.breaker.address, "admin": gov.governor.admin(), "guardian": gov.governor.guardian(),
            "delay": int(gov.timelock.getMinDelay())}


def governance_contracts(gov) -> dict[str, str]:
    """Record names -> addresses of a governed deployment's governance contracts ({} for a direct owner)."""
    if gov is None:
        return {}
    return dict(zip(GOVERNANCE_CONTRACTS, (gov.timelock.address, gov.governor.address, gov.breaker.address)))
