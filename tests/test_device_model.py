"""The 2.0.1 device model's typed validation, its three operations, and the station's meter signatures."""

from __future__ import annotations

import base64

import pytest
from cryptography.exceptions import InvalidSignature

from hil.ocpp.charging_station import MeterSignature
from hil.ocpp.device_model import Variable, standard_model
from hil.ocpp.schemas import validate


@pytest.mark.parametrize("data_type, good, bad", [
    ("integer", ["300", "-1", "+7"], ["300.1", "true", "abc", "", "2026-12-01T00:00:00Z"]),
    ("decimal", ["300", "300.1", "-0.5"], ["abc", "nan", "inf", "true", ""]),
    ("boolean", ["true", "false"], ["True", "1", "yes", ""]),
    ("dateTime", ["2026-12-01T10:00:00Z", "2026-12-01T10:00:00.123+01:00"], ["300", "abc", "true"]),
])
def test_values_are_checked_against_the_data_type(data_type: str, good: list[str], bad: list[str]) -> None:
    v = Variable("X", "Y", "0", data_type)  # type: ignore[arg-type]
    assert all(v.accepts(value) for value in good)
    assert not any(v.accepts(value) for value in bad)


def test_lists_and_limits() -> None:
    option = Variable("X", "Y", "A", "OptionList", values_list="A,B")
    assert option.accepts("B") and not option.accepts("A,B") and not option.accepts("C")
    members = Variable("X", "Y", "A", "MemberList", values_list="A,B,C")
    assert members.accepts("C,A") and not members.accepts("A,A") and not members.accepts("A,D")
    bounded = Variable("X", "Y", "1", "integer", min_limit=0, max_limit=10)
    assert bounded.accepts("10") and not bounded.accepts("11") and not bounded.accepts("-1")


def _where(component: str, variable: str, **kw: object) -> dict:
    return {"component": {"name": component, **kw}, "variable": {"name": variable}}


def test_get_and_set_answer_as_the_specification_says() -> None:
    dm = standard_model("CS1", 2, vendor="v", model="m")
    assert dm.set({**_where("OCPPCommCtrlr", "OfflineThreshold"), "attributeValue": "300"})["attributeStatus"] == "Accepted"
    assert dm.get(_where("OCPPCommCtrlr", "OfflineThreshold"))["attributeValue"] == "300"
    assert dm.set({**_where("OCPPCommCtrlr", "OfflineThreshold"), "attributeValue": "3.5"})["attributeStatus"] == "Rejected"
    assert dm.get(_where("Nope", "OfflineThreshold"))["attributeStatus"] == "UnknownComponent"
    assert dm.get(_where("OCPPCommCtrlr", "Nope"))["attributeStatus"] == "UnknownVariable"
    assert dm.get({**_where("OCPPCommCtrlr", "OfflineThreshold"), "attributeType": "Target"})[
        "attributeStatus"] == "NotSupportedAttributeType"
    timeout = {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "MessageTimeout", "instance": "Default"},
               "attributeValue": "10"}
    assert dm.set(timeout)["attributeStatus"] == "Rejected"
    priority = {**_where("OCPPCommCtrlr", "NetworkConfigurationPriority"), "attributeValue": "1,0"}
    assert dm.set(priority)["attributeStatus"] == "RebootRequired"
    assert dm.get(_where("SecurityCtrlr", "BasicAuthPassword"))["attributeStatus"] == "Rejected"  # write-only
    assert dm.get(_where("EVSE", "Power", evse={"id": 2}))["attributeStatus"] == "Accepted"
    assert dm.get(_where("EVSE", "Power", evse={"id": 3}))["attributeStatus"] == "UnknownComponent"


def test_base_reports_page_and_validate_against_the_schema() -> None:
    dm = standard_model("CS1", 2, vendor="v", model="m")
    dm.items_per_report = 7
    pages = dm.pages("FullInventory")
    assert len(pages) > 2 and all(len(p) <= 7 for p in pages)
    assert sum(len(p) for p in pages) == len(list(dm))
    for n, page in enumerate(pages):
        validate("2.0.1", "NotifyReport", "request", {"requestId": 1, "generatedAt": "2026-12-01T00:00:00Z",
                                                      "seqNo": n, "tbc": n < len(pages) - 1, "reportData": page})
    writable = [d for p in dm.pages("ConfigurationInventory") for d in p]
    assert writable and all(d["variableAttribute"][0]["mutability"] != "ReadOnly" for d in writable)
    assert all("value" not in d["variableAttribute"][0] for d in writable
               if d["variableAttribute"][0]["mutability"] == "WriteOnly")


def test_seeding_names_an_unknown_variable() -> None:
    dm = standard_model("CS1", 1, vendor="v", model="m")
    dm.seed({"OCPPCommCtrlr.MessageTimeout[Default]": "5"})
    assert dm.text("OCPPCommCtrlr", "MessageTimeout", "Default") == "5"
    with pytest.raises(KeyError, match="OCPPCommCtrlr.MessageTimeout"):
        dm.seed({"OCPPCommCtrlr.MessageTimeout": "5"})


def test_signed_readings_verify_and_tampering_is_detected() -> None:
    meter = MeterSignature()
    signed = meter.sign({"value": 1234.5, "unit": "Wh"})
    assert meter.verify(signed) == {"value": 1234.5, "unit": "Wh"}
    text = base64.b64decode(signed["signedMeterData"]).decode().replace("1234.5", "9234.5")
    with pytest.raises(InvalidSignature):
        meter.verify(dict(signed, signedMeterData=base64.b64encode(text.encode()).decode()))
