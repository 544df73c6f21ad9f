"""Every deployable production contract fits EIP-170's code-size limit (24,576 bytes of runtime code).

The embedded test chain does not enforce the limit, so a contract that grew past it would pass every other
test and fail to deploy on a real network (the fast tier's revm caught it once: ClearingHouse at 24,578).
The margin left is printed, so a change that eats it shows in review before it breaks a deployment."""
import json
from pathlib import Path

import pytest

LIMIT = 24_576
PRODUCTION = ("Vault", "ClearingHouse", "LiquidationEngine", "LiquidityPool", "AmmController", "PerpReader",
              "OrderRouter")


@pytest.mark.parametrize("name", PRODUCTION)
def test_runtime_code_fits_eip170(name, project):
    build = json.loads((Path(project.path) / ".build" / "__local__.json").read_text())
    code = build["contractTypes"][name]["runtimeBytecode"]["bytecode"]
    size = (len(code) - 2) // 2
    print(f"\n{name}: {size:,} bytes of runtime code, {LIMIT - size:,} below the limit")
    assert size <= LIMIT
