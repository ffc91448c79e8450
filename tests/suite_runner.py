"""Run suites in a child pytest (OCTT cases against a seeded-defect class, or a product out of process) and
read the outcomes back; free ports for the products such runs start."""

from __future__ import annotations

import socket
import xml.etree.ElementTree as ET
from pathlib import Path

from hil.ocpp import selftest
from hil.ocpp.precheck import testcase_outcome

ROOT = Path(__file__).resolve().parent.parent


def run_cases(suite: str, option: str, target: str, cases: set[str], tmp_path: Path) -> dict[str, tuple[str, str]]:
    """Run ``cases`` of ``suites/<suite>`` with ``option target`` (e.g. ``--cp-emulator mod:Class``, the class
    importable from ``tests/``); returns case -> (outcome, failure message)."""
    try:
        found = selftest.run_cases(suite, option, target, cases, tmp_path / f"{target.replace(':', '-')}.xml",
                                   pythonpath=ROOT / "tests")
    except RuntimeError as exc:
        raise AssertionError(str(exc)) from None
    return {case: (o.outcome, o.message) for case, o in found.items()}


def junit_outcomes(path: Path) -> dict[str, tuple[str, str]]:
    """Test name (with its parameters) -> (passed | failed | error | skipped, message) from a JUnit XML report;
    an expected failure shows as skipped with its reason."""
    return {case.get("name", ""): testcase_outcome(case) for case in ET.parse(path).iter("testcase")}


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
