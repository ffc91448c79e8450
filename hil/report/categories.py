"""Allure categories that keep device-under-test failures apart from rig and test errors.

One definition, two renderings: ``categories.json`` in the results folder (the Allure 2 format, read by
Allure 2, TestOps and Allure 3's classic view) matches on status and on the trace, where evhil writes the
rig error behind a failure (``RIG_TRACE_MARK``); the Allure 3 configuration matches on the ``origin`` label evhil sets on every
failure (see ``hil.report.failure_origin``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from hil.report.failure_origin import DUT, RIG, TEST, Origin, qualified_name

RIG_TRACE_MARK = "evhil origin: rig"
"""Written at the end of the Allure trace of a rig error, with the exception that caused it."""


@dataclass(frozen=True)
class Category:
    """A bucket of the report's Categories tab."""

    name: str
    description: str
    status: str
    """Allure status of the results it holds: ``failed`` or ``broken``."""
    origin: Origin


CATEGORIES: tuple[Category, ...] = (
    Category("Device-under-test failures", "the product did not do what the case or limit requires", "failed", DUT),
    Category("Rig errors", "an instrument unreachable or misbehaving, the control seam could not act: "
             "not a product defect", "broken", RIG),
    Category("Test errors", "the test or the harness failed before it could judge the product", "broken", TEST),
)


def _literal(text: str) -> str:
    """``text`` as a regular expression that Java (Allure 2) and JavaScript (Allure 3) read alike."""
    return re.sub(r"([.\\^$|?*+()\[\]{}])", r"\\\1", text)


def _rig_in_trace() -> str:
    """A regular expression for a trace that carries evhil's rig-error mark."""
    return rf".*{_literal(RIG_TRACE_MARK)}"


def allure2_categories() -> list[dict[str, Any]]:
    """The content of ``categories.json`` (Allure 2 format: first match wins in evhil's order)."""
    rig = _rig_in_trace()
    out: list[dict[str, Any]] = []
    for c in CATEGORIES:
        entry: dict[str, Any] = {"name": c.name, "matchedStatuses": [c.status]}
        if c.origin == RIG:
            entry["traceRegex"] = rf"(?s){rig}.*"
        elif c.origin == TEST:
            entry["traceRegex"] = rf"(?s)(?!{rig}).*"  # broken, and no rig error in the trace
        out.append(entry)
    return out


def allure3_categories() -> list[dict[str, Any]]:
    """The ``categories`` rules of the Allure 3 configuration (matched on the ``origin`` label)."""
    return [
        {
            "name": c.name,
            "matchers": {"statuses": [c.status], "labels": {"origin": f"^{_literal(c.origin)}$"}},
            "groupBy": [{"label": "epic"}, {"label": "feature"}] if c.origin == DUT else [],
            "groupByMessage": True,
            "expand": c.origin == DUT,
        }
        for c in CATEGORIES
    ]


def rig_trace_note(cause: BaseException) -> str:
    """The line appended to the trace of a rig error, naming the exception behind it."""
    return f"{RIG_TRACE_MARK} ({qualified_name(type(cause))}: {cause})"
