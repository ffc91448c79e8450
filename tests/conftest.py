"""Shared fixtures for the unit tests: a small running plant and an event loop for emulators."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from hil.clock import ScaledClock
from hil.emulators.loop import EmulatorLoop
from hil.plant import Plant, PlantRunner, Port, Site

pytest_plugins = ["pytester"]


@pytest.fixture
def emulator_loop() -> Iterator[EmulatorLoop]:
    """An asyncio loop in a background thread, closed after the test."""
    with EmulatorLoop() as loop:
        yield loop


@pytest.fixture
def small_plant() -> Iterator[Plant]:
    """Two ports (p1, p2) with EVs, stepped in real time in the background."""
    plant = Plant([Port("p1"), Port("p2")], Site())
    with PlantRunner(plant, ScaledClock(1.0)):
        yield plant
