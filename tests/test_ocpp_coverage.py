"""Every OCTT case of the covered profiles is automated by a suite test or listed as not automated, and
every suite test is named after a real case of its version."""

from __future__ import annotations

from pathlib import Path

from hil.ocpp import catalogue
from hil.ocpp.precheck import automated, not_automated

SUITES = Path(__file__).resolve().parent.parent / "suites"
COVERED_16 = {"Core", "Local Auth List Management", "Remote Trigger", "Smart Charging"}
BLOCKS_201 = "BCEFGJK"
"""2.0.1 functional blocks with a charging-station suite: provisioning, authorization, transactions,
remote control, availability, meter values, smart charging."""


def test_ocpp16_charge_point_profiles_are_covered() -> None:
    cases = {c.id for c in catalogue.load("1.6").values() if c.sut == "CS" and c.profile in COVERED_16}
    done = automated(SUITES / "ocpp16")
    listed = not_automated(SUITES / "ocpp16")
    assert all(isinstance(v, str) and len(v) > 20 for v in listed.values()), "every listed case needs a reason"
    assert not done & set(listed), f"both automated and listed: {sorted(done & set(listed))}"
    assert not cases - done - set(listed), f"neither automated nor listed: {sorted(cases - done - set(listed))}"
    assert not done - cases, f"tests of cases outside the covered profiles: {sorted(done - cases)}"
    assert len(done) >= 60


def test_ocpp16_central_system_profiles_are_covered() -> None:
    cases = {c.id for c in catalogue.load("1.6").values() if c.sut == "CSMS" and c.profile in ("Core", "Smart Charging")}
    done = automated(SUITES / "ocpp16_csms")
    listed = not_automated(SUITES / "ocpp16_csms")
    assert not done & set(listed) and not cases - done - set(listed) and not done - cases


def test_ocpp201_charging_station_blocks_are_covered() -> None:
    """Every case of blocks B, C, E, F, G, J and K flagged M or C for the station in Core or Smart Charging."""
    cases = {c.id for c in catalogue.load("2.0.1").values() if c.sut == "CS" and c.block in BLOCKS_201 and any(
        catalogue.requirement(c.base_id, profile, "CS") for profile in ("Core", "Smart Charging"))}
    done = automated(SUITES / "ocpp201")
    listed = not_automated(SUITES / "ocpp201")
    assert all(isinstance(v, str) and len(v) > 20 for v in listed.values()), "every listed case needs a reason"
    assert not done & set(listed), f"both automated and listed: {sorted(done & set(listed))}"
    assert not cases - done - set(listed), f"neither automated nor listed: {sorted(cases - done - set(listed))}"
    assert not done - cases, f"tests of cases outside the covered blocks: {sorted(done - cases)}"
    assert len(done) >= 120
