"""Ape's build artifacts (`.build/__local__.json`) and the ABI plumbing of the fast tier: canonical
types, calldata, custom errors and events decoded by name, without Ape.

Only what `eth_abi` and `eth_utils` provide is used (both come with Ape); nothing here imports Ape.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from eth_utils import keccak

BUILD_ENV = "VPERP_BUILD"  # override the artifact path (default: <repo>/.build/__local__.json)


def default_build_path() -> Path:
    """`$VPERP_BUILD`, else `.build/__local__.json` in the current directory or the repository root."""
    if os.environ.get(BUILD_ENV):
        return Path(os.environ[BUILD_ENV])
    here = Path.cwd() / ".build" / "__local__.json"
    if here.exists():
        return here
    return Path(__file__).resolve().parents[2] / ".build" / "__local__.json"


def canonical_type(item: dict) -> str:
    """`uint256`, `(address,uint32)[]`, ... from an ABI input/output entry (tuples expanded)."""
    t = item["type"]
    if t.startswith("tuple"):
        return "(" + ",".join(canonical_type(c) for c in item["components"]) + ")" + t[len("tuple"):]
    return t


def selector(signature: str) -> bytes:
    return keccak(text=signature)[:4]


@dataclass
class Function:
    name: str
    signature: str
    selector: bytes
    inputs: list[str]
    outputs: list[str]
    output_names: list[str]
    output_components: list  # per output: component names of a struct output, else None
    mutability: str

    @property
    def is_view(self) -> bool:
        return self.mutability in ("view", "pure")

    def encode(self, args) -> bytes:
        return self.selector + abi_encode(self.inputs, list(args))

    def decode(self, data: bytes) -> tuple:
        return tuple(abi_decode(self.outputs, data)) if self.outputs else ()


@dataclass
class Event:
    name: str
    signature: str
    topic: bytes
    inputs: list[dict]

    def decode(self, topics: list[bytes], data: bytes) -> dict:
        """The event's fields by name: indexed ones from the topics (value types only), the rest from data."""
        out, i = {}, 1
        plain = [canonical_type(x) for x in self.inputs if not x.get("indexed")]
        values = list(abi_decode(plain, data)) if plain else []
        for x in self.inputs:
            if x.get("indexed"):
                t = canonical_type(x)
                word = topics[i]
                i += 1
                out[x["name"]] = ("0x" + word[-20:].hex()) if t == "address" else (
                    abi_decode([t], word)[0] if t != "bytes32" else word)
            else:
                out[x["name"]] = values.pop(0)
        return out


@dataclass
class ContractType:
    name: str
    abi: list
    deployment_bytecode: bytes
    runtime_bytecode: bytes
    functions: dict[str, Function] = field(default_factory=dict)
    constructor_inputs: list[str] = field(default_factory=list)

    def function(self, name: str) -> Function:
        return self.functions[name]


class Artifacts:
    """Every contract type of the build, plus selector -> error and topic -> event tables over all of them."""

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path else default_build_path()
        data = json.loads(self.path.read_text())
        self.types: dict[str, ContractType] = {}
        self.errors: dict[bytes, tuple[str, list[str]]] = {
            selector("Panic(uint256)"): ("Panic", ["uint256"]),
            selector("Error(string)"): ("Error", ["string"]),
        }
        self.events: dict[bytes, Event] = {}
        for name, ct in data["contractTypes"].items():
            deploy_code = (ct.get("deploymentBytecode") or {}).get("bytecode") or "0x"
            runtime_code = (ct.get("runtimeBytecode") or {}).get("bytecode") or "0x"
            c = ContractType(name, ct["abi"], bytes.fromhex(deploy_code[2:]), bytes.fromhex(runtime_code[2:]))
            for item in ct["abi"]:
                kind = item["type"]
                if kind == "function":
                    ins = [canonical_type(i) for i in item["inputs"]]
                    sig = f"{item['name']}({','.join(ins)})"
                    outs = item.get("outputs", [])
                    c.functions[item["name"]] = Function(
                        item["name"], sig, selector(sig), ins, [canonical_type(o) for o in outs],
                        [o.get("name", "") for o in outs],
                        [[cc["name"] for cc in o["components"]] if o["type"] == "tuple" else None for o in outs],
                        item.get("stateMutability", "nonpayable"))
                elif kind == "constructor":
                    c.constructor_inputs = [canonical_type(i) for i in item["inputs"]]
                elif kind == "error":
                    types = [canonical_type(i) for i in item["inputs"]]
                    self.errors[selector(f"{item['name']}({','.join(types)})")] = (item["name"], types)
                elif kind == "event":
                    types = [canonical_type(i) for i in item["inputs"]]
                    sig = f"{item['name']}({','.join(types)})"
                    self.events[keccak(text=sig)] = Event(item["name"], sig, keccak(text=sig), item["inputs"])
            self.types[name] = c

    def __getitem__(self, name: str) -> ContractType:
        return self.types[name]

    def decode_error(self, data: bytes) -> tuple[str, tuple]:
        """(custom error name, decoded args) of revert data; ("unknown:<selector>", ()) if not in any ABI,
        ("empty", ()) for a revert without data."""
        if not data:
            return "empty", ()
        name, types = self.errors.get(bytes(data[:4]), (f"unknown:{bytes(data[:4]).hex()}", []))
        return name, tuple(abi_decode(types, bytes(data[4:]))) if types else ()

    def decode_log(self, topics: list[bytes], data: bytes):
        """(event name, fields by name) of a log, or None for a topic no ABI declares."""
        ev = self.events.get(topics[0]) if topics else None
        if ev is None:
            return None
        return ev.name, ev.decode(topics, data)
