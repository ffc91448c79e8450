"""The run's requirements traceability page: every OCPP functional requirement the run's test cases cite
(``B01.FR.01``), the cases that check it and how each ended in this run; and every OCTT case with the
requirements it cites. One standalone page, ``traceability.html``, next to the report's ``index.html``.

In the report itself each OCTT case carries Allure links: one to the case (type ``tms``) and one per
requirement it cites (type ``requirement``), named by their IDs. The OCPP documents have no public
per-requirement web addresses, so by default the report shows the IDs as text; a lab with its own
document server makes them links with allure-pytest's patterns, e.g.
``hil run --pytest-arg=--allure-link-pattern=requirement:https://docs.lab/ocpp201/{}``.
(Allure 3 makes a link clickable only for an http, https, mailto or tel address.)
"""

from __future__ import annotations

import html
import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PAGE = "traceability.html"
REQUIREMENT = "requirement"
"""Allure link type of a specification requirement."""
TEST_CASE = "tms"
"""Allure link type of a conformance test case (Allure's test-management link)."""

_STATUS_ORDER = ("failed", "broken", "unknown", "skipped", "passed")
"""A requirement's status is the worst of its cases'."""


@dataclass
class _Case:
    id: str
    name: str
    statuses: list[str] = field(default_factory=list)
    requirements: set[str] = field(default_factory=set)

    @property
    def status(self) -> str:
        return _worst(self.statuses)


def _worst(statuses: list[str]) -> str:
    return min(statuses, key=lambda s: _STATUS_ORDER.index(s) if s in _STATUS_ORDER else 0) if statuses else "unknown"


def _cases(results: Path) -> dict[str, _Case]:
    """The OCTT cases of the Allure results in ``results``, with the requirements their links name."""
    cases: dict[str, _Case] = {}
    for path in sorted(results.glob("*-result.json")):
        try:
            result: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # a result file cut short by a killed run: the report says so, this page skips it
        links = result.get("links") or []
        ids = [link.get("name") for link in links if link.get("type") == TEST_CASE and link.get("name")]
        if not ids:
            continue
        labels = {label.get("name"): label.get("value") for label in result.get("labels") or []}
        story = str(labels.get("story") or result.get("name") or "")
        case = cases.setdefault(ids[0], _Case(ids[0], story.removeprefix(ids[0]).strip()))
        case.statuses.append(str(result.get("status") or "unknown"))
        case.requirements |= {link["name"] for link in links if link.get("type") == REQUIREMENT and link.get("name")}
    return cases


def write(results: Path, path: Path) -> Path:
    """Write the traceability page of the Allure results in ``results`` to ``path``."""
    cases = _cases(results)
    by_requirement: dict[str, list[_Case]] = defaultdict(list)
    for case in cases.values():
        for requirement in case.requirements:
            by_requirement[requirement].append(case)
    statuses = {r: _worst([c.status for c in cs]) for r, cs in by_requirement.items()}
    passed = sum(1 for s in statuses.values() if s == "passed")
    rows = []
    for requirement in sorted(by_requirement):
        checked_by = ", ".join(
            f'<a href="#{_e(c.id)}">{_e(c.id)}</a> <span class="{_e(c.status)}">{_e(c.status)}</span>'
            for c in sorted(by_requirement[requirement], key=lambda c: c.id))
        rows.append(f'<tr id="{_e(requirement)}"><td>{_e(requirement)}</td><td>{_e(requirement.split(".")[0])}</td>'
                    f'<td class="{_e(statuses[requirement])}">{_e(statuses[requirement])}</td><td>{checked_by}</td></tr>')
    case_rows = []
    for case in sorted(cases.values(), key=lambda c: c.id):
        cited = ", ".join(f'<a href="#{_e(r)}">{_e(r)}</a>' for r in sorted(case.requirements)) or "none"
        case_rows.append(f'<tr id="{_e(case.id)}"><td>{_e(case.id)}</td><td>{_e(case.name)}</td>'
                         f'<td class="{_e(case.status)}">{_e(case.status)}</td><td>{cited}</td></tr>')
    body = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Requirements traceability</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin-bottom: 2em; }}
td, th {{ border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }}
tr:target {{ background: #fff3b0; }}
.passed {{ color: #1a7f37; }} .failed {{ color: #cf222e; font-weight: bold; }}
.broken {{ color: #bc4c00; font-weight: bold; }} .skipped, .unknown {{ color: #6e7781; }}
</style></head><body>
<h1>Requirements traceability</h1>
<p>{len(by_requirement)} OCPP requirements cited by {len(cases)} OCTT test cases of this run;
{passed} with every case that checks them passed. A requirement's status is the worst of its cases'
(failed, broken, skipped, passed). Requirement IDs are those of the OCPP 2.0.1 Part 2 specification that
the Part 6 test cases cite (OCPP 1.6 cases cite none); the requirements themselves are in the Open
Charge Alliance's documents.</p>
<h2>Requirements</h2>
<table><tr><th>requirement</th><th>use case</th><th>status</th><th>checked by</th></tr>
{chr(10).join(rows)}
</table>
<h2>Test cases</h2>
<table><tr><th>test case</th><th>name</th><th>status</th><th>requirements</th></tr>
{chr(10).join(case_rows)}
</table>
</body></html>
"""
    path.write_text(body, encoding="utf-8")
    return path


def _e(text: str) -> str:
    return html.escape(text, quote=True)
