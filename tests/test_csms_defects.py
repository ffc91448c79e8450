"""The OCPP 1.6 Central System suites catch every seeded CSMS defect, and only in the cases that should
(see ``csms_defects``; evhil's CSMS passing everything is the suites' own CI run)."""

from __future__ import annotations

from pathlib import Path

import pytest

from csms_defects import DEFECTS
from suite_runner import check_caught, run_cases

CONTROLS = {"TC_003_CSMS", "TC_012_CSMS", "TC_064_CSMS"}


@pytest.mark.parametrize("defect", sorted(DEFECTS))
def test_csms_defect_is_caught_by_exactly_its_cases(defect: str, tmp_path: Path) -> None:
    outcomes = run_cases("ocpp16_csms", "--csms-reference", f"csms_defects:{defect}", DEFECTS[defect] | CONTROLS,
                         tmp_path)
    check_caught(defect, DEFECTS[defect], CONTROLS, outcomes)
