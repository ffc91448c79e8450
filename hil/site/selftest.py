"""Self-validation: the load-limit and fault-recovery suites must catch every deliberately broken controller
of a catalogue, while every reference controller passes them.

A catalogue is a Python file (the project's is ``tests/broken_controllers.py``) with

- ``CATALOGUE``: defect name -> a callable taking the ``Scenario`` and returning the broken controller;
- ``CAUGHT_BY``: defect name -> the suite tests expected to catch it, as ``FILE::TEST[CONDITION]`` relative
  to ``suites/`` (``[CONDITION]`` optional: the test's other parameter ids as pytest writes them).

``run`` starts one pytest run of the suites with every defect as a ``--controller`` (each suite test then
runs once per defect) and reads the run record: a defect is caught by the tests whose verdict is a failure
of the device under test. ``quick`` runs only the expected tests of each defect. The time to detection is
the earliest, over the catching tests, from the test's trigger (limit step, fault) to its first failing
window of the compliance check.

Units: seconds.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hil.site.conditions import DETECTION, import_file

ROOT = Path(__file__).resolve().parents[2]
SUITES = ("load_limit", "fault_recovery")


@dataclass
class Sensitivity:
    """What the suites made of one defect."""

    defect: str
    expected: tuple[str, ...]
    caught_by: list[str] = field(default_factory=list)
    missed_by: list[str] = field(default_factory=list)
    """Tests the defect passed."""
    errors: list[str] = field(default_factory=list)
    """Tests that could not judge it (a rig or test error)."""
    detection_s: float | None = None

    @property
    def missing(self) -> list[str]:
        """Expected catchers that did not catch it."""
        return [e for e in self.expected if not any(_matches(t, e) for t in self.caught_by)]

    @property
    def caught(self) -> bool:
        return bool(self.caught_by) and not self.missing

    def to_dict(self) -> dict[str, Any]:
        return {"defect": self.defect, "expected": list(self.expected), "caught_by": self.caught_by,
                "missed_by": self.missed_by, "errors": self.errors, "detection_s": self.detection_s,
                "caught": self.caught, "missing": self.missing}


def load_catalogue(path: Path) -> tuple[dict[str, Any], dict[str, tuple[str, ...]]]:
    """``(CATALOGUE, CAUGHT_BY)`` of a catalogue file; ``ValueError`` naming the file when it has neither."""
    if not path.is_file():
        raise ValueError(f"no catalogue file {path}")
    module = import_file(path)
    catalogue = getattr(module, "CATALOGUE", None)
    caught_by = getattr(module, "CAUGHT_BY", None)
    if not isinstance(catalogue, dict) or not isinstance(caught_by, dict):
        raise ValueError(f"{path}: a catalogue needs the dicts CATALOGUE (defect -> factory) and CAUGHT_BY")
    unknown = sorted(set(caught_by) - set(catalogue))
    if unknown:
        raise ValueError(f"{path}: CAUGHT_BY names defects that are not in CATALOGUE: {', '.join(unknown)}")
    return catalogue, {d: tuple(caught_by.get(d, ())) for d in catalogue}


def run(catalogue_path: Path, run_dir: Path, *, defects: list[str] | None = None, quick: bool = False,
        workers: int = 2, extra: list[str] | None = None) -> list[Sensitivity]:
    """Run the suites with the defects of ``catalogue_path`` (all, or ``defects``) into ``run_dir``."""
    catalogue, expected = load_catalogue(catalogue_path)
    chosen = defects or list(catalogue)
    unknown = [d for d in chosen if d not in catalogue]
    if unknown:
        raise ValueError(f"{catalogue_path}: no defect {', '.join(unknown)}; the catalogue has {', '.join(catalogue)}")
    names = {f"{catalogue_path}:{d}": d for d in chosen}
    base = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", f"--rootdir={ROOT}",
            "--controller", ",".join(names), *(extra or [])]
    targets = [str(ROOT / "suites" / s) for s in SUITES]
    if quick:
        targets = _expected_nodes(base, targets, {d: expected[d] for d in chosen})
    run_dir.mkdir(parents=True, exist_ok=True)
    command = [*base, *targets, "-q", f"--run-dir={run_dir}", f"--junitxml={run_dir / 'junit.xml'}",
               *(["-n", str(workers)] if workers > 1 else [])]
    subprocess.call(command)
    record = run_dir / "run-record.json"
    if not record.is_file():
        raise RuntimeError(f"the suites left no run record in {run_dir}: see the pytest output above")
    return _sensitivities(json.loads(record.read_text()), names, expected)


def _expected_nodes(base: list[str], targets: list[str], expected: dict[str, tuple[str, ...]]) -> list[str]:
    """The collected test ids that are an expected catcher of their own defect."""
    listing = subprocess.run([*base, *targets, "--collect-only", "-q"], capture_output=True, text=True)
    nodes = [line.strip() for line in listing.stdout.splitlines() if "::" in line]
    if not nodes:
        raise RuntimeError(f"collecting the suites found no test:\n{listing.stdout[-2000:]}{listing.stderr[-2000:]}")
    chosen = []
    for node in nodes:
        name = _relative(node)
        params = set(_params(name))
        for defect, catchers in expected.items():
            if defect in params and any(_matches(_without(name, defect), c) for c in catchers):
                chosen.append(node)
    if not chosen:
        raise RuntimeError("no collected test matches an expected catcher in CAUGHT_BY")
    return [str(ROOT / n) if not Path(n).is_absolute() else n for n in chosen]


def _sensitivities(record: dict[str, Any], names: dict[str, str], expected: dict[str, tuple[str, ...]]) -> list[Sensitivity]:
    out = {d: Sensitivity(d, expected[d]) for d in names.values()}
    for test in record.get("tests", []):
        defect = names.get((test.get("parameters") or {}).get("controller", ""))
        if defect is None:
            continue
        name = _without(_relative(test["nodeid"]), defect)
        s = out[defect]
        if test["verdict"] == "fail":
            s.caught_by.append(name)
            detection = [m["value"] for m in test.get("measurements", []) if m["name"] == DETECTION and m["value"] is not None]
            if detection:
                s.detection_s = min(detection) if s.detection_s is None else min(s.detection_s, min(detection))
        elif test["verdict"] == "pass":
            s.missed_by.append(name)
        elif test["verdict"] == "error":
            s.errors.append(f"{name}: {test.get('message') or ''}"[:300])
    return list(out.values())


def _relative(nodeid: str) -> str:
    """A node id relative to ``suites/``."""
    _, sep, rest = nodeid.partition("suites/")
    return rest if sep else nodeid


def _params(name: str) -> list[str]:
    inside = name.partition("[")[2].rstrip("]")
    return inside.split("-") if inside else []


def _without(name: str, defect: str) -> str:
    """``name`` with the defect's parameter id dropped: ``f.py::t[cond-defect]`` -> ``f.py::t[cond]``."""
    function, _, _ = name.partition("[")
    rest = [p for p in _params(name) if p != defect]
    return f"{function}[{'-'.join(rest)}]" if rest else function


def _matches(name: str, catcher: str) -> bool:
    """Whether test ``name`` (defect dropped) is the expected catcher ``catcher``: the same test, and the
    same parameter ids when the catcher names them."""
    function, _, ids = name.partition("[")
    wanted_function, bracket, wanted_ids = catcher.partition("[")
    return function == wanted_function and (not bracket or ids == wanted_ids)


def table_rows(results: list[Sensitivity]) -> list[tuple[str, str, str, str]]:
    """``(defect, caught by, time to detection, verdict)`` per defect, for printing."""
    rows = []
    for s in results:
        caught = ", ".join(sorted({c.split("::")[-1] for c in s.caught_by})) or "-"
        detection = "-" if s.detection_s is None else f"{s.detection_s:.1f} s"
        verdict = "caught" if s.caught else ("MISSED: " + ", ".join(s.missing) if s.missing else "MISSED")
        rows.append((s.defect, caught, detection, verdict))
    return rows
