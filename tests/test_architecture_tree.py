"""docs/architecture.md's tree names every file that matters, so a new file cannot go unmapped.

Checked, with plain file reads (no chain, well under a second): every tracked file (`git ls-files`; without git,
the files on disk) under contracts/, vperp/, devtools/, scripts/ and tests/, and every page docs/**/*.md, is named
in the tree (the part of architecture.md between "## The tree" and "## Where is rule X"). Left out: `__init__.py`,
`conftest.py` (the tree groups them in one line), `__pycache__`, and data files (JSON, YAML, CSV, text, images).

A file is named when its repository path appears in the tree as a word of its own, or when one entry of the tree
(a top-level bullet with its nested bullets and continuation lines, or a paragraph) names one of its folders, as `tests/helpers/` or as the
start of a path such as `contracts/periphery/PerpReader.sol`, and names the file by its path below that folder
(`fast_harness.py`, `plain/economics.md`); the folder may also be named in the entry's `###` heading. A test module
may be named without `.py` (`test_funding_gaps`), as the tree lists them.
"""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "architecture.md"
FOLDERS = ("contracts", "vperp", "devtools", "scripts", "tests")
SKIP_NAMES = {"__init__.py", "conftest.py"}
DATA_SUFFIXES = {".json", ".yaml", ".yml", ".csv", ".txt", ".png", ".svg", ".jpg"}


def _tracked() -> list[str]:
    """Repository-relative paths of the tracked files under FOLDERS and docs/ (the files on disk without git)."""
    try:
        out = subprocess.run(["git", "ls-files", *FOLDERS, "docs"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.split()
        return [p for p in out if (ROOT / p).is_file()]  # a file deleted in the working tree is gone
    except (OSError, subprocess.CalledProcessError):
        return sorted(str(p.relative_to(ROOT)) for f in (*FOLDERS, "docs") for p in (ROOT / f).rglob("*")
                      if p.is_file())


def files_that_matter(paths: list[str]) -> list[str]:
    keep = []
    for p in paths:
        parts = p.split("/")
        if parts[-1] in SKIP_NAMES or "__pycache__" in parts:
            continue
        if parts[0] == "docs":
            if p.endswith(".md"):
                keep.append(p)
        elif Path(p).suffix not in DATA_SUFFIXES:
            keep.append(p)
    return keep


def tree_section(text: str) -> str:
    assert "## The tree" in text and "## Where is rule X" in text, "architecture.md lost its two sections"
    return text.split("## The tree", 1)[1].split("## Where is rule X", 1)[0]


def entries(tree: str) -> list[tuple[str, str]]:
    """(heading, entry) pairs: an entry is a top-level bullet with its nested bullets and continuation lines, or a
    paragraph."""
    out: list[tuple[str, str]] = []
    heading, cur = "", []
    for line in tree.splitlines():
        if line.startswith("###"):
            if cur:
                out.append((heading, "\n".join(cur)))
            heading, cur = line, []
        elif line.startswith("- ") or not line.strip():
            if cur:
                out.append((heading, "\n".join(cur)))
            cur = [line] if line.strip() else []
        else:
            cur.append(line)
    if cur:
        out.append((heading, "\n".join(cur)))
    return out


def _word(name: str) -> re.Pattern:
    return re.compile(r"(?<![\w/.])" + re.escape(name) + r"(?![\w/])")


def is_named(path: str, tree: str, tree_entries: list[tuple[str, str]]) -> bool:
    if _word(path).search(tree):
        return True
    parts = path.split("/")
    for i in range(1, len(parts)):
        folder, below = "/".join(parts[:i]) + "/", "/".join(parts[i:])
        names = [below]
        if "/" not in below and below.startswith("test_") and below.endswith(".py"):
            names.append(below[:-3])
        folder_re = re.compile(r"(?<![\w/.])" + re.escape(folder))
        for heading, body in tree_entries:
            if folder_re.search(heading + "\n" + body) and any(_word(n).search(body) for n in names):
                return True
    return False


def unnamed(paths: list[str], text: str) -> list[str]:
    tree = tree_section(text)
    tree_entries = entries(tree)
    return [p for p in files_that_matter(paths) if not is_named(p, tree, tree_entries)]


def test_every_file_that_matters_is_named_in_the_tree():
    paths = _tracked()
    assert any(p.startswith("contracts/") for p in paths) and any(p.startswith("tests/") for p in paths)
    missing = unnamed(paths, DOC.read_text())
    assert not missing, ("docs/architecture.md's tree (before \"## Where is rule X\") names no entry for:\n  "
                         + "\n  ".join(missing) + "\nAdd one line each (what the file is for, from its header).")


def test_the_check_finds_a_file_the_tree_does_not_name():
    """The rule bites: with one entry of each kind taken out of the page, exactly those files are reported."""
    text = DOC.read_text()
    paths = ["tests/helpers/fast_harness.py", "tests/governance/test_peg_guard.py",
             "vperp/dashboard_static/index.html", "docs/orders.md", "contracts/mocks/BatchCaller.sol"]
    assert unnamed(paths, text) == []
    cut = [line for line in text.splitlines(keepends=True) if not re.match(
        r"\s*- (`fast_harness\.py`|`test_peg_guard`|`vperp/dashboard_static/index\.html`|\[orders\.md\])", line)]
    assert unnamed(paths, "".join(cut)) == paths[:4]
    # A file in a folder the tree names, but not the file itself; and a name in another folder's entry.
    assert unnamed(["tests/helpers/not_listed.py", "tests/sdk/test_breakers.py"], text) == [
        "tests/helpers/not_listed.py", "tests/sdk/test_breakers.py"]
