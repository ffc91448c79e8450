"""OCPP 1.6 Core, charge point under test: boot, sessions, cache, remote actions, reset, unlock,
configuration, meter values, non-happy flows and fault behaviour (OCTT 1.6 §2.1-2.16, 2.23).

evhil plays the Central System; the charge point is driven through the control seam. Offline cases are
in ``test_offline.py``.
"""

from __future__ import annotations

from hil.ocpp import states16 as st
from hil.ocpp.conformance import ConformanceFailure, octt, step
from hil.ocpp.csms import INVALID_TOKEN, boot_answer
from hil.ocpp.fixtures import ChargerUnderTest
from hil.ocpp.rpc import CallError
from hil.ocpp.smart_charging import parse_datetime

S = st.SETTINGS
C = S.connector
T = S.message_timeout


def _at(payload: dict) -> float:
    return parse_datetime(payload["timestamp"]).timestamp()  # type: ignore[union-attr]


def _spacing(frames: list, interval: float, what: str) -> None:
    for a, b in zip(frames, frames[1:]):
        gap = b.time - a.time
        if abs(gap - interval) > S.max_time_deviation:
            raise ConformanceFailure(f"{what} {gap:.2f} s apart, expected {interval:g} s "
                                     f"(± {S.max_time_deviation:g} s)")


async def _available_everywhere(cp: ChargerUnderTest, expect_unavailable: int | None = None) -> None:
    await cp.session.expect("StatusNotification", {"connectorId": 0}, timeout=T)
    for k in range(1, cp.connectors + 1):
        status = "Unavailable" if k == expect_unavailable else "Available"
        await cp.session.expect("StatusNotification", {"connectorId": k, "status": status}, timeout=T)


# -- 2.1 cold boot -----------------------------------------------------------------------------------------
@octt("TC_001_CS")
async def test_tc_001_cs(cp16: ChargerUnderTest) -> None:
    session = cp16.session
    retry = 2
    session.answer("BootNotification", boot_answer("Rejected", retry))
    session.heartbeat_interval = S.heartbeat_interval
    with step(1, "power on: the charge point sends BootNotification, answered Rejected"):
        await cp16.boot()
        first = await session.expect_frame("BootNotification", timeout=T)
    with step(3, f"BootNotification again after the interval ({retry} s), nothing else before"):
        session.forbid("StatusNotification", "Heartbeat", "Authorize", "StartTransaction", "MeterValues")
        second = await session.expect_frame("BootNotification", timeout=T + retry)
        session.allow("StatusNotification", "Heartbeat", "Authorize", "StartTransaction", "MeterValues")
        if second.time - first.time < retry - S.max_time_deviation:
            raise ConformanceFailure(f"second BootNotification {second.time - first.time:.2f} s after the first; "
                                     f"the Rejected answer asked for {retry} s")
    with step(5, "StatusNotification Available for connector 0 and every connector"):
        await _available_everywhere(cp16)
    with step(7, f"Heartbeat every {S.heartbeat_interval} s (the interval of the Accepted answer)"):
        beats = [await session.expect_frame("Heartbeat", timeout=S.heartbeat_interval + T) for _ in range(2)]
        _spacing(beats, S.heartbeat_interval, "heartbeats")


@octt("TC_002_CS")
async def test_tc_002_cs(cp16: ChargerUnderTest) -> None:
    session = cp16.session
    retry = 2
    session.answer("BootNotification", boot_answer("Pending", retry))
    session.heartbeat_interval = S.heartbeat_interval
    with step(1, "BootNotification answered Pending"):
        await cp16.boot()
        first = await session.expect_frame("BootNotification", timeout=T)
        session.forbid("StatusNotification", "Heartbeat")
    with step(3, "GetConfiguration without keys while Pending"):
        answer = await session.call("GetConfiguration", {})
        if not answer.get("configurationKey"):
            raise ConformanceFailure(f"GetConfiguration answered {answer} while Pending")
    with step(5, "ChangeConfiguration MeterValueSampleInterval while Pending: Accepted"):
        answer = await session.call("ChangeConfiguration", {"key": "MeterValueSampleInterval",
                                                            "value": str(S.meter_value_sample_interval)})
        if answer["status"] != "Accepted":
            raise ConformanceFailure(f"ChangeConfiguration answered {answer['status']}, expected Accepted")
    with step(7, "BootNotification again after the interval"):
        second = await session.expect_frame("BootNotification", timeout=T + retry)
        if second.time - first.time < retry - S.max_time_deviation:
            raise ConformanceFailure(f"second BootNotification {second.time - first.time:.2f} s after the first, "
                                     f"Pending asked for {retry} s")
        session.allow("StatusNotification", "Heartbeat")
    with step(9, "StatusNotification Available per connector"):
        await _available_everywhere(cp16)
    with step(11, "Heartbeats at the accepted interval"):
        beats = [await session.expect_frame("Heartbeat", timeout=S.heartbeat_interval + T) for _ in range(2)]
        _spacing(beats, S.heartbeat_interval, "heartbeats")


# -- 2.2 start charging session ---------------------------------------------------------------------------------
@octt("TC_003_CS")
async def test_tc_003_cs(booted16: ChargerUnderTest) -> None:
    cp, session = booted16, booted16.session
    with step(1, "plug in: StatusNotification Preparing"):
        await cp.control.plug_in(C)
        await session.expect("StatusNotification", {"connectorId": C, "status": "Preparing"}, timeout=T)
    with step(3, "present identification: Authorize accepted"):
        await cp.control.present_token(S.valid_id_tag, C)
        await session.expect("Authorize", {"idTag": S.valid_id_tag}, timeout=T)
    with step(5, "StartTransaction and StatusNotification Charging (either order)"):
        await session.expect("StartTransaction", {"connectorId": C, "idTag": S.valid_id_tag}, timeout=T)
        await session.expect("StatusNotification", {"connectorId": C, "status": "Charging"}, timeout=T)


@octt("TC_004_1_CS")
async def test_tc_004_1_cs(booted16: ChargerUnderTest) -> None:
    cp, session = booted16, booted16.session
    await st.configure(session, MeterValueSampleInterval=S.meter_value_sample_interval)
    await st.authorized(cp)
    with step(2, "plug in: StartTransaction and StatusNotification Charging"):
        await cp.control.plug_in(C)
        await session.expect("StartTransaction", {"connectorId": C, "idTag": S.valid_id_tag}, timeout=T)
        await session.expect("StatusNotification", {"connectorId": C, "status": "Charging"}, timeout=T)


@octt("TC_004_2_CS")
async def test_tc_004_2_cs(booted16: ChargerUnderTest) -> None:
    cp, session = booted16, booted16.session
    await st.configure(session, ConnectionTimeOut=S.connection_timeout)
    await st.authorized(cp)
    with step(2, f"no cable within ConnectionTimeOut ({S.connection_timeout} s): StatusNotification Available"):
        await session.expect("StatusNotification", {"connectorId": C, "status": "Available"},
                             timeout=S.connection_timeout + T)
        await session.expect_none("StartTransaction", within=0.5)


# -- 2.3 stop charging session -------------------------------------------------------------------------------------
@octt("TC_068_CS")
async def test_tc_068_cs(booted16: ChargerUnderTest) -> None:
    cp, session = booted16, booted16.session
    await st.charging(cp)
    with step(1, "a different valid idTag: no Authorize, no StopTransaction"):
        session.tokens[S.valid_id_tag_2] = "Accepted"
        await cp.control.present_token(S.valid_id_tag_2, C)
        await session.expect_none("StopTransaction", within=2.0)
        await session.expect_none("Authorize", within=0.1, match={"idTag": S.valid_id_tag_2})
    with step(3, "the starting idTag: StopTransaction with that idTag, StatusNotification Finishing"):
        stop = await st.stop_by_token(cp)
        if stop.get("idTag", S.valid_id_tag) != S.valid_id_tag:
            raise ConformanceFailure(f"StopTransaction idTag {stop.get('idTag')}, expected {S.valid_id_tag}")


@octt("TC_069_CS")
async def test_tc_069_cs(booted16: ChargerUnderTest) -> None:
    cp, session = booted16, booted16.session
    parent = "EVHILPARENT1"
    session.parents.update({S.valid_id_tag: parent, S.valid_id_tag_2: parent})
    session.tokens[S.valid_id_tag_2] = "Accepted"
    await st.charging(cp)
    with step(1, "a different idTag with the same parentIdTag: Authorize"):
        await cp.control.present_token(S.valid_id_tag_2, C)
        await session.expect("Authorize", {"idTag": S.valid_id_tag_2}, timeout=T)
    with step(3, "StopTransaction with the new idTag, StatusNotification Finishing"):
        await session.expect("StopTransaction", {"idTag": S.valid_id_tag_2}, timeout=T)
        await session.expect("StatusNotification", {"connectorId": C, "status": "Finishing"}, timeout=T)


async def _unplug_case(cp: ChargerUnderTest, stop_on_disconnect: bool, unlock: bool) -> None:
    session = cp.session
    await st.configure(session, MinimumStatusDuration=0, StopTransactionOnEVSideDisconnect=stop_on_disconnect,
                       UnlockConnectorOnEVSideDisconnect=unlock)
    tx = await st.charging(cp)
    await cp.control.unplug(C)
    if stop_on_disconnect:
        with step(1, "unplug on the EV side: StopTransaction EVDisconnected, StatusNotification Finishing"):
            await session.expect("StopTransaction", {"reason": "EVDisconnected", "transactionId": tx}, timeout=T)
            await session.expect("StatusNotification", {"connectorId": C, "status": lambda v: v in (
                "Finishing", "Available") if not unlock else v in ("Finishing", "Available")}, timeout=T)
        if not unlock:
            with step(5, "UnlockConnector: Unlocked or NotSupported"):
                answer = await session.call("UnlockConnector", {"connectorId": C})
                if answer["status"] not in ("Unlocked", "NotSupported"):
                    raise ConformanceFailure(f"UnlockConnector answered {answer['status']}")
        return
    with step(1, "unplug on the EV side: StatusNotification SuspendedEV or SuspendedEVSE, no StopTransaction"):
        await session.expect("StatusNotification", {"connectorId": C, "status": lambda v: v in (
            "SuspendedEV", "SuspendedEVSE")}, timeout=T)
        await session.expect_none("StopTransaction", within=0.5)
    with step(3, "RemoteStopTransaction: StatusNotification Finishing (or Available), StopTransaction Remote"):
        await session.call_expect("RemoteStopTransaction", {"transactionId": tx}, "Accepted")
        await session.expect("StopTransaction", {"reason": "Remote", "transactionId": tx}, timeout=T)
        await session.expect("StatusNotification", {"connectorId": C, "status": lambda v: v in (
            "Finishing", "Available")}, timeout=T)


@octt("TC_005_1_CS")
async def test_tc_005_1_cs(booted16: ChargerUnderTest) -> None:
    await _unplug_case(booted16, stop_on_disconnect=True, unlock=True)


@octt("TC_005_2_CS")
async def test_tc_005_2_cs(booted16: ChargerUnderTest) -> None:
    await _unplug_case(booted16, stop_on_disconnect=True, unlock=False)


@octt("TC_005_3_CS")
async def test_tc_005_3_cs(booted16: ChargerUnderTest) -> None:
    await _unplug_case(booted16, stop_on_disconnect=False, unlock=False)


# -- 2.4 cache ---------------------------------------------------------------------------------------------------
@octt("TC_007_CS")
async def test_tc_007_cs(booted16: ChargerUnderTest) -> None:
    cp, session = booted16, booted16.session
    await st.id_tag_cached(cp)
    await st.configure(session, AuthorizationCacheEnabled=True, AuthorizeRemoteTxRequests=True, LocalPreAuthorize=True)
    session.consume_all()
    with step(1, "plug in: Preparing"):
        await cp.control.plug_in(C)
        await session.expect("StatusNotification", {"connectorId": C, "status": "Preparing"}, timeout=T)
    with step(3, "RemoteStartTransaction with the cached idTag: Accepted"):
        authorizations = len(session.trace.calls("Authorize"))
        await session.call_expect("RemoteStartTransaction", {"connectorId": C, "idTag": S.valid_id_tag}, "Accepted")
    with step(5, "StartTransaction and Charging, authorised from the cache (no Authorize)"):
        await session.expect("StartTransaction", {"connectorId": C, "idTag": S.valid_id_tag}, timeout=T)
        await session.expect("StatusNotification", {"connectorId": C, "status": "Charging"}, timeout=T)
        if len(session.trace.calls("Authorize")) > authorizations:
            raise ConformanceFailure("sent Authorize for an idTag in its cache with LocalPreAuthorize true")


@octt("TC_061_CS")
async def test_tc_061_cs(booted16: ChargerUnderTest) -> None:
    cp, session = booted16, booted16.session
    await st.configure(session, AuthorizationCacheEnabled=True, LocalPreAuthorize=True,
                       ConnectionTimeOut=S.connection_timeout)
    await st.authorized(cp)
    with step(3, "present the card again (or wait for ConnectionTimeOut): StatusNotification Available"):
        await cp.control.present_token(S.valid_id_tag, C)
        await session.expect("StatusNotification", {"connectorId": C, "status": "Available"},
                             timeout=S.connection_timeout + T)
    with step(5, "ClearCache: Accepted"):
        await session.call_expect("ClearCache", {}, "Accepted")
    with step(7, "present the same idTag: Authorize is sent (the cache is empty)"):
        session.consume_all()
        await cp.control.present_token(S.valid_id_tag, C)
        await session.expect("Authorize", {"idTag": S.valid_id_tag}, timeout=T)


# -- 2.5 remote actions ------------------------------------------------------------------------------------------------
@octt("TC_010_CS")
async def test_tc_010_cs(booted16: ChargerUnderTest) -> None:
    await st.charging(booted16)


@octt("TC_011_1_CS")
async def test_tc_011_1_cs(booted16: ChargerUnderTest) -> None:
    cp, session = booted16, booted16.session
    with step(1, "GetConfiguration AuthorizeRemoteTxRequests"):
        authorize_remote = await st.get_configuration(session, "AuthorizeRemoteTxRequests")
        if authorize_remote is None:
            raise ConformanceFailure("GetConfiguration does not know AuthorizeRemoteTxRequests")
    with step(3, "RemoteStartTransaction before the cable: Accepted"):
        await session.call_expect("RemoteStartTransaction", {"connectorId": C, "idTag": S.valid_id_tag}, "Accepted")
        if authorize_remote.lower() == "true":
            await session.expect("Authorize", {"idTag": S.valid_id_tag}, timeout=T)
    with step(7, "StatusNotification Preparing"):
        await session.expect("StatusNotification", {"connectorId": C, "status": "Preparing"}, timeout=T)
    with step(9, "plug in: StartTransaction, StatusNotification Charging"):
        await cp.control.plug_in(C)
        await session.expect("StartTransaction", {"connectorId": C, "idTag": S.valid_id_tag}, timeout=T)
        await session.expect("StatusNotification", {"connectorId": C, "status": "Charging"}, timeout=T)


@octt("TC_011_2_CS")
async def test_tc_011_2_cs(booted16: ChargerUnderTest) -> None:
    session = booted16.session
    await st.configure(session, ConnectionTimeOut=S.connection_timeout)
    authorize_remote = await st.get_configuration(session, "AuthorizeRemoteTxRequests")
    with step(3, "RemoteStartTransaction: Accepted, Preparing"):
        await session.call_expect("RemoteStartTransaction", {"connectorId": C, "idTag": S.valid_id_tag}, "Accepted")
        if (authorize_remote or "").lower() == "true":
            await session.expect("Authorize", {"idTag": S.valid_id_tag}, timeout=T)
        await session.expect("StatusNotification", {"connectorId": C, "status": "Preparing"}, timeout=T)
    with step(9, "no cable within ConnectionTimeOut: StatusNotification Available, no transaction"):
        await session.expect("StatusNotification", {"connectorId": C, "status": "Available"},
                             timeout=S.connection_timeout + T)
        await session.expect_none("StartTransaction", within=0.5)


@octt("TC_012_CS")
async def test_tc_012_cs(booted16: ChargerUnderTest) -> None:
    cp, session = booted16, booted16.session
    tx = await st.charging(cp)
    with step(1, "RemoteStopTransaction: Accepted"):
        await session.call_expect("RemoteStopTransaction", {"transactionId": tx}, "Accepted")
    with step(3, "StopTransaction reason Remote, StatusNotification Finishing"):
        await session.expect("StopTransaction", {"transactionId": tx, "reason": "Remote"}, timeout=T)
        await session.expect("StatusNotification", {"connectorId": C, "status": "Finishing"}, timeout=T)


# -- 2.6 reset ------------------------------------------------------------------------------------------------------------
async def _reset_without_transaction(cp: ChargerUnderTest, kind: str) -> None:
    session = cp.session
    await st.connector_unavailable(cp)
    with step(5, f"Reset {kind}: Accepted"):
        await session.call_expect("Reset", {"type": kind}, "Accepted")
    with step(7, "BootNotification; the connector stays Unavailable, the others Available"):
        await session.expect("BootNotification", timeout=T)
        await _available_everywhere(cp, expect_unavailable=C)
    with step(11, "ChangeAvailability Operative: Accepted, StatusNotification Available"):
        await session.call_expect("ChangeAvailability", {"connectorId": C, "type": "Operative"}, "Accepted")
        await session.expect("StatusNotification", {"connectorId": C, "status": "Available"}, timeout=T)


@octt("TC_013_CS")
async def test_tc_013_cs(booted16: ChargerUnderTest) -> None:
    await _reset_without_transaction(booted16, "Hard")


@octt("TC_014_CS")
async def test_tc_014_cs(booted16: ChargerUnderTest) -> None:
    await _reset_without_transaction(booted16, "Soft")


async def _reset_with_transaction(cp: ChargerUnderTest, kind: str) -> None:
    session = cp.session
    tx = await st.charging(cp)
    with step(1, f"Reset {kind}: Accepted"):
        await session.call_expect("Reset", {"type": kind}, "Accepted")
    with step(3, f"StopTransaction reason {kind}Reset, StatusNotification Finishing"):
        await session.expect("StopTransaction", {"transactionId": tx, "reason": f"{kind}Reset"}, timeout=T)
        await session.expect("StatusNotification", {"connectorId": C, "status": "Finishing"}, timeout=T)
    with step(7, "BootNotification; the connector Finishing or Preparing"):
        await session.expect("BootNotification", timeout=T)
        await session.expect("StatusNotification", {"connectorId": C, "status": lambda v: v in (
            "Finishing", "Preparing")}, timeout=T)


@octt("TC_015_CS")
async def test_tc_015_cs(booted16: ChargerUnderTest) -> None:
    await _reset_with_transaction(booted16, "Hard")


@octt("TC_016_CS")
async def test_tc_016_cs(booted16: ChargerUnderTest) -> None:
    await _reset_with_transaction(booted16, "Soft")


# -- 2.7 unlock ---------------------------------------------------------------------------------------------------------------
@octt("TC_017_1_CS")
async def test_tc_017_1_cs(booted16: ChargerUnderTest) -> None:
    with step(1, "UnlockConnector without a session: Unlocked"):
        await booted16.session.call_expect("UnlockConnector", {"connectorId": C}, "Unlocked")


@octt("TC_018_1_CS")
async def test_tc_018_1_cs(booted16: ChargerUnderTest) -> None:
    cp, session = booted16, booted16.session
    tx = await st.charging(cp)
    with step(1, "UnlockConnector during the session: Unlocked"):
        await session.call_expect("UnlockConnector", {"connectorId": C}, "Unlocked")
    with step(3, "StopTransaction reason UnlockCommand, StatusNotification Finishing"):
        await session.expect("StopTransaction", {"transactionId": tx, "reason": "UnlockCommand"}, timeout=T)
        await session.expect("StatusNotification", {"connectorId": C, "status": "Finishing"}, timeout=T)
    with step(7, "unplug: StatusNotification Available"):
        await cp.control.unplug(C)
        await session.expect("StatusNotification", {"connectorId": C, "status": "Available"}, timeout=T)


# -- 2.8 configuration --------------------------------------------------------------------------------------------------------
CORE_KEYS = {
    "AuthorizeRemoteTxRequests": None, "ClockAlignedDataInterval": False, "ConnectionTimeOut": False,
    "GetConfigurationMaxKeys": True, "HeartbeatInterval": False, "LocalAuthorizeOffline": False,
    "LocalPreAuthorize": False, "MeterValuesAlignedData": False, "MeterValuesSampledData": False,
    "MeterValueSampleInterval": False, "NumberOfConnectors": True, "ResetRetries": False,
    "StopTransactionOnInvalidId": False, "StopTxnAlignedData": False, "StopTxnSampledData": False,
    "SupportedFeatureProfiles": True, "TransactionMessageAttempts": False, "TransactionMessageRetryInterval": False,
    "UnlockConnectorOnEVSideDisconnect": None,
}
"""Core keys and whether they are read-only (None: either is allowed). ConnectorPhaseRotation is required
by the document too; this emulator is DC and does not report it, so it is not asserted."""
PROFILE_KEYS = {
    "LocalAuthListManagement": {"LocalAuthListEnabled": False, "LocalAuthListMaxLength": True,
                                "SendLocalListMaxLength": True},
    "SmartCharging": {"ChargeProfileMaxStackLevel": True, "ChargingScheduleAllowedChargingRateUnit": True,
                      "ChargingScheduleMaxPeriods": True, "MaxChargingProfilesInstalled": True},
}


@octt("TC_019_CS")
async def test_tc_019_cs(booted16: ChargerUnderTest) -> None:
    session = booted16.session
    with step(1, "GetConfiguration SupportedFeatureProfiles"):
        answer = await session.call("GetConfiguration", {"key": ["SupportedFeatureProfiles"]})
        if answer.get("unknownKey"):
            raise ConformanceFailure(f"SupportedFeatureProfiles reported unknown: {answer}")
        profiles = answer["configurationKey"][0].get("value", "").split(",")
    with step(3, "GetConfiguration of every key: the required keys with the right accessibility"):
        answer = await session.call("GetConfiguration", {})
        keys = {e["key"]: e for e in answer["configurationKey"]}
        required = dict(CORE_KEYS)
        for profile in profiles:
            required.update(PROFILE_KEYS.get(profile.strip(), {}))
        missing = [k for k in required if k not in keys]
        if missing:
            raise ConformanceFailure(f"required keys missing: {', '.join(missing)}")
        wrong = [k for k, ro in required.items() if ro is not None and keys[k]["readonly"] != ro]
        if wrong:
            raise ConformanceFailure(f"wrong accessibility (readonly) for: {', '.join(wrong)}")
    with step(5, "GetConfiguration GetConfigurationMaxKeys"):
        max_keys = int(await st.get_configuration(session, "GetConfigurationMaxKeys") or 0)
    with step(7, "GetConfiguration of as many keys as allowed: all known"):
        wanted = list(keys)[: max(1, min(max_keys, len(keys)))]
        answer = await session.call("GetConfiguration", {"key": wanted})
        got = {e["key"] for e in answer["configurationKey"]}
        if answer.get("unknownKey") or set(wanted) - got:
            raise ConformanceFailure(f"asked {len(wanted)} keys, missing {sorted(set(wanted) - got)}, "
                                     f"unknown {answer.get('unknownKey')}")


@octt("TC_021_CS")
async def test_tc_021_cs(booted16: ChargerUnderTest) -> None:
    session = booted16.session
    value = str(S.meter_value_sample_interval + 7)
    with step(1, f"ChangeConfiguration MeterValueSampleInterval={value}: Accepted"):
        await session.call_expect("ChangeConfiguration", {"key": "MeterValueSampleInterval", "value": value}, "Accepted")
    with step(3, "GetConfiguration MeterValueSampleInterval shows the new value"):
        got = await st.get_configuration(session, "MeterValueSampleInterval")
        if got != value:
            raise ConformanceFailure(f"MeterValueSampleInterval reads {got!r}, expected {value!r}")


# -- 2.9 meter values ------------------------------------------------------------------------------------------------------
async def _meter_values_case(cp: ChargerUnderTest, aligned: bool) -> None:
    session = cp.session
    interval = S.clock_aligned_data_interval if aligned else S.meter_value_sample_interval
    await st.configure(session, MeterValueSampleInterval=0 if aligned else interval,
                       ClockAlignedDataInterval=interval if aligned else 0)
    key = "MeterValuesAlignedData" if aligned else "MeterValuesSampledData"
    measurands = [m for m in (await st.get_configuration(session, key) or "").split(",") if m] or [
        "Energy.Active.Import.Register"]
    tx = await st.charging(cp)
    context = "Sample.Clock" if aligned else "Sample.Periodic"
    with step(1, f"MeterValues every {interval} s, context {context}, one value per measurand of {key}"):
        session.consume_all()
        frames = [await session.expect_frame("MeterValues", {"transactionId": tx}, timeout=interval + T)
                  for _ in range(3)]
        stamps = [_at(f.payload["meterValue"][0]) for f in frames]
        for a, b in zip(stamps, stamps[1:]):
            if abs(b - a - interval) > S.max_time_deviation:
                raise ConformanceFailure(f"meter value timestamps {b - a:.2f} s apart, expected {interval} s")
        for f, stamp in zip(frames, stamps):
            values = f.payload["meterValue"][0]["sampledValue"]
            got = [v.get("measurand", "Energy.Active.Import.Register") for v in values]
            if sorted(got) != sorted(measurands):
                raise ConformanceFailure(f"sampled measurands {got}, expected {measurands}")
            if any(v.get("context", "Sample.Periodic") != context for v in values):
                raise ConformanceFailure(f"sampled value context {[v.get('context') for v in values]}, expected {context}")
            if aligned and abs(stamp - round(stamp / interval) * interval) > 0.5:
                raise ConformanceFailure(f"clock-aligned timestamp {f.payload['meterValue'][0]['timestamp']} is not "
                                         f"on a multiple of {interval} s")


@octt("TC_070_CS")
async def test_tc_070_cs(booted16: ChargerUnderTest) -> None:
    await _meter_values_case(booted16, aligned=False)


@octt("TC_071_CS")
async def test_tc_071_cs(booted16: ChargerUnderTest) -> None:
    await _meter_values_case(booted16, aligned=True)


# -- 2.10-2.12 non-happy flows -----------------------------------------------------------------------------------------------
@octt("TC_023_CS")
async def test_tc_023_cs(booted16: ChargerUnderTest) -> None:
    cp, session = booted16, booted16.session
    await st.configure(session, LocalPreAuthorize=True)
    with step(1, "plug in: Preparing"):
        await cp.control.plug_in(C)
        await session.expect("StatusNotification", {"connectorId": C, "status": "Preparing"}, timeout=T)
    with step(3, "present an invalid idTag: Authorize answered Invalid, no transaction"):
        await cp.control.present_token(INVALID_TOKEN, C)
        await session.expect("Authorize", {"idTag": INVALID_TOKEN}, timeout=T)
        await session.expect_none("StartTransaction", within=S.transaction_duration)


@octt("TC_024_CS")
async def test_tc_024_cs(booted16: ChargerUnderTest) -> None:
    cp, session = booted16, booted16.session
    authorize_remote = await st.get_configuration(session, "AuthorizeRemoteTxRequests")
    with step(3, "RemoteStartTransaction: Accepted, Preparing"):
        await session.call_expect("RemoteStartTransaction", {"connectorId": C, "idTag": S.valid_id_tag}, "Accepted")
        if (authorize_remote or "").lower() == "true":
            await session.expect("Authorize", {"idTag": S.valid_id_tag}, timeout=T)
        await session.expect("StatusNotification", {"connectorId": C, "status": "Preparing"}, timeout=T)
    with step(9, "cable in halfway (the lock fails): Faulted with ConnectorLockFailure, no transaction"):
        await cp.control.raise_fault(C, "ConnectorLockFailure")
        await session.expect("StatusNotification", {"connectorId": C, "status": "Faulted",
                                                     "errorCode": "ConnectorLockFailure"}, timeout=T)
        await session.expect_none("StartTransaction", within=1.0)


@octt("TC_026_CS")
async def test_tc_026_cs(booted16: ChargerUnderTest) -> None:
    cp, session = booted16, booted16.session
    await st.configure(session, LocalPreAuthorize=False)
    await st.charging(cp)
    with step(1, "RemoteStartTransaction on the busy connector: Rejected"):
        await session.call_expect("RemoteStartTransaction", {"connectorId": C, "idTag": S.valid_id_tag}, "Rejected")


@octt("TC_027_CS")
async def test_tc_027_cs(booted16: ChargerUnderTest) -> None:
    with step(1, "RemoteStartTransaction with connectorId 0: Rejected (or a CALLERROR)"):
        try:
            answer = await booted16.session.call("RemoteStartTransaction", {"connectorId": 0, "idTag": S.valid_id_tag})
        except CallError:
            return
        if answer["status"] != "Rejected":
            raise ConformanceFailure(f"RemoteStartTransaction answered {answer['status']}, expected Rejected")


@octt("TC_028_CS")
async def test_tc_028_cs(booted16: ChargerUnderTest) -> None:
    tx = await st.charging(booted16)
    with step(1, "RemoteStopTransaction with an unknown transactionId: Rejected"):
        await booted16.session.call_expect("RemoteStopTransaction", {"transactionId": tx + 1000}, "Rejected")


@octt("TC_030_CS")
async def test_tc_030_cs(booted16: ChargerUnderTest) -> None:
    cp = booted16
    with step("before", "the connector lock is broken"):
        await cp.control.raise_fault(C, "ConnectorLockFailure")
    with step(1, "UnlockConnector: UnlockFailed"):
        await cp.session.call_expect("UnlockConnector", {"connectorId": C}, "UnlockFailed")


@octt("TC_031_CS")
async def test_tc_031_cs(booted16: ChargerUnderTest) -> None:
    with step(1, "UnlockConnector of an unknown connector: NotSupported"):
        await booted16.session.call_expect("UnlockConnector", {"connectorId": booted16.connectors + 1}, "NotSupported")


# -- 2.15-2.16 configuration keys, fault behaviour ---------------------------------------------------------------------------
@octt("TC_040_1_CS")
async def test_tc_040_1_cs(booted16: ChargerUnderTest) -> None:
    with step(1, "ChangeConfiguration of an unknown key: NotSupported"):
        await booted16.session.call_expect("ChangeConfiguration", {"key": "Testing", "value": "true"}, "NotSupported")


@octt("TC_040_2_CS")
async def test_tc_040_2_cs(booted16: ChargerUnderTest) -> None:
    with step(1, "ChangeConfiguration MeterValueSampleInterval=-1: Rejected (or PropertyConstraintViolation)"):
        try:
            answer = await booted16.session.call("ChangeConfiguration", {"key": "MeterValueSampleInterval", "value": "-1"})
        except CallError as exc:
            if exc.code != "PropertyConstraintViolation":
                raise ConformanceFailure(f"CALLERROR {exc.code}, expected PropertyConstraintViolation") from None
            return
        if answer["status"] != "Rejected":
            raise ConformanceFailure(f"ChangeConfiguration answered {answer['status']}, expected Rejected")


@octt("TC_041_CS")
async def test_tc_041_cs(booted16: ChargerUnderTest) -> None:
    cp, session = booted16, booted16.session
    with step(1, "a fault: StatusNotification Faulted"):
        await cp.control.raise_fault(C)
        await session.expect("StatusNotification", {"connectorId": C, "status": "Faulted"}, timeout=T)
    with step(3, "the EV driver tries to start: no transaction"):
        await cp.control.plug_in(C)
        await cp.control.present_token(S.valid_id_tag, C)
        await session.expect_none("StartTransaction", within=S.transaction_duration)


@octt("TC_062_CS")
async def test_tc_062_cs(booted16: ChargerUnderTest) -> None:
    with step(1, "DataTransfer with an unknown vendorId: Rejected, UnknownMessageId or UnknownVendorId"):
        answer = await booted16.session.call("DataTransfer", {"vendorId": "org.evhil.unknown", "messageId": "Probe"})
        if answer["status"] not in ("Rejected", "UnknownMessageId", "UnknownVendorId"):
            raise ConformanceFailure(f"DataTransfer answered {answer['status']}")


# -- 2.13 power failure ---------------------------------------------------------------------------------------
async def _power_cycle(cp: ChargerUnderTest) -> None:
    await cp.control.power_off()
    await cp.control.power_on()


@octt("TC_032_1_CS")
async def test_tc_032_1_cs(booted16: ChargerUnderTest) -> None:
    cp, session = booted16, booted16.session
    tx = await st.charging(cp)
    with step(1, "supply off: StopTransaction reason PowerLoss, StatusNotification Finishing, before going down"):
        await cp.control.power_off()
        await session.expect("StopTransaction", {"transactionId": tx, "reason": "PowerLoss"}, timeout=T)
        await session.expect("StatusNotification", {"connectorId": C, "status": "Finishing"}, timeout=T)
    with step(5, "supply on: BootNotification; the connector Finishing or Preparing, connector 0 Available"):
        session.consume_all()
        await cp.control.power_on()
        await session.expect("BootNotification", timeout=T)
        await session.expect("StatusNotification", {"connectorId": 0, "status": "Available"}, timeout=T)
        await session.expect("StatusNotification", {"connectorId": C, "status": lambda v: v in (
            "Finishing", "Preparing")}, timeout=T)


@octt("TC_032_2_CS")
async def test_tc_032_2_cs(booted16: ChargerUnderTest) -> None:
    cp, session = booted16, booted16.session
    tx = await st.charging(cp)
    with step(1, "supply off and on: BootNotification accepted"):
        await _power_cycle(cp)
        await session.expect("BootNotification", timeout=T)
    with step(3, "StatusNotification for the connector: Preparing, Finishing or Charging"):
        status = await session.expect("StatusNotification", {"connectorId": C, "status": lambda v: v in (
            "Preparing", "Finishing", "Charging", "Available", "Unavailable")}, timeout=T)
    with step(5, "the transaction ends: resumed and stopped locally (Local), or stopped for the power loss"):
        if status["status"] == "Charging":
            await cp.control.present_token(S.valid_id_tag, C)
        stop = await session.expect("StopTransaction", {"transactionId": tx}, timeout=T)
        if stop.get("reason", "Local") not in ("Local", "PowerLoss"):
            raise ConformanceFailure(f"StopTransaction reason {stop.get('reason')}, expected Local or PowerLoss")


@octt("TC_034_CS")
async def test_tc_034_cs(booted16: ChargerUnderTest) -> None:
    cp, session = booted16, booted16.session
    with step(1, "ChangeAvailability connectorId 0 Inoperative: Accepted, every connector Unavailable"):
        await session.call_expect("ChangeAvailability", {"connectorId": 0, "type": "Inoperative"}, "Accepted")
        await session.expect("StatusNotification", {"connectorId": C, "status": "Unavailable"}, timeout=T)
    with step(5, "supply off and on: BootNotification; the connectors still Unavailable"):
        session.consume_all()
        await _power_cycle(cp)
        await session.expect("BootNotification", timeout=T)
        await session.expect("StatusNotification", {"connectorId": C, "status": "Unavailable"}, timeout=T)
