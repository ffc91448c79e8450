"""The OCPP 2.0.1 charging station emulator: evhil's reference device under test for the 2.0.1 suites.

Functional blocks: B provisioning (boot Accepted/Pending/Rejected, device model with GetVariables,
SetVariables and paged base reports, reset of the station or one EVSE, network profiles, offline
threshold), C authorisation (Authorize, the authorisation cache with its lifetime, the local list, group
ids and the master pass, offline rules), E transactions (TransactionEvent with seqNo, the configurable
start and stop points, meter values, the offline queue with MessageAttempts, GetTransactionStatus), F
remote control (RequestStart/StopTransaction, UnlockConnector, TriggerMessage) and K smart charging
(profiles with stacking and composite schedules, GetChargingProfiles). One connector per EVSE; each EVSE is
a plant port (``Outlet``), so what the port's meter measures is what the transaction reports.

The transaction state machine follows TxCtrlr.TxStartPoint and TxStopPoint: a transaction starts when
the first start condition holds (EVConnected, Authorized, PowerPathClosed = both, EnergyTransfer) and ends
when a stop condition it had reached no longer holds. Every change of charging state, and every
authorisation or de-authorisation, is a TransactionEvent with its trigger reason.

Persistent across ``reset`` and ``power_off``/``power_on`` (the station's flash): the device model,
availability, the authorisation cache, the local list, charging profiles and the message queue.

Times: seconds; energy Wh; current A.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
import json
import logging
import ssl
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from hil.ocpp import smart_charging as sc
from hil.ocpp.csms import now_iso
from hil.ocpp.device_model import DeviceModel, Variable, standard_model
from hil.ocpp.file_transfer import TransferError, download, upload
from hil.ocpp.outlet import Outlet
from hil.ocpp.rpc import CallError, CallTimeout, ConnectionClosed, Handler, Trace
from hil.ocpp.uplink import BackOff, Offline, Retry, Uplink

log = logging.getLogger(__name__)

VERSION = "2.0.1"
TOKEN_TYPE = "ISO14443"
"""The idToken type of tokens presented at the station (an RFID card)."""
EV_REACTION_S = 0.3
"""How long the EV takes to draw current once the power path is closed [s]."""
_STOPPED_REASON = {"EVCommunicationLost": "EVDisconnected", "StopAuthorized": "Local", "RemoteStop": "Remote",
                   "Deauthorized": "DeAuthorized", "EVConnectTimeout": "Timeout", "ResetCommand": "ImmediateReset",
                   "UnlockCommand": "UnlockCommand", "ChargingStateChanged": "StoppedByEV",
                   "AbnormalCondition": "Other", "EnergyLimitReached": "EnergyLimitReached", "EVDeparted": "Local"}
_ANNOUNCING = {"EVDetected", "EVDeparted", "SignedDataReceived", "Authorized", "RemoteStart", "StopAuthorized", "RemoteStop", "Deauthorized", "CablePluggedIn",
               "EVCommunicationLost", "Trigger", "MeterValuePeriodic", "MeterValueClock", "ResetCommand",
               "UnlockCommand", "AbnormalCondition", "EVConnectTimeout", "EnergyLimitReached"}
"""Trigger reasons that make a TransactionEvent even when the charging state did not change."""


def id_token(token: str, kind: str = TOKEN_TYPE) -> dict[str, str]:
    """A wire idToken."""
    return {"idToken": token, "type": kind}


@dataclass
class Transaction:
    """A transaction on one EVSE; ``id`` is the station's (2.0.1 transactions are named by the station)."""

    id: str
    evse: int
    started: datetime
    seq: itertools.count = field(default_factory=itertools.count)
    token: dict[str, str] | None = None
    group: str | None = None
    remote_start_id: int | None = None
    charging_state: str = "Idle"
    stopped_reason: str | None = None
    reached: set[str] = field(default_factory=set)
    evse_sent: bool = False
    ended: bool = False
    invalid_energy_wh: float | None = None
    """Meter reading when the token was found invalid and charging went on (MaxEnergyOnInvalidId)."""
    ended_samples: list[dict[str, Any]] = field(default_factory=list)
    """Meter values sampled every SampledDataCtrlr.TxEndedInterval s, sent with the Ended event."""


@dataclass
class Evse:
    """One EVSE with its single connector."""

    id: int
    outlet: Outlet
    operative: bool = True
    pending_operative: bool | None = None
    faulted: bool = False
    transaction: Transaction | None = None
    token: dict[str, str] | None = None
    """The idToken authorised on this EVSE (before or during its transaction)."""
    token_unsent: bool = False
    """The authorised token has not been in a TransactionEvent yet."""
    authorized_at: float = 0.0
    remote_start_id: int | None = None
    energy_flowing: bool = False
    ev_suspended: bool = False
    evse_suspended: bool = False
    reported: str | None = None
    """The connector status last sent to the CSMS."""
    cable_in_socket: bool = False
    """A detachable cable is in the socket (it stays there when the EV side is unplugged)."""
    bay_occupied: bool = False
    """The parking-bay sensor sees a vehicle."""
    data_signed: bool = False
    """The meter has signed the reading at the start of the session (SampledDataCtrlr.SignReadings)."""


class MeterSignature:
    """The signing meter of a station: an ECDSA P-256 key made at start-up, readings encoded OCMF-style
    (``OCMF|payload|signature``, base64) as a 2.0.1 SignedMeterValue."""

    METHOD = "ECDSA-secp256r1-SHA256"

    def __init__(self) -> None:
        self._key = ec.generate_private_key(ec.SECP256R1())
        der = self._key.public_key().public_bytes(serialization.Encoding.DER,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo)
        self.public_key = base64.b64encode(der).decode()

    def sign(self, reading: dict[str, Any]) -> dict[str, str]:
        payload = json.dumps(reading, separators=(",", ":"), sort_keys=True)
        signature = self._key.sign(payload.encode(), ec.ECDSA(hashes.SHA256()))
        data = f"OCMF|{payload}|" + json.dumps({"SA": self.METHOD, "SD": signature.hex()}, separators=(",", ":"))
        return {"signedMeterData": base64.b64encode(data.encode()).decode(), "signingMethod": self.METHOD,
                "encodingMethod": "OCMF", "publicKey": self.public_key}

    def verify(self, signed: dict[str, str]) -> dict[str, Any]:
        """The reading inside a SignedMeterValue; ``InvalidSignature`` if it was not signed by this meter."""
        _, payload, trailer = base64.b64decode(signed["signedMeterData"]).decode().split("|", 2)
        self._key.public_key().verify(bytes.fromhex(json.loads(trailer)["SD"]), payload.encode(),
                                      ec.ECDSA(hashes.SHA256()))
        return dict(json.loads(payload))


@dataclass
class CachedToken:
    info: dict[str, Any]
    stored: float
    """Wall-clock time [s since the epoch] the entry was stored."""


class ChargingStation:
    """An emulated OCPP 2.0.1 charging station ``cs_id`` connecting to ``csms_url`` (a ws:// base URL).

    ``outlets`` are the EVSEs' plant ports (EVSE k is ``outlets[k-1]``); their connectors are sockets
    for a detachable cable unless ``fixed_cable``. ``variables`` seeds device-model
    values by label (``"TxCtrlr.TxStartPoint": "EVConnected"``, ``"OCPPCommCtrlr.MessageTimeout[Default]":
    "5"``), read-only ones included: how a station is built with other settings. ``evse_reset`` says
    whether a single EVSE can be reset; ``smart_charging`` whether the station has the Smart Charging
    functional block.
    """

    def __init__(self, cs_id: str, csms_url: str, outlets: list[Outlet], *, password: str | None = None,
                 tls: Any = None, variables: dict[str, str] | None = None, vendor: str = "evhil",
                 model: str = "reference-cs", serial: str = "EVHIL-0201", firmware: str = "0.1.0",
                 evse_reset: bool = True, smart_charging: bool = True, fixed_cable: bool = False,
                 validate: bool = True) -> None:
        self.id = cs_id
        self.evse_reset = evse_reset
        self.fixed_cable = fixed_cable
        self._tls = tls
        self.smart_charging = smart_charging
        self.backup_power = True
        """Ends its transactions (reason PowerLoss) before going down when the supply fails."""
        self.dm: DeviceModel = standard_model(cs_id, len(outlets), vendor=vendor, model=model,
                                              smart_charging=smart_charging, fixed_cable=fixed_cable)
        self.dm.seed(variables or {})
        self.evses = {k + 1: Evse(k + 1, o) for k, o in enumerate(outlets)}
        self.identity = {"model": model, "vendorName": vendor, "serialNumber": serial, "firmwareVersion": firmware}
        self.profiles = sc.ProfileStore(max_stack_level=self._sc_int("ProfileStackLevel"),
                                        max_periods=self._sc_int("PeriodsPerSchedule"),
                                        allowed_units=tuple(self._sc_members("RateUnit")))
        self.raw_profiles: dict[int, tuple[int, dict[str, Any]]] = {}
        """Installed profiles as received: id -> (evseId, chargingProfile)."""
        self.certificates: dict[str, list[str]] = {}
        """Installed certificates (PEM) by InstallCertificate type (CSMSRootCertificate, ...)."""
        self.meter_signature = MeterSignature()
        """The meter's signing key (SampledDataCtrlr.SignReadings)."""
        self.cache: dict[str, CachedToken] = {}
        self.local_list: dict[str, dict[str, Any]] = {}
        self.local_list_version = 0
        self.network_profiles: dict[int, dict[str, Any]] = {
            0: {"ocppCsmsUrl": csms_url, "securityProfile": 2 if tls is not None else 1}}
        """Configuration slot -> NetworkConnectionProfile (slot 0: the URL the station was built with)."""
        self.boot_status: str | None = None
        self.boot_reason = "PowerUp"
        self.firmware_status: tuple[str, int | None] = ("Idle", None)
        """The last FirmwareStatusNotification status and its requestId."""
        self.log_status: tuple[str, int | None] = ("Idle", None)
        """The last LogStatusNotification status and its requestId."""
        self.reset_scheduled = False
        self.reset_evses: set[int] = set()
        self.offline_since: float | None = None
        self._profile_failures = 0
        """Failed connection attempts on the active network profile since it was chosen."""
        self._boot_now = asyncio.Event()
        self._live()
        self.uplink = Uplink(csms_url, cs_id, VERSION, self._handlers(), self._on_connected, password=password,
                             tls=tls, backoff=self._backoff(), validate=validate,
                             response_timeout=float(self.dm.integer("OCPPCommCtrlr", "MessageTimeout", "Default")),
                             on_failure=self._connection_failed)
        self._tasks: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Task[Any]] = set()

    # -- device-model access --------------------------------------------------------------------------
    def _sc_int(self, name: str) -> int | None:
        return self.dm.integer("SmartChargingCtrlr", name) if self.smart_charging else None

    def _sc_members(self, name: str) -> list[str]:
        return self.dm.members("SmartChargingCtrlr", name) if self.smart_charging else []

    def var(self, component: str, name: str, instance: str | None = None) -> str:
        """A device-model value as text."""
        return self.dm.text(component, name, instance)

    def flag(self, component: str, name: str) -> bool:
        return self.dm.boolean(component, name)

    def number(self, component: str, name: str, instance: str | None = None) -> int:
        return self.dm.integer(component, name, instance)

    def _live(self) -> None:
        dm = self.dm
        dm.live[dm.lookup("ClockCtrlr", "DateTime").key] = now_iso
        dm.live[dm.lookup("LocalAuthListCtrlr", "Entries").key] = lambda: str(len(self.local_list))
        dm.live[dm.lookup("SecurityCtrlr", "CertificateEntries").key] = lambda: str(
            sum(len(pems) for pems in self.certificates.values()))
        if self.smart_charging:
            dm.live[dm.lookup("SmartChargingCtrlr", "Entries", "ChargingProfiles").key] = lambda: str(len(self.profiles))
        dm.live[dm.lookup("ChargingStation", "AvailabilityState").key] = lambda: (
            "Available" if any(e.operative for e in self.evses.values()) else "Unavailable")
        for e in self.evses.values():
            dm.live[dm.lookup("EVSE", "AvailabilityState", evse=e.id).key] = (lambda e=e: self.connector_status(e))
            dm.live[dm.lookup("Connector", "AvailabilityState", evse=e.id, connector=1).key] = (
                lambda e=e: self.connector_status(e))
        dm.items_per_report = dm.integer("DeviceDataCtrlr", "ItemsPerMessage", "GetReport")

    def _backoff(self) -> BackOff:
        return BackOff(float(self.number("OCPPCommCtrlr", "RetryBackOffWaitMinimum")),
                       float(self.number("OCPPCommCtrlr", "RetryBackOffRandomRange")),
                       self.number("OCPPCommCtrlr", "RetryBackOffRepeatTimes"))

    def _retry(self) -> Retry:
        return Retry(self.number("OCPPCommCtrlr", "MessageAttempts", "TransactionEvent"),
                     float(self.number("OCPPCommCtrlr", "MessageAttemptInterval", "TransactionEvent")))

    def _variable_changed(self, v: Variable) -> None:
        if v.component == "OCPPCommCtrlr" and v.name.startswith("RetryBackOff"):
            self.uplink.backoff = self._backoff()
        elif v.component == "OCPPCommCtrlr" and v.name.startswith("MessageAttempt"):
            self.uplink.retry = self._retry()

    @property
    def running(self) -> bool:
        return bool(self._tasks)

    @property
    def trace(self) -> Trace:
        return self.uplink.trace

    # -- life cycle -----------------------------------------------------------------------------------
    async def start(self) -> "ChargingStation":
        self.uplink.retry = self._retry()
        self.uplink.start()
        self._tasks = [asyncio.ensure_future(t) for t in (self._heartbeat(), self._watch(), self._sample(),
                                                          self._aligned())]
        return self

    async def _halt(self) -> None:
        for e in self.evses.values():
            e.outlet.de_energize()
            e.energy_flowing = False
        for task in [*self._tasks, *self._background]:
            task.cancel()
        if self._tasks:
            _, stuck = await asyncio.wait(self._tasks, timeout=5.0)
            if stuck:
                log.warning("%s: tasks did not stop: %s", self.id, [t.get_coro().__qualname__ for t in stuck])
        self._tasks = []
        await self.uplink.stop()
        for e in self.evses.values():
            e.outlet.de_energize()

    async def stop(self) -> None:
        """Stop every task, de-energise every outlet, close the connection."""
        await self._halt()

    async def __aenter__(self) -> "ChargingStation":
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- the control seam -----------------------------------------------------------------------------
    def _evse(self, evse: int) -> Evse:
        try:
            return self.evses[evse]
        except KeyError:
            raise ValueError(f"charging station {self.id} has EVSEs {sorted(self.evses)}, not {evse}") from None

    async def plug_in(self, connector: int = 1) -> None:
        e = self._evse(connector)
        e.cable_in_socket = not self.fixed_cable
        e.outlet.plug(True)
        await self._on_plug(e)

    async def unplug(self, connector: int = 1) -> None:
        e = self._evse(connector)
        e.cable_in_socket = False
        e.outlet.plug(False)
        await self._on_unplug(e)

    async def unplug_ev_side(self, connector: int = 1) -> None:
        """The cable is pulled out of the EV; a detachable cable stays in the station's socket."""
        e = self._evse(connector)
        e.outlet.plug(False)
        await self._on_unplug(e)

    async def plug_in_ev_side(self, connector: int = 1) -> None:
        """The cable left in the socket (or the fixed cable) goes back into the EV."""
        e = self._evse(connector)
        e.outlet.plug(True)
        await self._on_plug(e)

    async def present_token(self, token: str, connector: int = 1) -> None:
        await self._on_token(self._evse(connector), id_token(token))

    async def cut_network(self) -> None:
        await self.uplink.cut()

    async def restore_network(self) -> None:
        self.uplink.restore()

    async def raise_fault(self, connector: int = 1, error_code: str = "GroundFailure") -> None:
        e = self._evse(connector)
        e.faulted = True
        if e.transaction is not None:
            e.token, e.energy_flowing = None, False
            self._update(e, "AbnormalCondition", stop_reason="GroundFault" if error_code == "GroundFailure" else "Other",
                         force_end=True)
        await self._report(e)

    async def clear_fault(self, connector: int = 1) -> None:
        e = self._evse(connector)
        e.faulted = False
        await self._report(e)

    async def ev_suspend(self, connector: int = 1) -> None:
        """The EV stops drawing current (IEC 61851 state C to B) without unplugging."""
        e = self._evse(connector)
        e.ev_suspended = True
        self._update(e, "ChargingStateChanged")

    async def ev_resume(self, connector: int = 1) -> None:
        e = self._evse(connector)
        e.ev_suspended = False
        self._update(e, "ChargingStateChanged")

    async def power_off(self) -> None:
        """Lose the supply. With ``backup_power`` the station first ends its transactions (PowerLoss) and
        tries to deliver them; either way the connection drops and the outlets go dead."""
        if self.backup_power:
            for e in self.evses.values():
                if e.transaction is not None:
                    e.token, e.energy_flowing = None, False
                    self._update(e, "AbnormalCondition", stop_reason="PowerLoss", force_end=True)
            try:
                await self.uplink.drain(timeout=3.0)
            except asyncio.TimeoutError:
                pass
        await self._halt()

    async def power_on(self) -> None:
        """The supply is back: boot with reason PowerUp."""
        self._prepare_boot("PowerUp")
        await self.start()

    # -- status ---------------------------------------------------------------------------------------
    def connector_status(self, e: Evse) -> str:
        """The 2.0.1 ConnectorStatus of the EVSE's connector now."""
        if e.faulted:
            return "Faulted"
        if not e.operative and e.transaction is None:
            return "Unavailable"
        if e.outlet.plugged_in or e.cable_in_socket:
            return "Occupied"
        return "Available"

    async def _report(self, e: Evse, force: bool = False) -> None:
        status = self.connector_status(e)
        if not force and status == e.reported:
            return
        if not (self.uplink.online and self.boot_status == "Accepted"):
            return
        e.reported = status
        payload = {"timestamp": now_iso(), "connectorStatus": status, "evseId": e.id, "connectorId": 1}
        if await self._try_call("StatusNotification", payload) is None:
            e.reported = None

    async def _try_call(self, action: str, payload: dict[str, Any]) -> dict[str, Any] | None:
        try:
            return await self.uplink.call(action, payload)
        except (Offline, ConnectionClosed, CallTimeout, CallError):
            return None

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        """Run ``coro`` in the background until it ends or the station stops."""
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    def _soon(self, coro: Any, delay: float = 0.05) -> None:
        """Run ``coro`` after ``delay`` s (an answer goes out before what it started)."""
        async def later() -> None:
            await asyncio.sleep(delay)
            await coro
        # a stop can cancel the task before it starts ``coro``: close it then, so it is not left unawaited
        self._spawn(later()).add_done_callback(lambda task: coro.close())

    # -- boot -----------------------------------------------------------------------------------------
    def _prepare_boot(self, reason: str) -> None:
        """Before (re)booting: the boot reason, the network profile of highest priority, nothing reported."""
        self._use_profile(self._priority()[0])
        self.boot_reason = reason
        self.boot_status = None
        self.uplink.boot_accepted.clear()
        self.uplink._first = True
        for e in self.evses.values():
            e.reported = None

    async def _on_connected(self, first: bool) -> None:
        if first or self.boot_status != "Accepted":
            await self._boot()
            return
        offline = self.offline_since
        long_offline = offline is not None and (
            asyncio.get_running_loop().time() - offline > self.number("OCPPCommCtrlr", "OfflineThreshold"))
        self.offline_since = None
        for e in self.evses.values():
            await self._report(e, force=long_offline)

    async def _boot(self) -> None:
        while True:
            self._boot_now.clear()
            try:
                answer = await self.uplink.call("BootNotification", {"chargingStation": dict(self.identity),
                                                                     "reason": self.boot_reason})
            except (Offline, ConnectionClosed):
                return
            except (CallTimeout, CallError):
                await asyncio.sleep(5.0)
                continue
            self.boot_status = answer["status"]
            interval = int(answer.get("interval", 0))
            if answer["status"] == "Accepted":
                if interval > 0:
                    self.dm.lookup("OCPPCommCtrlr", "HeartbeatInterval").value = str(interval)
                break
            try:
                await asyncio.wait_for(self._boot_now.wait(), interval if interval > 0 else 10)
                self.boot_reason = "Triggered"
            except asyncio.TimeoutError:
                pass
        self.uplink.boot_accepted.set()
        for e in self.evses.values():
            await self._report(e, force=True)
        rebooted = self.boot_reason in ("RemoteReset", "ScheduledReset", "Triggered", "FirmwareUpdate")
        await self._try_call("SecurityEventNotification", {
            "type": "ResetOrReboot" if rebooted else "StartupOfTheDevice", "timestamp": now_iso()})

    # -- periodic work --------------------------------------------------------------------------------
    async def _heartbeat(self) -> None:
        loop = asyncio.get_running_loop()
        last = loop.time()
        while True:
            await asyncio.sleep(0.05)
            if not (self.uplink.online and self.boot_status == "Accepted"):
                last = loop.time()
                continue
            interval = self.number("OCPPCommCtrlr", "HeartbeatInterval")
            if interval > 0 and loop.time() - last >= interval:
                last += interval if loop.time() - last < 2 * interval else loop.time() - last
                await self._try_call("Heartbeat", {})

    async def _watch(self) -> None:
        """Notice cable changes made in the plant, the network going away, authorisations timing out, and
        apply the charging limits."""
        loop = asyncio.get_running_loop()
        plugged = {k: e.outlet.plugged_in for k, e in self.evses.items()}
        while True:
            await asyncio.sleep(0.1)
            if not self.uplink.online and self.offline_since is None:
                self.offline_since = loop.time()
            for k, e in self.evses.items():
                now = e.outlet.plugged_in
                if now != plugged[k]:
                    plugged[k] = now
                    if not now:
                        e.cable_in_socket = False  # taken out in the plant: the cable is gone too
                    await (self._on_plug(e) if now else self._on_unplug(e))
                if e.token is not None and not now and loop.time() - e.authorized_at > self.number(
                        "TxCtrlr", "EVConnectionTimeOut"):
                    self._connection_timeout(e)
                self._check_energy_limit(e)
                self._apply_limit(e)

    def _apply_limit(self, e: Evse) -> None:
        if self.charging_state(e) != "Charging":
            if e.outlet.energized:
                e.outlet.de_energize()
            return
        e.outlet.energize(self.limit(e.id))

    def limit(self, evse: int) -> float | None:
        """The composite limit in force on ``evse`` now [A per phase]; None = unconstrained."""
        e = self.evses[evse]
        tx = e.transaction
        if tx is None:
            return None
        return sc.limit_at(self.profiles, evse, datetime.now(timezone.utc), "A", transaction_start=tx.started,
                           transaction_id=tx.id, nominal_voltage=e.outlet.plant.site.phase_voltage,
                           phases=e.outlet.phases)

    async def _sample(self) -> None:
        """Sampled transaction meter values (J02), each interval counted from the transaction's start: every
        SampledDataCtrlr.TxUpdatedInterval s an Updated event, every TxEndedInterval s a sample kept for the
        Ended event."""
        due: dict[tuple[int, str], tuple[Transaction, float]] = {}
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(0.02)
            now = loop.time()
            for k, e in self.evses.items():
                for name in ("TxUpdatedInterval", "TxEndedInterval"):
                    interval = self.number("SampledDataCtrlr", name)
                    tx = e.transaction
                    if tx is None or interval <= 0 or not self.flag("SampledDataCtrlr", "Enabled"):
                        due.pop((k, name), None)
                    elif (k, name) not in due or due[k, name][0] is not tx:
                        due[k, name] = (tx, now + interval)
                    elif now >= due[k, name][1]:
                        due[k, name] = (tx, due[k, name][1] + interval)
                        self._periodic(e, tx, name)

    def _periodic(self, e: Evse, tx: Transaction, interval: str) -> None:
        if interval == "TxUpdatedInterval":
            self._event(e, tx, "Updated", "MeterValuePeriodic", meter=self.meter_value(
                e, "Sample.Periodic", self.dm.members("SampledDataCtrlr", "TxUpdatedMeasurands")))
        else:
            tx.ended_samples.append(self.meter_value(e, "Sample.Periodic",
                                                     self.dm.members("SampledDataCtrlr", "TxEndedMeasurands")))

    async def _aligned(self) -> None:
        while True:
            interval = self.number("AlignedDataCtrlr", "Interval")
            if interval <= 0 or not self.flag("AlignedDataCtrlr", "Enabled"):
                await asyncio.sleep(0.5)
                continue
            now = datetime.now(timezone.utc).timestamp()
            boundary = (now // interval + 1) * interval
            await asyncio.sleep(boundary - now)
            stamp = datetime.fromtimestamp(boundary, timezone.utc)
            measurands = self.dm.members("AlignedDataCtrlr", "Measurands")
            for e in self.evses.values():
                mv = self.meter_value(e, "Sample.Clock", measurands, stamp)
                if e.transaction is None:
                    if self.uplink.online and self.boot_status == "Accepted":
                        self._spawn(self._try_call("MeterValues", {"evseId": e.id, "meterValue": [mv]}))
                elif not self.flag("AlignedDataCtrlr", "SendDuringIdle"):  # SendDuringIdle: only while idle
                    self._event(e, e.transaction, "Updated", "MeterValueClock", meter=mv)

    def meter_value(self, e: Evse, context: str, measurands: list[str], when: datetime | None = None) -> dict[str, Any]:
        """What the EVSE's meter shows now, as one 2.0.1 MeterValue."""
        values = []
        for m in measurands or ["Energy.Active.Import.Register"]:
            reading = e.outlet.measure(m)
            if reading is None:
                continue
            sv: dict[str, Any] = {"value": reading[0], "context": context, "measurand": m,
                                  "unitOfMeasure": {"unit": reading[1]}}
            if m == "SoC":
                sv["location"] = "EV"
            values.append(sv)
        stamp = now_iso() if when is None else sc.format_datetime(when)
        if self.flag("SampledDataCtrlr", "SignReadings"):
            for sv in values:
                sv["signedMeterValue"] = self.meter_signature.sign(
                    {"station": self.id, "evse": e.id, "time": stamp, "measurand": sv["measurand"],
                     "value": sv["value"], "unit": sv["unitOfMeasure"]["unit"], "context": context})
        return {"timestamp": stamp, "sampledValue": values}

    # -- the transaction state machine ------------------------------------------------------------------
    def _authorized(self, e: Evse) -> bool:
        return e.token is not None

    def conditions(self, e: Evse) -> dict[str, bool]:
        plugged = e.outlet.plugged_in
        authorized = self._authorized(e)
        return {"ParkingBayOccupancy": e.bay_occupied, "EVConnected": plugged, "Authorized": authorized,
                "DataSigned": plugged and authorized and e.data_signed, "PowerPathClosed": plugged and authorized,
                "EnergyTransfer": plugged and authorized and e.energy_flowing and not e.ev_suspended
                and not e.evse_suspended}

    def charging_state(self, e: Evse) -> str:
        if not e.outlet.plugged_in:
            return "Idle"
        if not self._authorized(e) or not e.energy_flowing:
            return "EVConnected"
        if e.evse_suspended:
            return "SuspendedEVSE"
        if e.ev_suspended:
            return "SuspendedEV"
        return "Charging"

    def _update(self, e: Evse, trigger: str, *, stop_reason: str | None = None, force_end: bool = False,
                token: dict[str, str] | None = None) -> None:
        """Re-evaluate the EVSE after a change caused by ``trigger``: start, update or end its transaction."""
        conds = self.conditions(e)
        state = self.charging_state(e)
        tx = e.transaction
        if tx is None:
            if not force_end and e.operative and not e.faulted and any(
                    conds[p] for p in self.dm.members("TxCtrlr", "TxStartPoint")):
                tx = Transaction(str(uuid.uuid4()), e.id, datetime.now(timezone.utc),
                                 remote_start_id=e.remote_start_id)
                tx.reached = {p for p, held in conds.items() if held}
                tx.charging_state = state
                e.transaction = tx
                self._event(e, tx, "Started", trigger, meter=self.meter_value(
                    e, "Transaction.Begin", self.dm.members("SampledDataCtrlr", "TxStartedMeasurands")))
            self._schedule_energy(e)
            return
        if stop_reason is not None and tx.stopped_reason is None:
            tx.stopped_reason = stop_reason
        tx.reached |= {p for p, held in conds.items() if held}
        ending = force_end or any(p in tx.reached and not conds[p] for p in self.dm.members("TxCtrlr", "TxStopPoint"))
        if ending:
            e.energy_flowing = False
            tx.charging_state = self.charging_state(e)
            tx.ended = True
            e.transaction = None
            if tx.stopped_reason is None:
                tx.stopped_reason = _STOPPED_REASON.get(trigger, "Other")
            self._event(e, tx, "Ended", trigger, token=token, meter=self.meter_value(
                e, "Transaction.End", self.dm.members("SampledDataCtrlr", "TxEndedMeasurands")))
            e.token, e.remote_start_id = None, None
            e.evse_suspended = False
            self.profiles.end_transaction(e.id)
            for pid in [pid for pid, (evse, raw) in self.raw_profiles.items()
                        if evse == e.id and raw["chargingProfilePurpose"] == "TxProfile"]:
                del self.raw_profiles[pid]
            self._apply_limit(e)
            self._after_transaction(e)
            return
        if state != tx.charging_state or trigger in _ANNOUNCING or (e.token_unsent and e.token is not None):
            tx.charging_state = state
            self._event(e, tx, "Updated", trigger, token=token)
        self._schedule_energy(e)

    def _schedule_energy(self, e: Evse) -> None:
        """Once the power path is closed the meter signs its start reading (with SignReadings) and the EV
        starts drawing after its reaction time."""
        if e.outlet.plugged_in and self._authorized(e) and not e.data_signed and self.flag("SampledDataCtrlr",
                                                                                            "SignReadings"):
            e.data_signed = True
            self._update(e, "SignedDataReceived")
        if not (e.outlet.plugged_in and self._authorized(e)):
            e.data_signed = False
        if e.outlet.plugged_in and self._authorized(e) and not e.energy_flowing:
            async def react(token: dict[str, str] | None) -> None:
                await asyncio.sleep(EV_REACTION_S)
                if e.token is token and e.outlet.plugged_in and not e.energy_flowing:
                    e.energy_flowing = True
                    self._update(e, "ChargingStateChanged")
            self._spawn(react(e.token))
        elif not (e.outlet.plugged_in and self._authorized(e)):
            e.energy_flowing = False
        self._apply_limit(e)

    def _event(self, e: Evse, tx: Transaction, kind: str, trigger: str, *,
               meter: dict[str, Any] | None = None, token: dict[str, str] | None = None) -> None:
        info: dict[str, Any] = {"transactionId": tx.id, "chargingState": tx.charging_state}
        payload: dict[str, Any] = {"eventType": kind, "timestamp": now_iso(), "triggerReason": trigger,
                                   "seqNo": next(tx.seq), "transactionInfo": info}
        if not self.uplink.online:
            payload["offline"] = True
        if not tx.evse_sent or trigger == "CablePluggedIn":
            payload["evse"] = {"id": e.id, "connectorId": 1}
            tx.evse_sent = True
        sent_token = None
        if token is not None:
            payload["idToken"] = sent_token = dict(token)
        elif e.token is not None and e.token_unsent:
            payload["idToken"] = sent_token = dict(e.token)
            e.token_unsent = False
            tx.token = tx.token or dict(e.token)
        if tx.remote_start_id is not None:
            info["remoteStartId"] = tx.remote_start_id
            tx.remote_start_id = None
        if kind == "Ended":
            info["stoppedReason"] = tx.stopped_reason
        values = [*tx.ended_samples, meter] if kind == "Ended" and meter is not None else [meter]
        values = [mv for mv in values if mv is not None and mv.get("sampledValue")]
        if values:
            payload["meterValue"] = values

        def answered(answer: dict[str, Any]) -> None:
            status = (answer.get("idTokenInfo") or {}).get("status")
            if sent_token is None or status is None:
                return
            self._remember(sent_token["idToken"], answer["idTokenInfo"])
            if status != "Accepted" and e.transaction is tx and e.token is not None:
                self._deauthorized_by_csms(e, tx)

        self.uplink.enqueue("TransactionEvent", payload, answered)

    def _deauthorized_by_csms(self, e: Evse, tx: Transaction) -> None:
        if self.flag("TxCtrlr", "StopTxOnInvalidId"):
            self._deauthorize(e, "Deauthorized", "DeAuthorized")
            return
        allowance = self.number("TxCtrlr", "MaxEnergyOnInvalidId")
        if allowance > 0:
            tx.invalid_energy_wh = e.outlet.energy_wh()
            return
        e.evse_suspended = True
        self._update(e, "ChargingStateChanged")

    def _check_energy_limit(self, e: Evse) -> None:
        tx = e.transaction
        if tx is None or tx.invalid_energy_wh is None or e.evse_suspended:
            return
        if e.outlet.energy_wh() - tx.invalid_energy_wh >= self.number("TxCtrlr", "MaxEnergyOnInvalidId"):
            e.evse_suspended = True
            self._update(e, "EnergyLimitReached")

    def _after_transaction(self, e: Evse) -> None:
        if e.pending_operative is not None:
            e.operative, e.pending_operative = e.pending_operative, None
        self._soon(self._report(e))
        if e.id in self.reset_evses:
            self.reset_evses.discard(e.id)
        if self.reset_scheduled and all(x.transaction is None for x in self.evses.values()):
            self.reset_scheduled = False
            self._soon(self._reboot("ScheduledReset"), 0.2)

    def _connection_timeout(self, e: Evse) -> None:
        e.token, e.remote_start_id = None, None
        if e.transaction is not None:
            self._update(e, "EVConnectTimeout", stop_reason="Timeout", force_end=True)

    # -- sessions -------------------------------------------------------------------------------------
    async def _on_plug(self, e: Evse) -> None:
        await self._report(e)
        self._update(e, "CablePluggedIn")

    async def _on_unplug(self, e: Evse) -> None:
        """The EV is gone: with TxCtrlr.StopTxOnEVSideDisconnect the EVSE is de-authorised (the stop points
        then decide whether the transaction ends); without it EVConnectionTimeOut starts again."""
        e.energy_flowing = e.ev_suspended = False
        e.outlet.de_energize()
        tx = e.transaction
        if tx is not None and self.flag("TxCtrlr", "StopTxOnEVSideDisconnect"):
            e.token, e.token_unsent = None, False
            tx.stopped_reason = tx.stopped_reason or "EVDisconnected"
        e.authorized_at = asyncio.get_running_loop().time()
        self._update(e, "EVCommunicationLost")
        await self._report(e)

    async def bay_enter(self, connector: int = 1) -> None:
        """The parking-bay sensor of the EVSE sees a vehicle arrive."""
        e = self._evse(connector)
        e.bay_occupied = True
        self._update(e, "EVDetected")

    async def bay_leave(self, connector: int = 1) -> None:
        """The vehicle leaves the parking bay."""
        e = self._evse(connector)
        e.bay_occupied = False
        self._update(e, "EVDeparted")

    async def _on_token(self, e: Evse, token: dict[str, str]) -> None:
        """A token presented at the EVSE: it stops the EVSE's transaction (the same token, or an accepted one
        of the same group), stops every transaction (the master pass), or authorises a new session."""
        tx = e.transaction if e.token is not None else None
        if tx is not None and tx.token is not None and tx.token["idToken"] == token["idToken"]:
            self._deauthorize(e, "StopAuthorized", "Local", token)
            return
        if tx is None and (not e.operative or e.faulted):
            return
        info = await self.authorize(token)
        accepted = info.get("status") == "Accepted"
        group = (info.get("groupIdToken") or {}).get("idToken")
        master = self.var("AuthCtrlr", "MasterPassGroupId")
        if accepted and master and group == master:
            for other in self.evses.values():
                if other.transaction is not None and other.token is not None:
                    self._deauthorize(other, "StopAuthorized", "MasterPass", token)
            return
        if tx is not None:
            if accepted and group is not None and group == tx.group:
                self._deauthorize(e, "StopAuthorized", "Local", token)
            return
        if accepted:
            self._authorize_evse(e, token, info, "Authorized")

    def _authorize_evse(self, e: Evse, token: dict[str, str], info: dict[str, Any], trigger: str) -> None:
        e.token, e.token_unsent = dict(token), True
        e.authorized_at = asyncio.get_running_loop().time()
        e.evse_suspended = False
        if e.transaction is not None and e.remote_start_id is not None:
            e.transaction.remote_start_id = e.remote_start_id
        self._update(e, trigger)
        if e.transaction is not None:
            e.transaction.group = (info.get("groupIdToken") or {}).get("idToken")
            e.transaction.token = dict(token)

    def _deauthorize(self, e: Evse, trigger: str, stop_reason: str, token: dict[str, str] | None = None) -> None:
        """The EVSE loses its authorisation (local or remote stop, master pass, invalid token): energy stops and
        the transaction ends if Authorized is one of its stop points, else it goes on until another one.
        The event carries ``token`` when a presented token caused it."""
        tx = e.transaction
        e.token, e.token_unsent, e.energy_flowing = None, False, False
        if tx is None:
            return
        tx.stopped_reason = tx.stopped_reason or stop_reason
        self._update(e, trigger, token=token)

    # -- authorisation --------------------------------------------------------------------------------
    def _local_info(self, token: str) -> tuple[dict[str, Any] | None, str]:
        """The token's idTokenInfo from the local list or the cache, and which one ("list", "cache", "")."""
        if self.flag("LocalAuthListCtrlr", "Enabled") and token in self.local_list:
            info, source = dict(self.local_list[token]), "list"
        elif self.flag("AuthCacheCtrlr", "Enabled") and token in self.cache:
            entry = self.cache[token]
            lifetime = self.number("AuthCacheCtrlr", "LifeTime")
            if lifetime > 0 and datetime.now(timezone.utc).timestamp() - entry.stored > lifetime:
                del self.cache[token]
                return None, ""
            info, source = dict(entry.info), "cache"
        else:
            return None, ""
        expiry = info.get("cacheExpiryDateTime")
        if expiry and sc.parse_datetime(expiry) < datetime.now(timezone.utc):  # type: ignore[operator]
            info["status"] = "Expired"
        return info, source

    def _remember(self, token: str, info: dict[str, Any]) -> None:
        if self.flag("AuthCacheCtrlr", "Enabled") and token not in self.local_list:
            self.cache[token] = CachedToken(dict(info), datetime.now(timezone.utc).timestamp())

    async def authorize(self, token: dict[str, str]) -> dict[str, Any]:
        """Decide whether ``token`` may charge (an idTokenInfo): local pre-authorisation from the list or
        cache, the CSMS, or the offline rules (LocalAuthorizeOffline, OfflineTxForUnknownIdEnabled)."""
        if not self.flag("AuthCtrlr", "Enabled"):
            return {"status": "Accepted"}
        local, source = self._local_info(token["idToken"])
        if local is not None and self.flag("AuthCtrlr", "LocalPreAuthorize"):
            if local.get("status") == "Accepted":
                return local
            post = "AuthCacheCtrlr" if source == "cache" else "LocalAuthListCtrlr"
            if self.flag(post, "DisablePostAuthorize"):
                return local
        online = self.uplink.online and self.boot_status == "Accepted"
        if online and not self.flag("AuthCtrlr", "DisableRemoteAuthorization"):
            try:
                answer = await self.uplink.call("Authorize", {"idToken": dict(token)})
                info = dict(answer["idTokenInfo"])
                self._remember(token["idToken"], info)
                return info
            except (Offline, ConnectionClosed, CallTimeout, CallError):
                pass
        elif online and local is not None:
            return local
        if not online and self.flag("AuthCtrlr", "LocalAuthorizeOffline") and local is not None:
            return local
        if not online and local is None and self.flag("AuthCtrlr", "OfflineTxForUnknownIdEnabled"):
            return {"status": "Accepted"}
        return {"status": "Unknown" if local is None else local.get("status", "Invalid")}

    # -- CSMS-initiated messages ---------------------------------------------------------------------------
    def _handlers(self) -> dict[str, Handler]:
        names = ["GetVariables", "SetVariables", "GetBaseReport", "Reset", "SetNetworkProfile", "ChangeAvailability",
                 "RequestStartTransaction", "RequestStopTransaction", "GetTransactionStatus", "UnlockConnector",
                 "TriggerMessage", "ClearCache", "SendLocalList", "GetLocalListVersion", "DataTransfer",
                 "UpdateFirmware", "GetLog", "InstallCertificate", "GetInstalledCertificateIds"]
        if self.smart_charging:
            names += ["SetChargingProfile", "ClearChargingProfile", "GetChargingProfiles", "GetCompositeSchedule"]
        return {name: self._guarded(getattr(self, "_on_" + _snake(name))) for name in names}

    def _guarded(self, handler: Callable[[dict[str, Any]], Any]) -> Handler:
        async def handle(payload: dict[str, Any]) -> Any:
            if self.boot_status == "Rejected":
                raise CallError("SecurityError", "not registered with the CSMS")
            return await handler(payload)
        return handle

    async def _on_get_variables(self, p: dict[str, Any]) -> dict[str, Any]:
        return {"getVariableResult": [self.dm.get(item) for item in p["getVariableData"]]}

    async def _on_set_variables(self, p: dict[str, Any]) -> dict[str, Any]:
        return {"setVariableResult": [self.dm.set(item, self._variable_changed) for item in p["setVariableData"]]}

    async def _on_get_base_report(self, p: dict[str, Any]) -> dict[str, Any]:
        base = p["reportBase"]
        if base not in ("FullInventory", "ConfigurationInventory"):
            return {"status": "NotSupported", "statusInfo": {"reasonCode": "UnsupportedParam"}}
        pages = self.dm.pages(base)
        request_id = p["requestId"]

        async def send() -> None:
            generated = now_iso()
            for n, page in enumerate(pages):
                payload: dict[str, Any] = {"requestId": request_id, "generatedAt": generated, "seqNo": n,
                                           "tbc": n < len(pages) - 1}
                if page:
                    payload["reportData"] = page
                if await self._try_call("NotifyReport", payload) is None:
                    return
        self._soon(send())
        return {"status": "Accepted"}

    async def _on_reset(self, p: dict[str, Any]) -> dict[str, Any]:
        kind, evse_id = p["type"], p.get("evseId")
        if evse_id is not None:
            if not self.evse_reset or evse_id not in self.evses:
                return {"status": "Rejected"}
            e = self.evses[evse_id]
            if e.transaction is None:
                return {"status": "Accepted"}
            if kind == "Immediate":
                self._soon(self._end_for_reset([e]))
                return {"status": "Accepted"}
            self.reset_evses.add(evse_id)
            return {"status": "Scheduled"}
        busy = [e for e in self.evses.values() if e.transaction is not None]
        if kind == "Immediate" or not busy:
            self._soon(self._immediate_reset(busy), 0.1)
            return {"status": "Accepted"}
        self.reset_scheduled = True
        return {"status": "Scheduled"}

    async def _end_for_reset(self, evses: list[Evse]) -> None:
        for e in evses:
            if e.transaction is not None:
                e.token, e.energy_flowing = None, False
                self._update(e, "ResetCommand", stop_reason="ImmediateReset", force_end=True)

    async def _immediate_reset(self, busy: list[Evse]) -> None:
        await self._end_for_reset(busy)
        await self._reboot("RemoteReset")

    async def _reboot(self, reason: str) -> None:
        """Restart: deliver what is queued if possible, drop the connection, boot again with ``reason`` on the
        network profile of highest priority."""
        if self.uplink.queue:
            try:
                await self.uplink.drain(timeout=5.0)
            except asyncio.TimeoutError:
                pass
        for e in self.evses.values():
            e.token, e.remote_start_id = None, None
        self._prepare_boot(reason)
        await self.uplink.reconnect(first=True)

    def _priority(self) -> list[int]:
        """OCPPCommCtrlr.NetworkConfigurationPriority: the configured slots, best first."""
        slots = [int(v) for v in self.dm.members("OCPPCommCtrlr", "NetworkConfigurationPriority")
                 if int(v) in self.network_profiles]
        return slots or [0]

    def _use_profile(self, slot: int) -> None:
        """Connect by network profile ``slot`` from now on: its URL, and for security profile 2 or 3 TLS that
        trusts the installed CSMS root certificates."""
        self._profile_failures = 0
        profile = self.network_profiles[slot]
        self.uplink.url = profile["ocppCsmsUrl"]
        level = int(profile.get("securityProfile", 1))
        if slot == 0:
            self.uplink.tls = self._tls  # the profile the station was built with
        else:
            self.uplink.tls = self._csms_trust() if level >= 2 else None
        self.dm.lookup("OCPPCommCtrlr", "ActiveNetworkProfile").value = str(slot)
        self.dm.lookup("SecurityCtrlr", "SecurityProfile").value = str(level)

    def _csms_trust(self) -> ssl.SSLContext:
        """TLS (1.2 or newer) trusting exactly the installed CSMSRootCertificates."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        roots = self.certificates.get("CSMSRootCertificate", [])
        if roots:
            ctx.load_verify_locations(cadata="\n".join(roots))
        return ctx

    def _connection_failed(self, failures: int) -> None:
        """After NetworkProfileConnectionAttempts failed attempts on one profile, try the next by priority."""
        attempts = max(1, self.number("OCPPCommCtrlr", "NetworkProfileConnectionAttempts"))
        priority = self._priority()
        self._profile_failures += 1
        if len(priority) > 1 and self._profile_failures >= attempts:
            self._profile_failures = 0
            active = self.number("OCPPCommCtrlr", "ActiveNetworkProfile")
            slot = priority[(priority.index(active) + 1) % len(priority)] if active in priority else priority[0]
            log.info("%s: %d attempts failed on network profile %d, falling back to %d", self.id, attempts, active, slot)
            self._use_profile(slot)

    async def _on_set_network_profile(self, p: dict[str, Any]) -> dict[str, Any]:
        slots = self.dm.lookup("OCPPCommCtrlr", "NetworkConfigurationPriority").allowed()
        slot = p["configurationSlot"]
        if str(slot) not in slots or slot == self.number("OCPPCommCtrlr", "ActiveNetworkProfile"):
            return {"status": "Rejected"}
        self.network_profiles[slot] = dict(p["connectionData"])
        return {"status": "Accepted"}

    async def _on_change_availability(self, p: dict[str, Any]) -> dict[str, Any]:
        operative = p["operationalStatus"] == "Operative"
        target = p.get("evse")
        if target is None:
            chosen = list(self.evses.values())
        elif target["id"] in self.evses and target.get("connectorId", 1) == 1:
            chosen = [self.evses[target["id"]]]
        else:
            return {"status": "Rejected"}
        scheduled = False
        for e in chosen:
            if e.transaction is not None and not operative:
                e.pending_operative = operative
                scheduled = True
            else:
                e.operative = operative
                self._soon(self._report(e))
        return {"status": "Scheduled" if scheduled else "Accepted"}

    async def _on_request_start_transaction(self, p: dict[str, Any]) -> dict[str, Any]:
        evse_id = p.get("evseId", 1)
        e = self.evses.get(evse_id)
        if self.boot_status != "Accepted" or e is None or not e.operative or e.faulted or e.token is not None:
            return {"status": "Rejected"}
        profile = p.get("chargingProfile")
        if profile is not None and profile.get("chargingProfilePurpose") != "TxProfile":
            return {"status": "Rejected"}
        out: dict[str, Any] = {"status": "Accepted"}
        if e.transaction is not None:
            out["transactionId"] = e.transaction.id
        self._soon(self._remote_start(e, p["idToken"], p["remoteStartId"], profile))
        return out

    async def _remote_start(self, e: Evse, token: dict[str, str], remote_start_id: int,
                            profile: dict[str, Any] | None) -> None:
        if self.flag("AuthCtrlr", "AuthorizeRemoteStart"):
            info = await self.authorize(token)
            if info.get("status") != "Accepted":
                return
        else:
            info = {"status": "Accepted"}
        e.remote_start_id = remote_start_id
        if e.transaction is not None:
            e.transaction.remote_start_id = remote_start_id
        self._authorize_evse(e, token, info, "RemoteStart")
        e.remote_start_id = None
        if profile is not None and self._smart_charging_enabled():
            self._spawn(self._install_for_transaction(e, profile))

    async def _install_for_transaction(self, e: Evse, profile: dict[str, Any]) -> None:
        """A remote start's TxProfile, installed for the transaction once it runs (it may start at plug-in)."""
        while e.token is not None and e.transaction is None:
            await asyncio.sleep(0.05)
        if e.transaction is not None:
            reason = self._install(e.id, dict(profile, transactionId=e.transaction.id))
            if reason is not None:
                log.info("%s: the RequestStartTransaction charging profile was not installed: %s", self.id, reason)

    async def _on_request_stop_transaction(self, p: dict[str, Any]) -> dict[str, Any]:
        for e in self.evses.values():
            tx = e.transaction
            if tx is not None and tx.id == p["transactionId"]:
                self._soon(self._remote_stop(e))
                return {"status": "Accepted"}
        return {"status": "Rejected"}

    async def _remote_stop(self, e: Evse) -> None:
        if e.transaction is not None:
            self._deauthorize(e, "RemoteStop", "Remote")

    async def _on_get_transaction_status(self, p: dict[str, Any]) -> dict[str, Any]:
        wanted = p.get("transactionId")
        queued = [q for q in self.uplink.queue if q.action == "TransactionEvent"]
        if wanted is None:
            return {"messagesInQueue": bool(queued)}
        mine = [q for q in queued if q.payload["transactionInfo"]["transactionId"] == wanted]
        ongoing = any(e.transaction is not None and e.transaction.id == wanted for e in self.evses.values())
        return {"messagesInQueue": bool(mine), "ongoingIndicator": ongoing}

    async def _on_unlock_connector(self, p: dict[str, Any]) -> dict[str, Any]:
        e = self.evses.get(p["evseId"])
        if e is None or p["connectorId"] != 1:
            return {"status": "UnknownConnector"}
        if e.transaction is not None and e.token is not None:
            return {"status": "OngoingAuthorizedTransaction"}
        return {"status": "Unlocked"}

    async def _on_trigger_message(self, p: dict[str, Any]) -> dict[str, Any]:
        what, target = p["requestedMessage"], p.get("evse")
        if target is not None and target.get("id") not in self.evses:
            return {"status": "Rejected"}
        chosen = [self.evses[target["id"]]] if target is not None else list(self.evses.values())
        if what == "BootNotification":
            if self.boot_status == "Accepted":
                return {"status": "Rejected"}
            self._boot_now.set()
            return {"status": "Accepted"}
        jobs: dict[str, Callable[[], Any]] = {
            "Heartbeat": lambda: self._try_call("Heartbeat", {}),
            "StatusNotification": lambda: self._trigger_status(chosen),
            "MeterValues": lambda: self._trigger_meter_values(chosen),
            "TransactionEvent": lambda: self._trigger_transaction_event(chosen),
            "LogStatusNotification": lambda: self._notify_log(*self.log_status),
            "FirmwareStatusNotification": lambda: self._notify_firmware(*self.firmware_status),
        }
        if what not in jobs:
            return {"status": "NotImplemented"}
        if what == "StatusNotification" and target is None:
            return {"status": "Rejected"}
        if what == "TransactionEvent" and not any(e.transaction for e in chosen):
            return {"status": "Rejected"}
        self._soon(jobs[what]())
        return {"status": "Accepted"}

    async def _trigger_status(self, chosen: list[Evse]) -> None:
        for e in chosen:
            await self._report(e, force=True)

    async def _trigger_meter_values(self, chosen: list[Evse]) -> None:
        for e in chosen:
            mv = self.meter_value(e, "Trigger", self.dm.members("AlignedDataCtrlr", "Measurands"))
            await self._try_call("MeterValues", {"evseId": e.id, "meterValue": [mv]})

    async def _trigger_transaction_event(self, chosen: list[Evse]) -> None:
        for e in chosen:
            if e.transaction is not None:
                self._event(e, e.transaction, "Updated", "Trigger", meter=self.meter_value(
                    e, "Trigger", self.dm.members("SampledDataCtrlr", "TxUpdatedMeasurands")))

    async def _on_clear_cache(self, p: dict[str, Any]) -> dict[str, Any]:
        if not self.flag("AuthCacheCtrlr", "Enabled"):
            return {"status": "Rejected"}
        self.cache.clear()
        return {"status": "Accepted"}

    async def _on_get_local_list_version(self, p: dict[str, Any]) -> dict[str, Any]:
        """D02.FR.03: version 0 while the local list is disabled."""
        return {"versionNumber": self.local_list_version if self.flag("LocalAuthListCtrlr", "Enabled") else 0}

    async def _on_send_local_list(self, p: dict[str, Any]) -> dict[str, Any]:
        if not self.flag("LocalAuthListCtrlr", "Enabled"):
            return {"status": "Failed"}
        entries = p.get("localAuthorizationList", [])
        version = p["versionNumber"]
        if p["updateType"] == "Full":
            new: dict[str, dict[str, Any]] = {}
        else:
            if version <= self.local_list_version:
                return {"status": "VersionMismatch"}
            new = dict(self.local_list)
        for entry in entries:
            token = entry["idToken"]["idToken"]
            if "idTokenInfo" in entry:
                new[token] = dict(entry["idTokenInfo"])
            else:
                new.pop(token, None)
        self.local_list, self.local_list_version = new, version
        for token in new:
            self.cache.pop(token, None)
        return {"status": "Accepted"}

    async def _on_data_transfer(self, p: dict[str, Any]) -> dict[str, Any]:
        return {"status": "UnknownVendorId"}

    # -- certificates -----------------------------------------------------------------------------------
    async def _on_install_certificate(self, p: dict[str, Any]) -> dict[str, Any]:
        try:
            cert = x509.load_pem_x509_certificate(p["certificate"].encode())
            authority = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        except (ValueError, x509.ExtensionNotFound):
            return {"status": "Rejected", "statusInfo": {"reasonCode": "InvalidCertificate"}}
        if not authority:
            return {"status": "Rejected", "statusInfo": {"reasonCode": "NotACertificateAuthority"}}
        installed = self.certificates.setdefault(p["certificateType"], [])
        if p["certificate"] not in installed:
            installed.append(p["certificate"])
        return {"status": "Accepted"}

    async def _on_get_installed_certificate_ids(self, p: dict[str, Any]) -> dict[str, Any]:
        kinds = p.get("certificateType") or list(self.certificates)
        chain = [{"certificateType": kind, "certificateHashData": certificate_hash(pem)}
                 for kind in kinds for pem in self.certificates.get(kind, [])]
        return {"status": "Accepted", "certificateHashDataChain": chain} if chain else {"status": "NotFound"}

    # -- firmware and logs ------------------------------------------------------------------------------
    async def _notify_firmware(self, status: str, request_id: int | None) -> None:
        payload: dict[str, Any] = {"status": status}
        if request_id is not None and status != "Idle":
            payload["requestId"] = request_id
        await self._try_call("FirmwareStatusNotification", payload)

    async def _notify_log(self, status: str, request_id: int | None) -> None:
        payload: dict[str, Any] = {"status": status}
        if request_id is not None and status != "Idle":
            payload["requestId"] = request_id
        await self._try_call("LogStatusNotification", payload)

    async def _firmware(self, status: str, request_id: int) -> None:
        self.firmware_status = (status, request_id)
        await self._notify_firmware(status, request_id)

    async def _on_update_firmware(self, p: dict[str, Any]) -> dict[str, Any]:
        if self.firmware_status[0] not in ("Idle", "Installed", "DownloadFailed", "InvalidSignature",
                                           "InstallationFailed"):
            return {"status": "Rejected"}
        self._soon(self._update_firmware(p["requestId"], p["firmware"]))
        return {"status": "Accepted"}

    async def _update_firmware(self, request_id: int, firmware: dict[str, Any]) -> None:
        """Download (at retrieveDateTime), verify the signature when one is given, install (no reboot)."""
        wait = (sc.parse_datetime(firmware["retrieveDateTime"]) - datetime.now(timezone.utc)).total_seconds()  # type: ignore[operator]
        if wait > 0:
            await self._firmware("DownloadScheduled", request_id)
            await asyncio.sleep(wait)
        await self._firmware("Downloading", request_id)
        try:
            image = await download(firmware["location"])
        except TransferError as exc:
            log.info("%s: firmware download failed: %s", self.id, exc)
            await self._firmware("DownloadFailed", request_id)
            return
        await self._firmware("Downloaded", request_id)
        if "signature" in firmware:
            if not signature_valid(image, firmware.get("signingCertificate", ""), firmware["signature"]):
                await self._firmware("InvalidSignature", request_id)
                return
            await self._firmware("SignatureVerified", request_id)
        await self._firmware("Installing", request_id)
        self.identity["firmwareVersion"] = f"image-{len(image)}B"
        await self._firmware("Installed", request_id)

    async def _on_get_log(self, p: dict[str, Any]) -> dict[str, Any]:
        if self.log_status[0] == "Uploading":
            return {"status": "Rejected"}
        filename = f"{self.id}-{p['logType']}-{p['requestId']}.jsonl"
        self._soon(self._upload_log(p["requestId"], p["log"]["remoteLocation"], filename))
        return {"status": "Accepted", "filename": filename}

    async def _upload_log(self, request_id: int, location: str, filename: str) -> None:
        """Upload the station's OCPP trace (its diagnostics log) to ``location``."""
        self.log_status = ("Uploading", request_id)
        await self._notify_log("Uploading", request_id)
        url = location + filename if location.endswith("/") else location
        try:
            await upload(url, self.trace.jsonl().encode())
            self.log_status = ("Uploaded", request_id)
        except TransferError as exc:
            log.info("%s: log upload failed: %s", self.id, exc)
            self.log_status = ("UploadFailure", request_id)
        await self._notify_log(*self.log_status)
        self.log_status = ("Idle", None)

    # -- smart charging ---------------------------------------------------------------------------------
    def _smart_charging_enabled(self) -> bool:
        return self.smart_charging and self.flag("SmartChargingCtrlr", "Enabled")

    def _install(self, evse_id: int, raw: dict[str, Any]) -> str | None:
        """Validate and install a charging profile on ``evse_id`` (0: the station); the reason when it
        cannot be installed, else None. Profiles it replaces are dropped."""
        e = self.evses.get(evse_id)
        running = e.transaction.id if e is not None and e.transaction is not None else None
        if raw["chargingProfilePurpose"] == "TxProfile" and raw.get("transactionId") is None:
            return "a TxProfile needs the transactionId"
        try:
            profile = sc.profile_from_ocpp(raw, VERSION)
        except ValueError as exc:
            return str(exc)
        reason = self.profiles.validate_install(profile, evse_id, running)
        if reason is not None:
            return reason
        for old in self.profiles.install(profile, evse_id):
            self.raw_profiles.pop(old.id, None)
        self.raw_profiles[profile.id] = (evse_id, dict(raw))
        return None

    async def _on_set_charging_profile(self, p: dict[str, Any]) -> dict[str, Any]:
        evse_id, raw = p["evseId"], p["chargingProfile"]
        if not self._smart_charging_enabled():
            return {"status": "Rejected", "statusInfo": {"reasonCode": "NotEnabled"}}
        if evse_id != 0 and evse_id not in self.evses:
            return {"status": "Rejected", "statusInfo": {"reasonCode": "UnknownEvse"}}
        reason = self._install(evse_id, raw)
        if reason is not None:
            log.info("%s: SetChargingProfile rejected: %s", self.id, reason)
            code = "TxNotFound" if "transaction" in reason else "InvalidProfile"
            return {"status": "Rejected", "statusInfo": {"reasonCode": code, "additionalInfo": reason[:512]}}
        return {"status": "Accepted"}

    async def _on_clear_charging_profile(self, p: dict[str, Any]) -> dict[str, Any]:
        criteria = p.get("chargingProfileCriteria") or {}
        removed_before = set(self.raw_profiles)
        count = self.profiles.clear(id=p.get("chargingProfileId"), connector=criteria.get("evseId"),
                                    purpose=criteria.get("chargingProfilePurpose"),
                                    stack_level=criteria.get("stackLevel"))
        installed = {prof.id for prof in self.profiles}
        for pid in removed_before - installed:
            del self.raw_profiles[pid]
        return {"status": "Accepted" if count else "Unknown"}

    async def _on_get_charging_profiles(self, p: dict[str, Any]) -> dict[str, Any]:
        crit = p.get("chargingProfile") or {}
        evse_id = p.get("evseId")
        sources = crit.get("chargingLimitSource")
        ids = crit.get("chargingProfileId")

        def wanted(evse: int, raw: dict[str, Any]) -> bool:
            return ((evse_id is None or evse == evse_id)
                    and (ids is None or raw["id"] in ids)
                    and (crit.get("chargingProfilePurpose") is None
                         or raw["chargingProfilePurpose"] == crit["chargingProfilePurpose"])
                    and (crit.get("stackLevel") is None or raw["stackLevel"] == crit["stackLevel"])
                    and (sources is None or "CSO" in sources))
        found: dict[int, list[dict[str, Any]]] = {}
        for evse, raw in self.raw_profiles.values():
            if wanted(evse, raw):
                found.setdefault(evse, []).append(raw)
        if not found:
            return {"status": "NoProfiles"}

        async def send() -> None:
            groups = sorted(found.items())
            for n, (evse, profiles) in enumerate(groups):
                await self._try_call("ReportChargingProfiles", {
                    "requestId": p["requestId"], "chargingLimitSource": "CSO", "evseId": evse,
                    "chargingProfile": profiles, "tbc": n < len(groups) - 1})
        self._soon(send())
        return {"status": "Accepted"}

    async def _on_get_composite_schedule(self, p: dict[str, Any]) -> dict[str, Any]:
        evse_id = p["evseId"]
        unit = p.get("chargingRateUnit", "A")
        if (evse_id != 0 and evse_id not in self.evses) or unit not in self._sc_members("RateUnit"):
            return {"status": "Rejected"}
        # whole seconds, rounded up: a start before now could lie before the running transaction began, and a
        # Relative TxProfile would then show the local limit for that fraction of a second
        now = datetime.now(timezone.utc)
        start = now.replace(microsecond=0) + timedelta(seconds=1 if now.microsecond else 0)
        duration = int(p["duration"])

        def composite(evse: int, rating: float, outlet: Outlet, tx: Transaction | None) -> sc.CompositeSchedule:
            voltage, phases = outlet.plant.site.phase_voltage, outlet.phases
            return sc.composite_schedule(
                self.profiles, evse, start, duration, unit,
                transaction_start=tx.started if tx else None, transaction_id=tx.id if tx else None,
                nominal_voltage=voltage, phases=phases,
                max_limit=rating if unit == "A" else rating * voltage * phases)
        e = self.evses.get(evse_id)
        if e is not None:
            schedule = composite(evse_id, e.outlet.max_current, e.outlet, e.transaction)
        else:
            # evseId 0: the expected consumption of the whole station (K08), the EVSEs' composites added up
            # and capped by the station-level limits on the grid connection's rating.
            first = next(iter(self.evses.values())).outlet
            station = composite(0, sum(x.outlet.max_current for x in self.evses.values()), first, None)
            schedule = sc.grid_composite(station, [composite(x.id, x.outlet.max_current, x.outlet, x.transaction)
                                                   for x in self.evses.values()])
        return {"status": "Accepted", "schedule": schedule.to_ocpp(VERSION)}


def certificate_hash(pem: str) -> dict[str, str]:
    """The 2.0.1 CertificateHashDataType of a root certificate (SHA-256 of the issuer's name and key; a root
    is its own issuer)."""
    cert = x509.load_pem_x509_certificate(pem.encode())
    key = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return {"hashAlgorithm": "SHA256", "issuerNameHash": hashlib.sha256(cert.issuer.public_bytes()).hexdigest(),
            "issuerKeyHash": hashlib.sha256(key).hexdigest(), "serialNumber": format(cert.serial_number, "x")}


def signature_valid(data: bytes, certificate_pem: str, signature_b64: str) -> bool:
    """Whether ``signature_b64`` is the signature (SHA-256; ECDSA or RSA PKCS#1 v1.5) of ``data`` by the key
    of ``certificate_pem``."""
    try:
        key = x509.load_pem_x509_certificate(certificate_pem.encode()).public_key()
        signature = base64.b64decode(signature_b64)
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
        elif isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
        else:
            return False
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _snake(name: str) -> str:
    return "".join("_" + ch.lower() if ch.isupper() else ch for ch in name).lstrip("_")


def offset(seconds: float) -> str:
    """An OCPP timestamp ``seconds`` from now (negative: in the past)."""
    return sc.format_datetime(datetime.now(timezone.utc) + timedelta(seconds=seconds))
