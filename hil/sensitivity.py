"""The selftest's table: what the suites made of each seeded defect and each legal variant.

``hil selftest`` runs the suites against devices written to be wrong in one way each (a site controller, an
OCPP 1.6 charge point, a 2.0.1 charging station, a Central System), and against legal ones that behave
unusually. A defect must be caught by every test expected to catch it; a legal variant must pass every test
it runs (a failure is a false failure of the suites). ``hil.site.selftest`` and ``hil.ocpp.selftest`` fill
the rows; this module judges and prints them.

Units: seconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Sensitivity:
    """One defect or legal variant, and what the suites made of it."""

    family: str
    """What it is: ``site controller``, ``OCPP 1.6 charge point``, ..."""
    name: str
    expected: tuple[str, ...] = ()
    """Tests (or OCTT cases) that must catch it; empty for a legal variant."""
    legal: bool = False
    failed: list[str] = field(default_factory=list)
    """Tests whose verdict was a failure of the device under test (for a defect: those that caught it)."""
    passed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    """Tests that could not judge it (a rig or test error), with their message."""
    detection_s: float | None = None
    """Earliest time to detection over the tests that caught it [s]."""

    @property
    def missing(self) -> list[str]:
        """Expected catchers that did not catch it."""
        return [e for e in self.expected if not any(matches(t, e) for t in self.failed)]

    @property
    def ok(self) -> bool:
        """A defect caught by every expected test; a legal variant with no failure and no error."""
        if self.legal:
            return not self.failed and not self.errors
        return bool(self.failed) and not self.missing and not self.errors

    def verdict(self) -> str:
        if self.legal:
            if self.ok:
                return f"legal: passed {len(self.passed)}, skipped {len(self.skipped)}"
            return "FALSE FAILURE: " + ", ".join(short(t) for t in [*self.failed, *self.errors])
        if self.errors:
            return "COULD NOT JUDGE: " + "; ".join(self.errors)[:200]
        if self.ok:
            return "caught"
        return "MISSED: " + (", ".join(short(m) for m in self.missing) or "no test failed")

    def to_dict(self) -> dict[str, Any]:
        return {"family": self.family, "name": self.name, "legal": self.legal, "expected": list(self.expected),
                "failed": self.failed, "passed": len(self.passed), "skipped": self.skipped, "errors": self.errors,
                "detection_s": self.detection_s, "ok": self.ok, "missing": self.missing, "verdict": self.verdict()}


def matches(name: str, catcher: str) -> bool:
    """Whether test ``name`` (``FILE::TEST[PARAMS]``, or an OCTT case id) is the expected catcher
    ``catcher``: the same test, and the same parameter ids when the catcher names them."""
    function, _, ids = name.partition("[")
    wanted, bracket, wanted_ids = catcher.partition("[")
    return function == wanted and (not bracket or ids.rstrip("]") == wanted_ids.rstrip("]"))


def short(test: str) -> str:
    """A test's name without its file: ``test_x[param]`` or an OCTT case id."""
    return test.rsplit("::", 1)[-1]


def table_rows(rows: list[Sensitivity]) -> list[tuple[str, str, str, str, str]]:
    """``(family, defect or legal variant, caught by / failed, time to detection, verdict)`` per row."""
    out = []
    for s in rows:
        caught = ", ".join(sorted({short(c) for c in s.failed})) or "-"
        detection = "-" if s.detection_s is None else f"{s.detection_s:.1f} s"
        out.append((s.family, s.name + (" (legal)" if s.legal else ""), caught, detection, s.verdict()))
    return out


def totals(rows: list[Sensitivity]) -> dict[str, int]:
    """The counts the table ends with: defects and how many were caught, legal variants and how many failed
    falsely (tests a legal variant failed), per family and overall under the key ``""``."""
    out: dict[str, int] = {}
    for family in ["", *dict.fromkeys(s.family for s in rows)]:
        mine = [s for s in rows if not family or s.family == family]
        defects = [s for s in mine if not s.legal]
        legal = [s for s in mine if s.legal]
        prefix = f"{family}: " if family else ""
        out[prefix + "defects"] = len(defects)
        out[prefix + "caught"] = sum(s.ok for s in defects)
        out[prefix + "legal variants"] = len(legal)
        out[prefix + "false failures"] = sum(len(s.failed) + len(s.errors) for s in legal)
    return out
