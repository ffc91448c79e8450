"""The OCPP 1.6 charge-point suites catch every seeded charge point defect, and only in the cases that should.

For each defect of ``charge_point_defects`` the suites run in a child pytest against that emulator: the
cases listed for it must fail with a message naming the OCTT step, and three unrelated control cases must
still pass (the reference emulator passing everything is the suites' own CI run).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from charge_point_defects import DEFECTS
from suite_runner import check_caught, run_cases

CONTROLS = {"TC_003_CS", "TC_012_CS", "TC_019_CS"}


@pytest.mark.parametrize("defect", sorted(DEFECTS))
def test_defect_is_caught_by_exactly_its_cases(defect: str, tmp_path: Path) -> None:
    outcomes = run_cases("ocpp16", "--cp-emulator", f"charge_point_defects:{defect}", DEFECTS[defect] | CONTROLS,
                         tmp_path)
    check_caught(defect, DEFECTS[defect], CONTROLS, outcomes)
