"""OCPP 1.6 Local Auth List Management, charge point under test (OCTT 1.6 §2.17).

TC_043_1_CS also checks its expected result, which the OCTT leaves to the lab: a list the charge point does not
use authorises nobody locally, online or offline, even one it had stored while the list was enabled.
"""

from __future__ import annotations

import asyncio

from hil.ocpp import states16 as st
from hil.ocpp.conformance import ConformanceFailure, octt, step
from hil.ocpp.fixtures import ChargerUnderTest
from hil.ocpp.rpc import CallError

S = st.SETTINGS
C = S.connector
T = S.message_timeout


async def _send(cp: ChargerUnderTest, version: int, update: str, entries: list[dict] | None, expect: str) -> None:
    request: dict = {"listVersion": version, "updateType": update}
    if entries is not None:
        request["localAuthorizationList"] = entries
    answer = await cp.session.call("SendLocalList", request)
    if answer["status"] != expect:
        raise ConformanceFailure(f"SendLocalList (version {version}, {update}) answered {answer['status']}, expected {expect}")


async def _version(cp: ChargerUnderTest, expect: int) -> None:
    answer = await cp.session.call("GetLocalListVersion", {})
    if answer["listVersion"] != expect:
        raise ConformanceFailure(f"GetLocalListVersion answered {answer['listVersion']}, expected {expect}")


def _entry(tag: str, status: str = "Accepted") -> dict:
    return {"idTag": tag, "idTagInfo": {"status": status}}


@octt("TC_042_1_CS")
async def test_tc_042_1_cs(booted16: ChargerUnderTest) -> None:
    await st.configure(booted16.session, LocalAuthListEnabled=False)
    with step(1, "GetLocalListVersion with the list disabled: -1 (or NotSupported)"):
        try:
            await _version(booted16, -1)
        except CallError as exc:
            if exc.code != "NotSupported":
                raise ConformanceFailure(f"CALLERROR {exc.code}, expected NotSupported") from None


@octt("TC_042_2_CS")
async def test_tc_042_2_cs(booted16: ChargerUnderTest) -> None:
    await st.configure(booted16.session, LocalAuthListEnabled=True)
    with step(1, "SendLocalList version 1, Full, no list: Accepted"):
        await _send(booted16, 1, "Full", None, "Accepted")
    with step(3, "GetLocalListVersion of the empty list: 0"):
        await _version(booted16, 0)


@octt("TC_043_CS")
async def test_tc_043_cs(booted16: ChargerUnderTest) -> None:
    await st.configure(booted16.session, LocalAuthListEnabled=True)
    with step(1, "SendLocalList Full: Accepted"):
        await _send(booted16, 1, "Full", [_entry(S.valid_id_tag)], "Accepted")
    with step(3, "SendLocalList Differential: Accepted"):
        await _send(booted16, 2, "Differential", [_entry(S.valid_id_tag_2)], "Accepted")
        await _version(booted16, 2)


async def _list_while_enabled(cp: ChargerUnderTest, token: str) -> None:
    """Memory: ``token`` Accepted on the local list, sent while LocalAuthListEnabled is true; nothing where the
    charge point has no local list to enable or fill."""
    answer = await cp.session.call("ChangeConfiguration", {"key": "LocalAuthListEnabled", "value": "true"})
    if answer["status"] != "Accepted":
        return
    try:
        await cp.session.call("SendLocalList", {"listVersion": 1, "updateType": "Full",
                                                "localAuthorizationList": [_entry(token)]})
    except CallError:
        pass


@octt("TC_043_1_CS")
async def test_tc_043_1_cs(booted16: ChargerUnderTest) -> None:
    cp, session = booted16, booted16.session
    token = S.local_list_id_tag
    with step("memory", f"where the charge point has a local list: {token} on it, sent while the list was enabled"):
        await _list_while_enabled(cp, token)
    if await st.get_configuration(session, "LocalAuthListEnabled") is not None:
        await st.configure(session, LocalAuthListEnabled=False)
    with step(1, "SendLocalList Full with the list not in use: NotSupported (or a NotSupported CALLERROR)"):
        try:
            await _send(cp, 1, "Full", [_entry(token)], "NotSupported")
        except CallError as exc:
            if exc.code != "NotSupported":
                raise ConformanceFailure(f"CALLERROR {exc.code}, expected NotSupported") from None
    with step("evhil", f"the list is not used online: {token}, which the Central System does not know, is sent in "
                       "Authorize, answered Invalid, and starts no transaction (OCPP 1.6 §3.5.2, §9.1.13, §9.2.1)"):
        await st.configure(session, LocalPreAuthorize=True)
        await cp.control.plug_in(C)
        await session.expect("StatusNotification", {"connectorId": C, "status": "Preparing"}, timeout=T)
        await cp.control.present_token(token, C)
        await session.expect("Authorize", {"idTag": token}, timeout=T)
        await session.expect_none("StartTransaction", within=S.transaction_duration)
    with step("evhil", f"nor offline: {token} presented offline with LocalAuthorizeOffline true starts no transaction "
                       "(OCPP 1.6 §3.5, §9.1.12, §9.2.1)"):
        unknown_offline = await st.get_configuration(session, "AllowOfflineTxForUnknownId") is not None
        await st.configure(session, LocalAuthorizeOffline=True,
                           **({"AllowOfflineTxForUnknownId": False} if unknown_offline else {}))
        await st.offline(cp)
        await cp.control.present_token(token, C)
        await asyncio.sleep(0.5)
        await st.online(cp)
        await session.expect_none("StartTransaction", within=S.transaction_duration)


@octt("TC_043_2_CS")
async def test_tc_043_2_cs(booted16: ChargerUnderTest) -> None:
    await st.configure(booted16.session, LocalAuthListEnabled=True)
    with step(1, "SendLocalList Full version 2: Accepted; version 2"):
        await _send(booted16, 2, "Full", [_entry(S.valid_id_tag)], "Accepted")
        await _version(booted16, 2)
    with step(5, "SendLocalList Differential version 5: Accepted; version 5"):
        await _send(booted16, 5, "Differential", [_entry(S.valid_id_tag_2)], "Accepted")
        await _version(booted16, 5)
    with step(9, "SendLocalList Differential version 4: VersionMismatch; still version 5"):
        await _send(booted16, 4, "Differential", [_entry("EVHILOTHER01")], "VersionMismatch")
        await _version(booted16, 5)


@octt("TC_043_3_CS")
async def test_tc_043_3_cs(booted16: ChargerUnderTest) -> None:
    session = booted16.session
    await st.configure(session, LocalAuthListEnabled=True)
    capacity = int(await st.get_configuration(session, "LocalAuthListMaxLength") or 0)
    with step(1, f"SendLocalList Full version 2 with more entries than LocalAuthListMaxLength ({capacity}): Failed"):
        await _send(booted16, 2, "Full", [_entry(f"EVHILTAG{k:05d}") for k in range(capacity + 1)], "Failed")


@octt("TC_008_CS")
async def test_tc_008_cs(booted16: ChargerUnderTest) -> None:
    cp, session = booted16, booted16.session
    await st.configure(session, LocalPreAuthorize=True, AuthorizationCacheEnabled=False, LocalAuthListEnabled=True,
                       AuthorizeRemoteTxRequests=True)
    with step(1, "GetLocalListVersion"):
        await session.call("GetLocalListVersion", {})
    with step(3, "SendLocalList Full with the valid idTag Accepted"):
        await _send(cp, 1, "Full", [_entry(S.valid_id_tag)], "Accepted")
    with step(5, "plug in: Preparing"):
        await cp.control.plug_in(C)
        await session.expect("StatusNotification", {"connectorId": C, "status": "Preparing"}, timeout=T)
    with step(7, "RemoteStartTransaction: Accepted; StartTransaction without Authorize; Charging"):
        authorizations = len(session.trace.calls("Authorize"))
        await session.call_expect("RemoteStartTransaction", {"connectorId": C, "idTag": S.valid_id_tag}, "Accepted")
        await session.expect("StartTransaction", {"connectorId": C, "idTag": S.valid_id_tag}, timeout=T)
        await session.expect("StatusNotification", {"connectorId": C, "status": "Charging"}, timeout=T)
        if len(session.trace.calls("Authorize")) > authorizations:
            raise ConformanceFailure("sent Authorize for an idTag on its local list with LocalPreAuthorize true")
