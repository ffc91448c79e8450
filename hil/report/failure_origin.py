"""Who a failure is about: the device under test, the rig, or the test itself.

A lab engineer reads a report to find product defects. An instrument that does not answer, a control
seam that cannot act, or a bug in a test says nothing about the product, so every failure is judged
here (a pure function of the exception and the phase it was raised in) and the verdict travels with
the result: as the Allure label ``origin``, as the Allure status (``failed`` for the device under test,
``broken`` for everything else) and as ``origin`` in the run record.
"""

from __future__ import annotations

from typing import Literal

import pytest

from hil.control import ControlError
from hil.instruments.errors import InstrumentError
from hil.ocpp.conformance import ConformanceFailure
from hil.rig.loader import RigFileError

Origin = Literal["device under test", "rig", "test"]
DUT: Origin = "device under test"
RIG: Origin = "rig"
TEST: Origin = "test"

RIG_ERRORS: tuple[type[BaseException], ...] = (InstrumentError, RigFileError, ControlError)
"""Exceptions that mean the bench failed, not the product: an instrument unreachable or misbehaving, a
rig file that does not load, a control-seam action (command, prompt) that could not be carried out."""

_MAX_CHAIN = 16


def chain(exc: BaseException) -> list[BaseException]:
    """``exc`` followed by its causes and contexts (``raise ... from`` and ``during handling of``)."""
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen and len(seen) < _MAX_CHAIN:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def rig_cause(exc: BaseException) -> BaseException | None:
    """The rig error behind ``exc`` (itself or anywhere in its chain), if any."""
    return next((e for e in chain(exc) if isinstance(e, RIG_ERRORS)), None)


def failure_origin(exc: BaseException, phase: str) -> Origin:
    """Judge a failure raised in ``phase`` (``setup``, ``call`` or ``teardown``).

    1. a rig error anywhere in the chain (an instrument behind ``pytest.fail`` too): ``rig``;
    2. a conformance failure or any assertion (a check of what the device did, a measurement out of its
       limits), and ``pytest.fail`` in the test body: ``device under test``;
    3. anything else, and ``pytest.fail`` in a fixture: ``test`` (the harness or the test code).
    """
    if rig_cause(exc) is not None:
        return RIG
    if isinstance(exc, (ConformanceFailure, AssertionError)):
        return DUT
    if isinstance(exc, pytest.fail.Exception):
        return DUT if phase == "call" else TEST
    return TEST


def qualified_name(cls: type[BaseException]) -> str:
    """``module.Class`` of an exception class, e.g. ``hil.instruments.errors.InstrumentUnreachable``."""
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
