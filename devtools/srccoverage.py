"""Statement, line and branch coverage of the Solidity sources, measured inside the embedded chain's EVM.

``ape test --coverage`` collects nothing for Solidity here (``ape-solidity`` has no coverage profile; see
docs/testing.md), so this module measures it directly, in three parts:

1. **Recording** (``install``): py-evm runs every call frame's code through ``CodeStream.__iter__``. The
   replacement records, per distinct code, a bitmap of the program counters that ran, and for every
   ``JUMPI`` which way it went (jumped, fell through). Views (``eth_call``), contract-to-contract calls
   and constructors all run through it.
2. **Source maps** (``compile_with_maps``): solc is run once more on exactly the standard-JSON input Ape
   recorded in ``.build/__local__.json`` (same sources, same settings), asking for the runtime and
   creation source maps and the AST. The bytecode is checked to be byte-identical to Ape's build, so
   program counters mean the same thing. The output is cached in ``.build/coverage-solc.json``.
3. **Attribution** (``analyse``): each instruction of each contract's code is mapped through the source
   map to a source range, and that range to the innermost *statement* of the AST that contains it.
   - A statement *has code* when some instruction is attributed to it, and is *covered* when one of
     those instructions ran. Statements the optimizer removed, or folded into other code, have no code
     and are left out of the totals (listed as a count).
   - A line is covered when a statement starting on it is covered (lines with code only).
   - Branches: every ``if`` has a true and a false branch, every ``?:`` too. A branch with code of its
     own (the ``if`` body, an ``else`` body, a ternary's arm) is taken when some of that code ran. The
     false branch of an ``if`` without ``else`` has no code, so it is read off the ``JUMPI`` that
     decides the ``if``: the one attributed to the ``if`` whose one direction leads straight into the
     body (by static reading of the bytecode, following unconditional jumps); the false branch is taken
     when that ``JUMPI`` went the other way. A branch whose deciding ``JUMPI`` cannot be identified
     (the optimizer made the condition branch-free, or shared it) is reported as *unresolved*, never
     guessed.

With via-IR and the optimizer, source maps point inlined code at its original statement, so
attribution works across internal functions; what it cannot see is code the optimizer merged across
statements (it is attributed to one of them). Only the embedded chain runs py-evm in-process, so only
it is measured (Anvil is a separate binary).

Scope of the report: the production sources (every ``.sol`` under ``contracts/`` but mocks, interfaces and
OpenZeppelin, which are compiled in but not reported; ``production_sources``).

Use: ``./run.sh coverage`` (with ``devtools.fncoverage``; writes docs/coverage.md).
"""
from __future__ import annotations

import bisect
import hashlib
import json
import re
import subprocess
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
JUMPI, JUMP, JUMPDEST, STOP = 0x57, 0x56, 0x5B, 0x00
STATEMENTS = {
    "ExpressionStatement", "VariableDeclarationStatement", "Return", "EmitStatement", "RevertStatement",
    "IfStatement", "ForStatement", "WhileStatement", "DoWhileStatement", "Break", "Continue",
    "InlineAssembly", "TryStatement", "PlaceholderStatement",
}

# ------------------------------------------------------------------------------------------------
# 1. Recording

_hits: dict[bytes, bytearray] = {}  # code -> 1 per program counter that ran
_jumped: dict[bytes, set[int]] = defaultdict(set)  # code -> JUMPIs that jumped
_fell: dict[bytes, set[int]] = defaultdict(set)  # code -> JUMPIs that fell through
_installed = False


def _recording_iter(self):
    """``CodeStream.__iter__`` (py-evm's interpreter loop reads opcodes from it), recording as it goes."""
    raw = self._raw_code_bytes
    hits = _hits.get(raw)
    if hits is None:
        hits = _hits[raw] = bytearray(len(raw) + 1)
    jumped, fell = _jumped[raw], _fell[raw]
    while True:
        pc = self.program_counter
        try:
            opcode = raw[pc]
        except IndexError:
            break
        hits[pc] = 1
        self.program_counter = pc + 1
        yield opcode
        if opcode == JUMPI:
            (fell if self.program_counter == pc + 1 else jumped).add(pc)
    yield STOP


def install() -> None:
    """Replace py-evm's opcode iterator with one that records what runs (idempotent)."""
    global _installed
    if _installed:
        return
    from eth.vm.code_stream import CodeStream

    CodeStream.__iter__ = _recording_iter
    _installed = True


def recorded() -> dict:
    """What was recorded so far: code -> (pc bitmap, jumped JUMPIs, fell-through JUMPIs)."""
    return {code: (hits, _jumped[code], _fell[code]) for code, hits in _hits.items()}


# ------------------------------------------------------------------------------------------------
# 2. Source maps


def standard_input(root: Path = ROOT) -> tuple[dict, str, dict]:
    """Ape's recorded compiler input (asking for source maps and the AST as well), the compiler
    version, and Ape's build."""
    build = json.loads((root / ".build" / "__local__.json").read_text())
    compiler = next(c for c in build["compilers"] if c["name"] == "solidity")
    settings = dict(compiler["settings"])
    paths = sorted(settings["outputSelection"])
    outputs = ["evm.bytecode.object", "evm.bytecode.sourceMap", "evm.deployedBytecode.object",
               "evm.deployedBytecode.sourceMap", "evm.deployedBytecode.immutableReferences"]
    settings["outputSelection"] = {p: {"*": outputs, "": ["ast"]} for p in paths}
    # Ape compiles its copy of each npm dependency under contracts/.cache (remapped there); the copy
    # only exists during Ape's compile, so the same files are read from node_modules.
    copies = {}
    for remapping in settings.get("remappings", []):
        name, _, target = remapping.partition("=")
        if target.startswith("contracts/.cache/"):
            copies[target.rstrip("/") + "/"] = root / "node_modules" / name.rstrip("/")

    def content(p: str) -> str:
        for prefix, folder in copies.items():
            if p.startswith(prefix):
                return (folder / p[len(prefix):]).read_text()
        return (root / p).read_text()

    return ({"language": "Solidity", "sources": {p: {"content": content(p)} for p in paths},
             "settings": settings}, compiler["version"].split("+")[0], build)


def compile_with_maps(root: Path = ROOT) -> dict:
    """solc's output with source maps, cached by input hash; checked byte-identical to Ape's build."""
    inp, version, build = standard_input(root)
    text = json.dumps(inp, sort_keys=True)
    key = hashlib.sha256(text.encode()).hexdigest()
    cache = root / ".build" / "coverage-solc.json"
    if cache.exists():
        cached = json.loads(cache.read_text())
        if cached.get("key") == key:
            return cached["output"]
    solc = root / "tools" / "solcx" / f"solc-v{version}"
    proc = subprocess.run([str(solc), "--standard-json", "--base-path", str(root)], input=text,
                          capture_output=True, text=True, cwd=root, check=True)
    out = json.loads(proc.stdout)
    errors = [e["formattedMessage"] for e in out.get("errors", []) if e["severity"] == "error"]
    if errors:
        raise RuntimeError("solc failed:\n" + "\n".join(errors))
    for contracts in out["contracts"].values():
        for name, data in contracts.items():
            ape = build["contractTypes"].get(name)
            if ape and ape["runtimeBytecode"]["bytecode"][2:] != data["evm"]["deployedBytecode"]["object"]:
                raise RuntimeError(f"{name}: bytecode differs from Ape's build; recompile (ape compile -f)")
    cache.write_text(json.dumps({"key": key, "output": out}))
    return out


# ------------------------------------------------------------------------------------------------
# 3. Attribution


def instructions(code: bytes) -> list[int]:
    """Program counter of each instruction (PUSHn skips its n data bytes)."""
    pcs, pc = [], 0
    while pc < len(code):
        pcs.append(pc)
        op = code[pc]
        pc += 1 + (op - 0x5F if 0x60 <= op <= 0x7F else 0)
    return pcs


def decode_source_map(source_map: str) -> list[tuple[int, int, int, str]]:
    """solc's compressed source map: (start, length, file index, jump) per instruction; an empty field
    repeats the previous entry's."""
    out, s, l, f, j = [], -1, -1, -1, "-"
    for entry in source_map.split(";"):
        fields = entry.split(":")
        if len(fields) > 0 and fields[0]:
            s = int(fields[0])
        if len(fields) > 1 and fields[1]:
            l = int(fields[1])
        if len(fields) > 2 and fields[2]:
            f = int(fields[2])
        if len(fields) > 3 and fields[3]:
            j = fields[3]
        out.append((s, l, f, j))
    return out


def _src(node: dict) -> tuple[int, int, int]:
    s, l, f = (int(x) for x in node["src"].split(":"))
    return s, l, f


@dataclass
class Region:
    """A statement, or a ternary (``Conditional``): what code is attributed to."""

    kind: str
    start: int
    end: int
    file: int
    line: int
    arms: list[tuple[int, int] | None] = field(default_factory=list)  # if/?: : (true arm, false arm)
    reach: list[list[tuple[int, int, int]]] = field(default_factory=list)  # per arm: (file, start, end) of
    # the arm and of the internal functions it calls (transitively): where entering the arm can lead
    pcs: list[tuple[str, int]] = field(default_factory=list)  # (code id, pc) whose innermost region this is
    twins: bool = False  # another statement of the file has the same source text
    spcs: list[tuple[str, int]] = field(default_factory=list)  # the same among statements only (the code
    # of a ternary counts for its statement)


def functions(asts: list[dict]) -> dict[int, dict]:
    """Every function and modifier definition with a body, by AST id."""
    out: dict[int, dict] = {}

    def walk(node):
        if isinstance(node, dict):
            if node.get("nodeType") in ("FunctionDefinition", "ModifierDefinition") and node.get("body"):
                out[node["id"]] = node
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    for ast in asts:
        walk(ast)
    return out


def _reach(node: dict, fns: dict[int, dict]) -> list[tuple[int, int, int]]:
    """Source ranges of ``node`` and of the internal functions and modifiers it calls, transitively."""
    out, seen, todo = [], set(), [node]
    while todo:
        n = todo.pop()
        s, l, f = _src(n)
        out.append((f, s, s + l))
        stack = [n]
        while stack:
            x = stack.pop()
            if isinstance(x, dict):
                ref = x.get("referencedDeclaration")
                if ref in fns and ref not in seen:
                    seen.add(ref)
                    todo.append(fns[ref]["body"])
                stack.extend(x.values())
            elif isinstance(x, list):
                stack.extend(x)
    return out


def regions(ast: dict, source: bytes, fns: dict[int, dict] | None = None) -> list[Region]:
    """Every statement and ternary of one source unit."""
    out: list[Region] = []
    fns = fns or {}

    def arm(node):
        if node is None:
            return None
        s, l, _ = _src(node)
        return (s, s + l)

    def walk(node):
        if isinstance(node, dict):
            kind = node.get("nodeType")
            if kind in STATEMENTS or kind == "Conditional":
                s, l, f = _src(node)
                r = Region(kind, s, s + l, f, source.count(b"\n", 0, s) + 1)
                keys = {"IfStatement": ("trueBody", "falseBody"),
                        "Conditional": ("trueExpression", "falseExpression")}.get(kind)
                if keys:
                    r.arms = [arm(node.get(k)) for k in keys]
                    r.reach = [_reach(node[k], fns) if node.get(k) else [] for k in keys]
                out.append(r)
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(ast)
    return out


class Innermost:
    """Innermost region of one file containing a source range."""

    def __init__(self, rs: list[Region]):
        self.rs = sorted(rs, key=lambda r: (r.start, -r.end))
        self.starts = [r.start for r in self.rs]
        self.memo: dict[tuple[int, int], Region | None] = {}

    def __call__(self, s: int, e: int) -> Region | None:
        key = (s, e)
        if key not in self.memo:
            best = None
            for i in range(bisect.bisect_right(self.starts, s) - 1, -1, -1):
                r = self.rs[i]
                if r.end >= e and (best is None or r.end - r.start < best.end - best.start):
                    best = r
            self.memo[key] = best
        return self.memo[key]


@dataclass
class CodeMap:
    """One compiled code (a contract's runtime or creation code) with its attribution."""

    name: str
    code: bytes
    masked: set[int]  # byte offsets of immutables (differ per deployment)
    pcs: list[int]
    entries: list[tuple[int, int, int, str]]
    owner: dict[int, Region]  # pc -> innermost region
    index: dict[int, int] = field(default_factory=dict)  # pc -> instruction number


TERMINATORS = {0x00, 0xF3, 0xFD, 0xFE, 0xFF}


def _direction(cm: CodeMap, start_pc: int, region: Region, ranges: list[tuple[int, int, int]],
               steps: int = 64) -> bool | None:
    """Does control from ``start_pc`` go straight into ``ranges`` (an arm of ``region``: its source, the
    bodies of the internal functions it calls, and statements the optimizer may have merged it with)?

    Reads the straight-line code from there (following unconditional jumps to a pushed target) up to
    the first *decisive* instruction: one that computes something (not a JUMPDEST, PUSH, DUP, SWAP or
    POP, which carry whatever location the optimizer last touched) and is attributed to a statement
    other than ``region`` or to a place inside the ranges: True if that place is inside the ranges,
    False if not. If control leaves first (a return jump, a terminator, another statement's
    conditional jump), the stack instructions on the way decide the same way, and False if none was
    inside. None when another conditional jump of ``region`` itself comes first (that direction
    evaluates more of the condition) or the walk is too long."""
    pc, seen_in, seen_other = start_pc, False, False
    for _ in range(steps):
        i = cm.index.get(pc)
        if i is None or i >= len(cm.entries):
            return None
        op = cm.code[pc]
        s, l, f, _j = cm.entries[i]
        if op == JUMP:
            pc = _jump_target(cm, i)
            if pc is None:
                break  # a return (target from the stack): control leaves without entering the ranges
            continue
        if op == JUMPI and cm.owner.get(pc) is region and not (seen_in or seen_other):
            return None  # more of the condition (a short-circuit `&&`/`||`): this jump decides nothing
        if op == JUMPI or op in TERMINATORS:
            break
        if op != JUMPDEST and s >= 0:
            inside = any(ff == f and a <= s and s + l <= b for ff, a, b in ranges)
            owner = cm.owner.get(pc)
            other = not inside and owner is not None and owner is not region
            if not (0x5F <= op <= 0x9F or op == 0x50):
                if inside:
                    return True
                if other:
                    return False
            seen_in |= inside
            seen_other |= other
        pc = cm.pcs[i + 1] if i + 1 < len(cm.pcs) else -1
    else:
        return None
    return bool(seen_in)


def _jump_target(cm: CodeMap, i: int) -> int | None:
    prev = cm.pcs[i - 1] if i else None
    if prev is None or not 0x60 <= cm.code[prev] <= 0x7F:
        return None
    n = cm.code[prev] - 0x5F
    return int.from_bytes(cm.code[prev + 1: prev + 1 + n], "big")


def _add_twins(by_file: dict[int, list[Region]], sources: dict[str, str], out: dict) -> None:
    """Let each arm's reach include the statements with the same source text as one inside the arm
    (same file): the optimizer merges identical code (two ``revert ZeroAddress();``) and attributes the
    one copy to one of them."""
    ids = {v["id"]: k for k, v in out["sources"].items()}
    for fid, rs in by_file.items():
        text = sources[ids[fid]].encode()
        by_text: dict[bytes, list[Region]] = defaultdict(list)
        for r in rs:
            if r.kind in STATEMENTS:
                by_text[b" ".join(text[r.start:r.end].split())].append(r)
        for group in by_text.values():
            for r in group:
                r.twins = len(group) > 1
        for r in rs:
            for k, armr in enumerate(r.arms):
                if armr is None:
                    continue
                for inner in rs:
                    if armr[0] <= inner.start and inner.end <= armr[1] and inner.kind in STATEMENTS:
                        twins = by_text[b" ".join(text[inner.start:inner.end].split())]
                        r.reach[k] += [(fid, t.start, t.end) for t in twins if t is not inner]


def load(out: dict, sources: dict[str, str]):
    """Regions per reported file, and a CodeMap per compiled code."""
    files: dict[int, str] = {v["id"]: k for k, v in out["sources"].items()}
    by_file: dict[int, list[Region]] = {}
    fns = functions([src["ast"] for src in out["sources"].values()])
    for path, src in out["sources"].items():
        if path in sources:
            by_file[src["id"]] = regions(src["ast"], sources[path].encode(), fns)
    _add_twins(by_file, sources, out)
    finders = {f: Innermost(rs) for f, rs in by_file.items()}
    statement_finders = {f: Innermost([r for r in rs if r.kind in STATEMENTS]) for f, rs in by_file.items()}
    maps: list[CodeMap] = []
    for contracts in out["contracts"].values():
        for name, data in contracts.items():
            for kind, key in (("runtime", "deployedBytecode"), ("creation", "bytecode")):
                obj = data["evm"][key]["object"]
                if not obj:
                    continue
                code = bytes.fromhex(obj)
                masked = set()
                for refs in (data["evm"][key].get("immutableReferences") or {}).values():
                    for ref in refs:
                        masked.update(range(ref["start"], ref["start"] + ref["length"]))
                entries = decode_source_map(data["evm"][key]["sourceMap"])
                pcs = instructions(code)[: len(entries)]
                cm = CodeMap(f"{name}:{kind}", code, masked, pcs, entries, {}, {pc: i for i, pc in enumerate(pcs)})
                for pc, (s, l, f, _j) in zip(pcs, entries):
                    finder = finders.get(f)
                    # A JUMPDEST is where jumps from anywhere land (the optimizer shares tails and return
                    # points), so it is no evidence that its statement ran: it is attributed to nothing.
                    if finder is not None and s >= 0 and code[pc] != JUMPDEST:
                        r = finder(s, s + l)
                        if r is not None:
                            cm.owner[pc] = r
                            r.pcs.append((cm.name, pc))
                        r = statement_finders[f](s, s + l)
                        if r is not None:
                            r.spcs.append((cm.name, pc))
                maps.append(cm)
    return files, by_file, maps


def _matches(cm: CodeMap, code: bytes, creation: bool) -> bool:
    """Is a recorded code this compiled code? Runtime: same length, equal outside immutables and the
    metadata tail. Creation: the recorded init code starts with the compiled one (constructor
    arguments follow)."""
    if creation:
        return code[: len(cm.code)] == cm.code
    if len(code) != len(cm.code):
        return False
    if code == cm.code:
        return True
    end = cm.pcs[-1] + 1 if cm.pcs else 0
    return all(a == b or i in cm.masked for i, (a, b) in enumerate(zip(code[:end], cm.code[:end])))


@dataclass
class FileReport:
    path: str
    statements: int = 0
    statements_hit: int = 0
    no_code: int = 0
    lines: set = field(default_factory=set)
    lines_hit: set = field(default_factory=set)
    branches: int = 0
    branches_hit: int = 0
    unresolved: int = 0
    missed_statements: list = field(default_factory=list)  # (line, kind, text)
    missed_branches: list = field(default_factory=list)  # (line, which, text)
    cross_checked: int = 0  # arms read both from their own code and from the deciding jump
    disagreements: list = field(default_factory=list)  # (line, which) where the two readings differ


def analyse(out: dict, sources: dict[str, str], rec: dict) -> list[FileReport]:
    """Per-file statement, line and branch coverage from solc's output and what was recorded."""
    files, by_file, maps = load(out, sources)
    # Executed pcs, jumped and fell-through JUMPIs, per CodeMap (union over matching recorded codes).
    ran: dict[str, set[int]] = defaultdict(set)
    jumped: dict[str, set[int]] = defaultdict(set)
    fell: dict[str, set[int]] = defaultdict(set)
    for code, (hits, j, fl) in rec.items():
        for cm in maps:
            if _matches(cm, code, cm.name.endswith(":creation")):
                ran[cm.name].update(pc for pc in cm.pcs if pc < len(hits) and hits[pc])
                jumped[cm.name].update(j)
                fell[cm.name].update(fl)
    cms = {cm.name: cm for cm in maps}
    reports = []
    for fid, rs in sorted(by_file.items(), key=lambda kv: files[kv[0]]):
        path = files[fid]
        text = sources[path].encode()
        rep = FileReport(path)

        def snippet(s, e):
            return _clip(" ".join(text[s:e].decode(errors="replace").split()))

        # Branches first. The deciding jump is read first: it belongs to this `if` alone, while an arm's
        # own code may be shared with an identical statement elsewhere (the optimizer merges them).
        arm_state: list[tuple[tuple[int, int], bool]] = []  # (arm range, taken) where resolved
        for r in rs:
            if r.kind not in ("IfStatement", "Conditional"):
                continue
            by_jump = _by_jumpi(r, cms, ran, jumped, fell)  # (true taken, false taken) or None
            taken = []
            for which, armr in enumerate(r.arms):
                state = None if by_jump is None else by_jump[which]  # True taken, False not, None unresolved
                if armr is not None:
                    inner = [x for x in rs if armr[0] <= x.start and x.end <= armr[1]]
                    own = [cp for x in inner for cp in x.pcs] + _computing_pcs_within(r, armr, cms)
                    if own:
                        ran_own = any(pc in ran[c] for c, pc in own)
                        if state is None:
                            state = ran_own
                        elif not any(x.twins for x in inner):
                            # Two independent readings of one fact: they must agree.
                            rep.cross_checked += 1
                            if state != ran_own:
                                rep.disagreements.append((r.line, ("true", "false")[which]))
                    if state is not None:
                        arm_state.append((armr, state))
                taken.append(state)
            if not r.pcs and not any(taken):
                continue  # no code of its own and no arm ran: the optimizer removed it
            for which, state in enumerate(taken):
                if state is None:
                    rep.unresolved += 1
                    continue
                rep.branches += 1
                if state:
                    rep.branches_hit += 1
                else:
                    label = ("true", "false")[which]
                    rep.missed_branches.append((r.line, label, snippet(r.start, min(r.end, r.start + 200))))
        # Statements: one ran when code attributed to it ran and no enclosing arm is known not taken
        # (that code then ran for a merged twin).
        for r in rs:
            if r.kind == "Conditional":
                continue
            if not r.spcs:
                rep.no_code += 1
                continue
            rep.statements += 1
            rep.lines.add(r.line)
            hit = any(pc in ran[c] for c, pc in r.spcs) and not any(
                not taken and armr[0] <= r.start and r.end <= armr[1] for armr, taken in arm_state)
            if hit:
                rep.statements_hit += 1
                rep.lines_hit.add(r.line)
            else:
                rep.missed_statements.append((r.line, r.kind, snippet(r.start, r.end)))
        rep.lines_hit &= rep.lines
        reports.append(rep)
    return reports


def _computing_pcs_within(r: Region, armr: tuple[int, int], cms: dict) -> list[tuple[str, int]]:
    """Instructions attributed to ``r`` itself whose source range lies inside the arm ``armr``: a
    ternary's arms are expressions, not statements, so their code is attributed to the ternary. Only
    instructions that compute (not JUMPDEST, PUSH, DUP, SWAP or POP, which carry loose locations)."""
    out = []
    for c, pc in r.pcs:
        cm = cms[c]
        op = cm.code[pc]
        if op == JUMPDEST or 0x5F <= op <= 0x9F or op == 0x50:
            continue
        s, l, _f, _j = cm.entries[cm.index[pc]]
        if armr[0] <= s and s + l <= armr[1]:
            out.append((c, pc))
    return out


def _by_jumpi(r: Region, cms: dict, ran, jumped, fell) -> tuple[bool | None, bool | None] | None:
    """(true branch taken, false branch taken) of ``r``, read off its *deciding* JUMPIs: those
    attributed to ``r`` with one direction leading into the true arm's code and the other leading
    elsewhere (a short-circuit ``||`` jump, whose other direction evaluates more of the condition, is
    not one). None when ``r`` has no deciding JUMPI.

    The same ``if`` is compiled into several codes (a library or an internal function used by two
    contracts, or by a constructor). A code in which ``r`` ran but has no deciding jump could have
    taken either branch unseen, so then "not taken" is not claimed (None instead of False)."""
    verdict: list[bool] | None = None
    decided: set[str] = set()
    for c, pc in r.pcs:
        cm = cms[c]
        if cm.code[pc] != JUMPI:
            continue
        i = cm.index[pc]
        s, l, _f, _j = cm.entries[i]
        if any(arm is not None and arm[0] <= s and s + l <= arm[1] for arm in r.arms):
            continue  # a jump inside an arm (a `||` there) belongs to that arm, not to the choice
        target = _jump_target(cm, i)
        if target is None or i + 1 >= len(cm.pcs):
            continue
        into_taken = _direction(cm, target, r, r.reach[0])
        into_fell = _direction(cm, cm.pcs[i + 1], r, r.reach[0])
        if into_taken is None or into_fell is None or into_taken == into_fell:
            continue
        decided.add(c)
        went_jump, went_fall = pc in jumped[c], pc in fell[c]
        true_taken, false_taken = (went_jump, went_fall) if into_taken else (went_fall, went_jump)
        verdict = [true_taken, false_taken] if verdict is None else [verdict[0] or true_taken,
                                                                     verdict[1] or false_taken]
    if verdict is None:
        return None
    if any(c not in decided and pc in ran[c] for c, pc in r.pcs):
        verdict = [v or None for v in verdict]
    return verdict[0], verdict[1]


def report(reports: list[FileReport], root: Path = ROOT) -> tuple[str, dict]:
    """Markdown section and totals."""
    def cell(a, b):
        return f"{a}/{b} ({100 * a / b:.1f} %)" if b else f"{a}/{b}"

    lines = ["| file | statements | lines | branches | unresolved branches | statements without code |",
             "|---|---:|---:|---:|---:|---:|"]
    tot = defaultdict(int)
    for rep in reports:
        lines.append(f"| {rep.path} | {cell(rep.statements_hit, rep.statements)} "
                     f"| {cell(len(rep.lines_hit), len(rep.lines))} | {cell(rep.branches_hit, rep.branches)} "
                     f"| {rep.unresolved} | {rep.no_code} |")
        tot["s"] += rep.statements
        tot["sh"] += rep.statements_hit
        tot["l"] += len(rep.lines)
        tot["lh"] += len(rep.lines_hit)
        tot["b"] += rep.branches
        tot["bh"] += rep.branches_hit
        tot["u"] += rep.unresolved
        tot["n"] += rep.no_code
    cross = sum(r.cross_checked for r in reports)
    disagree = [(r.path, ln, w) for r in reports for ln, w in r.disagreements]
    tot["cross"], tot["disagree"] = cross, len(disagree)
    lines.append(f"| **all** | {cell(tot['sh'], tot['s'])} | {cell(tot['lh'], tot['l'])} "
                 f"| {cell(tot['bh'], tot['b'])} | {tot['u']} | {tot['n']} |")
    lines += ["", f"Cross-check: {cross} branches were read both from their own code and from their deciding",
              f"jump; the two readings disagreed on {len(disagree)}."]
    lines += [f"- disagreement: {p} line {ln}, {w} branch" for p, ln, w in disagree]
    details = []
    for rep in reports:
        if rep.missed_statements or rep.missed_branches:
            details.append(f"\n### {rep.path}\n")
            details += [f"- line {ln}: statement not run ({kind}): `{t}`" for ln, kind, t in rep.missed_statements]
            details += [f"- line {ln}: {w} branch not taken: `{t}`" for ln, w, t in rep.missed_branches]
    return "\n".join(lines + details) + "\n", dict(tot)


# Folders under contracts/ whose sources are not reported: test doubles, interfaces, Ape's dependency copies.
NOT_REPORTED = {"mocks", "interfaces", ".cache"}


def _clip(text: str, width: int = 90) -> str:
    """`text` cut to at most `width` characters, never inside a name: a cut `Contract.memb` would read as a
    citation of a member that does not exist (tests/test_references.py checks the docs' citations)."""
    if len(text) <= width:
        return text
    cut = text[:width]
    if text[width].isalnum() or text[width] == "_":
        cut = re.sub(r"[\w.]+$", "", cut) or cut  # one name longer than the width: cut it anyway
    return cut.rstrip()


def production_sources(out: dict, root: Path = ROOT) -> dict[str, str]:
    """The reported sources: every .sol file under contracts/ (the core contracts, the ClearingHouse's units under
    clearinghouse/, the libraries, the periphery and the governance contracts) but the folders in NOT_REPORTED and
    interface files (an `I` then a capital: IOrderRouter.sol)."""
    keep = {}
    for path in out["sources"]:
        parts = Path(path).parts
        if parts[0] != "contracts" or any(p in NOT_REPORTED for p in parts[1:-1]):
            continue
        name = parts[-1]
        if len(name) > 1 and name[0] == "I" and name[1].isupper():
            continue
        keep[path] = (root / path).read_text()
    return keep


def save(path: Path) -> None:
    """Keep what was recorded (``python -m devtools.srccoverage <file>`` reports it again)."""
    data = {code.hex(): (bytes(h).hex(), sorted(j), sorted(f)) for code, (h, j, f) in recorded().items()}
    Path(path).write_text(json.dumps(data))


def load_recorded(path: Path) -> dict:
    data = json.loads(Path(path).read_text())
    return {bytes.fromhex(c): (bytearray.fromhex(h), set(j), set(f)) for c, (h, j, f) in data.items()}


def run(root: Path = ROOT, rec: dict | None = None) -> tuple[str, dict]:
    out = compile_with_maps(root)
    return report(analyse(out, production_sources(out, root), recorded() if rec is None else rec), root)


if __name__ == "__main__":
    import sys

    text, totals = run(ROOT, load_recorded(Path(sys.argv[1])))
    print(text)
