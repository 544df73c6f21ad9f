"""The model's constants (the contracts' limits and storage sizes) and its revert type, `ModelRevert`."""
from __future__ import annotations

from typing import Any

U112 = 2**112 - 1
INT64_MAX = 2**63 - 1
INT112_MAX = 2**111 - 1
INT128_MAX = 2**127 - 1
UINT128_MAX = 2**128 - 1
UINT256_MAX = 2**256 - 1

OBSERVATIONS = 8
OBSERVATIONS_PER_WINDOW = 4
FUNDING_OBSERVATIONS = 25  # hourly observation slots per market (FUNDING_WINDOW_HOURS + 1)

# The Vault's pause levels: PAUSE_* from vperp.units.

MAX_OPEN_MARKETS = 16  # Vault.MAX_OPEN_MARKETS
MAX_BUILDER_FEE_RATE = 10**15  # Vault.MAX_BUILDER_FEE_RATE: 10 bps of |quote|
ZERO_ADDRESS = "0x" + "00" * 20
SUSPENSION_TOLERANCE = 10**15  # LiquidityPool.SUSPENSION_TOLERANCE: 0.1 % of the pool's cash

# ClearingHouse listing defaults for funding (docs/funding.md): DEFAULT_* from vperp.units.


class ModelRevert(Exception):
    """The model's equivalent of a Solidity revert: ``name`` is the custom error's name."""

    def __init__(self, name: str, *args: Any):
        super().__init__(name, *args)
        self.name = name
        self.error_args = args

    def __str__(self) -> str:
        return f"{self.name}({', '.join(map(str, self.error_args))})"
