"""Run suites in a child pytest (OCTT cases against a seeded-defect class, or a product out of process) and
read the outcomes back; free ports for the products such runs start."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from hil.ocpp.catalogue import pytest_name
from hil.ocpp.precheck import outcomes_from_junit

ROOT = Path(__file__).resolve().parent.parent


def run_cases(suite: str, option: str, target: str, cases: set[str], tmp_path: Path) -> dict[str, tuple[str, str]]:
    """Run ``cases`` of ``suites/<suite>`` with ``option target`` (e.g. ``--cp-emulator mod:Class``);
    returns case -> (outcome, failure message)."""
    report = tmp_path / f"{target.replace(':', '-')}.xml"
    selection = " or ".join(sorted(pytest_name(c) for c in cases))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")]))
    try:
        subprocess.run(
            [sys.executable, "-m", "pytest", str(ROOT / "suites" / suite), "-q", "-p", "no:cacheprovider",
             option, target, "-k", selection, f"--junitxml={report}", "-o", "junit_family=xunit2",
             "-o", "faulthandler_timeout=90"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=240,
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        err = exc.stderr.decode() if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        raise AssertionError(f"{target}: child pytest hung:\n{out[-3000:]}\n{err[-6000:]}") from None
    if not report.exists():
        raise AssertionError(f"{target}: child pytest wrote no report")
    return outcomes_from_junit(report)


def check_caught(defect: str, expected: set[str], controls: set[str], outcomes: dict[str, tuple[str, str]]) -> None:
    """``expected`` all failed naming their step; ``controls`` not in ``expected`` all passed."""
    missing = (expected | controls) - set(outcomes)
    assert not missing, f"{defect}: cases not run: {sorted(missing)}"
    escaped = sorted(c for c in expected if outcomes[c][0] != "failed")
    assert not escaped, f"{defect} was not caught by {escaped}: {[outcomes[c] for c in escaped]}"
    for case in expected:
        assert "step" in outcomes[case][1], f"{defect}: {case} failed without naming the step: {outcomes[case][1]}"
    collateral = sorted(c for c in controls - expected if outcomes[c][0] != "passed")
    assert not collateral, f"{defect} also failed unrelated cases {collateral}: {[outcomes[c] for c in collateral]}"


def junit_outcomes(path: Path) -> dict[str, tuple[str, str]]:
    """Test name (with its parameters) -> (passed | failed | error | skipped, message) from a JUnit XML report;
    an expected failure shows as skipped with its reason."""
    outcomes: dict[str, tuple[str, str]] = {}
    for case in ET.parse(path).iter("testcase"):
        outcome, message = "passed", ""
        for tag, name in (("failure", "failed"), ("error", "error"), ("skipped", "skipped")):
            element = case.find(tag)
            if element is not None:
                outcome, message = name, element.get("message", "")
                break
        outcomes[case.get("name", "")] = (outcome, message)
    return outcomes


def free_ports(count: int) -> list[int]:
    """``count`` TCP ports free on 127.0.0.1 now (for a product a test starts on fixed ports)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()
