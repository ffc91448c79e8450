"""`hil precheck`: applicable cases run against the rig, per-profile counts, exit status by mandatory
failures, and a clear error for a bad declaration."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def precheck(tmp_path: Path, declaration: str, *extra: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "declaration.yaml"
    path.write_text(declaration)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, "-m", "hil.cli", "precheck", "--declare", str(path), "--json",
                           str(tmp_path / "report.json"), "--reports", str(tmp_path / "reports"), *extra],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_precheck_passes_the_reference_charge_point(tmp_path: Path) -> None:
    run = precheck(tmp_path, 'product: ref\nocpp_version: "1.6"\nprofiles: [Remote Trigger]\n')
    assert run.returncode == 0, run.stdout + run.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["schema"] == "evhil.precheck/1" and report["ok"] is True
    assert "RESULT: OK" in run.stdout and "Remote Trigger" in run.stdout


def test_a_failing_mandatory_case_fails_the_precheck(tmp_path: Path) -> None:
    run = precheck(tmp_path, 'product: stale list\nocpp_version: "1.6"\nprofiles: [Local Auth List Management]\n',
                   "--pytest-arg=--cp-emulator=charge_point_defects:AcceptsStaleLocalList")
    assert run.returncode == 1, run.stdout + run.stderr
    assert "TC_043_2_CS" in run.stdout and "RESULT: FAILED" in run.stdout
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["ok"] is False and report["mandatory_failed"] == ["TC_043_2_CS"]


def test_a_bad_declaration_names_the_field(tmp_path: Path) -> None:
    run = precheck(tmp_path, 'product: x\nocpp_version: "1.6"\nprofiles: [Core, Teleportation]\n')
    assert run.returncode == 2
    assert "profiles" in run.stderr and "Teleportation" in run.stderr and "Traceback" not in run.stderr
