"""OCPP 2.0.1 block G, availability, charging station under test: ChangeAvailability of an EVSE with a
transaction running (OCTT 2.0.1 Part 6 §G).

G03.FR.05: an EVSE asked to become Inoperative during a transaction answers Scheduled and changes only when the
transaction has ended; until then the transaction goes on. The case checks the order on the wire: no
Unavailable report for the EVSE before the TransactionEvent Ended, one after it.
"""

from __future__ import annotations

import asyncio

from hil.ocpp import states201 as st
from hil.ocpp.conformance import ConformanceFailure, octt, show, step
from hil.ocpp.fixtures import ChargerUnderTest

S = st.SETTINGS
T = S.message_timeout


@octt("TC_G_11_CS")
async def test_tc_g_11_cs(booted201: ChargerUnderTest) -> None:
    session = booted201.session
    tx = await st.charging(booted201, S)
    unavailable = st.status_match(S, "Unavailable")
    with step(1, f"ChangeAvailability Inoperative for EVSE {S.evse} during its transaction: Scheduled"):
        await session.call_expect("ChangeAvailability", {"operationalStatus": "Inoperative", "evse": {"id": S.evse}},
                                  "Scheduled")
    with step("evhil", "G03.FR.05: the transaction goes on, the connector is not reported Unavailable yet"):
        await asyncio.sleep(S.transaction_duration)
        for f in session.trace.calls():
            if f.action == "StatusNotification" and f.payload.get("evseId") == S.evse and (
                    f.payload["connectorStatus"] == "Unavailable"):
                raise ConformanceFailure(f"StatusNotification {show(f.payload)} while transaction {tx} still runs")
            if f.action == "TransactionEvent" and f.payload["eventType"] == "Ended":
                raise ConformanceFailure(f"the transaction was ended by the ChangeAvailability: {show(f.payload)}")
        if st.open_transaction(session, S.evse) != tx:
            raise ConformanceFailure(f"transaction {tx} is no longer open")
    await st.stop_authorized_local(booted201, S)
    if st.open_transaction(session, S.evse) is not None:
        with step(9, "EVDisconnected: unplug; the transaction ends"):
            await booted201.control.unplug(S.evse)
            await session.expect("TransactionEvent", st.event_match(event_type="Ended", tx=tx), timeout=T)
    with step(4, f"after the transaction ended: StatusNotification Unavailable for EVSE {S.evse}"):
        frame = await session.expect_frame("StatusNotification", unavailable, timeout=T)
        ended = next(f for f in session.trace.calls("TransactionEvent") if f.payload["eventType"] == "Ended"
                     and f.payload["transactionInfo"]["transactionId"] == tx)
        if frame.time < ended.time:
            raise ConformanceFailure("the connector was reported Unavailable before the TransactionEvent Ended")
