"""evhil's CSMS under test out of process: ``hil csms --operator-port`` and the rig file
``rigs/csms-under-test.yaml`` (its operator reached by ``hil do`` through the command adapter) give the
OCPP 1.6 Central System suite the same verdict, case for case, as the reference CSMS in process; and the
operator port answers with the charge point's CALLRESULT, maps each action to 1.6 and 2.0.1, and names
what went wrong otherwise. Times: seconds."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml

from hil.control import CSMS_ACTIONS
from hil.ocpp.charging_station import ChargingStation
from hil.ocpp.conformance import matches
from hil.ocpp.csms import CSMS, OperatorError, variable_of_key
from hil.ocpp.operator_port import OPERATOR_ACTIONS, operator_port
from hil.ocpp.outlet import Outlet
from hil.ocpp.precheck import outcomes_from_junit
from hil.ocpp.rpc import NO_REPLY, CallError
from hil.ocpp.scripted import ScriptedChargePoint
from hil.plant import Plant
from hil.service_port import ServicePortError, call
from suite_runner import free_ports

ROOT = Path(__file__).resolve().parent.parent
RECIPE = ROOT / "rigs" / "csms-under-test.yaml"
RECIPE_CSMS, RECIPE_OPERATOR = "ws://127.0.0.1:9400/", "http://127.0.0.1:9401"
SUITE_TIMEOUT = 240.0
OPERATOR_REQUESTS = {"RemoteStartTransaction", "RemoteStopTransaction", "Reset", "UnlockConnector", "GetConfiguration",
                     "ChangeConfiguration", "ClearCache", "SetChargingProfile", "ClearChargingProfile",
                     "GetCompositeSchedule"}
"""The 1.6 requests of the ten suite actions (``CSMS_ACTIONS``): each must cross the out-of-process CSMS."""


def rig_for(csms_port: int, operator_port: int, path: Path) -> Path:
    """The recipe ``rigs/csms-under-test.yaml`` with its fixed ports replaced by free ones (the run launches the
    CSMS on them)."""
    spec = yaml.safe_load(RECIPE.read_text())
    dut = spec["dut"]
    assert dut["csms_url"] == RECIPE_CSMS, f"{RECIPE}: dut.csms_url is {dut['csms_url']}, expected {RECIPE_CSMS}"
    csms_url, operator_url = f"ws://127.0.0.1:{csms_port}/", f"http://127.0.0.1:{operator_port}"
    dut["csms_url"] = csms_url
    assert "--port 9400 --operator-port 9401" in dut["launch"], f"{RECIPE}: dut.launch is {dut['launch']!r}"
    dut["launch"] = dut["launch"].replace("--port 9400 --operator-port 9401",
                                          f"--port {csms_port} --operator-port {operator_port}")
    commands = dut["control"]["commands"]
    assert set(commands) == set(CSMS_ACTIONS), f"{RECIPE}: commands for {sorted(commands)}, expected {CSMS_ACTIONS}"
    for action, line in commands.items():
        assert f"{RECIPE_OPERATOR}/{{charge_point}}/{action} " in line + " ", f"{RECIPE}: {action}: {line}"
        commands[action] = line.replace(RECIPE_OPERATOR, operator_url)
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path




def run_suite(junit: Path, *options: str) -> dict[str, str]:
    """The 1.6 CSMS suite in a child pytest (``hil`` on its PATH for the rig's commands): case -> verdict."""
    plugins = ["-p", "no:cacheprovider"]
    if importlib.util.find_spec("pytest_randomly"):
        plugins += ["-p", "no:randomly"]
    env = dict(os.environ, PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    try:
        done = subprocess.run([sys.executable, "-m", "pytest", *plugins, "-q", "suites/ocpp16_csms", *options,
                               f"--junitxml={junit}", "-o", "junit_family=xunit2"],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=SUITE_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"suites/ocpp16_csms {' '.join(options)}: not done within {SUITE_TIMEOUT:g} s") from None
    assert junit.exists(), (f"suites/ocpp16_csms {' '.join(options)} wrote no report: "
                            f"{done.stdout[-3000:]}{done.stderr[-3000:]}")
    return {case: o.outcome for case, o in outcomes_from_junit(junit).items()}


def test_the_16_csms_suite_gives_the_same_verdicts_out_of_process(tmp_path: Path) -> None:
    in_process = run_suite(tmp_path / "in-process.xml")
    rig = rig_for(*free_ports(2), tmp_path / "csms-under-test.yaml")
    out_of_process = run_suite(tmp_path / "out-of-process.xml", "--rig", str(rig), f"--run-dir={tmp_path / 'run'}")
    log = (tmp_path / "run" / "device-under-test.log").read_text()
    assert sum(v == "passed" for v in in_process.values()) >= 37, f"in process: {in_process}"
    differ = {c: (in_process.get(c), out_of_process.get(c)) for c in in_process.keys() | out_of_process.keys()
              if in_process.get(c) != out_of_process.get(c)}
    assert not differ, f"case: (in process, out of process) verdicts differ: {differ}"
    sent = {line.split()[4] for line in log.splitlines() if " -> CALL " in line}
    assert OPERATOR_REQUESTS <= sent, f"operator requests the CSMS never sent: {sorted(OPERATOR_REQUESTS - sent)}"


# -- the operator port in process: answers, 1.6 and 2.0.1 mapping, errors ---------------------------------------
@asynccontextmanager
async def csms_with_port(response_timeout: float = 5.0) -> AsyncIterator[tuple[CSMS, str]]:
    csms = await CSMS(response_timeout=response_timeout).start()
    port = await operator_port(csms).start()
    try:
        yield csms, port.url
    finally:
        await port.stop()
        await csms.stop()


async def do(url: str, **values: Any) -> Any:
    """What ``hil do URL key:=json...`` does, off the event loop that serves the port."""
    return await asyncio.to_thread(call, url, 15.0, **values)


def _now(offset_s: float = 0.0) -> str:
    when = datetime.now(timezone.utc) + timedelta(seconds=offset_s)
    return when.isoformat(timespec="seconds").replace("+00:00", "Z")


def profile_16() -> dict[str, Any]:
    return {"chargingProfileId": 7, "stackLevel": 0, "chargingProfilePurpose": "TxProfile",
            "chargingProfileKind": "Relative",
            "chargingSchedule": {"chargingRateUnit": "A", "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 6.0}]}}


def profile_201(purpose: str = "TxDefaultProfile") -> dict[str, Any]:
    return {"id": 71, "stackLevel": 0, "chargingProfilePurpose": purpose, "chargingProfileKind": "Absolute",
            "chargingSchedule": [{"id": 1, "chargingRateUnit": "A", "startSchedule": _now(),
                                  "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 6.0}]}]}


Case = tuple[str, dict[str, Any], str, dict[str, Any], dict[str, Any]]
"""Action, its values, the OCPP request it must send, what that request must hold, what the answer must hold."""

ACCEPTED = {"status": "Accepted"}

CASES_16: list[Case] = [
    ("remote_start", {"connector": 1, "token": "T1", "profile": profile_16()}, "RemoteStartTransaction",
     {"connectorId": 1, "idTag": "T1", "chargingProfile": {"chargingProfileId": 7}}, ACCEPTED),
    ("remote_stop", {"transaction": 5}, "RemoteStopTransaction", {"transactionId": 5}, ACCEPTED),
    ("reset", {"kind": "Soft"}, "Reset", {"type": "Soft"}, ACCEPTED),
    ("unlock", {"connector": 1}, "UnlockConnector", {"connectorId": 1}, {"status": "Unlocked"}),
    ("get_configuration", {"key": "HeartbeatInterval"}, "GetConfiguration", {"key": ["HeartbeatInterval"]},
     {"configurationKey": []}),
    ("change_configuration", {"key": "HeartbeatInterval", "value": "60"}, "ChangeConfiguration",
     {"key": "HeartbeatInterval", "value": "60"}, ACCEPTED),
    ("clear_cache", {}, "ClearCache", {}, ACCEPTED),
    ("set_charging_profile", {"connector": 1, "profile": profile_16()}, "SetChargingProfile",
     {"connectorId": 1, "csChargingProfiles": {"chargingProfileId": 7}}, ACCEPTED),
    ("clear_charging_profile", {"connector": 1, "purpose": "TxProfile", "stack_level": 0}, "ClearChargingProfile",
     {"connectorId": 1, "chargingProfilePurpose": "TxProfile", "stackLevel": 0}, ACCEPTED),
    ("get_composite_schedule", {"connector": 1, "duration": 300, "rate_unit": "W"}, "GetCompositeSchedule",
     {"connectorId": 1, "duration": 300, "chargingRateUnit": "W"}, {"status": "Rejected"}),
    ("change_availability", {"connector": 0, "kind": "Inoperative"}, "ChangeAvailability",
     {"connectorId": 0, "type": "Inoperative"}, ACCEPTED),
    ("trigger_message", {"message": "StatusNotification", "connector": 1}, "TriggerMessage",
     {"requestedMessage": "StatusNotification", "connectorId": 1}, ACCEPTED),
]
"""Against the scripted 1.6 charge point, which answers with its defaults."""

CASES_201: list[Case] = [
    ("get_configuration", {"key": "OCPPCommCtrlr.MessageTimeout[Default]"}, "GetVariables",
     {"getVariableData": [{"component": {"name": "OCPPCommCtrlr"},
                           "variable": {"name": "MessageTimeout", "instance": "Default"}}]},
     {"getVariableResult": [{"attributeStatus": "Accepted", "attributeValue": "30"}]}),
    ("change_configuration", {"key": "OCPPCommCtrlr.HeartbeatInterval", "value": "120"}, "SetVariables",
     {"setVariableData": [{"attributeValue": "120", "component": {"name": "OCPPCommCtrlr"},
                           "variable": {"name": "HeartbeatInterval"}}]},
     {"setVariableResult": [{"attributeStatus": "Accepted"}]}),
    ("clear_cache", {}, "ClearCache", {}, ACCEPTED),
    ("set_charging_profile", {"connector": 1, "profile": profile_201()}, "SetChargingProfile",
     {"evseId": 1, "chargingProfile": {"id": 71}}, ACCEPTED),
    ("get_composite_schedule", {"connector": 1, "duration": 300, "rate_unit": "A"}, "GetCompositeSchedule",
     {"evseId": 1, "duration": 300, "chargingRateUnit": "A"},
     {"status": "Accepted", "schedule": {"chargingSchedulePeriod": [{"startPeriod": 0, "limit": 6.0}]}}),
    ("clear_charging_profile", {"profile_id": 71}, "ClearChargingProfile", {"chargingProfileId": 71}, ACCEPTED),
    ("clear_charging_profile", {"connector": 1, "purpose": "TxDefaultProfile"}, "ClearChargingProfile",
     {"chargingProfileCriteria": {"evseId": 1, "chargingProfilePurpose": "TxDefaultProfile"}}, {"status": "Unknown"}),
    ("trigger_message", {"message": "StatusNotification", "connector": 1}, "TriggerMessage",
     {"requestedMessage": "StatusNotification", "evse": {"id": 1}}, ACCEPTED),
    ("unlock", {"connector": 1}, "UnlockConnector", {"evseId": 1, "connectorId": 1}, {"status": "Unlocked"}),
    ("remote_stop", {"transaction": 987654}, "RequestStopTransaction", {"transactionId": "987654"},
     {"status": "Rejected"}),
    ("remote_start", {"connector": 1, "token": "EVHILVALID01"}, "RequestStartTransaction",
     {"evseId": 1, "idToken": {"idToken": "EVHILVALID01", "type": "ISO14443"}, "remoteStartId": lambda n: n > 0},
     ACCEPTED),
    ("change_availability", {"connector": 1, "kind": "Inoperative"}, "ChangeAvailability",
     {"operationalStatus": "Inoperative", "evse": {"id": 1}}, ACCEPTED),
    ("reset", {"kind": "Soft"}, "Reset", {"type": "OnIdle"}, ACCEPTED),
]
"""Against evhil's 2.0.1 charging station emulator: the station understood each request."""


async def check_actions(csms: CSMS, url: str, cs_id: str, cases: list[Case]) -> None:
    """Each action sends its request, and answers with the charge point's CALLRESULT payload."""
    trace = csms.session(cs_id).trace
    for action, values, request, payload, expected in cases:
        start = len(trace.frames)
        answer = await do(f"{url}/{cs_id}/{action}", **values)
        frames = [f for f in trace.frames[start:] if f.action == request]
        assert [f.message_type for f in frames] == [2, 3], \
            f"{action}: frames {[(f.message_type, f.payload) for f in frames]}"
        assert matches(payload, frames[0].payload), f"{action}: sent {request} {frames[0].payload}, expected {payload}"
        assert answer == frames[1].payload, f"{action}: answered {answer}, the charge point {frames[1].payload}"
        assert matches(expected, answer), f"{action}: answered {answer}, expected {expected}"


async def test_operator_port_maps_every_action_to_ocpp16() -> None:
    assert {c[0] for c in CASES_16} == set(OPERATOR_ACTIONS)
    async with csms_with_port() as (csms, url):
        cp = ScriptedChargePoint("CP16", csms.url, "1.6")
        await cp.connect()
        try:
            await check_actions(csms, url, "CP16", CASES_16)
        finally:
            await cp.close()


async def test_operator_port_maps_every_action_to_ocpp201(small_plant: Plant) -> None:
    assert {c[0] for c in CASES_201} == set(OPERATOR_ACTIONS)
    async with csms_with_port() as (csms, url):
        station = ChargingStation("CS201", csms.url, [Outlet(small_plant, "p1")])
        await station.start()
        try:
            await csms.session("CS201").expect("BootNotification", timeout=10)
            await check_actions(csms, url, "CS201", CASES_201)
            with pytest.raises(ServicePortError, match=r"GetVariables needs a key Component\.Variable .*HTTP 500"):
                await do(f"{url}/CS201/get_configuration")
            with pytest.raises(ServicePortError,
                               match=r"key 'HeartbeatInterval': OCPP 2\.0\.1 needs Component\.Variable"):
                await do(f"{url}/CS201/change_configuration", key="HeartbeatInterval", value="1")
        finally:
            await station.stop()


async def test_operator_port_names_a_callerror_a_timeout_and_an_unknown_or_gone_charge_point() -> None:
    async with csms_with_port(response_timeout=0.5) as (csms, url):
        with pytest.raises(ServicePortError, match=r"unknown charge point 'CP16': it has not connected .*HTTP 500"):
            await do(f"{url}/CP16/clear_cache")
        cp = ScriptedChargePoint("CP16", csms.url, "1.6")
        await cp.connect()
        try:
            cp.answer("Reset", CallError("NotSupported", "no reset on this bench"))
            with pytest.raises(ServicePortError,
                               match=r"answered Reset with CALLERROR NotSupported: no reset on this bench"):
                await do(f"{url}/CP16/reset", kind="Hard")
            cp.answer("UnlockConnector", NO_REPLY)
            with pytest.raises(ServicePortError, match=r"CP16 did not answer UnlockConnector within 0\.5 s"):
                await do(f"{url}/CP16/unlock", connector=1)
            with pytest.raises(ServicePortError,
                               match=r"remote_start: missing a required argument: 'token' \(HTTP 400\)"):
                await do(f"{url}/CP16/remote_start", connector=1)
            with pytest.raises(ServicePortError, match=r"RemoteStartTransaction request: .*HTTP 500"):
                await do(f"{url}/CP16/remote_start", connector="one", token="T1")
        finally:
            await cp.close()
        await asyncio.sleep(0.2)
        with pytest.raises(ServicePortError, match=r"ClearCache not sent: charge point CP16 is not connected"):
            await do(f"{url}/CP16/clear_cache")


@pytest.mark.parametrize(("key", "address"), [
    ("OCPPCommCtrlr.HeartbeatInterval", {"component": {"name": "OCPPCommCtrlr"},
                                         "variable": {"name": "HeartbeatInterval"}}),
    ("EVSE[evse 2].AvailabilityState", {"component": {"name": "EVSE", "evse": {"id": 2}},
                                        "variable": {"name": "AvailabilityState"}}),
    ("Connector[evse 1/2].Available[x]", {"component": {"name": "Connector", "evse": {"id": 1, "connectorId": 2}},
                                          "variable": {"name": "Available", "instance": "x"}}),
])
def test_201_configuration_keys_read_as_the_device_model_labels_them(key: str, address: dict[str, Any]) -> None:
    assert variable_of_key(key) == address
    with pytest.raises(OperatorError, match=r"needs Component\.Variable"):
        variable_of_key(key.replace(".", "/"))
