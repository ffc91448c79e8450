"""The OCPP 2.0.1 suites catch every seeded charging station defect, in the cases that should.

For each defect of ``charging_station_defects`` the suites run in a child pytest against that emulator: the
cases listed for it must fail with a message naming the OCTT step, and three unrelated control cases must
still pass (the reference station passing everything is the suites' own CI run).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from charging_station_defects import DEFECTS
from suite_runner import check_caught, run_cases

CONTROLS = {"TC_B_06_CS", "TC_E_30_CS", "TC_F_20_CS"}


@pytest.mark.parametrize("defect", sorted(DEFECTS))
def test_defect_is_caught_by_exactly_its_cases(defect: str, tmp_path: Path) -> None:
    outcomes = run_cases("ocpp201", "--cs-emulator", f"charging_station_defects:{defect}",
                         DEFECTS[defect] | CONTROLS, tmp_path)
    check_caught(defect, DEFECTS[defect], CONTROLS, outcomes)
