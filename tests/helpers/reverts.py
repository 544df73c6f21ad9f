"""One place that turns a failed call into its error, for every test module and both fuzzers.

- `revert_data(exc)`: the revert data (selector and arguments) of whatever raised: an Ape exception for an
  error Ape did not decode, or web3's and eth-tester's for the fuzzers' raw transactions (helpers.chain_harness);
- `error_table(*contracts)`: selector -> (name, input types) over the contracts' ABIs, with Panic and Error;
- `revert_name(exc)`: the error's name, for log lines.

`helpers.trading.expect_revert` checks a revert against the expected error with `revert_data`.
"""
from __future__ import annotations

import ast
import re
from types import SimpleNamespace

from eth_utils import keccak


def selector(sig: str) -> bytes:
    return keccak(text=sig)[:4]


def error_table(*contracts) -> dict[bytes, tuple[str, list[str]]]:
    """Selector -> (name, input types) for every error in the contracts' ABIs (Ape contract types or
    containers), plus Panic(uint256) and Error(string)."""
    table = {selector("Panic(uint256)"): ("Panic", ["uint256"]), selector("Error(string)"): ("Error", ["string"])}
    for c in contracts:
        for abi in c.contract_type.abi:
            if abi.type == "error":
                types = [i.canonical_type for i in abi.inputs]
                table[selector(f"{abi.name}({','.join(types)})")] = (abi.name, types)
    return table


def revert_data(exc) -> bytes:
    """The revert data of `exc`: Ape's `revert_message` when the exception is Ape's, else the node's (web3's
    `.data`, eth-tester's message). Raises AssertionError when there is none."""
    if hasattr(exc, "revert_message"):
        return _ape_revert_data(exc)
    return _node_revert_data(exc)


_ANVIL_CUSTOM_ERROR = re.compile(r"custom error 0x([0-9a-f]{8})(?:: (.*))?", re.S)


def _ape_revert_data(exc) -> bytes:
    """Revert data of an error Ape did not decode: a 0x-hex string, or (for some payloads, e.g. ones
    containing a quote byte) the repr of the bytes. On Anvil, Ape passes on Anvil's own rendering:
    the whole data as text when it is valid UTF-8, else `custom error 0x<selector>[: <arguments>]`
    with the arguments as text when they are valid UTF-8, else as hex (ABI words of text are never
    all hex digits: their padding is zero bytes)."""
    raw = exc.revert_message or ""
    if isinstance(raw, bytes):
        return raw
    if raw.startswith("0x"):
        return bytes.fromhex(raw[2:])
    if raw.startswith(("b'", 'b"')):
        return ast.literal_eval(raw)
    if m := _ANVIL_CUSTOM_ERROR.fullmatch(raw):
        args = m.group(2) or ""
        is_hex = re.fullmatch(r"(?:[0-9a-f]{2})*", args) is not None
        return bytes.fromhex(m.group(1)) + (bytes.fromhex(args) if is_hex else args.encode())
    if len(data := raw.encode()) >= 4 and (len(data) - 4) % 32 == 0:
        return data  # Anvil's text rendering; the caller checks the selector
    raise AssertionError(f"not a custom error: {exc!r}")


def _node_revert_data(exc: Exception) -> bytes:
    """Revert data from whatever the node raised: web3's `.data` hex, or eth-tester's
    `TransactionFailed('execution reverted: b"..."')`."""
    data = getattr(exc, "data", None)
    if isinstance(data, str) and data.startswith("0x"):
        return bytes.fromhex(data[2:])
    for arg in getattr(exc, "args", ()):
        if isinstance(arg, (bytes, bytearray)):
            return bytes(arg)
        if isinstance(arg, str):
            text = arg.split("execution reverted: ", 1)[-1].strip()
            if text.startswith("0x"):
                return bytes.fromhex(text[2:])
            if text[:2] in ("b'", 'b"'):
                return ast.literal_eval(text)
    raise AssertionError(f"no revert data in {exc!r}")


_NAMES: dict[bytes, str] = {}
# Errors of OpenZeppelin and the libraries that a project ABI may not list.
_LIBRARY_ERRORS = ("SafeCastOverflowedIntDowncast(uint8,int256)", "SafeCastOverflowedUintDowncast(uint8,uint256)",
                   "MathOverflowedMulDiv()", "ERC4626ExceededMaxDeposit(address,uint256,uint256)",
                   "ERC4626ExceededMaxRedeem(address,uint256,uint256)", "StaleOracle(address,uint256,uint256)",
                   "InvalidOraclePrice(address,int256)")


def _project_error_names() -> dict[bytes, str]:
    """Selector -> error name over the project's contracts (revert reasons Ape leaves undecoded, e.g. a Vault
    error bubbling up through the ClearingHouse) and the library errors above."""
    if not _NAMES:
        from ape import project

        for name in ("Vault", "ClearingHouse", "LiquidationEngine", "LiquidityPool", "AmmController", "BatchCaller"):
            try:
                _NAMES.update({sel: n for sel, (n, _) in error_table(getattr(project, name)).items()})
            except Exception:  # noqa: BLE001 - only used to label printouts
                pass
        _NAMES.update({selector(sig): sig.split("(")[0] for sig in _LIBRARY_ERRORS})
    return _NAMES


def revert_name(exc) -> str:
    """The name of the error a call reverted with, for log lines: Ape's decoded name, else the selector of the
    revert data looked up over the project's errors, else the revert text."""
    name = getattr(getattr(exc, "abi", None), "name", None)
    if name:
        return name
    raw = getattr(exc, "revert_message", None) or str(exc)
    if isinstance(raw, str) and not raw.startswith(("0x", "b'", 'b"', "custom error 0x")):
        return raw[:80]
    try:
        data = _ape_revert_data(SimpleNamespace(revert_message=raw))
    except (AssertionError, ValueError, SyntaxError):
        return str(raw)[:80]
    if len(data) < 4:
        return str(raw)[:80]
    return _project_error_names().get(data[:4], "0x" + data[:4].hex())
