"""Self-validation of the OCPP suites: each seeded defect of an OCPP device is caught by exactly the OCTT
cases expected to catch it, and each legal but unusual device passes.

A family is one suite and the device it judges: the 1.6 charge point (``--cp-emulator``), the 2.0.1
charging station (``--cs-emulator``) or the 1.6 Central System (``--csms-reference``). Its catalogues are
Python modules in one folder (the project's are in ``tests/``):

- the defects module: ``DEFECTS``, class name -> the case ids that must catch it; each class is the
  reference device with one wrong behaviour;
- the legal module: ``LEGAL``, class name -> the cases its unusualness touches most (``quick`` runs those,
  the full selftest the whole suite).

Each device runs in a child pytest (``run_cases``) with its expected cases (and, unless ``quick``, a few
unrelated control cases, which show a defect's collateral failures), the JUnit report read back per case. A
case that catches a defect must name the OCTT step it failed at.

Units: seconds.
"""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from hil.ocpp.catalogue import pytest_name
from hil.ocpp.precheck import CaseOutcome, outcomes_from_junit
from hil.sensitivity import Sensitivity
from hil.site.conditions import import_file

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Family:
    """One suite and the kind of device it judges, with its catalogues' module names."""

    name: str
    suite: str
    option: str
    """The pytest option that puts a device class in the loop."""
    defects: str
    legal: str
    controls: frozenset[str]
    """Cases unrelated to any defect, run with each (not ``quick``): a failure there is collateral."""


FAMILIES: dict[str, Family] = {
    "ocpp16": Family("OCPP 1.6 charge point", "ocpp16", "--cp-emulator", "charge_point_defects", "charge_point_variants",
                     frozenset({"TC_003_CS", "TC_012_CS", "TC_019_CS"})),
    "ocpp201": Family("OCPP 2.0.1 charging station", "ocpp201", "--cs-emulator", "charging_station_defects",
                      "charging_station_variants", frozenset({"TC_B_06_CS", "TC_E_30_CS", "TC_F_20_CS"})),
    "csms": Family("OCPP 1.6 Central System", "ocpp16_csms", "--csms-reference", "csms_defects", "csms_variants",
                   frozenset({"TC_003_CSMS", "TC_012_CSMS", "TC_064_CSMS"})),
}
"""The OCPP families by the name ``hil selftest --family`` takes."""


WHOLE_SUITE_WORKERS = 4
"""pytest-xdist workers of a legal device's run through its whole suite."""


def run_cases(suite: str, option: str, target: str, cases: set[str] | None, report: Path, *,
              pythonpath: Path | None = None, timeout_s: float = 240.0, workers: int = 1) -> dict[str, CaseOutcome]:
    """Run ``cases`` (``None``: all) of ``suites/<suite>`` in a child pytest with ``option target`` (e.g.
    ``--cp-emulator charge_point_defects:NoStationStatus``), ``pythonpath`` on the import path, ``workers``
    pytest-xdist workers (the cases mostly wait on the device: more than the cores is fine); the JUnit
    report goes to ``report``, pytest's output beside it (``.log``). Returns case id -> outcome;
    ``RuntimeError`` when the child hangs or leaves no report."""
    report.parent.mkdir(parents=True, exist_ok=True)
    selection = ["-k", " or ".join(sorted(pytest_name(c) for c in cases))] if cases else []
    env = dict(os.environ)
    if pythonpath is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(pythonpath), env.get("PYTHONPATH", "")])
    command = [sys.executable, "-m", "pytest", str(ROOT / "suites" / suite), "-q", "-p", "no:cacheprovider", option,
               target, *selection, f"--junitxml={report}", "-o", "junit_family=xunit2", "-o", "faulthandler_timeout=90",
               *(["-n", str(workers)] if workers > 1 else ["-p", "no:xdist"])]
    log = report.with_suffix(".log")
    with log.open("w") as out:
        try:
            subprocess.run(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"{target}: the child pytest ran past {timeout_s:g} s; its output is in {log}") from None
    if not report.exists():
        raise RuntimeError(f"{target}: the child pytest wrote no report; its output is in {log}")
    return outcomes_from_junit(report)


def catalogues(folder: Path, family: Family) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """``(DEFECTS, LEGAL)`` of a family from ``folder``; a module that is missing gives an empty dict,
    ``ValueError`` names a module without its table."""
    tables = []
    for module, table in ((family.defects, "DEFECTS"), (family.legal, "LEGAL")):
        path = folder / f"{module}.py"
        if not path.is_file():
            tables.append({})
            continue
        found = getattr(import_file(path), table, None)
        if not isinstance(found, dict):
            raise ValueError(f"{path}: a {family.name} catalogue needs the dict {table} (class name -> case ids)")
        tables.append({name: set(cases) for name, cases in found.items()})
    return tables[0], tables[1]


def run(folder: Path, run_dir: Path, *, families: list[str] | None = None, names: set[str] | None = None,
        quick: bool = False, workers: int = 2) -> list[Sensitivity]:
    """Run every defect and legal device of ``families`` (default all; ``names`` narrows them) found in the
    catalogue ``folder``, ``workers`` child pytests at a time, into ``run_dir``."""
    jobs: list[tuple[Family, str, bool, set[str]]] = []
    for key in families or list(FAMILIES):
        family = FAMILIES[key]
        defects, legal = catalogues(folder, family)
        jobs += [(family, name, False, cases) for name, cases in defects.items() if not names or name in names]
        jobs += [(family, name, True, cases) for name, cases in legal.items() if not names or name in names]

    # The legal devices' runs through whole suites take longest: they start first, the largest suite first.
    size = {"ocpp201": 0, "ocpp16": 1, "ocpp16_csms": 2}
    order = sorted(range(len(jobs)), key=lambda k: (not (jobs[k][2] and not quick), size.get(jobs[k][0].suite, 3), k))

    def one(job: tuple[Family, str, bool, set[str]]) -> Sensitivity:
        family, name, legal, cases = job
        module = family.legal if legal else family.defects
        selected = (cases if quick else None) if legal else (cases if quick else cases | family.controls)
        row = Sensitivity(family.name, name, () if legal else tuple(sorted(cases)), legal)
        try:
            found = run_cases(family.suite, family.option, f"{module}:{name}", selected,
                              run_dir / family.suite / f"{name}.xml", pythonpath=folder,
                              timeout_s=240.0 if selected else 900.0, workers=1 if selected else WHOLE_SUITE_WORKERS)
        except RuntimeError as exc:
            row.errors.append(str(exc))
            return row
        for case in sorted(set(selected or found) - set(found)):
            row.errors.append(f"{case}: not run")
        for case, o in sorted(found.items()):
            if o.outcome == "failed":
                row.failed.append(case)
                if case in cases and not legal and "step" not in o.message:
                    row.errors.append(f"{case} failed without naming the OCTT step: {o.message[:200]}")
                if case in cases and not legal:
                    row.detection_s = o.duration_s if row.detection_s is None else min(row.detection_s, o.duration_s)
            elif o.outcome == "error":
                row.errors.append(f"{case}: {o.message[:200]}")
            else:
                (row.passed if o.outcome == "passed" else row.skipped).append(case)
        return row

    with ThreadPoolExecutor(max_workers=max(workers, 1)) as pool:
        done = dict(zip(order, pool.map(one, [jobs[k] for k in order])))
    return [done[k] for k in range(len(jobs))]
