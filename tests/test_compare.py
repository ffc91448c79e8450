"""`hil compare` end to end: the table, the JSON record, and one-line errors for bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def hil(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hil.cli", *args], capture_output=True, text=True, timeout=300)


def test_compare_writes_table_and_json(tmp_path: Path) -> None:
    out = tmp_path / "cmp.json"
    result = hil("compare", "--scenario", "workplace-stress", "--ports", "12", "--controllers", "plain,parallel", "--json", str(out),
                 "--plots", str(tmp_path / "plots"))
    assert result.returncode == 0, result.stderr
    assert "plain (plain)" in result.stdout and "parallel (local)" in result.stdout
    record = json.loads(out.read_text())
    assert record["schema"] == 1 and [r["controller"] for r in record["runs"]] == ["plain", "parallel"]
    plain, parallel = record["runs"]
    assert not plain["compliance"]["passed"] and parallel["compliance"]["passed"]
    assert 0 < parallel["energy_pct"] <= 100
    for run in record["runs"]:
        assert len(run["plots"]) == 4  # site, ports, energy, charge
        for png in run["plots"]:
            assert Path(png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_unknown_controller_and_scenario_exit_2() -> None:
    bad = hil("compare", "--controllers", "plain,psychic")
    assert bad.returncode == 2 and "unknown controller(s) psychic" in bad.stderr
    missing = hil("compare", "--scenario", "mars")
    assert missing.returncode == 2 and "unknown scenario 'mars'" in missing.stderr


def test_recommend_picks_a_compliant_architecture(tmp_path: Path) -> None:
    out = tmp_path / "rec.json"
    result = hil("recommend", "--use", "depot", "--sessions", "6", "--capacity", "0.3", "--json", str(out))
    assert result.returncode == 0, result.stderr
    record = json.loads(out.read_text())
    assert record["architecture"] != "plain plug-in"
    chosen = next(r for r in record["runs"] if r["controller"] == record["controller"])
    assert chosen["compliance"]["passed"]
    assert "recommended:" in result.stdout and "fails the load-limit check" in result.stdout
