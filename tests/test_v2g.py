"""The V2G guard never makes the minimum departure charge unreachable, nor crosses the emergency floor."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hil.controllers.v2g import max_discharge

energies = st.floats(0, 100)


@settings(max_examples=500, deadline=None)
@given(energies, energies, energies, st.floats(0, 32), st.floats(0, 32), st.sampled_from([1, 3]),
       st.floats(0, 12 * 3600), st.sampled_from([1.0, 60.0, 300.0]))
def test_discharge_keeps_departure_reachable(energy: float, emergency: float, minimum: float, charge: float,
                                             discharge: float, phases: int, time_left: float, period: float) -> None:
    d = max_discharge(energy, emergency, minimum, charge, discharge, phases, 230.0, time_left, period)
    assert 0.0 <= d <= discharge + 1e-9
    if d == 0.0:
        return
    after = energy - d * phases * 230.0 * period / 3.6e6 / 0.95
    assert after >= emergency - 1e-6
    reachable = after + 0.95 * charge * phases * 230.0 * max(time_left - period, 0.0) / 3.6e6
    assert reachable >= minimum - 1e-6


def test_examples() -> None:
    # 60 kWh, floor 25, departure needs 48 kWh in 2 h at up to 32 A three-phase: discharge is allowed.
    assert max_discharge(60, 25, 48, 32, 16, 3, 230, 7200) == pytest.approx(16)
    # Right at the departure minimum with no time left: nothing.
    assert max_discharge(48, 25, 48, 32, 16, 3, 230, 0) == 0.0
    # At the emergency floor: nothing.
    assert max_discharge(25, 25, 10, 32, 16, 3, 230, 7200) == 0.0
