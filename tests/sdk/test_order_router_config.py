"""The delayed-order settings of a deployment config (docs/orders.md): the `order_router:` section's bounds are the
OrderRouter constructor's (`ParameterOutOfBounds`), a market's `delayed_orders` is a boolean, bad values are named
before anything is deployed, and a config reads back from its own dict unchanged."""
from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest

from vperp.config import DeployConfig, OrderRouterConfig
from vperp.config_file import ROUTER_RULES, ConfigError, config_to_dict, parse_config
from vperp.units import EXECUTION_WINDOW_BOUNDS, MAX_MIN_KEEPER_FEE_ETH

BASE = {"markets": [{"symbol": "ETH", "price": 3000}]}


def test_router_bounds_are_the_contracts(system):
    """The YAML's bounds and the shipped defaults against the deployed router's constants and parameters."""
    r = system.router
    assert int(Decimal(str(MAX_MIN_KEEPER_FEE_ETH)) * 10**18) == r.MAX_MIN_KEEPER_FEE()
    assert EXECUTION_WINDOW_BOUNDS == (r.MIN_EXECUTION_WINDOW(), r.MAX_EXECUTION_WINDOW())
    assert ROUTER_RULES["min_keeper_fee"][1:3] == (0, Decimal(str(MAX_MIN_KEEPER_FEE_ETH)))
    assert ROUTER_RULES["execution_window"][1:3] == EXECUTION_WINDOW_BOUNDS
    d = OrderRouterConfig()
    assert r.minKeeperFee() == int(Decimal(str(d.min_keeper_fee)) * 10**18) and r.executionWindow() == d.execution_window
    assert system.clearing_house.orderRouter() == r.address
    assert not any(system.clearing_house.delayedOrders(m.id) for m in system.markets.values())  # off by default


@pytest.mark.parametrize("field,value", [("min_keeper_fee", "0.1"), ("min_keeper_fee", 0), ("execution_window", 12),
                                         ("execution_window", 3600)])
def test_router_bounds_are_inclusive(field, value):
    cfg = parse_config({**BASE, "order_router": {field: value}})
    assert Decimal(str(getattr(cfg.order_router, field))) == Decimal(str(value))


@pytest.mark.parametrize("section,message", [
    ({"min_keeper_fee": "0.1000000000000000001"}, "order_router.min_keeper_fee"),
    ({"min_keeper_fee": -1}, "order_router.min_keeper_fee"),
    ({"execution_window": 11}, "order_router.execution_window"),
    ({"execution_window": 3601}, "order_router.execution_window"),
    ({"execution_window": 60.5}, "order_router.execution_window"),
    ({"window": 60}, "order_router.window"),
    ("fast", "order_router"),
])
def test_bad_router_settings_are_named(section, message):
    with pytest.raises(ConfigError) as e:
        parse_config({**BASE, "order_router": section})
    assert message in str(e.value)


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_delayed_orders_is_a_boolean(value):
    with pytest.raises(ConfigError) as e:
        parse_config({"markets": [{"symbol": "ETH", "price": 3000, "delayed_orders": value}]})
    assert "markets[0].delayed_orders" in str(e.value)


def test_delayed_orders_need_a_peg_tolerance():
    """An order executes only at a peg within the stale-peg tolerance of the index: no tolerance, no delayed orders
    (the contract refuses PegToleranceRequired)."""
    with pytest.raises(ConfigError) as e:
        parse_config({"markets": [{"symbol": "ETH", "price": 3000, "delayed_orders": True, "peg_tolerance_bps": 0}]})
    assert "markets[0].delayed_orders" in str(e.value) and "peg_tolerance_bps" in str(e.value)
    # The shipped tolerance (11 bps, above the shipped 10 bps threshold) is enough.
    assert parse_config({"markets": [{"symbol": "ETH", "price": 3000, "delayed_orders": True}]}).markets[0].delayed_orders


def test_delayed_orders_need_a_tolerance_above_the_repeg_threshold():
    """Below (or at) the repeg threshold, a peg between the two holds every order while repeg refuses to move it."""
    with pytest.raises(ConfigError) as e:
        parse_config({"markets": [{"symbol": "ETH", "price": 3000, "delayed_orders": True, "repeg_threshold": 0.02,
                                   "peg_tolerance_bps": 200}]})
    assert "markets[0].peg_tolerance_bps" in str(e.value) and "repeg_threshold" in str(e.value)
    with pytest.raises(ConfigError):  # the shipped threshold, 10 bps
        parse_config({"markets": [{"symbol": "ETH", "price": 3000, "delayed_orders": True, "peg_tolerance_bps": 10}]})
    cfg = parse_config({"markets": [{"symbol": "ETH", "price": 3000, "delayed_orders": True, "repeg_threshold": 0.02,
                                     "peg_tolerance_bps": 201}]})
    assert cfg.markets[0].delayed_orders


def test_a_config_with_delayed_orders_reads_back_unchanged():
    cfg = parse_config({"markets": [{"symbol": "ETH", "price": 3000, "delayed_orders": True, "peg_tolerance_bps": 300},
                                    {"symbol": "BTC", "price": 60000}],
                        "order_router": {"min_keeper_fee": "0.002", "execution_window": 30}})
    assert [m.delayed_orders for m in cfg.markets] == [True, False]
    assert cfg.order_router == OrderRouterConfig(min_keeper_fee=Decimal("0.002"), execution_window=30)
    assert parse_config(config_to_dict(cfg)) == cfg
    # At the defaults the section is left out, so records written before it existed read the same.
    plain = replace(DeployConfig(), order_router=OrderRouterConfig())
    assert "order_router" not in config_to_dict(plain)
