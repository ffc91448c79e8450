"""Certification pre-check: run the OCTT cases a declaration makes applicable and report per profile.

``run`` selects the applicable cases that a suite automates, runs them in a child pytest against the rig
(JUnit XML under the run folder), reads the outcomes back and builds the ``PrecheckReport``: applicable,
passed, failed and not automated per profile, the latter with the reason from the suite's
``not_automated.yaml``.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import yaml

from hil.ocpp import catalogue
from hil.ocpp.catalogue import Declaration, PrecheckReport

SUITES = Path(__file__).resolve().parents[2] / "suites"
SUITE_OF = {("1.6", "CS"): "ocpp16", ("1.6", "CSMS"): "ocpp16_csms", ("2.0.1", "CS"): "ocpp201"}
"""(version, SUT) -> the suite folder that automates those cases."""


def suite_folder(declaration: Declaration) -> Path:
    """The suite for the declared version and SUT; ``LookupError`` when evhil has none yet."""
    name = SUITE_OF.get((declaration.ocpp_version, declaration.sut))
    if name is None:
        raise LookupError(f"no suite automates OCPP {declaration.ocpp_version} cases with the {declaration.sut} "
                          f"under test yet (available: {', '.join(f'{v} {s}' for v, s in SUITE_OF)})")
    return SUITES / name


def automated(folder: Path) -> set[str]:
    """Case ids of the tests decorated ``@octt("...")`` in ``folder`` (read from the source, not imported)."""
    found: set[str] = set()
    for path in sorted(folder.glob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.AsyncFunctionDef | ast.FunctionDef):
                for dec in node.decorator_list:
                    if isinstance(dec, ast.Call) and getattr(dec.func, "id", None) == "octt" and dec.args:
                        found.add(str(getattr(dec.args[0], "value", "")))
    return found


def not_automated(folder: Path) -> dict[str, str]:
    """The cases a suite lists as not automated, with the reason (``not_automated.yaml``)."""
    path = folder / "not_automated.yaml"
    if not path.exists():
        return {}
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return {str(k): str(v) for k, v in data.items()}


@dataclass(frozen=True)
class CaseOutcome:
    """How a case ended in a pytest run."""

    outcome: str
    """``passed``, ``failed``, ``error`` or ``skipped``."""
    message: str
    duration_s: float


def outcomes_from_junit(path: Path) -> dict[str, CaseOutcome]:
    """Case id -> outcome from a pytest JUnit XML report of OCTT cases (other tests are left out)."""
    found: dict[str, CaseOutcome] = {}
    for tc in ET.parse(path).iter("testcase"):
        try:
            case = catalogue.case_from_test_name(tc.get("name", "")).id
        except (ValueError, KeyError):
            continue
        found[case] = CaseOutcome(*testcase_outcome(tc), float(tc.get("time", "0") or 0.0))
    return found


def testcase_outcome(tc: ET.Element) -> tuple[str, str]:
    """``(passed | failed | error | skipped, message)`` of one JUnit ``testcase`` element."""
    for tag, name in (("failure", "failed"), ("error", "error"), ("skipped", "skipped")):
        element = tc.find(tag)
        if element is not None:
            return name, element.get("message", "")
    return "passed", ""


def run(declaration: Declaration, rig: Path, out_dir: Path, extra: list[str] | None = None) -> PrecheckReport:
    """Run the applicable automated cases on ``rig``; JUnit XML goes to ``out_dir/precheck-junit.xml``."""
    folder = suite_folder(declaration)
    wanted = {a.case.id for a in catalogue.applicable(declaration) if a.requirement != "-"}
    selected = sorted(wanted & automated(folder))
    listed = not_automated(folder)
    outcomes: dict[str, str] = {}
    if selected:
        out_dir.mkdir(parents=True, exist_ok=True)
        junit = out_dir / "precheck-junit.xml"
        command = [sys.executable, "-m", "pytest", str(folder), "--rig", str(rig), "-p", "no:cacheprovider", "-q",
                   "-k", " or ".join(catalogue.pytest_name(c) for c in selected), f"--junitxml={junit}",
                   "-o", "junit_family=xunit2", *(extra or [])]
        subprocess.call(command, cwd=SUITES.parent)
        if junit.exists():
            outcomes = {cid: o.outcome for cid, o in outcomes_from_junit(junit).items()}
    missing = {cid: listed.get(cid, "no test in the suite yet") for cid in wanted if cid not in outcomes}
    return catalogue.precheck_report(declaration, outcomes, missing)
