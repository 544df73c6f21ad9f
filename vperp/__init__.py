"""vPerp: perpetual futures on virtual AMMs backed by one shared liquidity pool.

Python entry points: `deploy(deployer, config=None) -> System` (vperp.deployment), the exact-integer
reference model (vperp.model) and the integrator SDK (vperp.client).
"""
from .config import WAD, DeployConfig, MarketConfig, default_config, wad
from .deployment import Market, System, deploy

__all__ = ["WAD", "DeployConfig", "MarketConfig", "Market", "System", "default_config", "deploy", "wad"]
