"""OCPP 2.0.1 block B, provisioning, charging station under test: cold boot, the device model (GetVariables,
SetVariables, base reports), reset, network profiles, the offline threshold and reconnect back-off
(OCTT 2.0.1 Part 6 §B).

evhil plays the CSMS; the station is driven through the control seam.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from hil.ocpp import states201 as st
from hil.ocpp.conformance import ConformanceFailure, octt, show, step
from hil.ocpp.csms import CSMS, boot_answer, now_iso
from hil.ocpp.fixtures import ChargerUnderTest
from hil.ocpp.rpc import CallError
from hil.ocpp.tls import make_certificates, server_context

S = st.SETTINGS
T = S.message_timeout
OFFLINE_THRESHOLD = {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "OfflineThreshold"}}
LOCAL_AUTHORIZE_OFFLINE = {"component": {"name": "AuthCtrlr"}, "variable": {"name": "LocalAuthorizeOffline"}}
REQUIRED = {
    "OCPPCommCtrlr": ["FileTransferProtocols", "HeartbeatInterval", "MessageTimeout", "MessageAttemptInterval",
                      "MessageAttempts", "NetworkConfigurationPriority", "NetworkProfileConnectionAttempts",
                      "OfflineThreshold", "ResetRetries", "RetryBackOffRandomRange", "RetryBackOffRepeatTimes",
                      "RetryBackOffWaitMinimum", "UnlockOnEVSideDisconnect", "WebSocketPingInterval"],
    "TxCtrlr": ["EVConnectionTimeOut", "StopTxOnEVSideDisconnect", "TxStartPoint", "TxStopPoint",
                "StopTxOnInvalidId"],
    "DeviceDataCtrlr": ["ItemsPerMessage", "BytesPerMessage"],
    "ClockCtrlr": ["DateTime", "TimeSource"],
    "SecurityCtrlr": ["OrganizationName", "CertificateEntries", "SecurityProfile"],
    "SampledDataCtrlr": ["TxEndedMeasurands", "TxEndedInterval", "TxStartedMeasurands", "TxUpdatedMeasurands",
                         "TxUpdatedInterval"],
    "AlignedDataCtrlr": ["Measurands", "Interval", "TxEndedMeasurands", "TxEndedInterval"],
    "AuthCtrlr": ["AuthorizeRemoteStart", "LocalAuthorizeOffline", "LocalPreAuthorize"],
    "ChargingStation": ["AvailabilityState", "Available", "SupplyPhases"],
    "EVSE": ["AvailabilityState", "Available", "Power", "SupplyPhases"],
    "Connector": ["AvailabilityState", "Available", "ConnectorType", "SupplyPhases"],
}
"""Required variables of the Core functional blocks and the charging infrastructure (Part 2,
"Referenced Components and Variables")."""


def _result(results: list[dict[str, Any]], component: str, variable: str) -> dict[str, Any]:
    for r in results:
        if r["component"]["name"] == component and r["variable"]["name"] == variable:
            return r
    raise ConformanceFailure(f"no result for {component}.{variable} in {show(results)}")


def _check(result: dict[str, Any], status: str, **fields: Any) -> None:
    if result["attributeStatus"] != status:
        raise ConformanceFailure(f"{result['component']['name']}.{result['variable']['name']}: attributeStatus "
                                 f"{result['attributeStatus']}, expected {status}")
    for key, value in fields.items():
        if result.get(key) != value:
            raise ConformanceFailure(f"{result['component']['name']}.{result['variable']['name']}: {key} "
                                     f"{result.get(key)!r}, expected {value!r}")
    info = result.get("attributeStatusInfo")
    if status == "Accepted" and info is not None and info.get("reasonCode") != "NoError":
        raise ConformanceFailure(f"attributeStatusInfo {show(info)} on an Accepted result")


async def _get(cs: ChargerUnderTest, *data: dict[str, Any]) -> list[dict[str, Any]]:
    return (await cs.session.call("GetVariables", {"getVariableData": list(data)}))["getVariableResult"]


async def _set(cs: ChargerUnderTest, *data: dict[str, Any]) -> list[dict[str, Any]]:
    return (await cs.session.call("SetVariables", {"setVariableData": list(data)}))["setVariableResult"]


async def _all_connectors(cs: ChargerUnderTest, expected: dict[int, str] | None = None) -> None:
    """Every connector reported after a boot (``expected``: EVSE -> status; the others Available)."""
    for evse in range(1, cs.connectors + 1):
        status = (expected or {}).get(evse, "Available")
        await cs.session.expect("StatusNotification", st.status_match(S, status, evse), timeout=T)


async def _report(cs: ChargerUnderTest, base: str) -> list[dict[str, Any]]:
    """GetBaseReport accepted, then every NotifyReport part with the paging checks; the report data."""
    request_id = 4711
    with step(1, f"GetBaseReport {base}: Accepted"):
        answer = await cs.session.call("GetBaseReport", {"requestId": request_id, "reportBase": base})
        if answer["status"] != "Accepted":
            raise ConformanceFailure(f"GetBaseReport answered {answer['status']}, expected Accepted")
    data: list[dict[str, Any]] = []
    with step(3, "NotifyReport parts: requestId, generatedAt, seqNo from 0, tbc until the last"):
        seq = 0
        while True:
            part = await cs.session.expect("NotifyReport", {"requestId": request_id, "seqNo": seq}, timeout=T)
            if "generatedAt" not in part:
                raise ConformanceFailure("NotifyReport without generatedAt")
            data += part.get("reportData", [])
            if not part["tbc"]:
                break
            seq += 1
    with step("post", "every variable has characteristics; list types carry their valuesList"):
        for item in data:
            label = f"{item['component']['name']}.{item['variable']['name']}"
            ch = item.get("variableCharacteristics")
            if ch is None:
                raise ConformanceFailure(f"{label} has no variableCharacteristics")
            if ch["dataType"] in ("OptionList", "SequenceList", "MemberList"):
                allowed = [v for v in (ch.get("valuesList") or "").split(",") if v]
                if not allowed:
                    raise ConformanceFailure(f"{label} is a {ch['dataType']} without valuesList")
                for attribute in item["variableAttribute"]:
                    value = attribute.get("value")
                    members = [value] if ch["dataType"] == "OptionList" else [v for v in (value or "").split(",") if v]
                    if value is not None and not all(m in allowed for m in members):
                        raise ConformanceFailure(f"{label} value {value!r} is not within {ch['valuesList']!r}")
            for attribute in item["variableAttribute"]:
                if attribute.get("mutability") == "WriteOnly" and "value" in attribute:
                    raise ConformanceFailure(f"{label} is WriteOnly but its value is reported")
    return data


def _present(data: list[dict[str, Any]], components: tuple[str, ...] | None = None) -> None:
    """Every required variable of ``components`` (default: all of REQUIRED) is in the report data."""
    seen = {(d["component"]["name"], d["variable"]["name"]) for d in data}
    for component in components or tuple(REQUIRED):
        for name in REQUIRED[component]:
            if (component, name) not in seen:
                raise ConformanceFailure(f"required variable {component}.{name} missing from the report")


# -- B01-B03 cold boot -------------------------------------------------------------------------------------
async def _heartbeats_every(cs: ChargerUnderTest, interval: int, since: float, how: str) -> None:
    """With nothing else exchanged, Heartbeats follow ``interval`` s apart (± <max time deviation>), the first
    within ``interval`` s (+ the deviation) of ``since`` (wall clock [s]): HeartbeatInterval is "the interval of
    inactivity (no OCPP exchanges) after which the Charging Station sends a HeartbeatRequest"."""
    allowed = interval + S.max_time_deviation
    times = []
    for k in range(2):
        try:
            frame = await cs.session.expect_frame("Heartbeat", timeout=allowed, strict=True)
        except ConformanceFailure:
            last = times[-1] if times else since
            raise ConformanceFailure(f"no Heartbeat within {allowed:g} s {'of the previous one' if times else how}; "
                                     f"HeartbeatInterval is {interval} s (± {S.max_time_deviation:g} s) "
                                     f"({time.time() - last:.1f} s without one)") from None
        times.append(frame.time)
    first, gap = times[0] - since, times[1] - times[0]
    if first > allowed or abs(gap - interval) > S.max_time_deviation:
        raise ConformanceFailure(f"Heartbeat frames {first:.1f} s {how}, then {gap:.1f} s apart; HeartbeatInterval "
                                 f"is {interval} s (± {S.max_time_deviation:g} s)")


@octt("TC_B_01_CS")
async def test_tc_b_01_cs(cs201: ChargerUnderTest) -> None:
    session = cs201.session
    session.answer("BootNotification", boot_answer("Accepted", S.heartbeat_interval))
    with step(1, f"Booted: BootNotification Accepted (interval {S.heartbeat_interval} s), every connector Available, "
                 "SecurityEventNotification"):
        await cs201.boot()
        boot = await session.expect("BootNotification", timeout=T)
        if "chargingStation" not in boot or "reason" not in boot:
            raise ConformanceFailure(f"BootNotification {show(boot)}")
        await _all_connectors(cs201)
        await session.expect("SecurityEventNotification", timeout=T)
    with step("evhil", f"the interval of the BootNotificationResponse is the heartbeat interval (Part 2 "
                       f"BootNotificationResponse.interval): Heartbeats {S.heartbeat_interval} s apart"):
        await _heartbeats_every(cs201, S.heartbeat_interval, session.trace.frames[-1].time, "after the boot")
    interval = 2 * S.heartbeat_interval  # far enough from the boot interval to tell them apart (± deviation)
    with step("evhil", f"SetVariables OCPPCommCtrlr.HeartbeatInterval = {interval}: Heartbeats then {interval} s "
                       "apart (measured on the wire, not read back)"):
        await st.set_variables(session, OCPPCommCtrlr__HeartbeatInterval=interval)
        await _heartbeats_every(cs201, interval, time.time(), "after the SetVariables")


@octt("TC_B_02_CS")
async def test_tc_b_02_cs(cs201: ChargerUnderTest) -> None:
    session = cs201.session
    session.answer("BootNotification", boot_answer("Pending", 30))
    with step(1, "BootNotification answered Pending"):
        await cs201.boot()
        await session.expect("BootNotification", timeout=T)
        session.forbid("StatusNotification", "Heartbeat", "TransactionEvent", "Authorize", "MeterValues",
                       "SecurityEventNotification")
    with step(3, "SetVariables OfflineThreshold = 300 while Pending: Accepted"):
        _check((await _set(cs201, {**OFFLINE_THRESHOLD, "attributeValue": "300"}))[0], "Accepted")
    with step(5, "GetVariables OfflineThreshold while Pending: Accepted"):
        _check((await _get(cs201, OFFLINE_THRESHOLD))[0], "Accepted", attributeValue="300")
    with step(7, "GetBaseReport FullInventory while Pending: every part delivered"):
        await _report(cs201, "FullInventory")
    with step(11, "RequestStartTransaction while Pending: Rejected"):
        await session.call_expect("RequestStartTransaction", {"idToken": st.token(S), "evseId": S.evse,
                                                              "remoteStartId": 1}, "Rejected")
    with step(13, "TriggerMessage BootNotification: Accepted, BootNotification reason Triggered at once"):
        session.answer("BootNotification", boot_answer("Accepted", S.heartbeat_interval))
        await session.call_expect("TriggerMessage", {"requestedMessage": "BootNotification"}, "Accepted",
                                  "NotImplemented")
        await session.expect("BootNotification", {"reason": "Triggered"}, timeout=T)
    session.allow("StatusNotification", "Heartbeat", "TransactionEvent", "Authorize", "MeterValues",
                  "SecurityEventNotification")
    with step(17, "every connector reported Available"):
        await _all_connectors(cs201)


@octt("TC_B_03_CS")
async def test_tc_b_03_cs(cs201: ChargerUnderTest) -> None:
    session = cs201.session
    interval = 2
    session.answer("BootNotification", boot_answer("Rejected", interval), boot_answer("Accepted", S.heartbeat_interval))
    with step(1, "BootNotification answered Rejected"):
        await cs201.boot()
        first = await session.expect_frame("BootNotification", timeout=T)
    with step(3, f"BootNotification again no earlier than {interval} s, nothing in between"):
        session.forbid("StatusNotification", "Heartbeat", "NotifyEvent", "SecurityEventNotification")
        second = await session.expect_frame("BootNotification", timeout=T + interval)
        session.allow("StatusNotification", "Heartbeat", "NotifyEvent", "SecurityEventNotification")
        if second.time - first.time < interval - S.max_time_deviation:
            raise ConformanceFailure(f"second BootNotification after {second.time - first.time:.2f} s, "
                                     f"the Rejected answer asked for {interval} s")
    with step(5, "every connector reported Available"):
        await _all_connectors(cs201)


@octt("TC_B_30_CS")
async def test_tc_b_30_cs(cs201: ChargerUnderTest) -> None:
    session = cs201.session
    session.answer("BootNotification", boot_answer("Rejected", 30))
    with step(1, "BootNotification answered Rejected"):
        await cs201.boot()
        await session.expect("BootNotification", timeout=T)
        await asyncio.sleep(0.2)
    with step(3, "GetBaseReport while Rejected: CALLERROR SecurityError"):
        if not session.connected:
            return  # the station dropped the socket: nothing to check
        try:
            answer = await session.call("GetBaseReport", {"requestId": 1, "reportBase": "FullInventory"})
        except CallError as exc:
            if exc.code != "SecurityError":
                raise ConformanceFailure(f"CALLERROR {exc.code}, expected SecurityError") from None
            return
        raise ConformanceFailure(f"GetBaseReport answered {show(answer)} while Rejected, expected CALLERROR SecurityError")


# -- B06-B11, B32-B39 variables ----------------------------------------------------------------------------
@octt("TC_B_06_CS")
async def test_tc_b_06_cs(booted201: ChargerUnderTest) -> None:
    await st.set_variables(booted201.session, OCPPCommCtrlr__OfflineThreshold=300)
    with step(1, "GetVariables OCPPCommCtrlr.OfflineThreshold Actual"):
        result = (await _get(booted201, {**OFFLINE_THRESHOLD, "attributeType": "Actual"}))[0]
        _check(result, "Accepted", attributeType="Actual", attributeValue="300")


@octt("TC_B_07_CS")
async def test_tc_b_07_cs(booted201: ChargerUnderTest) -> None:
    await st.set_variables(booted201.session, OCPPCommCtrlr__OfflineThreshold=300, AuthCtrlr__LocalAuthorizeOffline=True)
    with step(1, "GetVariables OfflineThreshold and LocalAuthorizeOffline"):
        results = await _get(booted201, {**OFFLINE_THRESHOLD, "attributeType": "Actual"},
                             {**LOCAL_AUTHORIZE_OFFLINE, "attributeType": "Actual"})
        _check(_result(results, "OCPPCommCtrlr", "OfflineThreshold"), "Accepted", attributeValue="300")
        _check(_result(results, "AuthCtrlr", "LocalAuthorizeOffline"), "Accepted", attributeValue="true")


@octt("TC_B_09_CS")
async def test_tc_b_09_cs(booted201: ChargerUnderTest) -> None:
    with step(1, "SetVariables OfflineThreshold = 300 Actual: Accepted"):
        result = (await _set(booted201, {**OFFLINE_THRESHOLD, "attributeValue": "300", "attributeType": "Actual"}))[0]
        _check(result, "Accepted", attributeType="Actual", component=OFFLINE_THRESHOLD["component"],
               variable=OFFLINE_THRESHOLD["variable"])


@octt("TC_B_10_CS")
async def test_tc_b_10_cs(booted201: ChargerUnderTest) -> None:
    with step(1, "SetVariables OfflineThreshold = 300 and LocalAuthorizeOffline = true: both Accepted"):
        results = await _set(booted201, {**OFFLINE_THRESHOLD, "attributeValue": "300", "attributeType": "Actual"},
                             {**LOCAL_AUTHORIZE_OFFLINE, "attributeValue": "true", "attributeType": "Actual"})
        _check(_result(results, "OCPPCommCtrlr", "OfflineThreshold"), "Accepted", attributeType="Actual")
        _check(_result(results, "AuthCtrlr", "LocalAuthorizeOffline"), "Accepted", attributeType="Actual")


@octt("TC_B_11_CS")
async def test_tc_b_11_cs(booted201: ChargerUnderTest) -> None:
    targets = [("OCPPCommCtrlr", "OfflineThreshold", "integer"),
               ("SmartChargingCtrlr", "LimitChangeSignificance", "decimal"),
               ("AuthCtrlr", "AuthorizeRemoteStart", "boolean"),
               ("ClockCtrlr", "NextTimeOffsetTransitionDateTime", "dateTime")]
    values = {"integer": "300", "decimal": "300.1", "boolean": "true", "dateTime": now_iso(), "string": "abc"}
    valid = {"integer": {"integer"}, "decimal": {"integer", "decimal"}, "boolean": {"boolean"},
             "dateTime": {"dateTime"}}
    for kind, value in values.items():
        with step(f"{kind}", f"SetVariables with {value!r} on an integer, decimal, boolean and dateTime variable"):
            for component, name, data_type in targets:
                where = {"component": {"name": component}, "variable": {"name": name}}
                if (await _get(booted201, where))[0]["attributeStatus"] in ("UnknownComponent", "UnknownVariable"):
                    continue  # only if supported
                result = (await _set(booted201, {**where, "attributeValue": value}))[0]
                expected = "Accepted" if kind in valid[data_type] else "Rejected"
                _check(result, expected, attributeType="Actual")


@octt("TC_B_32_CS")
async def test_tc_b_32_cs(booted201: ChargerUnderTest) -> None:
    with step(1, "GetVariables of an unknown component: UnknownComponent"):
        result = (await _get(booted201, {"component": {"name": "UnknownComponent"},
                                         "variable": {"name": "OfflineThreshold"}}))[0]
        _check(result, "UnknownComponent", component={"name": "UnknownComponent"}, variable={"name": "OfflineThreshold"})


@octt("TC_B_33_CS")
async def test_tc_b_33_cs(booted201: ChargerUnderTest) -> None:
    with step(1, "GetVariables of an unknown variable: UnknownVariable"):
        result = (await _get(booted201, {"component": {"name": "OCPPCommCtrlr"},
                                         "variable": {"name": "UnknownVariable"}}))[0]
        _check(result, "UnknownVariable", component={"name": "OCPPCommCtrlr"}, variable={"name": "UnknownVariable"})


@octt("TC_B_34_CS")
async def test_tc_b_34_cs(booted201: ChargerUnderTest) -> None:
    with step(1, "GetVariables OfflineThreshold Target: NotSupportedAttributeType"):
        result = (await _get(booted201, {**OFFLINE_THRESHOLD, "attributeType": "Target"}))[0]
        _check(result, "NotSupportedAttributeType", attributeType="Target")


@octt("TC_B_35_CS")
async def test_tc_b_35_cs(booted201: ChargerUnderTest) -> None:
    with step(1, "SetVariables of an unknown component: UnknownComponent"):
        result = (await _set(booted201, {"component": {"name": "UnknownComponent"},
                                         "variable": {"name": "OfflineThreshold"}, "attributeValue": "300"}))[0]
        _check(result, "UnknownComponent", component={"name": "UnknownComponent"})


@octt("TC_B_36_CS")
async def test_tc_b_36_cs(booted201: ChargerUnderTest) -> None:
    with step(1, "SetVariables of an unknown variable: UnknownVariable"):
        result = (await _set(booted201, {"component": {"name": "OCPPCommCtrlr"},
                                         "variable": {"name": "UnknownVariable"}, "attributeValue": "300"}))[0]
        _check(result, "UnknownVariable", variable={"name": "UnknownVariable"})


@octt("TC_B_37_CS")
async def test_tc_b_37_cs(booted201: ChargerUnderTest) -> None:
    with step(1, "SetVariables OfflineThreshold Target: NotSupportedAttributeType"):
        result = (await _set(booted201, {**OFFLINE_THRESHOLD, "attributeValue": "300", "attributeType": "Target"}))[0]
        _check(result, "NotSupportedAttributeType", attributeType="Target")


@octt("TC_B_39_CS")
async def test_tc_b_39_cs(booted201: ChargerUnderTest) -> None:
    with step(1, "SetVariables OCPPCommCtrlr.MessageTimeout[Default] (read-only): Rejected"):
        result = (await _set(booted201, {"component": {"name": "OCPPCommCtrlr"},
                                         "variable": {"name": "MessageTimeout", "instance": "Default"},
                                         "attributeValue": "30"}))[0]
        _check(result, "Rejected", variable={"name": "MessageTimeout", "instance": "Default"})


# -- B12, B13, B15, B53 base reports -----------------------------------------------------------------------
@octt("TC_B_12_CS")
async def test_tc_b_12_cs(booted201: ChargerUnderTest) -> None:
    data = await _report(booted201, "ConfigurationInventory")
    with step("post", "only writable variables, the required writable ones present"):
        for item in data:
            for attribute in item["variableAttribute"]:
                if attribute.get("mutability", "ReadWrite") not in ("ReadWrite", "WriteOnly"):
                    raise ConformanceFailure(f"{item['component']['name']}.{item['variable']['name']} is "
                                             f"{attribute['mutability']} in a ConfigurationInventory")
        seen = {(d["component"]["name"], d["variable"]["name"]) for d in data}
        for needed in [("OCPPCommCtrlr", "HeartbeatInterval"), ("OCPPCommCtrlr", "OfflineThreshold"),
                       ("TxCtrlr", "TxStartPoint"), ("TxCtrlr", "TxStopPoint"), ("AuthCtrlr", "LocalPreAuthorize")]:
            if needed not in seen:
                raise ConformanceFailure(f"writable variable {'.'.join(needed)} missing from the report")


@octt("TC_B_13_CS")
async def test_tc_b_13_cs(booted201: ChargerUnderTest) -> None:
    data = await _report(booted201, "FullInventory")
    with step("post", "the charging infrastructure components are present"):
        _present(data, ("ChargingStation", "EVSE", "Connector"))


@octt("TC_B_15_CS")
async def test_tc_b_15_cs(booted201: ChargerUnderTest) -> None:
    with step(1, "GetBaseReport SummaryInventory: NotSupported"):
        answer = await booted201.session.call("GetBaseReport", {"requestId": 5, "reportBase": "SummaryInventory"})
        if answer["status"] != "NotSupported":
            raise ConformanceFailure(f"GetBaseReport SummaryInventory answered {answer['status']}, expected NotSupported")
    with step(3, "no NotifyReport follows"):
        await booted201.session.expect_none("NotifyReport", within=2.0)


@octt("TC_B_53_CS")
async def test_tc_b_53_cs(booted201: ChargerUnderTest) -> None:
    data = await _report(booted201, "FullInventory")
    with step("post", "every required variable of the Core functional blocks present"):
        _present(data)


# -- B20-B29 reset -------------------------------------------------------------------------------------------
@octt("TC_B_20_CS")
async def test_tc_b_20_cs(booted201: ChargerUnderTest) -> None:
    with step(1, "Reset OnIdle without a transaction: Accepted"):
        await booted201.session.call_expect("Reset", {"type": "OnIdle"}, "Accepted")
    with step(3, "the station reboots: BootNotification"):
        await booted201.session.expect("BootNotification", timeout=T)
    with step(5, "every connector reported Available"):
        await _all_connectors(booted201)


@octt("TC_B_21_CS")
async def test_tc_b_21_cs(booted201: ChargerUnderTest) -> None:
    session = booted201.session
    await st.charging(booted201, S)
    with step(1, "Reset OnIdle during a transaction: Scheduled"):
        await session.call_expect("Reset", {"type": "OnIdle"}, "Scheduled")
        session.forbid("BootNotification")
    await asyncio.sleep(S.transaction_duration)
    await st.stop_authorized_local(booted201, S)
    if st.open_transaction(session, S.evse) is not None:
        await st.ev_disconnected(booted201, S)
    session.allow("BootNotification")
    with step(7, "after the transaction ended: BootNotification reason ScheduledReset"):
        await session.expect("BootNotification", {"reason": "ScheduledReset"}, timeout=T)
    with step(9, "every connector reported"):
        plugged = st.ev_plugged_in(booted201, S)
        await _all_connectors(booted201, {S.evse: "Occupied"} if plugged else None)
    with step(11, "SecurityEventNotification StartupOfTheDevice or ResetOrReboot"):
        await session.expect("SecurityEventNotification",
                             {"type": lambda t: t in ("StartupOfTheDevice", "ResetOrReboot")}, timeout=T)


@octt("TC_B_22_CS")
async def test_tc_b_22_cs(booted201: ChargerUnderTest) -> None:
    session = booted201.session
    tx = await st.charging(booted201, S)
    with step(1, "Reset Immediate during a transaction: Accepted"):
        await session.call_expect("Reset", {"type": "Immediate"}, "Accepted")
    with step(3, "TransactionEvent Ended, ResetCommand, EVConnected, ImmediateReset, no idToken"):
        event = await session.expect("TransactionEvent", st.event_match(
            event_type="Ended", trigger="ResetCommand", state="EVConnected", stopped="ImmediateReset", tx=tx), timeout=T)
        if "idToken" in event:
            raise ConformanceFailure(f"the Ended event carries idToken {show(event['idToken'])}")
    with step(5, "BootNotification reason RemoteReset"):
        await session.expect("BootNotification", {"reason": "RemoteReset"}, timeout=T)
    with step(7, "the connector with the EV Occupied, the others Available"):
        await _all_connectors(booted201, {S.evse: "Occupied"})


@octt("TC_B_23_CS")
async def test_tc_b_23_cs(booted201: ChargerUnderTest) -> None:
    session = booted201.session
    with step("before", "the connector made Unavailable"):
        await session.call_expect("ChangeAvailability", {"operationalStatus": "Inoperative",
                                                         "evse": {"id": S.evse, "connectorId": S.connector}}, "Accepted")
        await session.expect("StatusNotification", st.status_match(S, "Unavailable"), timeout=T)
    with step(1, "Reset OnIdle: Accepted"):
        await session.call_expect("Reset", {"type": "OnIdle"}, "Accepted")
    with step(3, "BootNotification reason RemoteReset"):
        await session.expect("BootNotification", {"reason": "RemoteReset"}, timeout=T)
    with step(5, "the connector still Unavailable, the others Available"):
        await _all_connectors(booted201, {S.evse: "Unavailable"})


@octt("TC_B_25_CS")
async def test_tc_b_25_cs(booted201: ChargerUnderTest) -> None:
    with step(1, "Reset OnIdle of one idle EVSE: Accepted"):
        await booted201.session.call_expect("Reset", {"type": "OnIdle", "evseId": S.evse}, "Accepted")


@octt("TC_B_26_CS")
async def test_tc_b_26_cs(booted201: ChargerUnderTest) -> None:
    session = booted201.session
    await st.charging(booted201, S)
    with step(1, "Reset OnIdle of the EVSE during its transaction: Scheduled"):
        await session.call_expect("Reset", {"type": "OnIdle", "evseId": S.evse}, "Scheduled")
    await asyncio.sleep(S.transaction_duration)
    await st.stop_authorized_local(booted201, S)
    await st.ev_disconnected(booted201, S)


@octt("TC_B_27_CS")
async def test_tc_b_27_cs(booted201: ChargerUnderTest) -> None:
    session = booted201.session
    tx = await st.charging(booted201, S)
    with step(1, "Reset Immediate of the EVSE: Accepted"):
        await session.call_expect("Reset", {"type": "Immediate", "evseId": S.evse}, "Accepted")
    with step(3, "TransactionEvent Ended, ResetCommand, EVConnected, ImmediateReset"):
        await session.expect("TransactionEvent", st.event_match(
            event_type="Ended", trigger="ResetCommand", state="EVConnected", stopped="ImmediateReset", tx=tx), timeout=T)


# -- B43 network profile -------------------------------------------------------------------------------------
@octt("TC_B_43_CS")
async def test_tc_b_43_cs(booted201: ChargerUnderTest) -> None:
    with step(1, "SetNetworkProfile in slot 999: Rejected"):
        await booted201.session.call_expect("SetNetworkProfile", {"configurationSlot": 999, "connectionData": {
            "messageTimeout": 30, "ocppCsmsUrl": booted201.session.where, "ocppInterface": "Wired0",
            "ocppTransport": "JSON", "ocppVersion": "OCPP20", "securityProfile": 1}}, "Rejected")


# -- B51, B52 offline threshold; B57 reconnect back-off ------------------------------------------------------
@octt("TC_B_51_CS")
async def test_tc_b_51_cs(booted201: ChargerUnderTest) -> None:
    threshold = S.offline_threshold
    await st.set_variables(booted201.session, OCPPCommCtrlr__OfflineThreshold=threshold,
                           OCPPCommCtrlr__RetryBackOffWaitMinimum=threshold + 2, OCPPCommCtrlr__RetryBackOffRandomRange=0)
    with step(1, f"offline for more than the threshold ({threshold} s), EV plugged in meanwhile"):
        await booted201.control.cut_network()
        await booted201.control.plug_in(S.evse)
        await asyncio.sleep(threshold + 1)
        await booted201.control.restore_network()
    with step(4, "after reconnecting: every connector reported, the plugged one Occupied"):
        await _all_connectors(booted201, {S.evse: "Occupied"})


@octt("TC_B_52_CS")
async def test_tc_b_52_cs(booted201: ChargerUnderTest) -> None:
    threshold = S.offline_threshold
    await st.set_variables(booted201.session, OCPPCommCtrlr__OfflineThreshold=threshold + 4,
                           OCPPCommCtrlr__RetryBackOffWaitMinimum=1, OCPPCommCtrlr__RetryBackOffRandomRange=0)
    with step(1, f"offline for less than the threshold ({threshold + 4} s), EV plugged in meanwhile"):
        await booted201.control.cut_network()
        await booted201.control.plug_in(S.evse)
        await asyncio.sleep(1.0)
        await booted201.control.restore_network()
    with step(4, "after reconnecting: the changed connector reported Occupied"):
        await booted201.session.expect("StatusNotification", st.status_match(S, "Occupied"), timeout=T)


@octt("TC_B_57_CS")
async def test_tc_b_57_cs(booted201: ChargerUnderTest, csms: CSMS) -> None:
    session = booted201.session
    wait = S.retry_back_off_wait_minimum
    await st.set_variables(session, OCPPCommCtrlr__RetryBackOffRepeatTimes=2, OCPPCommCtrlr__RetryBackOffRandomRange=0,
                           OCPPCommCtrlr__RetryBackOffWaitMinimum=wait)
    handshakes = csms.handshakes.setdefault(session.id, [])
    with step(1, "the CSMS closes the WebSocket"):
        connections = session.connections
        await session.drop()
        closed = time.monotonic()
    with step(2, f"the station reconnects after at least {wait} s"):
        await session.wait_connected(T + wait, after=connections)
        first = handshakes[-1] - closed
        if first < wait - S.max_time_deviation:
            raise ConformanceFailure(f"reconnected {first:.2f} s after the close, RetryBackOffWaitMinimum is {wait} s")
    with step(4, "closed again; the next handshake is refused"):
        csms.refuse(wait + 0.5)
        attempts, connections = len(handshakes), session.connections
        await session.drop()
        closed = time.monotonic()
    with step(7, "the station waits twice as long after the refused attempt, then reconnects"):
        await session.wait_connected(T + 4 * wait, after=connections)
        refused_gap = handshakes[attempts] - closed
        second_gap = handshakes[attempts + 1] - handshakes[attempts]
        if second_gap < 2 * refused_gap - S.max_time_deviation:
            raise ConformanceFailure(f"reconnect {second_gap:.2f} s after the refused attempt, expected at least "
                                     f"2 x {refused_gap:.2f} s")


@octt("TC_B_28_CS")
async def test_tc_b_28_cs(booted201: ChargerUnderTest) -> None:
    with step(1, "Reset OnIdle of one EVSE on a station that cannot: Rejected"):
        answer = await booted201.session.call("Reset", {"type": "OnIdle", "evseId": S.evse})
        if answer["status"] in ("Accepted", "Scheduled"):
            _skip_evse_reset()
        if answer["status"] != "Rejected":
            raise ConformanceFailure(f"Reset answered {answer['status']}, expected Rejected")


@octt("TC_B_29_CS")
async def test_tc_b_29_cs(booted201: ChargerUnderTest) -> None:
    tx = await st.charging(booted201, S)
    with step(1, "Reset OnIdle of the charging EVSE on a station that cannot: Rejected"):
        answer = await booted201.session.call("Reset", {"type": "OnIdle", "evseId": S.evse})
        if answer["status"] in ("Accepted", "Scheduled"):
            _skip_evse_reset()
        if answer["status"] != "Rejected":
            raise ConformanceFailure(f"Reset answered {answer['status']}, expected Rejected")
    with step(2, "the transaction goes on"):
        await booted201.session.expect_none("TransactionEvent", within=1.0, match={"eventType": "Ended"})
        if st.open_transaction(booted201.session, S.evse) != tx:
            raise ConformanceFailure("the transaction ended")


@octt("TC_B_41_CS")
async def test_tc_b_41_cs(booted201: ChargerUnderTest) -> None:
    session = booted201.session
    if booted201.connectors < 2:
        pytest.skip("not applicable: the station has one EVSE (HFS-8)")
    first, second = st.Settings(evse=1), st.Settings(evse=2, valid_token=S.valid_token_2)
    session.tokens[S.valid_token_2] = "Accepted"
    await st.charging(booted201, first)
    await st.charging(booted201, second)
    with step(1, "Reset OnIdle with two transactions: Scheduled"):
        await session.call_expect("Reset", {"type": "OnIdle"}, "Scheduled")
        session.forbid("BootNotification")
    with step(3, "EVSE 1 stopped and unplugged: no reboot yet"):
        await st.stop_authorized_local(booted201, first)
        if st.open_transaction(session, 1) is not None:
            await st.ev_disconnected(booted201, first)
        await session.expect_none("BootNotification", within=1.0)
    with step(7, "EVSE 2 stopped"):
        await st.stop_authorized_local(booted201, second)
        if st.open_transaction(session, 2) is not None:
            await st.ev_disconnected(booted201, second)
    session.allow("BootNotification")
    with step(11, "after the last transaction: BootNotification reason ScheduledReset"):
        await session.expect("BootNotification", {"reason": "ScheduledReset"}, timeout=T)
    with step(13, "every connector reported, Occupied where the cable is still in"):
        expected = {evse: "Occupied" for evse in (1, 2) if st.ev_plugged_in(booted201, st.Settings(evse=evse))}
        await _all_connectors(booted201, expected)


def _skip_evse_reset() -> None:
    pytest.skip("not applicable: the station resets single EVSEs (C-13); TC_B_25_CS to TC_B_27_CS apply")


# -- B45, B46, B49 network profile migration -----------------------------------------------------------------
async def _second_endpoint(cs: ChargerUnderTest, csms: CSMS) -> CSMS:
    """Another CSMS endpoint on the harness's host (a new URL the station can migrate to)."""
    return await CSMS(csms.host, 0, versions=("2.0.1",), charge_points=csms.charge_points,
                      heartbeat_interval=csms.heartbeat_interval).start()


async def _migrate(cs: ChargerUnderTest, url: str) -> int:
    """Steps 1-6 of TC_B_45: the new profile in a free slot, priority new,old, reset. Returns the slot."""
    session = cs.session
    active = int(await st.get_variable(session, "OCPPCommCtrlr.ActiveNetworkProfile") or 0)
    slot = 1 if active != 1 else 0
    with step(1, f"SetNetworkProfile slot {slot} with the new endpoint: Accepted"):
        await session.call_expect("SetNetworkProfile", {"configurationSlot": slot, "connectionData": {
            "messageTimeout": 30, "ocppCsmsUrl": url, "ocppInterface": "Wired0", "ocppTransport": "JSON",
            "ocppVersion": "OCPP20", "securityProfile": 1}}, "Accepted")
    with step(3, f"SetVariables NetworkConfigurationPriority = {slot},{active}: Accepted or RebootRequired"):
        results = await _set(cs, {"component": {"name": "OCPPCommCtrlr"},
                                  "variable": {"name": "NetworkConfigurationPriority"},
                                  "attributeValue": f"{slot},{active}"})
        if results[0]["attributeStatus"] not in ("Accepted", "RebootRequired"):
            raise ConformanceFailure(f"attributeStatus {results[0]['attributeStatus']}, expected Accepted or RebootRequired")
    with step(5, "Reset OnIdle: Accepted"):
        await session.call_expect("Reset", {"type": "OnIdle"}, "Accepted")
    return slot


async def _booted_on(cs: ChargerUnderTest, session: Any, timeout: float) -> None:
    with step(7, f"Booted on {session.where}"):
        await session.expect("BootNotification", timeout=timeout)
        for evse in range(1, cs.connectors + 1):
            await session.expect("StatusNotification", st.status_match(S, "Available", evse), timeout=T)


@octt("TC_B_45_CS")
async def test_tc_b_45_cs(booted201: ChargerUnderTest, csms: CSMS) -> None:
    other = await _second_endpoint(booted201, csms)
    try:
        await _migrate(booted201, other.url)
        await _booted_on(booted201, other.session(booted201.session.id), T + 5)
    finally:
        await other.stop()


@octt("TC_B_46_CS")
async def test_tc_b_46_cs(booted201: ChargerUnderTest, csms: CSMS) -> None:
    session = booted201.session
    await st.set_variables(session, OCPPCommCtrlr__NetworkProfileConnectionAttempts=2,
                           OCPPCommCtrlr__RetryBackOffWaitMinimum=1, OCPPCommCtrlr__RetryBackOffRandomRange=0,
                           OCPPCommCtrlr__RetryBackOffRepeatTimes=0)
    other = await _second_endpoint(booted201, csms)
    try:
        other.refuse(3600)
        await _migrate(booted201, other.url)
        session.consume_all()
        await _booted_on(booted201, session, T + 10)
        with step(7, "exactly NetworkProfileConnectionAttempts (2) attempts on the new endpoint before the fallback"):
            tried = len(other.handshakes.get(session.id, []))
            if tried != 2:
                raise ConformanceFailure(f"{tried} connection attempts on the new endpoint, expected 2")
    finally:
        await other.stop()


@octt("TC_B_49_CS")
async def test_tc_b_49_cs(booted201: ChargerUnderTest, csms: CSMS) -> None:
    session = booted201.session
    wait = S.retry_back_off_wait_minimum
    await st.set_variables(session, OCPPCommCtrlr__NetworkProfileConnectionAttempts=1,
                           OCPPCommCtrlr__RetryBackOffRepeatTimes=0, OCPPCommCtrlr__RetryBackOffRandomRange=0,
                           OCPPCommCtrlr__RetryBackOffWaitMinimum=wait)
    other = await _second_endpoint(booted201, csms)
    try:
        other.refuse(3600)
        csms.refuse(3600)
        handshakes = csms.handshakes.setdefault(session.id, [])
        before = len(handshakes)
        await _migrate(booted201, other.url)
        session.consume_all()
        with step(9, "the station falls back to the previous endpoint, which refuses once"):
            deadline = time.monotonic() + T + 2 * wait
            while len(handshakes) == before and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            csms.refuse(0)
        await _booted_on(booted201, session, T + 4 * wait)
        with step(11, f"the retry on the previous profile waited at least RetryBackOffWaitMinimum ({wait} s)"):
            mine = handshakes[before:]
            if len(mine) < 2:
                raise ConformanceFailure(f"{len(mine)} attempts on the previous endpoint, expected a refused one "
                                         "and an accepted retry")
            if mine[-1] - mine[-2] < wait - S.max_time_deviation:
                raise ConformanceFailure(f"retried {mine[-1] - mine[-2]:.2f} s after the refused attempt, "
                                         f"RetryBackOffWaitMinimum is {wait} s")
    finally:
        await other.stop()


@octt("TC_B_50_CS")
async def test_tc_b_50_cs(booted201: ChargerUnderTest, csms: CSMS, tmp_path: Any) -> None:
    session = booted201.session
    certs = make_certificates(tmp_path / "csms-root-2")
    root = certs.ca.read_text()
    with step("CertificateInstalled", "InstallCertificate CSMSRootCertificate (the new CSMS root): Accepted"):
        await session.call_expect("InstallCertificate", {"certificateType": "CSMSRootCertificate",
                                                         "certificate": root}, "Accepted")
        ids = await session.call("GetInstalledCertificateIds", {"certificateType": ["CSMSRootCertificate"]})
        if ids["status"] != "Accepted" or not ids.get("certificateHashDataChain"):
            raise ConformanceFailure(f"GetInstalledCertificateIds answered {show(ids)} after the install")
    other = await CSMS(csms.host, 0, versions=("2.0.1",), charge_points=csms.charge_points,
                       heartbeat_interval=csms.heartbeat_interval, tls=server_context(certs)).start()
    try:
        # The OCTT starts from a station already on security profile 2 or 3; this one migrates from profile 1
        # to a profile-2 endpoint whose server certificate only the newly installed root vouches for.
        active = int(await st.get_variable(session, "OCPPCommCtrlr.ActiveNetworkProfile") or 0)
        slot = 1 if active != 1 else 0
        with step(1, f"SetNetworkProfile slot {slot}: the new endpoint (wss, security profile 2): Accepted"):
            await session.call_expect("SetNetworkProfile", {"configurationSlot": slot, "connectionData": {
                "messageTimeout": 30, "ocppCsmsUrl": other.url, "ocppInterface": "Wired0", "ocppTransport": "JSON",
                "ocppVersion": "OCPP20", "securityProfile": 2}}, "Accepted")
        with step(3, "SetVariables NetworkConfigurationPriority: Accepted or RebootRequired"):
            result = (await _set(booted201, {"component": {"name": "OCPPCommCtrlr"},
                                             "variable": {"name": "NetworkConfigurationPriority"},
                                             "attributeValue": f"{slot},{active}"}))[0]
            if result["attributeStatus"] not in ("Accepted", "RebootRequired"):
                raise ConformanceFailure(f"attributeStatus {result['attributeStatus']}")
        with step(5, "Reset OnIdle: Accepted"):
            await session.call_expect("Reset", {"type": "OnIdle"}, "Accepted")
        await _booted_on(booted201, other.session(session.id), T + 5)
        with step(7, "the TLS handshake with the new root succeeded: security profile 2 in use"):
            profile = await st.get_variable(other.session(session.id), "SecurityCtrlr.SecurityProfile")
            if profile != "2":
                raise ConformanceFailure(f"SecurityCtrlr.SecurityProfile is {profile} on the new endpoint, expected 2")
    finally:
        await other.stop()
