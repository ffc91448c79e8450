"""The OCPP 1.6 suites catch every seeded charge point defect, and only in the cases that should.

For each defect of ``charge_point_defects`` the suites run in a child pytest against that emulator: the
cases listed for it must fail with a message naming the OCTT step, and three unrelated control cases must
still pass (the reference emulator passing everything is the suites' own CI run).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from charge_point_defects import DEFECTS
from hil.ocpp.catalogue import pytest_name
from hil.ocpp.precheck import outcomes_from_junit

ROOT = Path(__file__).resolve().parent.parent
CONTROLS = {"TC_003_CS", "TC_012_CS", "TC_019_CS"}


def run_cases(defect: str, cases: set[str], tmp_path: Path) -> dict[str, tuple[str, str]]:
    """Run ``cases`` of suites/ocpp16 against the defect; returns case -> (outcome, failure message)."""
    report = tmp_path / f"{defect}.xml"
    selection = " or ".join(sorted(pytest_name(c) for c in cases))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")]))
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", str(ROOT / "suites" / "ocpp16"), "-q", "-p", "no:cacheprovider",
             "--cp-emulator", f"charge_point_defects:{defect}", "-k", selection, f"--junitxml={report}",
             "-o", "junit_family=xunit2", "-o", "faulthandler_timeout=90"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=240,
        )
    except subprocess.TimeoutExpired as exc:
        out = (exc.stdout or b"").decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        err = (exc.stderr or b"").decode() if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        raise AssertionError(f"{defect}: child pytest hung:\n{out[-3000:]}\n{err[-6000:]}") from None
    if not report.exists():
        raise AssertionError(f"child pytest wrote no report (exit {proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return outcomes_from_junit(report)


@pytest.mark.parametrize("defect", sorted(DEFECTS))
def test_defect_is_caught_by_exactly_its_cases(defect: str, tmp_path: Path) -> None:
    expected = DEFECTS[defect]
    outcomes = run_cases(defect, expected | CONTROLS, tmp_path)
    missing = (expected | CONTROLS) - set(outcomes)
    assert not missing, f"{defect}: cases not run: {sorted(missing)}"
    escaped = sorted(c for c in expected if outcomes[c][0] != "failed")
    assert not escaped, f"{defect} was not caught by {escaped}: {[outcomes[c] for c in escaped]}"
    for case in expected:
        assert "step" in outcomes[case][1], f"{defect}: {case} failed without naming the step: {outcomes[case][1]}"
    collateral = sorted(c for c in CONTROLS - expected if outcomes[c][0] != "passed")
    assert not collateral, f"{defect} also failed unrelated cases {collateral}: {[outcomes[c] for c in collateral]}"
