"""The OCPP 1.6J charge point emulator: evhil's reference device under test, and a load for CSMS tests.

Profiles: Core, Smart Charging, Remote Trigger, Local Auth List Management. Each connector is a plant
port (``Outlet``): plugging, charging and metering happen in the plant, so what the port's meter measures
is what transactions report. Offline, transaction messages are queued and delivered in order with the
configured retries; the reconnect back-off is the 2.0.1 rule (``uplink``). The control seam
(``plug_in``, ``unplug``, ``present_token``, ``cut_network``, ``restore_network``, ``raise_fault``,
``clear_fault``) acts on the plant and the network, as a bench would.

What is timed by OCPP (profile validity and schedules, transaction start times, timestamps, meter value
sampling and clock-aligned intervals, heartbeat, ConnectionTimeOut, reconnect back-off, message retries)
runs on an injectable ``Clock``: real time by default, a ``ScaledClock`` to run long scenarios fast.

Times: seconds (simulated seconds of the clock); energy Wh; current A.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from hil.clock import Clock, RealClock
from hil.ocpp import smart_charging as sc
from hil.ocpp.outlet import MEASURANDS, Outlet
from hil.ocpp.rpc import CallError, CallTimeout, ConnectionClosed, Handler, Trace
from hil.ocpp.uplink import BackOff, Offline, Retry, Uplink

log = logging.getLogger(__name__)

VERSION = "1.6"
APPLY_CYCLE_S = 0.1
"""How often the charge point re-applies its composite limit and checks its cables [simulated s]."""
MIN_POLL_S = 0.005
"""The shortest wall-clock wait between two of those cycles on a fast clock [s]."""
ALIGNED_POLL_S = 0.5
"""How often the wait for the next clock-aligned boundary re-reads ClockAlignedDataInterval [simulated s]."""


@dataclass
class Key:
    """A configuration key: its value as text, whether it is read-only, and its type."""

    value: str
    readonly: bool = False
    kind: str = "str"
    """``int``, ``bool``, ``csl`` (comma-separated measurands) or ``str``."""

    def accepts(self, value: str) -> bool:
        if self.kind == "int":
            return value.strip().isdigit()  # every integer key of these profiles is a count or an interval >= 0
        if self.kind == "bool":
            return value.lower() in ("true", "false")
        if self.kind == "csl":
            return all(v.strip() in MEASURANDS for v in value.split(",") if v.strip())
        return True


def default_configuration(connectors: int) -> dict[str, Key]:
    """The keys of the four supported profiles with this emulator's defaults."""
    return {
        "AllowOfflineTxForUnknownId": Key("false", kind="bool"),
        "AuthorizationCacheEnabled": Key("true", kind="bool"),
        "AuthorizeRemoteTxRequests": Key("false", kind="bool"),
        "ClockAlignedDataInterval": Key("0", kind="int"),
        "ConnectionTimeOut": Key("60", kind="int"),
        "GetConfigurationMaxKeys": Key("50", readonly=True, kind="int"),
        "HeartbeatInterval": Key("300", kind="int"),
        "LocalAuthorizeOffline": Key("true", kind="bool"),
        "LocalPreAuthorize": Key("false", kind="bool"),
        "MeterValuesAlignedData": Key("Energy.Active.Import.Register", kind="csl"),
        "MeterValuesSampledData": Key("Energy.Active.Import.Register,Power.Active.Import", kind="csl"),
        "MeterValueSampleInterval": Key("60", kind="int"),
        "MinimumStatusDuration": Key("0", kind="int"),
        "NumberOfConnectors": Key(str(connectors), readonly=True, kind="int"),
        "ResetRetries": Key("1", kind="int"),
        "StopTransactionOnEVSideDisconnect": Key("true", kind="bool"),
        "StopTransactionOnInvalidId": Key("true", kind="bool"),
        "StopTxnAlignedData": Key("", kind="csl"),
        "StopTxnSampledData": Key("", kind="csl"),
        "SupportedFeatureProfiles": Key("Core,SmartCharging,RemoteTrigger,LocalAuthListManagement", readonly=True),
        "TransactionMessageAttempts": Key("3", kind="int"),
        "TransactionMessageRetryInterval": Key("60", kind="int"),
        "UnlockConnectorOnEVSideDisconnect": Key("true", kind="bool"),
        "WebSocketPingInterval": Key("0", kind="int"),
        "LocalAuthListEnabled": Key("true", kind="bool"),
        "LocalAuthListMaxLength": Key("100", readonly=True, kind="int"),
        "SendLocalListMaxLength": Key("100", readonly=True, kind="int"),
        "ChargeProfileMaxStackLevel": Key("10", readonly=True, kind="int"),
        "ChargingScheduleAllowedChargingRateUnit": Key("Current,Power", readonly=True),
        "ChargingScheduleMaxPeriods": Key("24", readonly=True, kind="int"),
        "MaxChargingProfilesInstalled": Key("20", readonly=True, kind="int"),
    }


@dataclass
class Transaction:
    """A charging session on one connector. ``transaction_id`` is None until the CSMS assigned one."""

    connector: int
    id_tag: str
    meter_start: int
    started: datetime
    transaction_id: int | None = None
    remote_profile: dict[str, Any] | None = None
    parent_id_tag: str | None = None
    waiting_for_id: list[dict[str, Any]] = field(default_factory=list)
    """Queued payloads whose ``transactionId`` is filled in when StartTransaction is answered."""


@dataclass
class Connector:
    """One connector's OCPP state."""

    id: int
    outlet: Outlet | None
    status: str = "Available"
    error_code: str = "NoError"
    operative: bool = True
    pending_operative: bool | None = None
    """ChangeAvailability scheduled until the running transaction ends."""
    transaction: Transaction | None = None
    authorized: str | None = None
    """An idTag authorised and waiting for the cable (ConnectionTimeOut)."""
    authorized_at: float = 0.0
    reported: str | None = None
    """The last status sent to the CSMS."""
    suspended: bool = False
    """The charge point withholds energy (SuspendedEVSE)."""
    ev_suspended: bool = False
    """The EV does not ask for energy (SuspendedEV)."""


class ChargePoint:
    """An emulated OCPP 1.6J charge point ``cs_id`` connecting to ``csms_url`` (a ws:// base URL).

    ``outlets`` are the connectors' plant ports (connector k is ``outlets[k-1]``). ``configure`` seeds
    configuration keys (e.g. ``{"MeterValueSampleInterval": "2"}``). ``clock``: the time the charge point
    lives in (default real time); the plant behind the outlets should run on the same one.
    """

    def __init__(self, cs_id: str, csms_url: str, outlets: list[Outlet], *, password: str | None = None,
                 tls: Any = None, configure: dict[str, str] | None = None, backoff: BackOff | None = None,
                 vendor: str = "evhil", model: str = "reference-cp", serial: str = "EVHIL-0001",
                 firmware: str = "0.1.0", fixed_cable: bool = False, validate: bool = True,
                 clock: Clock | None = None) -> None:
        self.id = cs_id
        self.fixed_cable = fixed_cable
        self.backup_power = True
        """Stops its transactions (reason PowerLoss) before going down when the supply fails."""
        """A cable fixed to the charger cannot be unlocked (UnlockConnector answers NotSupported)."""
        self.config = default_configuration(len(outlets))
        for k, v in (configure or {}).items():
            if k not in self.config:
                raise KeyError(f"charge point {cs_id}: unknown configuration key {k!r}")
            self.config[k].value = v
        self.connectors = {k + 1: Connector(k + 1, o) for k, o in enumerate(outlets)}
        self.station = Connector(0, None)
        self.identity = {"chargePointVendor": vendor, "chargePointModel": model, "chargePointSerialNumber": serial,
                         "firmwareVersion": firmware}
        self.profiles = sc.ProfileStore(max_stack_level=self.cfg_int("ChargeProfileMaxStackLevel"),
                                        max_periods=self.cfg_int("ChargingScheduleMaxPeriods"),
                                        max_profiles=self.cfg_int("MaxChargingProfilesInstalled"))
        self.local_list: dict[str, dict[str, Any]] = {}
        self.local_list_version = 0
        self.cache: dict[str, dict[str, Any]] = {}
        self.boot_status: str | None = None
        self.uplink = Uplink(csms_url, cs_id, VERSION, self._handlers(), self._on_connected, password=password,
                             tls=tls, backoff=backoff or BackOff(), validate=validate, clock=clock or RealClock())
        self.clock = self.uplink.clock
        self.calendar = self.uplink.calendar
        self._tasks: list[asyncio.Task[None]] = []

    # -- configuration helpers ------------------------------------------------------------------------
    def cfg_int(self, key: str) -> int:
        try:
            return int(self.config[key].value)
        except ValueError:
            return 0

    def cfg_bool(self, key: str) -> bool:
        return self.config[key].value.lower() == "true"

    def cfg_list(self, key: str) -> list[str]:
        return [v.strip() for v in self.config[key].value.split(",") if v.strip()]

    @property
    def running(self) -> bool:
        """True between ``start()`` and ``stop()`` (or ``power_off()``)."""
        return bool(self._tasks)

    @property
    def trace(self) -> Trace:
        return self.uplink.trace

    # -- life cycle -----------------------------------------------------------------------------------
    async def start(self) -> "ChargePoint":
        self.uplink.retry = Retry(self.cfg_int("TransactionMessageAttempts"),
                                  float(self.cfg_int("TransactionMessageRetryInterval")))
        self.uplink.start()
        self._tasks = [asyncio.ensure_future(t) for t in (self._heartbeat(), self._watch_connectors(),
                                                          self._sample(), self._aligned())]
        return self

    async def stop(self) -> None:
        """Stop every task, de-energise every outlet, close the connection."""
        for c in self.connectors.values():
            if c.outlet is not None:
                c.outlet.de_energize()
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            _, stuck = await asyncio.wait(self._tasks, timeout=5.0)
            if stuck:
                log.warning("%s: tasks did not stop: %s", self.id, [t.get_coro().__qualname__ for t in stuck])
        self._tasks = []
        await self.uplink.stop()
        for c in self.connectors.values():
            if c.outlet is not None:
                c.outlet.de_energize()

    async def __aenter__(self) -> "ChargePoint":
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- the control seam -----------------------------------------------------------------------------
    async def plug_in(self, connector: int = 1) -> None:
        outlet = self._connector(connector).outlet
        assert outlet is not None
        outlet.plug(True)
        await self._on_plug(self._connector(connector))

    async def unplug(self, connector: int = 1) -> None:
        outlet = self._connector(connector).outlet
        assert outlet is not None
        outlet.plug(False)
        await self._on_unplug(self._connector(connector))

    async def present_token(self, token: str, connector: int = 1) -> None:
        await self._on_token(self._connector(connector), token)

    async def unplug_ev_side(self, connector: int = 1) -> None:
        """This emulator does not model the cable in the socket: as ``unplug``."""
        await self.unplug(connector)

    async def plug_in_ev_side(self, connector: int = 1) -> None:
        await self.plug_in(connector)

    async def bay_enter(self, connector: int = 1) -> None:
        """OCPP 1.6 has no parking-bay sensor: nothing happens."""

    async def bay_leave(self, connector: int = 1) -> None:
        """OCPP 1.6 has no parking-bay sensor: nothing happens."""

    async def cut_network(self) -> None:
        await self.uplink.cut()

    async def restore_network(self) -> None:
        self.uplink.restore()

    async def power_off(self) -> None:
        """Lose the supply. With ``backup_power`` (the default) the charge point first stops its
        transactions with reason PowerLoss, as chargers configured to do so before going down; either way
        the connection drops and the outlets go dead. Configuration, availability, the local list, the
        cache and the message queue survive (persistent storage)."""
        if self.backup_power:
            for c in self.connectors.values():
                if c.transaction is not None:
                    await self._stop_transaction(c, "PowerLoss")
            try:
                await self.uplink.drain(timeout=3.0)
            except asyncio.TimeoutError:
                pass
        for task in self._tasks:
            task.cancel()
        await asyncio.wait(self._tasks, timeout=5.0) if self._tasks else None
        self._tasks = []
        for c in self.connectors.values():
            if c.outlet is not None:
                c.outlet.de_energize()
        await self.uplink.stop()

    async def power_on(self) -> None:
        """The supply is back: boot again (BootNotification, then every connector's status)."""
        for c in self.connectors.values():
            c.authorized = None
            c.status = "Charging" if c.transaction is not None else self._idle_status(c)
            c.reported = None
        self.boot_status = None
        self.uplink.boot_accepted.clear()
        self.uplink._first = True
        await self.start()

    async def ev_suspend(self, connector: int = 1) -> None:
        """The EV stops drawing current while plugged in: SuspendedEV during a transaction."""
        c = self._connector(connector)
        c.ev_suspended = True
        if c.transaction is not None and c.status == "Charging":
            await self._set_status(c, "SuspendedEV")
        self._apply_limit(c)

    async def ev_resume(self, connector: int = 1) -> None:
        c = self._connector(connector)
        c.ev_suspended = False
        if c.transaction is not None and c.status == "SuspendedEV":
            await self._set_status(c, "Charging")
        self._apply_limit(c)

    async def raise_fault(self, connector: int = 1, error_code: str = "GroundFailure") -> None:
        c = self._connector(connector)
        c.error_code = error_code
        if c.transaction is not None:
            await self._stop_transaction(c, "Other")
        await self._set_status(c, "Faulted")

    async def clear_fault(self, connector: int = 1) -> None:
        c = self._connector(connector)
        c.error_code = "NoError"
        await self._set_status(c, self._idle_status(c))

    def _connector(self, connector: int) -> Connector:
        try:
            return self.connectors[connector]
        except KeyError:
            raise ValueError(f"charge point {self.id} has connectors {sorted(self.connectors)}, not {connector}") from None

    # -- boot and status ------------------------------------------------------------------------------
    async def _on_connected(self, first: bool) -> None:
        if first:
            await self._boot()
        else:
            for c in [self.station, *self.connectors.values()]:
                if c.status != c.reported:
                    await self._send_status(c)

    async def _boot(self) -> None:
        while True:
            answer = await self.uplink.call("BootNotification", dict(self.identity))
            self.boot_status = answer["status"]
            interval = int(answer.get("interval", 0))
            if answer["status"] == "Accepted":
                if interval > 0:
                    self.config["HeartbeatInterval"].value = str(interval)
                break
            await self.calendar.sleep(interval if interval > 0 else 10)
        self.uplink.boot_accepted.set()
        for c in [self.station, *self.connectors.values()]:
            await self._send_status(c)

    def status_payload(self, c: Connector) -> dict[str, Any]:
        """The StatusNotification of ``c`` now."""
        return {"connectorId": c.id, "errorCode": c.error_code, "status": c.status, "timestamp": self.calendar.iso()}

    async def _send_status(self, c: Connector) -> None:
        payload = self.status_payload(c)
        c.reported = c.status
        try:
            await self.uplink.call("StatusNotification", payload)
        except (Offline, ConnectionClosed, CallTimeout, CallError):
            c.reported = None

    async def _set_status(self, c: Connector, status: str) -> None:
        if c.status == status:
            return
        c.status = status
        if self.uplink.online and self.uplink.boot_accepted.is_set():
            await self._send_status(c)

    def _idle_status(self, c: Connector) -> str:
        if c.error_code != "NoError":
            return "Faulted"
        if not c.operative:
            return "Unavailable"
        if c.outlet is not None and c.outlet.plugged_in and c.transaction is None and c.authorized is None:
            return "Preparing" if c.status != "Finishing" else "Finishing"
        return "Available"

    # -- periodic work --------------------------------------------------------------------------------
    async def _heartbeat(self) -> None:
        """A Heartbeat every HeartbeatInterval s while registered (the interval is re-read continuously)."""
        clock = self.clock
        last = clock.now()
        while True:
            await asyncio.sleep(0.05)
            if not (self.uplink.online and self.uplink.boot_accepted.is_set()):
                last = clock.now()
                continue
            interval = self.cfg_int("HeartbeatInterval")
            if interval > 0 and clock.now() - last >= interval:
                last += interval if clock.now() - last < 2 * interval else clock.now() - last
                await self._try_call("Heartbeat", {})

    async def _watch_connectors(self) -> None:
        """Notice cable changes made in the plant, time out waiting authorisations, apply limits."""
        plugged = {k: bool(c.outlet and c.outlet.plugged_in) for k, c in self.connectors.items()}
        while True:
            await asyncio.sleep(max(APPLY_CYCLE_S / self.clock.scale, MIN_POLL_S))
            for k, c in self.connectors.items():
                now_plugged = bool(c.outlet and c.outlet.plugged_in)
                if now_plugged != plugged[k]:
                    plugged[k] = now_plugged
                    await (self._on_plug(c) if now_plugged else self._on_unplug(c))
                if c.authorized is not None and c.transaction is None and not now_plugged:
                    if self.clock.now() - c.authorized_at > self.cfg_int("ConnectionTimeOut"):
                        c.authorized = None
                        await self._set_status(c, self._idle_status(c))
                self._apply_limit(c)

    def _apply_limits(self) -> None:
        """Enforce the composite limits now (after a profile change), not at the next apply cycle."""
        for c in self.connectors.values():
            self._apply_limit(c)

    def _apply_limit(self, c: Connector) -> None:
        if c.outlet is None:
            return
        if c.transaction is None or c.suspended or c.ev_suspended or c.status not in ("Charging", "SuspendedEV"):
            if c.outlet.energized:
                c.outlet.de_energize()
            return
        c.outlet.energize(self.limit(c.id))

    def limit(self, connector: int) -> float | None:
        """The composite limit in force on ``connector`` now [A per phase]; None = unconstrained."""
        c = self.connectors[connector]
        tx = c.transaction
        if tx is None:
            return None
        return sc.limit_at(self.profiles, connector, self.calendar.now(), "A",
                           transaction_start=tx.started, transaction_id=tx.transaction_id,
                           nominal_voltage=c.outlet.plant.site.phase_voltage if c.outlet else 230.0,
                           phases=c.outlet.phases if c.outlet else 3)

    async def _sample(self) -> None:
        """Periodic samples every MeterValueSampleInterval s, counted from the transaction start."""
        due: dict[int, tuple[Transaction, float]] = {}
        while True:
            await asyncio.sleep(0.02)
            interval = self.cfg_int("MeterValueSampleInterval")
            now = self.clock.now()
            for k, c in self.connectors.items():
                tx = c.transaction
                if tx is None or interval <= 0:
                    due.pop(k, None)
                    continue
                if k not in due or due[k][0] is not tx:
                    due[k] = (tx, now + interval)
                elif now >= due[k][1]:
                    due[k] = (tx, due[k][1] + interval)
                    self._send_meter_values(c, "Sample.Periodic", self.cfg_list("MeterValuesSampledData"))

    async def _aligned(self) -> None:
        """Clock-aligned samples at every multiple of ClockAlignedDataInterval s since midnight; a changed
        interval applies from its next boundary (the wait re-reads it at least every ALIGNED_POLL_S s)."""
        sent = 0.0
        while True:
            interval = self.cfg_int("ClockAlignedDataInterval")
            if interval <= 0:
                await asyncio.sleep(ALIGNED_POLL_S)
                continue
            now = self.calendar.now().timestamp()
            boundary = max(now // interval + 1, sent // interval + 1) * interval
            if boundary - now > ALIGNED_POLL_S:
                await self.calendar.sleep(ALIGNED_POLL_S)
                continue
            await self.calendar.sleep(boundary - now)
            sent = boundary
            stamp = datetime.fromtimestamp(boundary, timezone.utc)
            for c in self.connectors.values():
                self._send_meter_values(c, "Sample.Clock", self.cfg_list("MeterValuesAlignedData"), stamp)

    def sampled_values(self, c: Connector, context: str, measurands: list[str]) -> list[dict[str, Any]]:
        """What the connector's meter shows now, as OCPP sampled values."""
        out = []
        o = c.outlet
        if o is None:
            return out
        for m in measurands or ["Energy.Active.Import.Register"]:
            reading = o.measure(m)
            if reading is None:
                continue
            value, unit = reading
            if m == "Energy.Active.Import.Register":
                value = round(value)  # whole Wh, as meterStart and meterStop
            sv: dict[str, Any] = {"value": str(value), "context": context, "measurand": m, "unit": unit}
            if m == "SoC":
                sv["location"] = "EV"
            out.append(sv)
        return out

    def _send_meter_values(self, c: Connector, context: str, measurands: list[str],
                           when: datetime | None = None) -> None:
        values = self.sampled_values(c, context, measurands)
        if not values:
            return
        stamp = self.calendar.iso() if when is None else sc.format_datetime(when)
        payload: dict[str, Any] = {"connectorId": c.id, "meterValue": [{"timestamp": stamp, "sampledValue": values}]}
        tx = c.transaction
        if tx is None:
            if self.uplink.online:
                asyncio.ensure_future(self._try_call("MeterValues", payload))
            return
        self._enqueue_for(tx, "MeterValues", payload)

    async def _try_call(self, action: str, payload: dict[str, Any]) -> dict[str, Any] | None:
        try:
            return await self.uplink.call(action, payload)
        except (Offline, ConnectionClosed, CallTimeout, CallError):
            return None

    def _enqueue_for(self, tx: Transaction, action: str, payload: dict[str, Any]) -> None:
        if tx.transaction_id is not None:
            payload["transactionId"] = tx.transaction_id
            self.uplink.enqueue(action, payload)
        else:
            payload["transactionId"] = 0
            tx.waiting_for_id.append(payload)
            self.uplink.enqueue(action, payload)

    # -- authorisation ---------------------------------------------------------------------------------
    def _local_entry(self, token: str) -> dict[str, Any] | None:
        """The token's idTagInfo from the local list (while LocalAuthListEnabled) or else the cache (while
        AuthorizationCacheEnabled); None: unknown locally."""
        if self.cfg_bool("LocalAuthListEnabled") and token in self.local_list:
            return self.local_list[token]
        if self.cfg_bool("AuthorizationCacheEnabled") and token in self.cache:
            return self.cache[token]
        return None

    def _local_status(self, token: str) -> str | None:
        """The token's status from the local list or the cache (None: unknown locally)."""
        info = self._local_entry(token)
        if info is None:
            return None
        expiry = info.get("expiryDate")
        if expiry and sc.parse_datetime(expiry) < self.calendar.now():
            return "Expired"
        return str(info.get("status", "Invalid"))

    def _remember(self, token: str, info: dict[str, Any]) -> None:
        if self.cfg_bool("AuthorizationCacheEnabled") and token not in self.local_list:
            self.cache[token] = dict(info)

    async def authorize_info(self, token: str) -> dict[str, Any]:
        """Decide whether ``token`` may charge (an idTagInfo): local pre-authorisation, the CSMS, or the
        offline rules (local list and cache, AllowOfflineTxForUnknownId)."""
        local = self._local_status(token)
        known = self._local_entry(token) or {}
        if self.cfg_bool("LocalPreAuthorize") and local == "Accepted":
            return dict(known, status="Accepted")
        if self.uplink.online and self.uplink.boot_accepted.is_set():
            try:
                answer = await self.uplink.call("Authorize", {"idTag": token})
                info = dict(answer["idTagInfo"])
                self._remember(token, info)
                return info
            except (Offline, ConnectionClosed, CallTimeout, CallError):
                pass
        if self.cfg_bool("LocalAuthorizeOffline") and local is not None:
            return dict(known, status=local)
        if local is None and self.cfg_bool("AllowOfflineTxForUnknownId"):
            return {"status": "Accepted"}
        return {"status": "Invalid"}

    # -- sessions ---------------------------------------------------------------------------------------
    async def _on_plug(self, c: Connector) -> None:
        if c.transaction is None and c.authorized is not None:
            token, c.authorized = c.authorized, None
            await self._start_transaction(c, token)
        elif c.status == "Available":
            await self._set_status(c, "Preparing")

    async def _on_unplug(self, c: Connector) -> None:
        c.ev_suspended = False
        if c.transaction is not None and self.cfg_bool("StopTransactionOnEVSideDisconnect"):
            await self._stop_transaction(c, "EVDisconnected")
        self._apply_pending_availability(c)
        await self._set_status(c, self._idle_status(c) if c.transaction is None else "SuspendedEV")
        await self._apply_pending_station_availability()

    async def _on_token(self, c: Connector, token: str) -> None:
        for other in self.connectors.values():
            tx = other.transaction
            if tx is not None and tx.id_tag == token:
                await self._stop_transaction(other, "Local", token)
                return
        tx = c.transaction
        if tx is not None:
            # another token stops the transaction only when it shares the starting token's parent,
            # which the StartTransaction answer tells
            for _ in range(100):
                if tx.transaction_id is not None or not self.uplink.online:
                    break
                await asyncio.sleep(0.05)
            if tx.parent_id_tag is not None:
                info = await self.authorize_info(token)
                if info.get("status") == "Accepted" and info.get("parentIdTag") == tx.parent_id_tag:
                    await self._stop_transaction(c, "Local", token)
            return
        if c.authorized == token:
            c.authorized = None  # presenting the same token again withdraws the authorisation
            await self._set_status(c, self._idle_status(c))
            return
        if not c.operative or c.status == "Faulted":
            return
        status = (await self.authorize_info(token)).get("status")
        if status != "Accepted":
            return
        if c.outlet is not None and c.outlet.plugged_in:
            await self._start_transaction(c, token)
        else:
            c.authorized = token
            c.authorized_at = self.clock.now()
            await self._set_status(c, "Preparing")

    async def _start_transaction(self, c: Connector, token: str, profile: dict[str, Any] | None = None) -> None:
        assert c.outlet is not None
        known = self._local_entry(token) or {}
        tx = Transaction(c.id, token, round(c.outlet.energy_wh()), self.calendar.now(), remote_profile=profile,
                         parent_id_tag=known.get("parentIdTag"))
        c.transaction = tx
        c.suspended = False
        payload = {"connectorId": c.id, "idTag": token, "meterStart": tx.meter_start, "timestamp": self.calendar.iso()}

        def started(answer: dict[str, Any]) -> None:
            tx.transaction_id = int(answer["transactionId"])
            for waiting in tx.waiting_for_id:
                waiting["transactionId"] = tx.transaction_id
            tx.waiting_for_id.clear()
            info = answer.get("idTagInfo", {})
            self._remember(token, info)
            tx.parent_id_tag = info.get("parentIdTag", tx.parent_id_tag)
            if tx.remote_profile is not None:
                profile = dict(tx.remote_profile, transactionId=tx.transaction_id)
                self.profiles.install(sc.profile_from_ocpp(profile, VERSION), c.id)
            if info.get("status") != "Accepted" and c.transaction is tx:
                asyncio.ensure_future(self._deauthorized(c))

        self.uplink.enqueue("StartTransaction", payload, started)
        await self._set_status(c, "Charging")
        self._apply_limit(c)

    async def _deauthorized(self, c: Connector) -> None:
        if self.cfg_bool("StopTransactionOnInvalidId"):
            await self._stop_transaction(c, "DeAuthorized")
        else:
            c.suspended = True
            await self._set_status(c, "SuspendedEVSE")

    async def _stop_transaction(self, c: Connector, reason: str, token: str | None = None,
                                finishing: bool = True) -> None:
        tx = c.transaction
        if tx is None or c.outlet is None:
            return
        c.outlet.de_energize()
        c.transaction = None
        payload: dict[str, Any] = {"meterStop": round(c.outlet.energy_wh()), "timestamp": self.calendar.iso(),
                                   "reason": reason}
        if token is not None:
            payload["idTag"] = token
        data = self.cfg_list("StopTxnSampledData")
        if data:
            payload["transactionData"] = [{"timestamp": self.calendar.iso(),
                                           "sampledValue": self.sampled_values(c, "Transaction.End", data)}]
        self._enqueue_for(tx, "StopTransaction", payload)
        self.profiles.end_transaction(c.id)
        if finishing and c.outlet.plugged_in:
            await self._set_status(c, "Finishing")
        else:
            await self._set_status(c, self._idle_status(c))
        if self._apply_pending_availability(c):
            await self._set_status(c, self._idle_status(c))
        await self._apply_pending_station_availability()

    def _apply_pending_availability(self, c: Connector) -> bool:
        """Apply the ChangeAvailability scheduled during ``c``'s transaction once it has ended (OCPP 1.6 §5.2);
        True if it changed the connector's availability (its status is then to be reported)."""
        if c.pending_operative is None or c.transaction is not None:
            return False
        c.operative, c.pending_operative = c.pending_operative, None
        return True

    async def _apply_pending_station_availability(self) -> None:
        """A ChangeAvailability of connectorId 0 scheduled during transactions applies to the charge point as a
        whole once the last of them has ended."""
        s = self.station
        if s.pending_operative is None or any(c.transaction is not None for c in self.connectors.values()):
            return
        s.operative, s.pending_operative = s.pending_operative, None
        await self._set_status(s, "Available" if s.operative else "Unavailable")

    # -- CSMS-initiated messages ---------------------------------------------------------------------------
    def _handlers(self) -> dict[str, Handler]:
        names = ["ChangeConfiguration", "GetConfiguration", "RemoteStartTransaction", "RemoteStopTransaction",
                 "Reset", "ChangeAvailability", "UnlockConnector", "ClearCache", "DataTransfer", "TriggerMessage",
                 "GetLocalListVersion", "SendLocalList", "SetChargingProfile", "ClearChargingProfile",
                 "GetCompositeSchedule"]
        return {name: self._guarded(name, getattr(self, "_on_" + _snake(name))) for name in names}

    def _guarded(self, action: str, handler: Callable[[dict[str, Any]], Any]) -> Handler:
        async def handle(payload: dict[str, Any]) -> Any:
            if self.boot_status == "Rejected":
                raise CallError("SecurityError", "not registered with the CSMS")
            return await handler(payload)
        return handle

    async def _on_change_configuration(self, p: dict[str, Any]) -> dict[str, Any]:
        key, value = p["key"], p["value"]
        if key not in self.config:
            return {"status": "NotSupported"}
        entry = self.config[key]
        if entry.readonly or not entry.accepts(value):
            return {"status": "Rejected"}
        entry.value = value
        if key in ("TransactionMessageAttempts", "TransactionMessageRetryInterval"):
            self.uplink.retry = Retry(self.cfg_int("TransactionMessageAttempts"),
                                      float(self.cfg_int("TransactionMessageRetryInterval")))
        return {"status": "Accepted"}

    async def _on_get_configuration(self, p: dict[str, Any]) -> dict[str, Any]:
        wanted = p.get("key") or list(self.config)
        known = [{"key": k, "readonly": self.config[k].readonly, "value": self.config[k].value}
                 for k in wanted if k in self.config]
        unknown = [k for k in wanted if k not in self.config]
        out: dict[str, Any] = {"configurationKey": known}
        if unknown:
            out["unknownKey"] = unknown
        return out

    async def _on_remote_start_transaction(self, p: dict[str, Any]) -> dict[str, Any]:
        connector_id = p.get("connectorId", 1)
        c = self.connectors.get(connector_id)
        profile = p.get("chargingProfile")
        if c is None or not c.operative or c.transaction is not None or c.status == "Faulted":
            return {"status": "Rejected"}
        if profile is not None and profile.get("chargingProfilePurpose") != "TxProfile":
            return {"status": "Rejected"}
        asyncio.ensure_future(self._remote_start(c, p["idTag"], profile))
        return {"status": "Accepted"}

    async def _remote_start(self, c: Connector, token: str, profile: dict[str, Any] | None) -> None:
        await asyncio.sleep(0.05)  # answer first
        if self.cfg_bool("AuthorizeRemoteTxRequests"):
            if (await self.authorize_info(token)).get("status") != "Accepted":
                return
        if c.outlet is not None and c.outlet.plugged_in:
            await self._start_transaction(c, token, profile)
        else:
            c.authorized = token
            c.authorized_at = self.clock.now()
            await self._set_status(c, "Preparing")

    async def _on_remote_stop_transaction(self, p: dict[str, Any]) -> dict[str, Any]:
        for c in self.connectors.values():
            if c.transaction is not None and c.transaction.transaction_id == p["transactionId"]:
                asyncio.ensure_future(self._later(self._stop_transaction(c, "Remote")))
                return {"status": "Accepted"}
        return {"status": "Rejected"}

    async def _later(self, coro: Any, delay: float = 0.05) -> None:
        await asyncio.sleep(delay)
        await coro

    async def _on_reset(self, p: dict[str, Any]) -> dict[str, Any]:
        asyncio.ensure_future(self._reset(p["type"]))
        return {"status": "Accepted"}

    async def _reset(self, kind: str) -> None:
        await asyncio.sleep(0.1)
        for c in self.connectors.values():
            if c.transaction is not None:
                await self._stop_transaction(c, "HardReset" if kind == "Hard" else "SoftReset")
        if self.uplink.queue:
            try:
                await self.uplink.drain(timeout=5.0)
            except asyncio.TimeoutError:
                pass
        for c in self.connectors.values():
            c.authorized = None
            c.status = self._idle_status(c)
            c.reported = None
        self.boot_status = None
        await self.uplink.reconnect(first=True)

    async def _on_change_availability(self, p: dict[str, Any]) -> dict[str, Any]:
        operative = p["type"] == "Operative"
        targets = list(self.connectors.values()) if p["connectorId"] == 0 else (
            [self.connectors[p["connectorId"]]] if p["connectorId"] in self.connectors else [])
        if not targets:
            return {"status": "Rejected"}
        scheduled = False
        for c in targets:
            if c.transaction is not None:
                c.pending_operative = operative
                scheduled = True
            else:
                c.operative = operative
                asyncio.ensure_future(self._later(self._set_status(c, self._idle_status(c))))
        if p["connectorId"] == 0 and scheduled:
            self.station.pending_operative = operative
        elif p["connectorId"] == 0:
            self.station.operative, self.station.pending_operative = operative, None
            asyncio.ensure_future(self._later(self._set_status(self.station, "Available" if operative else "Unavailable")))
        return {"status": "Scheduled" if scheduled else "Accepted"}

    async def _on_unlock_connector(self, p: dict[str, Any]) -> dict[str, Any]:
        c = self.connectors.get(p["connectorId"])
        if c is None or self.fixed_cable:
            return {"status": "NotSupported"}
        if c.transaction is not None:
            await self._stop_transaction(c, "UnlockCommand")
        if c.error_code == "ConnectorLockFailure":
            return {"status": "UnlockFailed"}
        return {"status": "Unlocked"}

    async def _on_clear_cache(self, p: dict[str, Any]) -> dict[str, Any]:
        self.cache.clear()
        return {"status": "Accepted"}

    async def _on_data_transfer(self, p: dict[str, Any]) -> dict[str, Any]:
        return {"status": "UnknownVendorId"}

    async def _on_trigger_message(self, p: dict[str, Any]) -> dict[str, Any]:
        what, connector_id = p["requestedMessage"], p.get("connectorId")
        if connector_id is not None and connector_id not in self.connectors and connector_id != 0:
            return {"status": "Rejected"}
        jobs: dict[str, Callable[[], Any]] = {
            "BootNotification": lambda: self._try_call("BootNotification", dict(self.identity)),
            "Heartbeat": lambda: self._try_call("Heartbeat", {}),
            "StatusNotification": lambda: self._trigger_status(connector_id),
            "MeterValues": lambda: self._trigger_meter_values(connector_id),
            "DiagnosticsStatusNotification": lambda: self._try_call("DiagnosticsStatusNotification", {"status": "Idle"}),
            "FirmwareStatusNotification": lambda: self._try_call("FirmwareStatusNotification", {"status": "Idle"}),
        }
        if what not in jobs:
            return {"status": "NotImplemented"}
        asyncio.ensure_future(self._later(jobs[what]()))
        return {"status": "Accepted"}

    async def _trigger_status(self, connector_id: int | None) -> None:
        targets = [self.station, *self.connectors.values()] if connector_id is None else (
            [self.station] if connector_id == 0 else [self.connectors[connector_id]])
        for c in targets:
            await self._send_status(c)

    async def _trigger_meter_values(self, connector_id: int | None) -> None:
        targets = list(self.connectors.values()) if not connector_id else [self.connectors[connector_id]]
        for c in targets:
            values = self.sampled_values(c, "Trigger", self.cfg_list("MeterValuesSampledData"))
            payload: dict[str, Any] = {"connectorId": c.id,
                                       "meterValue": [{"timestamp": self.calendar.iso(), "sampledValue": values}]}
            if c.transaction is not None and c.transaction.transaction_id is not None:
                payload["transactionId"] = c.transaction.transaction_id
            await self._try_call("MeterValues", payload)

    async def _on_get_local_list_version(self, p: dict[str, Any]) -> dict[str, Any]:
        if not self.cfg_bool("LocalAuthListEnabled"):
            return {"listVersion": -1}
        return {"listVersion": self.local_list_version if self.local_list else 0}

    async def _on_send_local_list(self, p: dict[str, Any]) -> dict[str, Any]:
        if not self.cfg_bool("LocalAuthListEnabled"):
            return {"status": "NotSupported"}
        entries = p.get("localAuthorizationList", [])
        if len(entries) > self.cfg_int("SendLocalListMaxLength"):
            return {"status": "Failed"}
        version = p["listVersion"]
        if p["updateType"] == "Full":
            new: dict[str, dict[str, Any]] = {}
        else:
            if version <= self.local_list_version:
                return {"status": "VersionMismatch"}
            new = dict(self.local_list)
        for e in entries:
            if "idTagInfo" in e:
                new[e["idTag"]] = dict(e["idTagInfo"])
            else:
                new.pop(e["idTag"], None)
        if len(new) > self.cfg_int("LocalAuthListMaxLength"):
            return {"status": "Failed"}
        self.local_list = new
        self.local_list_version = version
        for token in new:
            self.cache.pop(token, None)
        return {"status": "Accepted"}

    async def _on_set_charging_profile(self, p: dict[str, Any]) -> dict[str, Any]:
        connector_id = p["connectorId"]
        if connector_id != 0 and connector_id not in self.connectors:
            return {"status": "Rejected"}
        raw = p["csChargingProfiles"]
        c = self.connectors.get(connector_id)
        running = c.transaction.transaction_id if c is not None and c.transaction is not None else None
        profile = sc.profile_from_ocpp(raw, VERSION)
        reason = self.profiles.validate_install(profile, connector_id, running)
        if reason is not None:
            log.info("%s: SetChargingProfile rejected: %s", self.id, reason)
            return {"status": "Rejected"}
        self.profiles.install(profile, connector_id)
        self._apply_limits()
        return {"status": "Accepted"}

    async def _on_clear_charging_profile(self, p: dict[str, Any]) -> dict[str, Any]:
        removed = self.profiles.clear(id=p.get("id"), connector=p.get("connectorId"),
                                      purpose=p.get("chargingProfilePurpose"), stack_level=p.get("stackLevel"))
        self._apply_limits()
        return {"status": "Accepted" if removed else "Unknown"}

    async def _on_get_composite_schedule(self, p: dict[str, Any]) -> dict[str, Any]:
        connector_id = p["connectorId"]
        if connector_id != 0 and connector_id not in self.connectors:
            return {"status": "Rejected"}
        unit = p.get("chargingRateUnit", "A")
        start = self.calendar.now().replace(microsecond=0)
        c = self.connectors.get(connector_id)
        tx = c.transaction if c is not None else None
        outlet = c.outlet if c is not None else next(iter(self.connectors.values())).outlet
        voltage = outlet.plant.site.phase_voltage if outlet else 230.0
        phases = outlet.phases if outlet else 3
        rating = outlet.max_current if outlet else 32.0
        if connector_id == 0:
            rating *= len(self.connectors)
        schedule = sc.composite_schedule(
            self.profiles, connector_id, start, int(p["duration"]), unit,
            transaction_start=tx.started if tx else None, transaction_id=tx.transaction_id if tx else None,
            nominal_voltage=voltage, phases=phases, max_limit=rating if unit == "A" else rating * voltage * phases)
        return {"status": "Accepted", "connectorId": connector_id, "scheduleStart": sc.format_datetime(start),
                "chargingSchedule": schedule.to_ocpp(VERSION)}


def _snake(name: str) -> str:
    return "".join("_" + ch.lower() if ch.isupper() else ch for ch in name).lstrip("_")

