"""Slither over contracts/ against security/slither-triage.yaml (the same check as `./run.sh slither`).

Runs offline: the contracts go to the WebAssembly compiler shim (tools/solcx) as one standard-JSON
input with ape-config.yaml's settings; Slither is an installed package (pyproject.toml). One Slither
run (about 30 s on a 2-core machine) is shared by the tests below.
"""

import shutil

import pytest

from devtools import slither_check as sc


@pytest.fixture(scope="module")
def report():
    if shutil.which("node") is None:
        pytest.fail("node is required to run the WebAssembly compiler shim")
    return sc.check()


def test_every_slither_finding_is_triaged(report):
    """A new finding must be fixed or listed in security/slither-triage.yaml with a reason."""
    assert report.found, "Slither reported nothing: the analysis did not run on the contracts"
    untriaged = report.untriaged
    assert not untriaged, "untriaged Slither findings (fix them or triage them):\n" + "\n".join(
        f"{f.id} [{f.impact}/{f.confidence}]\n    " + "\n    ".join(f.descriptions) for f in untriaged
    )


def test_no_open_issue_is_reported(report):
    """Findings triaged as real issues fail until the contract is fixed."""
    issues = report.open_issues
    assert not issues, "open issues:\n" + "\n".join(
        f"{f.id}: {report.triage[f.id]['reason']}" for f in issues
    )


def test_every_source_file_is_analysed(report):
    """Each non-mock source is compiled into the analysis (imports alone would miss a new file)."""
    files = sc.source_files()
    assert files and not any(f.startswith("contracts/mocks/") for f in files)
    assert {"contracts/Vault.sol", "contracts/ClearingHouse.sol", "contracts/LiquidationEngine.sol",
            "contracts/LiquidityPool.sol", "contracts/AmmController.sol"} <= set(files)


def test_compiler_input_matches_ape_config():
    """Slither sees the contracts with the settings Ape compiles them with."""
    cfg = sc.compiler_settings()
    settings = sc.standard_json_input()["settings"]
    assert settings["viaIR"] is cfg["via_ir"]
    assert settings["optimizer"] == {"enabled": cfg["optimize"], "runs": cfg["runs"]}
    assert settings.get("evmVersion") == cfg["evm_version"]
    assert sc.solc_shim().name == f"solc-v{cfg['version']}"


def test_triage_file_is_well_formed():
    """Every entry has a known verdict and a reason, and ids are unique (load_triage raises otherwise)."""
    entries = sc.load_triage()
    assert entries
    for fid, e in entries.items():
        assert ":" in fid, fid
        assert e["verdict"] in sc.VERDICTS


def test_finding_ids_carry_no_line_numbers():
    node = {
        "type": "node",
        "name": "x = 1",
        "source_mapping": {"filename_relative": "contracts/A.sol", "lines": [12]},
        "type_specific_fields": {
            "parent": {
                "type": "function",
                "name": "f",
                "type_specific_fields": {"parent": {"type": "contract", "name": "A"}},
            }
        },
    }
    local = {
        "type": "variable",
        "name": "v",
        "type_specific_fields": {"parent": node["type_specific_fields"]["parent"]},
    }
    assert sc.finding_id({"check": "timestamp", "elements": [node]}) == "timestamp:A.f"
    assert sc.finding_id({"check": "uninitialized-local", "elements": [local]}) == "uninitialized-local:A.f.v"
