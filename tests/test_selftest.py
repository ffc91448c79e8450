"""Self-validation of the load-limit and fault-recovery suites: every deliberately broken controller of
``tests/broken_controllers.py`` is caught by the suite tests expected to catch it (the reference controllers
pass the same suites: they are the suites' own parametrisation, run by CI). ``hil selftest`` without
``--quick`` runs every defect through every suite test."""

from __future__ import annotations

from pathlib import Path

import pytest

from hil.site import selftest

CATALOGUE = Path(__file__).with_name("broken_controllers.py")


def test_node_names_drop_the_defect_and_match_catchers() -> None:
    name = "load_limit/test_load_limit.py::test_site_stays_inside_the_limit[limit_step_down-SlowToReduce]"
    bare = selftest._without(name, "SlowToReduce")
    assert bare == "load_limit/test_load_limit.py::test_site_stays_inside_the_limit[limit_step_down]"
    assert selftest._matches(bare, "load_limit/test_load_limit.py::test_site_stays_inside_the_limit[limit_step_down]")
    assert selftest._matches(bare, "load_limit/test_load_limit.py::test_site_stays_inside_the_limit")
    assert not selftest._matches(bare, "load_limit/test_load_limit.py::test_site_stays_inside_the_limit[unmanaged_load_step]")
    f6 = "fault_recovery/test_faults.py::test_f6_phase_misdeclaration"
    assert not selftest._matches(f"{f6}[1ph-declared-3ph]", f"{f6}[3ph-declared-1ph]")
    assert selftest._without("fault_recovery/test_faults.py::test_f1[X]", "X") == "fault_recovery/test_faults.py::test_f1"


def test_a_catalogue_without_its_tables_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "cat.py"
    bad.write_text("CATALOGUE = {'a': None}\n")
    with pytest.raises(ValueError, match="CAUGHT_BY"):
        selftest.load_catalogue(bad)
    bad.write_text("CATALOGUE = {'a': None}\nCAUGHT_BY = {'b': ()}\n")
    with pytest.raises(ValueError, match="not in CATALOGUE: b"):
        selftest.load_catalogue(bad)


def test_every_catalogued_defect_is_caught(tmp_path: Path) -> None:
    results = selftest.run(CATALOGUE, tmp_path / "run", quick=True, workers=1)  # beside CI's own workers
    catalogue, _ = selftest.load_catalogue(CATALOGUE)
    assert {s.defect for s in results} == set(catalogue)
    rows = "\n".join(" | ".join(row) for row in selftest.table_rows(results))
    assert all(s.caught for s in results), f"defects not caught as expected:\n{rows}"
    assert not [e for s in results for e in s.errors], rows
    assert all(s.detection_s >= 0.0 for s in results if s.detection_s is not None), rows
    assert sum(s.detection_s is not None for s in results) >= len(results) // 2, rows  # compliance failures say when
