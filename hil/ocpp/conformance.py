"""Conformance-case machinery shared by the OCPP suites: steps, payload matching, failures that name the step.

An OCTT test case is a numbered list of steps. A suite wraps each in ``step(n, text)``; an expectation
that fails inside it raises ``ConformanceFailure`` naming the case step, what was expected and what was
received instead. Steps also appear as Allure steps.
"""

from __future__ import annotations

import contextvars
import json
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeVar

import allure
import pytest

from hil.ocpp import catalogue
from hil.report import traceability

F = TypeVar("F", bound=Callable[..., Any])

_STEP: contextvars.ContextVar[str | None] = contextvars.ContextVar("ocpp_step", default=None)


class ConformanceFailure(AssertionError):
    """The device under test did not do what the test case step requires."""

    def __init__(self, message: str, step: str | None = None) -> None:
        self.step = step if step is not None else _STEP.get()
        super().__init__(f"{self.step}: {message}" if self.step else message)


@contextmanager
def step(number: int | str, text: str) -> Iterator[None]:
    """One test-case step: ``with step(3, "CS sends StatusNotification Preparing"): ...``."""
    label = f"step {number} ({text})"
    token = _STEP.set(label)
    try:
        with allure.step(f"Step {number}: {text}"):
            yield
    finally:
        _STEP.reset(token)


def current_step() -> str | None:
    """The step being executed, as ``step N (text)``."""
    return _STEP.get()


def matches(expected: Any, actual: Any) -> bool:
    """Recursive subset match: every key of ``expected`` is in ``actual`` with a matching value.

    Dicts match as subsets; lists match element-wise and must have the same length; a callable in
    ``expected`` is a predicate on the actual value; anything else compares equal.
    """
    if callable(expected):
        try:
            return bool(expected(actual))
        except Exception:  # noqa: BLE001 - a predicate that cannot judge the value says no
            return False
    if isinstance(expected, Mapping):
        return isinstance(actual, Mapping) and all(k in actual and matches(v, actual[k]) for k, v in expected.items())
    if isinstance(expected, list):
        return isinstance(actual, list) and len(expected) == len(actual) and all(
            matches(e, a) for e, a in zip(expected, actual))
    return bool(expected == actual)


def show(payload: Any, limit: int = 400) -> str:
    """A payload in one line for a failure message."""
    try:
        text = json.dumps(payload, separators=(",", ":"), default=lambda o: getattr(o, "__name__", repr(o)))
    except (TypeError, ValueError):
        text = repr(payload)
    return text if len(text) <= limit else text[: limit - 3] + "..."


_SUT_NAME = {("1.6", "CS"): "charge point", ("1.6", "CSMS"): "Central System", ("2.0.1", "CS"): "charging station",
             ("2.0.1", "CSMS"): "CSMS"}
"""How each version calls the system under test, for the report's top-level grouping."""


def severity(tc: catalogue.TestCase) -> allure.severity_level:
    """How much a failure of ``tc`` weighs for certification: critical where a 2.0.1 certification profile
    makes it mandatory (M), normal where conditional (C) and for 1.6 (whose catalogue has no flags), minor
    where no profile asks for it."""
    if tc.version != "2.0.1":
        return allure.severity_level.NORMAL
    flags = {catalogue.requirement(tc.base_id, p, tc.sut) for p in catalogue.certification_profiles()}
    if "M" in flags:
        return allure.severity_level.CRITICAL
    return allure.severity_level.NORMAL if "C" in flags else allure.severity_level.MINOR


def octt(case_id: str) -> Callable[[F], F]:
    """Mark a test as OCTT case ``case_id``: the ``octt`` marker (id, version, profile, sut), Allure
    labels (epic = OCPP version and system under test, feature = profile, story = case, severity from its
    certification flags) and Allure links to the case and to every requirement it cites (their targets:
    ``hil.report.traceability``). The test must be
    named after the case (``test_tc_036_cs`` for ``TC_036_CS``), so a report and a node id always say the
    same thing."""
    tc = catalogue.case(case_id)

    def decorate(fn: F) -> F:
        expected = catalogue.pytest_name(case_id)
        if fn.__name__ != expected:
            raise ValueError(f"{fn.__module__}.{fn.__name__}: a test of {case_id} must be named {expected}")
        marked = pytest.mark.octt(tc.id, version=tc.version, profile=tc.profile, sut=tc.sut)(fn)
        for label in (allure.epic(f"OCPP {tc.version} {_SUT_NAME[tc.version, tc.sut]}"), allure.feature(tc.profile),
                      allure.story(f"{tc.id} {tc.name}"), allure.label("octt", tc.id), allure.title(f"{tc.id} {tc.name}"),
                      allure.severity(severity(tc)), allure.link(tc.id, link_type=traceability.TEST_CASE, name=tc.id),
                      *(allure.link(r, link_type=traceability.REQUIREMENT, name=r) for r in tc.requirements)):
            marked = label(marked)
        return marked

    return decorate
