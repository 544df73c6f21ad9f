"""Where a gas-table row's gas goes: the call tree of its transaction and, per call frame, the storage reads and writes,
logs, calls and the rest, counted from Anvil's traces. docs/gas.md's floors are counted with it.

`./run.sh ape run gas_trace --network ethereum:local:foundry --row "take (partial" --ops` replays the gas table's
set-up (devtools/gas.py `measure`, the same pinned blocks) on Anvil and, for each row whose name contains a `--row`
pattern, prints:

- the call tree (`callTracer`): each call's gas and its own part (less its callees'). The top call's own part
  includes the transaction's intrinsic gas (21,000 plus calldata);
- with `--ops`, per frame in order of entry (the default struct-log tracer): SLOADs cold (2,100) and warm (100);
  SSTOREs by their cost (20,000 a zero slot made nonzero, 2,900 a warm rewrite, 5,000 a cold one, 100 a slot
  rewritten to its value or written again); LOGs; the frame's own cost of its calls (2,600 a cold address,
  100 a warm one, without the gas forwarded); transient storage; everything else (computation, memory,
  calldata and return data).

With `--functions`, every step's gas is also charged to the function running it: solc's `functionDebugData` gives
each compiled function's entry point and parameter count, so a JUMP to an entry point with its return address
below the arguments is a call, and the JUMP back to that address its return (`function_gas`). Code the optimizer
inlined counts as its caller's. A function's own gas excludes the functions it calls; its total includes them.

A floor is then intrinsic + cold reads + writes - refunds + logs + cold addresses: what the operation cannot do
without under its rules, before any computation (`floor_line`; refunds: what clearing a slot gives back).
"""
from __future__ import annotations

import hashlib
import json
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

CALL_OPS = frozenset({"CALL", "STATICCALL", "DELEGATECALL", "CALLCODE", "CREATE", "CREATE2"})
COLD_SLOAD = 2_100


@dataclass
class Frame:
    """One call frame's opcode gas, by kind."""
    depth: int
    cold_reads: int = 0
    warm_reads: int = 0
    writes: dict[int, int] = field(default_factory=dict)  # SSTORE cost -> how many
    logs: int = 0
    calls: int = 0  # the frame's own cost of its calls (address access, value), not the gas forwarded
    transient: int = 0
    other: int = 0

    @property
    def write_gas(self) -> int:
        return sum(cost * n for cost, n in self.writes.items())

    def line(self, n: int) -> str:
        w = ", ".join(f"{k} x {c:,}" for c, k in sorted(self.writes.items()))
        return (f"frame {n} (depth {self.depth}): SLOAD {self.cold_reads} cold {self.cold_reads * COLD_SLOAD:,} + "
                f"{self.warm_reads} warm {self.warm_reads * 100:,}; SSTORE [{w}] = {self.write_gas:,}; "
                f"LOG {self.logs:,}; calls {self.calls:,}; transient {self.transient:,}; other {self.other:,}")


def own_cost(struct_logs: list[dict], i: int) -> int:
    """Step `i`'s own gas: its cost, less, for a call, the gas handed to the callee (the callee's first step shows it,
    one level deeper; a call to an address without code has no such step and keeps its whole cost)."""
    step = struct_logs[i]
    cost = step["gasCost"]
    if step["op"] in CALL_OPS and i + 1 < len(struct_logs) and struct_logs[i + 1]["depth"] == step["depth"] + 1:
        cost -= struct_logs[i + 1]["gas"]
    return cost


def frames(struct_logs: list[dict]) -> list[Frame]:
    """The frames of a struct-log trace, in order of entry, with each opcode's gas added to its kind."""
    out: list[Frame] = []
    stack: list[Frame] = []
    for i, step in enumerate(struct_logs):
        depth = step["depth"]
        while stack and stack[-1].depth > depth:
            stack.pop()
        if not stack or stack[-1].depth < depth:
            stack.append(Frame(depth))
            out.append(stack[-1])
        f = stack[-1]
        op, cost = step["op"], step["gasCost"]
        if op == "SLOAD":
            if cost >= COLD_SLOAD:
                f.cold_reads += 1
            else:
                f.warm_reads += 1
        elif op == "SSTORE":
            f.writes[cost] = f.writes.get(cost, 0) + 1
        elif op.startswith("LOG"):
            f.logs += cost
        elif op in CALL_OPS:
            f.calls += own_cost(struct_logs, i)
        elif op in ("TLOAD", "TSTORE"):
            f.transient += cost
        else:
            f.other += cost
    return out


def call_tree(node: dict, label, depth: int = 0) -> list[str]:
    """`callTracer`'s tree as lines: each call's gas and its own part. `label(to, input)` names a call."""
    used = int(node.get("gasUsed", "0x0"), 16)
    kids = node.get("calls") or []
    own = used - sum(int(k.get("gasUsed", "0x0"), 16) for k in kids)
    lines = [f"{'  ' * depth}{node.get('type')} {label(node.get('to', ''), node.get('input', ''))}: {used:,} (own {own:,})"]
    for k in kids:
        lines += call_tree(k, label, depth + 1)
    return lines


def intrinsic_gas(data: bytes) -> int:
    """A call transaction's intrinsic gas: 21,000 and 16 a nonzero calldata byte, 4 a zero one (no access list)."""
    return 21_000 + sum(16 if b else 4 for b in data)


def floor_line(gas_used: int, data: bytes, fs: list[Frame]) -> str:
    """The transaction's sums, its refunds (what the opcodes and the intrinsic gas exceed the gas used by) and its
    floor: intrinsic + cold reads + writes - refunds + logs + the calls' own cost, before any computation."""
    t = totals(fs)
    intrinsic = intrinsic_gas(data)
    spent = intrinsic + sum(v for k, v in t.items() if k != "cold_reads")
    refunds = spent - gas_used
    floor = intrinsic + t["cold_read_gas"] + t["write_gas"] - refunds + t["logs"] + t["calls"]
    return (f"intrinsic {intrinsic:,}; {t['cold_reads']} cold reads {t['cold_read_gas']:,}; writes {t['write_gas']:,}; "
            f"refunds {refunds:,}; logs {t['logs']:,}; calls {t['calls']:,}: floor {floor:,}. Computation "
            f"{t['other']:,}, warm reads {t['warm_read_gas']:,}, transient {t['transient']:,}")


def call_order(node: dict) -> list[dict]:
    """`callTracer`'s calls in order of entry, the order `frames` numbers the frames in."""
    out = [node]
    for k in node.get("calls") or []:
        out += call_order(k)
    return out


def totals(fs: list[Frame]) -> dict[str, int]:
    """The transaction's sums over every frame (gas, except the counts of reads)."""
    return {
        "cold_reads": sum(f.cold_reads for f in fs),
        "cold_read_gas": sum(f.cold_reads for f in fs) * COLD_SLOAD,
        "warm_read_gas": sum(f.warm_reads for f in fs) * 100,
        "write_gas": sum(f.write_gas for f in fs),
        "logs": sum(f.logs for f in fs),
        "calls": sum(f.calls for f in fs),
        "transient": sum(f.transient for f in fs),
        "other": sum(f.other for f in fs),
    }


# ------------------------------------------------------------------ gas per compiled function

_FUN = re.compile(r"^fun_(.+?)(?:_\d+)?$")


def function_name(yul: str) -> str:
    """A compiled function's name as the source knows it, without the compiler's `fun_` and AST id: `fun_accrue_1234`
    and `fun_accrue` -> `accrue`; the compiler's own helpers (ABI coding, checked arithmetic, storage copies) keep
    their Yul names (`checked_mul_uint256`)."""
    m = _FUN.match(yul)
    return m.group(1) if m else yul


_IMPORT = re.compile(r"""^\s*import\s+(?:[^"']*\bfrom\s+)?["']([^"']+)["']""", re.M)


def full_input(root: Path) -> tuple[dict, str, dict]:
    """The compiler input of a full build (`ape compile -f`): every project source under contracts/ and what it imports,
    the OpenZeppelin files under the path the build's remapping gives them (read from node_modules), the build's
    settings. A build's own record holds only its last job's files, which an incremental compile narrows."""
    build = json.loads((root / ".build" / "__local__.json").read_text())
    compiler = next(c for c in build["compilers"] if c["name"] == "solidity")
    settings = {k: v for k, v in compiler["settings"].items() if k != "outputSelection"}
    remaps = [r.partition("=") for r in settings.get("remappings", [])]
    sources: dict[str, str] = {}

    def read(path: str) -> str:
        for _prefix, _, target in remaps:
            if path.startswith(target.rstrip("/") + "/") and target.startswith("contracts/.cache/"):
                return (root / "node_modules" / _prefix.rstrip("/") / path[len(target.rstrip("/")) + 1:]).read_text()
        return (root / path).read_text()

    def resolve(src: str, imp: str) -> str:
        for prefix, _, target in remaps:
            if imp.startswith(prefix):
                return target.rstrip("/") + imp[len(prefix.rstrip("/")):]
        parts = src.split("/")[:-1]
        for part in imp.split("/"):
            if part == "..":
                parts.pop()
            elif part != ".":
                parts.append(part)
        return "/".join(parts)

    todo = sorted(p.relative_to(root).as_posix() for p in (root / "contracts").rglob("*.sol")
                  if ".cache" not in p.relative_to(root).parts)
    while todo:
        path = todo.pop()
        if path in sources:
            continue
        sources[path] = read(path)
        todo += [resolve(path, imp) for imp in _IMPORT.findall(sources[path])]
    outputs = ["evm.deployedBytecode.object", "evm.deployedBytecode.functionDebugData"]
    settings["outputSelection"] = {p: {"*": outputs} for p in sorted(sources)}
    inp = {"language": "Solidity", "sources": {p: {"content": c} for p, c in sorted(sources.items())},
           "settings": settings}
    return inp, compiler["version"].split("+")[0], build


def compile_debug(root: Path) -> dict:
    """Contract name -> {entry pc: (function name, parameter slots)} of its runtime code, from solc's
    `functionDebugData` on a full build's input (`full_input`); each code checked byte-identical to the build's
    (after an incremental compile it may not be: then `ape compile -f`); cached in .build/gas-trace-solc.json."""
    inp, version, build = full_input(root)
    text = json.dumps(inp, sort_keys=True)
    key = hashlib.sha256(text.encode()).hexdigest()
    cache = root / ".build" / "gas-trace-solc.json"
    if cache.exists() and json.loads(cache.read_text()).get("key") == key:
        return _named(json.loads(cache.read_text())["maps"])
    solc = root / "tools" / "solcx" / f"solc-v{version}"
    out = json.loads(subprocess.run([str(solc), "--standard-json", "--base-path", str(root)], input=text,
                                    capture_output=True, text=True, cwd=root, check=True).stdout)
    errors = [e["formattedMessage"] for e in out.get("errors", []) if e["severity"] == "error"]
    if errors:
        raise RuntimeError("solc failed:\n" + "\n".join(errors))
    maps: dict[str, dict[int, tuple[str, int]]] = {}
    for contracts in out.get("contracts", {}).values():
        for name, data in contracts.items():
            d = data["evm"]["deployedBytecode"]
            ape = build["contractTypes"].get(name)
            if not d["object"] or not ape:
                continue
            if ape["runtimeBytecode"]["bytecode"][2:] != d["object"]:
                raise RuntimeError(f"{name}: the full build's code differs from this build's; run `ape compile -f`")
            maps[name] = {f["entryPoint"]: (yul, f["parameterSlots"])
                          for yul, f in (d.get("functionDebugData") or {}).items() if f.get("entryPoint")}
    cache.write_text(json.dumps({"key": key, "maps": maps}))  # the compiler's names: `function_name` applies on load
    return _named(maps)


def _named(maps: dict) -> dict[str, dict[int, tuple[str, int]]]:
    return {k: {int(pc): (function_name(yul), params) for pc, (yul, params) in fns.items()} for k, fns in maps.items()}


def function_gas(struct_logs: list[dict], frame_maps: list[tuple[str, dict[int, tuple[str, int]]]]):
    """Every step's own gas (`own_cost`) charged to the function running it, per
    contract: {"Contract.function": [own, total]}. `frame_maps[i]`: the contract name and entry map
    (`compile_debug`) of the i-th frame in order of entry. The steps need the stack (a trace without
    `disableStack`): at a JUMP to an entry point the return address sits below the arguments."""
    out: dict[str, list[int]] = {}
    frames_stack: list[tuple[str, dict, list]] = []  # per call depth: contract, entry map, [(function, return pc)]
    count = -1
    for i, step in enumerate(struct_logs):
        depth = step["depth"]
        while len(frames_stack) > depth:
            frames_stack.pop()
        if len(frames_stack) < depth:
            count += 1
            name, entries = frame_maps[count] if count < len(frame_maps) else ("?", {})
            frames_stack.append((name, entries, []))
        contract, entries, calls = frames_stack[-1]
        cost, op = own_cost(struct_logs, i), step["op"]
        own = f"{contract}.{calls[-1][0]}" if calls else f"{contract}.(entry)"
        out.setdefault(own, [0, 0])[0] += cost
        for fn in {f for f, _ in calls} or {"(entry)"}:
            out.setdefault(f"{contract}.{fn}", [0, 0])[1] += cost
        if op == "JUMP" and i + 1 < len(struct_logs) and struct_logs[i + 1]["depth"] == depth:
            dest = struct_logs[i + 1]["pc"]
            stack = step.get("stack") or []
            if calls and dest == calls[-1][1]:
                calls.pop()
            elif dest in entries and stack:
                _, params = entries[dest]
                if len(stack) >= params + 2:
                    calls.append((entries[dest][0], int(stack[-(params + 2)], 16)))
    return out
