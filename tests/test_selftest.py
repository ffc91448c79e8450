"""Self-validation of the suites (``hil selftest``): every seeded defect of the catalogues in ``tests/`` (site
controllers, OCPP 1.6 charge points, 2.0.1 charging stations, Central Systems) is caught by the tests expected
to catch it, and every legal variant passes. CI runs the quick selftest (each defect through its expected
tests only); ``hil selftest`` without ``--quick`` runs the legal variants through the whole suites."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hil.ocpp import selftest as ocpp_selftest
from hil.sensitivity import Sensitivity, matches, table_rows, totals
from hil.site import selftest

TESTS = Path(__file__).parent


def test_node_names_drop_the_controller_and_match_catchers() -> None:
    name = "load_limit/test_load_limit.py::test_site_stays_inside_the_limit[limit_step_down-SlowToReduce]"
    bare = selftest._without(name, "SlowToReduce")
    assert bare == "load_limit/test_load_limit.py::test_site_stays_inside_the_limit[limit_step_down]"
    assert matches(bare, "load_limit/test_load_limit.py::test_site_stays_inside_the_limit[limit_step_down]")
    assert matches(bare, "load_limit/test_load_limit.py::test_site_stays_inside_the_limit")
    assert not matches(bare, "load_limit/test_load_limit.py::test_site_stays_inside_the_limit[unmanaged_load_step]")
    f2 = "fault_recovery/test_faults.py::test_f2_site_meter_stale_or_gone"
    assert selftest._without(f"{f2}[stale-10s-X]", "X") == f"{f2}[stale-10s]"
    assert not matches(f"{f2}[stale-10s]", f"{f2}[gone-2min]")
    assert matches("TC_001_CS", "TC_001_CS") and not matches("TC_001_CS", "TC_002_CS")


def test_a_catalogue_without_its_tables_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "cat.py"
    bad.write_text("CATALOGUE = {'a': None}\n")
    with pytest.raises(ValueError, match="CAUGHT_BY"):
        selftest.load_catalogue(bad)
    bad.write_text("CATALOGUE = {'a': None}\nCAUGHT_BY = {'b': ()}\n")
    with pytest.raises(ValueError, match="not in CATALOGUE: b"):
        selftest.load_catalogue(bad)
    (tmp_path / "charge_point_defects.py").write_text("DEFECTS = ['NoStationStatus']\n")
    with pytest.raises(ValueError, match="needs the dict DEFECTS"):
        ocpp_selftest.catalogues(tmp_path, ocpp_selftest.FAMILIES["ocpp16"])


def test_rows_judge_defects_and_legal_variants() -> None:
    caught = Sensitivity("site controller", "A", ("f.py::t[x]",), failed=["f.py::t[x]", "f.py::u"], detection_s=3.0)
    missed = Sensitivity("site controller", "B", ("f.py::t[x]",), failed=["f.py::t[y]"])
    legal = Sensitivity("OCPP 1.6 charge point", "C", legal=True, passed=["TC_001_CS"], failed=["TC_002_CS"])
    assert caught.ok and not missed.ok and missed.missing == ["f.py::t[x]"] and not legal.ok
    assert [r[4] for r in table_rows([caught, missed, legal])] == ["caught", "MISSED: t[x]", "FALSE FAILURE: TC_002_CS"]
    assert table_rows([caught])[0][2:4] == ("t[x], u", "3.0 s")
    counts = totals([caught, missed, legal])
    assert (counts["defects"], counts["caught"], counts["legal variants"], counts["false failures"]) == (2, 1, 1, 1)
    assert counts["site controller: defects"] == 2


def test_quick_selftest_catches_every_defect_and_fails_no_legal_variant(tmp_path: Path) -> None:
    """The whole catalogue, quick: the output is the table and its totals, no test output or traceback."""
    table = tmp_path / "selftest.json"
    done = subprocess.run([sys.executable, "-m", "hil.cli", "selftest", "--quick", "--workers", "3",
                           f"--reports={tmp_path / 'reports'}", f"--json={table}"],
                          capture_output=True, text=True, timeout=1500)
    assert "Traceback" not in done.stdout + done.stderr, done.stdout[-4000:] + done.stderr[-4000:]
    result = json.loads(table.read_text())
    bad = [r for r in result["rows"] if not r["ok"]]
    assert done.returncode == 0 and not bad, json.dumps(bad, indent=1)[:6000]
    counts = result["totals"]
    assert counts["site controller: defects"] >= 30 and counts["site controller: legal variants"] >= 6
    ocpp_defects = sum(counts[f"{f.name}: defects"] for f in ocpp_selftest.FAMILIES.values())
    ocpp_legal = sum(counts[f"{f.name}: legal variants"] for f in ocpp_selftest.FAMILIES.values())
    assert ocpp_defects >= 40 and ocpp_legal >= 3, counts
    assert "of" in done.stdout and "defects caught" in done.stdout
