"""The OCTT catalogues, certification flags, declarations, case selection and the pre-check report."""

from __future__ import annotations

import csv
import json
import re
from collections import Counter
from pathlib import Path

import pytest

from hil.ocpp import catalogue as cat
from hil.ocpp.catalogue import Declaration, DeclarationError


def declare(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "product.yaml"
    path.write_text(text, encoding="utf-8")
    return path


# --- catalogues -------------------------------------------------------------------------------------


def test_shipped_files_hold_no_prose() -> None:
    headers = {}
    for name in ("octt-1.6.csv", "octt-2.0.1.csv", "certification-2.0.1.csv"):
        with open(cat.DATA / name, encoding="utf-8", newline="") as f:
            headers[name] = next(csv.reader(f))
    assert headers == {
        "octt-1.6.csv": ["id", "sut", "profile", "name"],
        "octt-2.0.1.csv": ["id", "sut", "block", "section", "name", "use_cases", "requirements"],
        "certification-2.0.1.csv": ["profile", "base_id", "name", "charging_station", "csms"],
    }


@pytest.mark.parametrize(("version", "total", "cs", "csms"), [("1.6", 177, 102, 75), ("2.0.1", 674, 424, 250)])
def test_row_counts(version: str, total: int, cs: int, csms: int) -> None:
    cases = cat.load(version)  # type: ignore[arg-type]
    assert len(cases) == total
    assert Counter(c.sut for c in cases.values()) == {"CS": cs, "CSMS": csms}
    assert all(c.version == version and c.id.endswith("_" + c.sut) for c in cases.values())


def test_16_profile_counts() -> None:
    counts = Counter((c.profile, c.sut) for c in cat.load("1.6").values())
    assert counts[("Core", "CS")] == 48 and counts[("Core", "CSMS")] == 34
    assert counts[("Smart Charging", "CS")] == 10 and counts[("Smart Charging", "CSMS")] == 5
    assert counts[("Security (1.6 Security Whitepaper)", "CS")] == 15


def test_known_cases() -> None:
    tc036 = cat.case("TC_036_CS")
    assert (tc036.name, tc036.version, tc036.sut, tc036.profile) == (
        "Connection Loss During Transaction", "1.6", "CS", "Core")
    assert tc036.block is None and tc036.use_cases == ()
    b57 = cat.case("TC_B_57_CS")
    assert (b57.name, b57.version, b57.profile, b57.block) == (
        "Network Reconnection - After connection loss", "2.0.1", "B Provisioning", "B")
    assert b57.use_cases == ()  # the source cites "Part 4 section 5.3", not a use case
    e40 = cat.case("TC_E_40_CS")
    assert (e40.name, e40.profile, e40.block, e40.base_id) == (
        "Offline Behaviour - Connection loss during transaction", "E Transactions", "E", "TC_E_40")
    assert cat.case("TC_037_3_CS").name.startswith("Offline Start Transaction - Invalid IdTag")
    assert cat.case("TC_064_CSMS").sut == "CSMS"


def test_2_0_1_block_and_use_cases() -> None:
    cases = cat.load("2.0.1")
    assert all(c.block == c.id.split("_")[1] == c.profile[0] for c in cases.values())
    assert Counter(c.block for c in cases.values() if c.sut == "CS")["E"] == 47
    assert cat.case("TC_A_01_CS").use_cases == ("A00", "B01")
    assert cat.case("TC_E_10_CS").use_cases == ("E01", "C01", "C02", "C04", "C06")


def test_2_0_1_requirements() -> None:
    cases = cat.load("2.0.1")
    assert sum(1 for c in cases.values() if c.requirements) == 582
    assert all(re.fullmatch(r"[A-P]\d{2}\.FR\.\d+", r) for c in cases.values() for r in c.requirements)
    assert cat.case("TC_A_01_CS").requirements[-3:] == ("B01.FR.01", "B01.FR.05", "B01.FR.09")
    assert cat.case("TC_A_07_CS").requirements[-2:] == ("A00.FR.508", "A00.FR.511")  # broken across two lines
    assert cat.case("TC_C_08_CS").requirements == ("C12.FR.02", "C12.FR.04")  # written C12_FR_02 in Part 6
    assert cat.case("TC_A_15_CS").requirements == ()  # "N/a"
    assert cat.case("TC_001_CS").requirements == ()  # 1.6 cites none


def test_duplicate_c_28_is_kept_and_loaded_as_c_58() -> None:
    with open(cat.DATA / "octt-2.0.1.csv", encoding="utf-8", newline="") as f:
        assert [r["id"] for r in csv.DictReader(f)].count("TC_C_28_CS") == 2
    assert cat.case("TC_C_28_CS").name.endswith("Invalid & Not Accepted")
    assert cat.case("TC_C_58_CS").name.endswith("LocalAuthListDisablePostAuthorize")


def test_pytest_name_round_trip() -> None:
    assert cat.pytest_name("TC_036_CS") == "test_tc_036_cs"
    assert cat.pytest_name("TC_B_57_CS") == "test_tc_b_57_cs"
    for version in ("1.6", "2.0.1"):
        for cid in cat.load(version):  # type: ignore[arg-type]
            assert cat.case_from_test_name(cat.pytest_name(cid)).id == cid
    assert cat.case_from_test_name("suites/ocpp/test_x.py::test_tc_037_3_cs[rig]").id == "TC_037_3_CS"
    with pytest.raises(ValueError, match="test_boot"):
        cat.case_from_test_name("test_boot")


def test_unknown_ids() -> None:
    with pytest.raises(KeyError) as err:
        cat.case("TC_999_CS")
    assert str(err.value) == "unknown OCTT test case 'TC_999_CS' for OCPP 1.6"
    with pytest.raises(KeyError, match=r"'TC_Z_99_CSMS' for OCPP 2\.0\.1"):
        cat.case("TC_Z_99_CSMS")
    with pytest.raises(KeyError, match="'boot' is not an OCTT test case id"):
        cat.case("boot")
    with pytest.raises(KeyError, match="TC_36"):
        cat.pytest_name("TC_36")


# --- certification ----------------------------------------------------------------------------------


def test_certification_profiles() -> None:
    assert cat.certification_profiles() == [
        "Core", "Advanced Security", "Local Authorization List Management", "Smart Charging",
        "Advanced Device Management", "Reservation", "Advanced User Interface", "ISO 15118 Support"]


@pytest.mark.parametrize(("profile", "sut", "m", "c"), [
    ("Core", "CS", 107, 117), ("Core", "CSMS", 106, 26), ("Smart Charging", "CS", 34, 3),
    ("Smart Charging", "CSMS", 22, 1), ("ISO 15118 Support", "CS", 54, 7)])
def test_certification_counts(profile: str, sut: str, m: int, c: int) -> None:
    with open(cat.DATA / "certification-2.0.1.csv", encoding="utf-8", newline="") as f:
        bases = [r["base_id"] for r in csv.DictReader(f) if r["profile"] == profile]
    flags = Counter(cat.requirement(b, profile, sut) for b in bases)  # type: ignore[arg-type]
    assert (flags["M"], flags["C"]) == (m, c)


def test_requirement() -> None:
    assert cat.requirement("TC_A_02", "Core", "CS") is None
    assert cat.requirement("TC_A_02", "Core", "CSMS") == "M"
    assert cat.requirement("TC_B_12_CS", "Core", "CSMS") == "C"
    assert cat.requirement("TC_K_12", "Smart Charging", "CS") == "C"
    assert cat.requirement("TC_K_12", "Core", "CS") is None
    with pytest.raises(ValueError, match="Smart charging"):
        cat.requirement("TC_K_12", "Smart charging", "CS")


def test_every_flagged_certification_case_exists() -> None:
    cases = cat.load("2.0.1")
    for profile in cat.certification_profiles():
        for sut in ("CS", "CSMS"):
            decl = Declaration(product="p", ocpp_version="2.0.1", sut=sut, profiles=[profile])
            assert all(a.case.id in cases and a.case.sut == sut for a in cat.applicable(decl))


# --- declarations -----------------------------------------------------------------------------------


def test_load_valid_declaration(tmp_path: Path) -> None:
    path = declare(tmp_path, """
product: Acme Wallbox 22
ocpp_version: 1.6
profiles: [Core, Smart Charging]
features: [detachable cable]
excluded:
  TC_036_CS: no meter on this variant
""")
    decl = cat.load_declaration(path)
    assert decl.ocpp_version == "1.6" and decl.sut == "CS"
    assert decl.profiles == ["Core", "Smart Charging"] and decl.features == ["detachable cable"]
    assert decl.excluded == {"TC_036_CS": "no meter on this variant"}
    minimal = cat.load_declaration(declare(tmp_path, "product: X\nocpp_version: '2.0.1'\nsut: CSMS\nprofiles: [Core]\n"))
    assert (minimal.sut, minimal.features, minimal.excluded) == ("CSMS", [], {})


@pytest.mark.parametrize(("text", "expected"), [
    ("product: X\nocpp_version: 1.6\nprofiles: [Core, Smart Charging, ISO 15118 Support]\n",
     "profiles: unknown OCPP 1.6 profile(s) ['ISO 15118 Support']"),
    ("product: X\nocpp_version: '2.0.1'\nprofiles: [Core, Local Auth List Management]\n",
     "profiles: unknown OCPP 2.0.1 profile(s) ['Local Auth List Management']"),
    ("product: X\nocpp_version: 1.6\nprofiles: [Core]\ncolour: red\n", "colour: Extra inputs are not permitted"),
    ("product: X\nocpp_version: 2.0\nprofiles: [Core]\n", "ocpp_version: Input should be '1.6' or '2.0.1'"),
    ("product: X\nocpp_version: 1.6\nsut: EV\nprofiles: [Core]\n", "sut: Input should be 'CS' or 'CSMS'"),
    ("product: X\nocpp_version: 1.6\n", "profiles: Field required"),
    ("product: X\nocpp_version: 1.6\nprofiles: [Core]\nexcluded: {TC_064_CSMS: n/a}\n",
     "excluded: 'TC_064_CSMS' is not an OCPP 1.6 test case for SUT CS"),
    ("product: X\nocpp_version: '2.0.1'\nprofiles: [Core]\nexcluded: {TC_036_CS: n/a}\n",
     "excluded: 'TC_036_CS' is not an OCPP 2.0.1 test case"),
    ("- just a list\n", "a declaration is a mapping"),
    ("product: [unclosed\n", "cannot read declaration"),
])
def test_declaration_errors(tmp_path: Path, text: str, expected: str) -> None:
    path = declare(tmp_path, text)
    with pytest.raises(DeclarationError) as err:
        cat.load_declaration(path)
    message = str(err.value)
    assert message.startswith(f"{path}: ") and expected in message
    assert "\n" not in message


def test_missing_declaration_file(tmp_path: Path) -> None:
    with pytest.raises(DeclarationError, match="nope.yaml: cannot read"):
        cat.load_declaration(tmp_path / "nope.yaml")


# --- selection --------------------------------------------------------------------------------------


def test_applicable_16_core_and_smart_charging() -> None:
    decl = Declaration(product="p", ocpp_version="1.6", profiles=["Core", "Smart Charging"])
    selected = cat.applicable(decl)
    assert len(selected) == 48 + 10
    assert {a.requirement for a in selected} == {"M"}
    assert all(a.case.sut == "CS" and a.reason is None for a in selected)
    assert Counter(a.profiles for a in selected) == {("Core",): 48, ("Smart Charging",): 10}
    ids = [a.case.id for a in selected]
    assert ids[0] == "TC_001_CS" and "TC_066_CS" in ids and "TC_043_CS" not in ids  # local list: not claimed
    firmware = Declaration(product="p", ocpp_version="1.6", sut="CSMS", profiles=["Firmware Management"])
    assert len(cat.applicable(firmware)) == 5  # incl. the 2 Diagnostics cases


def test_applicable_2_0_1_core_cs() -> None:
    decl = Declaration(product="p", ocpp_version="2.0.1", profiles=["Core"])
    selected = cat.applicable(decl)
    flags = Counter(a.requirement for a in selected)
    assert flags == {"M": 107, "C": 117}
    assert all(a.case.sut == "CS" and a.profiles == ("Core",) for a in selected)
    by_id = {a.case.id: a for a in selected}
    assert by_id["TC_B_57_CS"].requirement == "M"
    assert "TC_A_02_CS" not in by_id and "TC_K_01_CS" not in by_id  # CSMS-only; Smart Charging


def test_overlapping_profiles_are_counted_once() -> None:
    decl = Declaration(product="p", ocpp_version="2.0.1", profiles=["Smart Charging", "ISO 15118 Support"])
    selected = {a.case.id: a for a in cat.applicable(decl)}
    assert selected["TC_K_01_CS"].profiles == ("Smart Charging", "ISO 15118 Support")
    assert len(selected) == len({a.case.id for a in cat.applicable(decl)})
    report = cat.precheck_report(decl, {}, {})
    assert report.counts()["applicable"] < report.counts("Smart Charging")["applicable"] + report.counts(
        "ISO 15118 Support")["applicable"]
    assert report.counts("Smart Charging")["applicable"] == 37
    for claimed in (["Core", "Advanced Device Management"], ["Advanced Device Management", "Core"]):
        csms = Declaration(product="p", ocpp_version="2.0.1", sut="CSMS", profiles=claimed)
        b12 = {a.case.id: a for a in cat.applicable(csms)}["TC_B_12_CSMS"]  # Core: C, ADM: M
        assert (b12.requirement, set(b12.profiles)) == ("M", set(claimed))


def test_exclusions() -> None:
    decl = Declaration(product="p", ocpp_version="2.0.1", profiles=["Core"],
                       excluded={"TC_F_05_CS": "fixed cable", "TC_B_57_CS": "lab waiver"})
    by_id = {a.case.id: a for a in cat.applicable(decl)}
    assert (by_id["TC_F_05_CS"].requirement, by_id["TC_F_05_CS"].reason) == ("-", "fixed cable")
    assert by_id["TC_B_57_CS"].requirement == "-"
    assert Counter(a.requirement for a in by_id.values()) == {"M": 106, "C": 116, "-": 2}


# --- report -----------------------------------------------------------------------------------------

SMART_16 = ["TC_056_CS", "TC_057_CS", "TC_058_1_CS", "TC_058_2_CS", "TC_082_CS", "TC_066_CS",
            "TC_067_CS", "TC_072_CS", "TC_059_CS", "TC_060_CS"]


def test_report_counts_and_ok() -> None:
    decl = Declaration(product="Acme", ocpp_version="1.6", profiles=["Smart Charging"],
                       excluded={"TC_072_CS": "no stacking"})
    assert [a.case.id for a in cat.applicable(decl)] == SMART_16
    outcomes = {"TC_056_CS": "passed", "TC_057_CS": "passed", "TC_058_1_CS": "failed", "TC_058_2_CS": "error",
                "TC_082_CS": "skipped", "TC_066_CS": "skipped", "TC_067_CS": "passed",
                "TC_072_CS": "failed", "TC_001_CS": "failed"}  # excluded / not claimed: ignored
    report = cat.precheck_report(decl, outcomes, {"TC_066_CS": "needs a metered EV", "TC_067_CS": "manual"})
    assert report.counts("Smart Charging") == {"applicable": 9, "passed": 3, "failed": 2, "skipped": 1,
                                               "not_automated": 3, "excluded": 1}
    assert report.counts() == report.counts("Smart Charging")
    assert report.mandatory_failed == ["TC_058_1_CS", "TC_058_2_CS"] and not report.ok
    assert report.status["TC_067_CS"] == "passed"  # an outcome beats not_automated
    assert report.reasons == {"TC_066_CS": "needs a metered EV", "TC_059_CS": "no test", "TC_060_CS": "no test",
                              "TC_072_CS": "no stacking"}

    data = json.loads(json.dumps(report.to_dict()))
    assert data["schema"] == "evhil.precheck/1" and data["ok"] is False
    assert data["profiles"]["Smart Charging"]["not_automated"] == 3
    assert data["mandatory_failed"] == ["TC_058_1_CS", "TC_058_2_CS"]
    assert {c["id"]: c["status"] for c in data["cases"]}["TC_058_2_CS"] == "error"

    text = report.render()
    assert "Smart Charging" in text and "Mandatory failed: TC_058_1_CS, TC_058_2_CS" in text
    assert "Not automated (needs a metered EV): TC_066_CS" in text and text.endswith("RESULT: FAILED")
    table = {line.split("  ")[0]: line.split()[-6:] for line in text.splitlines()[1:5]}
    assert table["Smart Charging"] == ["9", "3", "2", "1", "3", "1"]
    assert table["Total (distinct)"] == table["Smart Charging"]

    passing = cat.precheck_report(decl, {cid: "passed" for cid in SMART_16[:3]}, {})
    assert passing.ok and passing.mandatory_failed == [] and passing.render().endswith("RESULT: OK")


def test_report_conditional_failure_is_ok() -> None:
    decl = Declaration(product="p", ocpp_version="2.0.1", profiles=["Smart Charging"])
    report = cat.precheck_report(decl, {"TC_K_12_CS": "failed", "TC_K_01_CS": "passed"}, {})
    assert report.ok and "Conditional failed: TC_K_12_CS" in report.render()
    assert not cat.precheck_report(decl, {"TC_K_01_CS": "error"}, {}).ok
    with pytest.raises(ValueError, match="unknown outcome"):
        cat.precheck_report(decl, {"TC_K_01_CS": "xfail"}, {})


def test_rich_table() -> None:
    from rich.console import Console

    decl = Declaration(product="p", ocpp_version="1.6", profiles=["Core", "Smart Charging"])
    console = Console(width=120, record=True)
    console.print(cat.rich_table(cat.precheck_report(decl, {}, {})))
    assert "Total (distinct)" in console.export_text()


def test_report_severity_follows_the_certification_flags() -> None:
    import allure

    from hil.ocpp.conformance import severity

    assert severity(cat.case("TC_B_01_CS")) is allure.severity_level.CRITICAL  # M in Core
    assert severity(cat.case("TC_E_54_CS")) is allure.severity_level.NORMAL  # C in Core
    assert severity(cat.case("TC_003_CS")) is allure.severity_level.NORMAL  # 1.6: no flags
    unflagged = next(tc for tc in cat.load("2.0.1").values() if all(
        cat.requirement(tc.base_id, p, tc.sut) is None for p in cat.certification_profiles()))
    assert severity(unflagged) is allure.severity_level.MINOR
