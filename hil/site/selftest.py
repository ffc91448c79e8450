"""Self-validation of the load-limit and fault-recovery suites: they must catch every deliberately broken
controller of a catalogue, and pass every legal variant (as they pass every reference controller).

The catalogues are Python files in one folder (the project's are in ``tests/``):

- ``broken_controllers.py``: ``CATALOGUE``, defect name -> a callable taking the ``Scenario`` and returning
  the broken controller; ``CAUGHT_BY``, defect name -> the suite tests expected to catch it, as
  ``FILE::TEST[CONDITION]`` relative to ``suites/`` (``[CONDITION]`` optional: the test's other parameter ids
  as pytest writes them);
- ``legal_controllers.py`` (optional): ``CATALOGUE`` of legal controllers that allocate, order or ramp
  differently from the references, and ``LEGAL``, name -> the tests their difference touches most.

``run`` starts one pytest run of the suites with every controller as a ``--controller``, each defect only
through its expected catchers and each legal variant through every test (``quick``: only its ``LEGAL``
tests), and reads the run record: a test catches a defect when its verdict is a failure of the device under
test. The time to detection is the earliest, over the catching
tests, from the test's trigger (limit step, fault) to its first failing window or rule.

Units: seconds.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from hil.sensitivity import Sensitivity, matches
from hil.site.conditions import DETECTION, import_file

ROOT = Path(__file__).resolve().parents[2]
SUITES = ("load_limit", "fault_recovery")
FAMILY = "site controller"
DEFECTS = "broken_controllers.py"
LEGAL = "legal_controllers.py"


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


def load_legal(path: Path) -> tuple[dict[str, Any], dict[str, tuple[str, ...]]]:
    """``(CATALOGUE, LEGAL)`` of a legal-variant file (``LEGAL`` optional); ``ValueError`` naming the file."""
    module = import_file(path)
    catalogue = getattr(module, "CATALOGUE", None)
    touches = getattr(module, "LEGAL", {})
    if not isinstance(catalogue, dict) or not isinstance(touches, dict):
        raise ValueError(f"{path}: legal variants need the dict CATALOGUE (name -> factory) and optionally LEGAL")
    return catalogue, {name: tuple(touches.get(name, ())) for name in catalogue}


def run(folder: Path, run_dir: Path, *, names: set[str] | None = None, quick: bool = False,
        workers: int = 2) -> list[Sensitivity]:
    """Run the suites with the defects and legal variants found in ``folder`` (all, or those in ``names``)
    into ``run_dir``, ``workers`` pytest-xdist workers (the conditions mostly wait on the rig's clock: more
    workers than cores is fine)."""
    _, expected = load_catalogue(folder / DEFECTS)
    legal = load_legal(folder / LEGAL)[1] if (folder / LEGAL).is_file() else {}
    chosen = {f"{folder / DEFECTS}:{d}": (d, False, e) for d, e in expected.items() if not names or d in names}
    chosen |= {f"{folder / LEGAL}:{d}": (d, True, e) for d, e in legal.items() if not names or d in names}
    if not chosen:
        return []
    base = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", f"--rootdir={ROOT}",
            "--controller", ",".join(chosen), "--reference", "none"]
    targets = [str(ROOT / "suites" / s) for s in SUITES]
    every = set() if quick else {full for full, (_, legal, _) in chosen.items() if legal}
    targets = _expected_nodes(base, targets, {full.rpartition(":")[2]: catchers for full, (_, _, catchers)
                                              in chosen.items() if full not in every}, every={c.rpartition(":")[2] for c in every})
    run_dir.mkdir(parents=True, exist_ok=True)
    command = [*base, *targets, "-q", f"--run-dir={run_dir}", f"--junitxml={run_dir / 'junit.xml'}",
               *(["-n", str(workers)] if workers > 1 else [])]
    log = run_dir / "site-pytest.log"
    with log.open("w") as out:
        subprocess.run(command, stdout=out, stderr=subprocess.STDOUT)
    record = run_dir / "run-record.json"
    if not record.is_file():
        raise RuntimeError(f"the suites left no run record in {run_dir}: see {log}")
    return _sensitivities(json.loads(record.read_text()), chosen)


def _expected_nodes(base: list[str], targets: list[str], expected: dict[str, tuple[str, ...]],
                    every: frozenset[str] | set[str] = frozenset()) -> list[str]:
    """The collected test ids that are an expected test of their own controller, and every test of the
    controllers in ``every``."""
    listing = subprocess.run([*base, *targets, "--collect-only", "-q"], capture_output=True, text=True)
    nodes = [line.strip() for line in listing.stdout.splitlines() if "::" in line]
    if not nodes:
        raise RuntimeError(f"collecting the suites found no test:\n{listing.stdout[-2000:]}{listing.stderr[-2000:]}")
    chosen = []
    for node in nodes:
        name = _relative(node)
        params = set(_params(name))
        if params & every:
            chosen.append(node)
        for controller, tests in expected.items():
            if controller in params and any(matches(_without(name, controller), c) for c in tests):
                chosen.append(node)
    if not chosen:
        raise RuntimeError("no collected test matches an expected test in CAUGHT_BY or LEGAL")
    return [str(ROOT / n) if not Path(n).is_absolute() else n for n in chosen]


def _sensitivities(record: dict[str, Any], chosen: dict[str, tuple[str, bool, tuple[str, ...]]]) -> list[Sensitivity]:
    rows = {full: Sensitivity(FAMILY, name, () if legal else tests, legal) for full, (name, legal, tests) in chosen.items()}
    for test in record.get("tests", []):
        full = (test.get("parameters") or {}).get("controller", "")
        row = rows.get(full)
        if row is None:
            continue
        name = _without(_relative(test["nodeid"]), row.name)
        if test["verdict"] == "fail":
            row.failed.append(name)
            detection = [m["value"] for m in test.get("measurements", []) if m["name"] == DETECTION and m["value"] is not None]
            if detection and not row.legal:
                row.detection_s = min([*detection, *([row.detection_s] if row.detection_s is not None else [])])
        elif test["verdict"] == "pass":
            row.passed.append(name)
        elif test["verdict"] == "skip":
            row.skipped.append(name)
        elif test["verdict"] == "error":
            row.errors.append(f"{name}: {test.get('message') or ''}"[:300])
    return list(rows.values())


def _relative(nodeid: str) -> str:
    """A node id relative to ``suites/``."""
    _, sep, rest = nodeid.partition("suites/")
    return rest if sep else nodeid


def _params(name: str) -> list[str]:
    inside = name.partition("[")[2].rstrip("]")
    return inside.split("-") if inside else []


def _without(name: str, defect: str) -> str:
    """``name`` with the controller's parameter id dropped: ``f.py::t[cond-defect]`` -> ``f.py::t[cond]``."""
    function, _, _ = name.partition("[")
    rest = [p for p in _params(name) if p != defect]
    return f"{function}[{'-'.join(rest)}]" if rest else function
