"""Conditional OCTT 2.0.1 cases run where they apply and pass there: against stations that differ from the
reference in hardware (a fixed cable) or an optional feature (no per-EVSE reset), each case has the
outcome listed in ``charging_station_variants.VARIANTS``: it passes where it applies, skips as not
applicable where it does not, and the case for the other variant fails. (The legal but unusual stations of
``charging_station_variants.LEGAL`` are run by ``hil selftest``, in CI through ``test_selftest.py``.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from charging_station_variants import VARIANTS
from suite_runner import run_cases


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_conditional_cases_follow_the_station(variant: str, tmp_path: Path) -> None:
    expected = VARIANTS[variant]
    outcomes = run_cases("ocpp201", "--cs-emulator", f"charging_station_variants:{variant}", set(expected), tmp_path)
    wrong = {case: outcomes.get(case) for case, outcome in expected.items() if outcomes.get(case, ("missing",))[0] != outcome}
    assert not wrong, f"{variant}: expected {expected}, got {wrong}"
