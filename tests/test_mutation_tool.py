"""The mutation tool itself (devtools.mutation): operators on a hand-written contract, the standard-JSON build
against Ape's, metadata stripping, equivalent and stillborn mutants, the stratified sample, the report's
score arithmetic and markers, the pytest outcome parsing; end to end on the small contract, a mutant a
probe test catches is killed, one it cannot see survives, and neither the project's contracts/ nor its
.build/ is ever written. The real campaign is the tool's job (`./run.sh ape run mutate`, docs/mutation.md)."""
from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pytest

from devtools.mutation import report
from devtools.mutation.cli import production_files, sample
from devtools.mutation.compile import Compiler, strip_metadata
from devtools.mutation.operators import OPERATORS, Mutant, generate
from devtools.mutation.runner import Result, Workspace, _ape_content, _junit_failures

ROOT = Path(__file__).resolve().parent.parent

SOURCE = """// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

library L {
    function mulDivDown(uint256 x, uint256 y, uint256 d) internal pure returns (uint256) {
        return x * y / d;
    }

    function mulDivUp(uint256 x, uint256 y, uint256 d) internal pure returns (uint256) {
        return (x * y + d - 1) / d;
    }
}

/// @notice NatSpec with a < b, x == y and `revert Nope();` is not code.
contract T {
    using L for uint256;

    uint256 internal constant LIMIT = 16; // a comment: a > b, require(x), total += 1
    uint8 public small = 255;
    address public owner;
    uint256 public total;
    string public label = "a <= b && c";

    event Moved(uint256 a, uint256 b);

    error TooBig(uint256 value);

    constructor() {
        owner = msg.sender;
    }

    modifier onlyOwner() {
        if (msg.sender != owner) revert TooBig(0);
        _;
    }

    modifier noop() {
        _;
    }

    function f(uint256 a, uint256 b) external onlyOwner noop returns (uint256) {
        if (a > LIMIT) revert TooBig(a);
        require(b <= a, TooBig(b + 7));
        total += a - b;
        emit Moved(a + 1, b);
        return _g(a, b, true && a == b);
    }

    function _g(uint256 x, uint256 y, bool flag) internal pure returns (uint256) {
        return flag ? L.mulDivUp(x, y, 3) : x.mulDivDown(y, 3);
    }
}
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A project tree with one contract (T.sol), the repository's compiler settings and shim."""
    root = tmp_path_factory.mktemp("mutproj")
    (root / "contracts").mkdir()
    (root / "contracts" / "T.sol").write_text(SOURCE)
    # the repository's compiler settings, but the legacy pipeline: the same logic under test, a few times faster
    # than via-IR for every one of the builds below (the real contracts' via-IR build is checked against Ape's
    # in test_standard_json_build_equals_apes)
    (root / "ape-config.yaml").write_text((ROOT / "ape-config.yaml").read_text().replace("via_ir: true", "via_ir: false"))
    (root / "tools").symlink_to(ROOT / "tools")
    (root / "node_modules").symlink_to(ROOT / "node_modules")
    return root


@pytest.fixture(scope="module")
def compiler(project):
    return Compiler(project)


@pytest.fixture(scope="module")
def mutants(compiler):
    ast = compiler.asts(["contracts/T.sol"])["contracts/T.sol"]
    return generate("contracts/T.sol", compiler.text("contracts/T.sol"), ast)


def _found(mutants, operator):
    return {(m.original, m.replacement) for m in mutants if m.operator == operator}


def _line_of(text: str, needle: str) -> int:
    return next(i for i, ln in enumerate(text.splitlines(), 1) if needle in ln)


def test_every_operator_finds_its_mutants(mutants):
    assert _found(mutants, "cmp-boundary") == {(">", ">="), ("<=", "<")}
    assert _found(mutants, "cmp-negate") == {("!=", "=="), ("==", "!=")}
    assert _found(mutants, "arith") == {("+=", "-="), ("-", "+"), ("+", "-")}  # `a - b`, `x * y + d - 1`
    assert _found(mutants, "logic") == {("&&", "||"), ("true", "false")}
    assert _found(mutants, "rounding") == {("mulDivUp", "mulDivDown"), ("mulDivDown", "mulDivUp")}
    assert _found(mutants, "drop-modifier") == {("onlyOwner", ""), ("noop", "")}
    assert _found(mutants, "drop-revert") == {("revert TooBig(0);", "{}"), ("revert TooBig(a);", "{}"),
                                              ("require(b <= a, TooBig(b + 7));", "{}")}
    assert _found(mutants, "swap-args") == {("a, b", "b, a")}  # _g's two uint256, not the bool
    assert Counter(m.replacement for m in mutants if m.operator == "off-by-one") == Counter({
        "(16 + 1)": 1, "(16 - 1)": 1, "(255 + 1)": 1, "(255 - 1)": 1, "(1 + 1)": 1, "(1 - 1)": 1,
        "(3 + 1)": 2, "(3 - 1)": 2})
    assert {m.operator for m in mutants} == set(OPERATORS)


def test_comments_strings_events_and_errors_are_left_alone(mutants):
    text = SOURCE.encode()
    untouchable = [text.index(b"NatSpec"), text.index(b"// a comment"), text.index(b'"a <= b'),
                   text.index(b"emit Moved"), text.index(b"TooBig(b + 7)"), text.index(b"TooBig(0)")]
    for m in mutants:
        for at in untouchable:
            line_end = text.index(b"\n", at)
            assert not (at <= m.start < line_end) or m.operator == "drop-revert", m
    # the comparison's literal is cmp-boundary's business, the address literal... there is none here
    assert not any(m.operator == "off-by-one" and m.original == "0" for m in mutants)


def test_library_and_commutative_calls(mutants):
    # mulDivUp(x, y, d)'s x and y commute: no swap; the `using for` receiver is not an argument
    assert not any(m.operator == "swap-args" and "mulDiv" in m.description for m in mutants)
    lines = {m.line for m in mutants if m.operator == "rounding"}
    assert lines == {_line_of(SOURCE, "L.mulDivUp(x, y, 3)")}


def test_apply_diff_and_identity(mutants):
    m = next(m for m in mutants if m.operator == "drop-revert" and "TooBig(a)" in m.original)
    mutated = m.apply(SOURCE)
    assert "if (a > LIMIT) {}" in mutated and mutated.count("\n") == SOURCE.count("\n")
    assert m.diff(SOURCE) == ("if (a > LIMIT) revert TooBig(a);", "if (a > LIMIT) {}")
    assert m.line == _line_of(SOURCE, "if (a > LIMIT)") and m.function == "T.f"
    assert Mutant.from_json(json.loads(json.dumps(m.to_json()))) == m
    assert len({x.id for x in mutants}) == len(mutants)
    with pytest.raises(AssertionError):
        m.apply(SOURCE.replace("revert TooBig(a);", "revert TooBig(b);"))  # the source moved on


def test_utf8_offsets(compiler):
    """solc's offsets are bytes: a multi-byte character before the edit must not shift it."""
    text = compiler.text("contracts/T.sol").replace("is not code.", "is not code \u2014 \u00d7 \u2264.")
    project = compiler.root
    (project / "contracts" / "U.sol").write_text(text.replace("contract T", "contract U")
                                                  .replace("library L", "library LU").replace("L.", "LU.")
                                                  .replace("using L ", "using LU "))
    try:
        c = Compiler(project)
        ast = c.asts(["contracts/U.sol"])["contracts/U.sol"]
        ms = generate("contracts/U.sol", c.text("contracts/U.sol"), ast)
        m = next(m for m in ms if m.operator == "cmp-boundary" and m.original == ">")
        assert "if (a >= LIMIT)" in m.apply(c.text("contracts/U.sol"))
    finally:
        (project / "contracts" / "U.sol").unlink()


def test_metadata_stripped_code_is_the_same_for_a_comment_change(compiler):
    base = compiler.bytecode(["contracts/T.sol"])["T"]
    other = compiler.bytecode(["contracts/T.sol"], {"contracts/T.sol": SOURCE.replace("is not code", "is prose")})["T"]
    assert base["runtime"] != other["runtime"]  # the metadata hashes the source
    assert strip_metadata(base["runtime"]) == strip_metadata(other["runtime"])
    assert strip_metadata(base["deployment"]) == strip_metadata(other["deployment"])
    assert strip_metadata("0x" + base["runtime"]) == strip_metadata(base["runtime"])


class _Bench:
    """What Workspace.build_mutant uses of a workspace: the compiler and the baseline's stripped code."""

    def __init__(self, compiler):
        self.compiler = compiler
        types = compiler.bytecode(["contracts/T.sol"])
        self.baseline = {n: (strip_metadata(t["deployment"]), strip_metadata(t["runtime"])) for n, t in types.items()}


def test_build_classifies_equivalent_stillborn_and_built(compiler, mutants):
    bench = _Bench(compiler)
    build = lambda m: Workspace.build_mutant(bench, m)  # noqa: E731
    noop = next(m for m in mutants if m.operator == "drop-modifier" and m.original == "noop")
    assert build(noop)[0] == "equivalent"  # an empty modifier: the same code
    overflow = next(m for m in mutants if m.replacement == "(255 + 1)")
    status, _, detail = build(overflow)
    assert status == "stillborn" and "TypeError" in detail  # 256 does not fit uint8
    flip = next(m for m in mutants if m.operator == "cmp-boundary" and m.original == ">")
    status, changed, _ = build(flip)
    assert status == "built" and set(changed) == {"T"} and changed["T"]["runtime"]


def test_production_files_and_dependents():
    c = Compiler(ROOT)
    files = production_files(c)
    assert "contracts/Vault.sol" in files and "contracts/libraries/WadMath.sol" in files
    assert "contracts/periphery/PerpReader.sol" in files
    assert not any("/mocks/" in f or "/interfaces/" in f or f.split("/")[-1].startswith("IPerp") for f in files)
    # The governor imports the modules for their setters' selectors, so a Vault mutant rebuilds it too.
    assert c.dependents("contracts/Vault.sol") == ["contracts/Vault.sol", "contracts/governance/RiskGovernor.sol"]
    users = c.dependents("contracts/libraries/WadMath.sol")
    for f in ("contracts/ClearingHouse.sol", "contracts/LiquidityPool.sol", "contracts/libraries/VAmmMath.sol",
              "contracts/mocks/FundingMathHarness.sol"):
        assert f in users
    assert not any(u.startswith("contracts/.cache") for u in users)


def test_standard_json_build_equals_apes():
    """The mutant builds are Ape's builds: the same code as .build/__local__.json for an unchanged source
    (metadata aside, which hashes the set of files Ape's last compile was given). MockERC20 goes through the
    OpenZeppelin remapping. Only a unit that imports nothing of the project's is compared: Ape recompiles a
    changed file but not the units importing it, so the checkout's manifest can hold stale code for those
    (the campaign compares after its own `ape compile -f`, `Workspace.check_compiler`)."""
    build = ROOT / ".build" / "__local__.json"
    ape = json.loads(build.read_text())["contractTypes"]
    types = Compiler(ROOT).bytecode(["contracts/mocks/MockERC20.sol"])
    assert strip_metadata(types["MockERC20"]["runtime"]) == strip_metadata(ape["MockERC20"]["runtimeBytecode"]["bytecode"])
    assert strip_metadata(types["MockERC20"]["deployment"]) == \
        strip_metadata(ape["MockERC20"]["deploymentBytecode"]["bytecode"])


def _m(file, op, i):
    return Mutant(file, i, i + 1, "<", "<=", op, i, "C.f", "")


def test_sample_is_stratified_and_reproducible():
    pool = [_m(f, op, i) for f in ("A.sol", "B.sol") for op, n in (("arith", 30), ("logic", 3)) for i in range(n)]
    s = sample(pool, 10, seed=7)
    assert len(s) == 10 and len(set(s)) == 10
    assert sample(pool, 10, seed=7) == s and sample(pool, 10, seed=8) != s
    strata = Counter((m.file, m.operator) for m in s)
    assert set(strata) == {("A.sol", "arith"), ("A.sol", "logic"), ("B.sol", "arith"), ("B.sol", "logic")}
    assert strata[("A.sol", "arith")] >= 3 and strata[("A.sol", "logic")] <= 2  # proportional beyond one each
    assert sorted(sample(pool, None, 1), key=lambda m: (m.file, m.operator, m.start)) == \
        sorted(pool, key=lambda m: (m.file, m.operator, m.start))


def test_report_score_tables_and_markers(tmp_path):
    src = "contract C {\n    function f(uint a) external { if (a < 3) revert(); }\n}\n"
    m = Mutant("contracts/C.sol", src.index("<"), src.index("<") + 1, "<", "<=", "cmp-boundary", 2, "C.f", "`<` -> `<=`")
    results = [Result(m, "survived", "unit", seconds={"compile": 3, "fast": 10, "unit": 20}),
               Result(_m("contracts/C.sol", "arith", 5), "killed", "fast", "tests/x.py::t", seconds={"compile": 3, "fast": 2}),
               Result(_m("contracts/C.sol", "arith", 6), "killed", "fast", "tests/x.py::t", seconds={"compile": 3, "fast": 2}),
               Result(_m("contracts/C.sol", "logic", 7), "stillborn", "compile", detail="TypeError")]
    text = report.render(results, {"generated": 40, "generated_by_operator": {"arith": 30, "logic": 4,
                                                                            "cmp-boundary": 6}}, {"contracts/C.sol": src})
    assert "**Mutation score: 66.7 %**" in text and "(killed / (killed + survived) = 2 / 3)" in text
    assert "- if (a < 3) revert(); }" in text.replace("function f(uint a) external { ", "")
    assert "`tests/x.py::t` | 2 |" in text
    doc = tmp_path / "mutation.md"
    doc.write_text(f"# Title\n\nintro\n\n{report.BEGIN}\nold\n{report.END}\n\n## Analysis\nkept\n")
    report.write(doc, text)
    out = doc.read_text()
    assert out.startswith("# Title\n\nintro\n\n") and out.endswith("\n\n## Analysis\nkept\n")
    assert "old" not in out and out.count(report.BEGIN) == 1
    fresh = tmp_path / "new.md"
    report.write(fresh, text)
    assert fresh.read_text().startswith("# Mutation testing\n\n" + report.BEGIN)


def test_pytest_outcomes_and_ape_source_text(tmp_path):
    xml = tmp_path / "j.xml"
    xml.write_text('<testsuites><testsuite><testcase classname="tests.fast.test_a" name="test_ok"/>'
                   '<testcase classname="tests.fast.test_a" name="test_bad[x]"><failure message="AssertionError: 1 != 2'
                   '&#10;more">trace</failure></testcase>'
                   '<testcase classname="tests.test_b" name="test_setup"><error message="failed on setup">t</error>'
                   '</testcase></testsuite></testsuites>')
    assert _junit_failures(xml) == ["tests/fast/test_a.py::test_bad[x] -- AssertionError: 1 != 2",
                                    "tests/test_b.py::test_setup -- failed on setup"]
    assert _junit_failures(tmp_path / "missing.xml") == []
    assert _ape_content("a\nb  \n\n") == "a\nb\n" and _ape_content("") == ""


# ---------------------------------------------------------------------------- end to end, on T.sol

PROBE = '''"""The tiny project's only test: T deployed on pyrevm from the manifest the mutation tool patched."""
import json
import os

from eth_abi import decode, encode
from eth_utils import keccak
from pyrevm import EVM, AccountInfo

OWNER = "0x" + "11" * 20


def test_f_at_the_limit():
    ct = json.load(open(os.environ["VPERP_BUILD"]))["contractTypes"]["T"]
    evm = EVM(spec_id="Cancun")
    evm.insert_account_info(OWNER, AccountInfo(balance=10**18))
    t = evm.deploy(OWNER, bytes.fromhex(ct["deploymentBytecode"]["bytecode"][2:]), gas=10_000_000)
    data = keccak(text="f(uint256,uint256)")[:4] + encode(["uint256", "uint256"], [16, 4])
    out = evm.message_call(OWNER, t, data, gas=1_000_000)  # a revert raises, failing the test
    assert decode(["uint256"], bytes(out))[0] == 16 * 4 // 3
'''


def _tree_digest(*paths: Path) -> dict[str, tuple[str, int]]:
    """File -> (sha1, mtime_ns) of every file under `paths`."""
    import hashlib

    out = {}
    for p in paths:
        for f in sorted([p] if p.is_file() else p.rglob("*")):
            if f.is_file():
                out[str(f)] = (hashlib.sha1(f.read_bytes()).hexdigest(), f.stat().st_mtime_ns)
    return out


_MANIFESTS: dict = {}


def _fake_manifest(compiler) -> str:
    """What `Workspace.ape_compile` leaves (the parts the runner reads), without running Ape."""
    if SOURCE not in _MANIFESTS:
        _MANIFESTS[SOURCE] = compiler.bytecode(["contracts/T.sol"])
    types = _MANIFESTS[SOURCE]
    return json.dumps({
        "contractTypes": {n: {"abi": t["abi"], "sourceId": t["unit"],
                              "deploymentBytecode": {"bytecode": "0x" + t["deployment"]},
                              "runtimeBytecode": {"bytecode": "0x" + t["runtime"]}} for n, t in types.items()},
        "sources": {"contracts/T.sol": {"content": _ape_content(SOURCE)}}})


def test_a_killable_mutant_is_killed_and_the_project_is_never_written(project, compiler, mutants, tmp_path):
    from devtools.mutation.runner import Stage, evaluate, snapshot

    (project / "tests").mkdir(exist_ok=True)
    (project / "tests" / "test_probe.py").write_text(PROBE)
    (project / ".build").mkdir(exist_ok=True)
    (project / ".build" / "__local__.json").write_text(_fake_manifest(compiler))
    before = _tree_digest(project / "contracts", project / ".build", project / "tests")

    snapshot(project, tmp_path / "snap")
    ws = Workspace(tmp_path / "snap", tmp_path / "ws")
    ws.build.parent.mkdir(exist_ok=True)
    ws.manifest_text = _fake_manifest(ws.compiler)
    ws.baseline = {n: (strip_metadata(t["deploymentBytecode"]["bytecode"]), strip_metadata(t["runtimeBytecode"]["bytecode"]))
                   for n, t in json.loads(ws.manifest_text)["contractTypes"].items()}
    ws.build.write_text(ws.manifest_text)
    # no Ape, no hypothesis: a bare pytest (the real stages run with every plugin)
    stage = Stage("probe", ("tests/test_probe.py",), {"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}, timeout=120)

    assert ws.pytest(stage).outcome == "passed"  # the unmutated build passes
    boundary = next(m for m in mutants if m.operator == "cmp-boundary" and m.original == ">")  # a > LIMIT
    killed = evaluate(ws, boundary, [stage])
    assert (killed.status, killed.stage) == ("killed", "probe"), killed
    assert killed.killer.startswith("tests/test_probe.py::test_f_at_the_limit")
    unused = next(m for m in mutants if m.operator == "rounding" and m.original == "mulDivUp")  # flag is false
    survived = evaluate(ws, unused, [stage])
    assert survived.status == "survived" and survived.seconds["probe"] > 0, survived
    noop = next(m for m in mutants if m.operator == "drop-modifier" and m.original == "noop")
    assert evaluate(ws, noop, [stage]).status == "equivalent"  # decided without running a test

    # the workspace is back to the unmutated state; the project itself was never touched
    assert (ws.path / "contracts" / "T.sol").read_text() == SOURCE
    assert ws.build.read_text() == ws.manifest_text
    assert _tree_digest(project / "contracts", project / ".build", project / "tests") == before
    shutil.rmtree(project / "tests")
    shutil.rmtree(project / ".build")


def test_installing_a_mutant_of_the_repository_writes_only_the_workspace(tmp_path):
    """On the real project: a snapshot, then a mutant's source and code installed and restored in a
    workspace; the repository's contracts/ and .build/ are byte for byte and mtime for mtime unchanged."""
    from devtools.mutation.runner import snapshot

    guarded = (ROOT / "contracts", ROOT / ".build" / "__local__.json")
    before = _tree_digest(*guarded)
    snapshot(ROOT, tmp_path / "snap")
    shutil.copytree(ROOT / ".build", tmp_path / "snap" / ".build", ignore=shutil.ignore_patterns("*.lock"))
    ws = Workspace(tmp_path / "snap", tmp_path / "ws")
    ws.manifest_text = ws.build.read_text()
    source = ws.compiler.text("contracts/Vault.sol")
    ast = ws.compiler.asts(["contracts/Vault.sol"])["contracts/Vault.sol"]
    m = next(x for x in generate("contracts/Vault.sol", source, ast) if x.operator == "drop-revert")
    ws.install(m, {"Vault": {"deployment": "00", "runtime": "00"}})
    assert (ws.path / m.file).read_text() == m.apply(source)
    manifest = json.loads(ws.build.read_text())
    assert manifest["contractTypes"]["Vault"]["runtimeBytecode"]["bytecode"] == "0x00"
    assert manifest["sources"]["contracts/Vault.sol"]["content"] == _ape_content(m.apply(source))
    ws.restore(m)
    assert (ws.path / m.file).read_text() == source and ws.build.read_text() == ws.manifest_text
    assert _tree_digest(*guarded) == before


def test_cli_lists_a_sample_without_touching_the_project(tmp_path, capsys):
    from devtools.mutation.cli import main

    before = _tree_digest(ROOT / "contracts", ROOT / ".build" / "__local__.json")
    assert main(["--list", "--file", "OracleLib", "--sample", "5", "--out-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "over 1 files; 5 selected" in out[0]
    assert len(out) == 6 and all(" contracts/libraries/OracleLib.sol:" in ln for ln in out[1:])
    assert _tree_digest(ROOT / "contracts", ROOT / ".build" / "__local__.json") == before


def test_score_counts_only_killed_and_survived():
    assert report.score(Counter()) == "-"
    assert report.score(Counter(equivalent=5, stillborn=3, timeout=1, error=2)) == "-"
    assert report.score(Counter(killed=9, survived=1, equivalent=4, stillborn=7)) == "90.0 %"
    assert report.score(Counter(killed=2, survived=1)) == "66.7 %"
    m = lambda f, op, i: Mutant(f, i, i + 1, "<", "<=", op, i, "C.f", "")  # noqa: E731
    results = [Result(m("contracts/A.sol", "arith", 1), "killed"), Result(m("contracts/A.sol", "arith", 2), "survived"),
               Result(m("contracts/B.sol", "arith", 3), "killed"), Result(m("contracts/B.sol", "logic", 4), "equivalent"),
               Result(m("contracts/B.sol", "logic", 5), "timeout")]
    text = report.render(results, {"generated": 10, "generated_by_operator": {"arith": 6, "logic": 4},
                                   "generated_by_contract": {"A": 5, "B": 5}}, {})
    #        | key | generated | ran | killed | survived | timeout | stillborn | equivalent | error | score |
    assert "| arith | 6 | 3 | 2 | 1 | 0 | 0 | 0 | 0 | 66.7 % |" in text
    assert "| logic | 4 | 2 | 0 | 0 | 1 | 0 | 1 | 0 | - |" in text
    assert "| A | 5 | 2 | 1 | 1 | 0 | 0 | 0 | 0 | 50.0 % |" in text
    assert "| B | 5 | 3 | 1 | 0 | 1 | 0 | 1 | 0 | 100.0 % |" in text
    assert text.count("| **all** | 10 | 5 | 2 | 1 | 1 | 0 | 1 | 0 | **66.7 %** |") == 2
    assert "**Mutation score: 66.7 %** (killed / (killed + survived) = 2 / 3)" in text
