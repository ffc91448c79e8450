"""The OCPP 2.0.1 device model of a charging station: components, variables, their attributes and
characteristics, typed validation, and the three operations on them (GetVariables, SetVariables,
GetBaseReport).

A variable is addressed by its component (name, instance, EVSE id, connector id) and its own name and
instance, exactly as the wire does (``{"component": {"name": ..., "evse": {"id": 1}}, "variable": {...}}``).
Only the Actual attribute is implemented, which is what the Core profile needs; Target, MinSet and MaxSet
answer ``NotSupportedAttributeType``. Values are text on the wire and here; ``dataType`` decides what a
SetVariables value may be. Some values are live (the clock, availability, counts): they are read through
a function the station registers.

Units follow the variable's ``unit`` characteristic (s for intervals, Wh for energy, W for power).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from hil.ocpp.outlet import MEASURANDS
from hil.ocpp.smart_charging import parse_datetime

DataType = Literal["string", "decimal", "integer", "dateTime", "boolean", "OptionList", "SequenceList",
                   "MemberList"]
Mutability = Literal["ReadOnly", "WriteOnly", "ReadWrite"]
Key = tuple[str, str | None, int | None, int | None, str, str | None]
"""(component name, component instance, EVSE id, connector id, variable name, variable instance)."""

TX_POINTS = ("ParkingBayOccupancy", "EVConnected", "Authorized", "DataSigned", "PowerPathClosed", "EnergyTransfer")
"""Transaction start and stop points this station supports."""

_INTEGER = re.compile(r"^[+-]?\d+$")


@dataclass
class Variable:
    """One variable with its Actual attribute and characteristics."""

    component: str
    name: str
    value: str | None
    data_type: DataType = "string"
    mutability: Mutability = "ReadWrite"
    evse: int | None = None
    connector: int | None = None
    component_instance: str | None = None
    instance: str | None = None
    values_list: str | None = None
    unit: str | None = None
    min_limit: float | None = None
    max_limit: float | None = None
    persistent: bool = True
    constant: bool = False
    reboot_required: bool = False
    """A change takes effect only after a reboot (SetVariables answers RebootRequired)."""

    @property
    def key(self) -> Key:
        return (self.component, self.component_instance, self.evse, self.connector, self.name, self.instance)

    @property
    def label(self) -> str:
        where = f"[evse {self.evse}{'/' + str(self.connector) if self.connector else ''}]" if self.evse else ""
        inst = f"[{self.instance}]" if self.instance else ""
        return f"{self.component}{where}.{self.name}{inst}"

    def allowed(self) -> list[str]:
        return [v.strip() for v in (self.values_list or "").split(",") if v.strip()]

    def accepts(self, value: str) -> bool:
        """Whether ``value`` is valid for this variable's data type and limits."""
        if self.data_type == "integer":
            if not _INTEGER.match(value.strip()):
                return False
            return self._in_limits(int(value))
        if self.data_type == "decimal":
            try:
                number = float(value)
            except ValueError:
                return False
            return number == number and abs(number) != float("inf") and self._in_limits(number)
        if self.data_type == "boolean":
            return value in ("true", "false")
        if self.data_type == "dateTime":
            try:
                return parse_datetime(value) is not None
            except (ValueError, IndexError):
                return False
        if self.data_type == "OptionList":
            return value in self.allowed()
        if self.data_type in ("MemberList", "SequenceList"):
            items = [v.strip() for v in value.split(",") if v.strip()]
            return len(set(items)) == len(items) and all(v in self.allowed() for v in items)
        return self.max_limit is None or len(value) <= self.max_limit

    def _in_limits(self, number: float) -> bool:
        return (self.min_limit is None or number >= self.min_limit) and (
            self.max_limit is None or number <= self.max_limit)

    def characteristics(self) -> dict[str, Any]:
        out: dict[str, Any] = {"dataType": self.data_type, "supportsMonitoring": False}
        if self.unit:
            out["unit"] = self.unit
        if self.min_limit is not None:
            out["minLimit"] = self.min_limit
        if self.max_limit is not None:
            out["maxLimit"] = self.max_limit
        if self.values_list:
            out["valuesList"] = self.values_list
        return out


def component_of(v: Variable) -> dict[str, Any]:
    """The wire ``component`` of a variable."""
    out: dict[str, Any] = {"name": v.component}
    if v.component_instance:
        out["instance"] = v.component_instance
    if v.evse is not None:
        out["evse"] = {"id": v.evse, **({"connectorId": v.connector} if v.connector is not None else {})}
    return out


def variable_of(v: Variable) -> dict[str, Any]:
    return {"name": v.name, **({"instance": v.instance} if v.instance else {})}


def _key_of(component: dict[str, Any], variable: dict[str, Any]) -> Key:
    evse = component.get("evse") or {}
    return (component["name"], component.get("instance"), evse.get("id"), evse.get("connectorId"),
            variable["name"], variable.get("instance"))


@dataclass
class DeviceModel:
    """A set of variables, with live values from ``live`` functions keyed by variable key."""

    variables: dict[Key, Variable] = field(default_factory=dict)
    live: dict[Key, Callable[[], str]] = field(default_factory=dict)
    items_per_report: int = 20
    """NotifyReport page size (DeviceDataCtrlr.ItemsPerMessage[GetReport])."""

    def add(self, v: Variable) -> Variable:
        self.variables[v.key] = v
        return v

    def __iter__(self) -> Iterator[Variable]:
        return iter(self.variables.values())

    def lookup(self, component: str, name: str, instance: str | None = None, *, evse: int | None = None,
               connector: int | None = None, component_instance: str | None = None) -> Variable:
        key = (component, component_instance, evse, connector, name, instance)
        try:
            return self.variables[key]
        except KeyError:
            raise KeyError(f"device model has no {component}.{name}"
                           f"{'[' + instance + ']' if instance else ''}") from None

    def value(self, v: Variable) -> str | None:
        fn = self.live.get(v.key)
        return fn() if fn is not None else v.value

    def text(self, component: str, name: str, instance: str | None = None, **where: Any) -> str:
        return self.value(self.lookup(component, name, instance, **where)) or ""

    def integer(self, component: str, name: str, instance: str | None = None, **where: Any) -> int:
        try:
            return int(self.text(component, name, instance, **where))
        except ValueError:
            return 0

    def boolean(self, component: str, name: str, instance: str | None = None, **where: Any) -> bool:
        return self.text(component, name, instance, **where) == "true"

    def members(self, component: str, name: str, instance: str | None = None, **where: Any) -> list[str]:
        return [m.strip() for m in self.text(component, name, instance, **where).split(",") if m.strip()]

    def seed(self, values: dict[str, str]) -> None:
        """Set values by label (``Component.Variable`` or ``Component.Variable[instance]``), bypassing
        mutability: how a station is built with other defaults. Unknown labels raise ``KeyError``."""
        by_label = {v.label: v for v in self}
        for label, value in values.items():
            if label not in by_label:
                raise KeyError(f"device model has no variable {label!r}")
            by_label[label].value = value

    # -- the three operations ------------------------------------------------------------------------------
    def _find(self, component: dict[str, Any], variable: dict[str, Any]) -> Variable | str:
        key = _key_of(component, variable)
        if key in self.variables:
            return self.variables[key]
        comp = key[:4]
        if not any(k[:4] == comp for k in self.variables):
            return "UnknownComponent"
        return "UnknownVariable"

    def _resolve(self, request: dict[str, Any]) -> tuple[dict[str, Any], Variable | None]:
        """The result skeleton of a Get/SetVariableData (echoing its names and attribute type) and the
        variable it addresses; None with the attributeStatus already set when there is none to use."""
        kind = request.get("attributeType", "Actual")
        out: dict[str, Any] = {"component": request["component"], "variable": request["variable"],
                               "attributeType": kind}
        found = self._find(request["component"], request["variable"])
        if isinstance(found, str):
            return {**out, "attributeStatus": found}, None
        if kind != "Actual":
            return {**out, "attributeStatus": "NotSupportedAttributeType"}, None
        return out, found

    def get(self, request: dict[str, Any]) -> dict[str, Any]:
        """One GetVariableResult for one GetVariableData."""
        out, found = self._resolve(request)
        if found is None:
            return out
        if found.mutability == "WriteOnly":
            return {**out, "attributeStatus": "Rejected", "attributeStatusInfo": {"reasonCode": "WriteOnly"}}
        return {**out, "attributeStatus": "Accepted", "attributeValue": self.value(found) or ""}

    def set(self, request: dict[str, Any], on_change: Callable[[Variable], None] | None = None) -> dict[str, Any]:
        """One SetVariableResult for one SetVariableData; ``on_change`` runs after an accepted change."""
        out, found = self._resolve(request)
        if found is None:
            return out
        value = request["attributeValue"]
        if found.mutability == "ReadOnly" or found.constant:
            return {**out, "attributeStatus": "Rejected", "attributeStatusInfo": {"reasonCode": "ReadOnly"}}
        if not found.accepts(value):
            return {**out, "attributeStatus": "Rejected", "attributeStatusInfo": {"reasonCode": "InvalidValue"}}
        found.value = value
        if on_change is not None:
            on_change(found)
        return {**out, "attributeStatus": "RebootRequired" if found.reboot_required else "Accepted"}

    def report(self, base: str) -> list[dict[str, Any]]:
        """The ReportData entries of a base report: ``FullInventory`` or ``ConfigurationInventory``
        (the writable variables)."""
        chosen: Iterable[Variable] = self
        if base == "ConfigurationInventory":
            chosen = [v for v in self if v.mutability != "ReadOnly"]
        out = []
        for v in chosen:
            attribute: dict[str, Any] = {"type": "Actual", "mutability": v.mutability, "persistent": v.persistent,
                                         "constant": v.constant}
            if v.mutability != "WriteOnly":
                attribute["value"] = self.value(v) or ""
            out.append({"component": component_of(v), "variable": variable_of(v),
                        "variableAttribute": [attribute], "variableCharacteristics": v.characteristics()})
        return out

    def pages(self, base: str) -> list[list[dict[str, Any]]]:
        """The report split into NotifyReport pages of ``items_per_report`` entries."""
        items = self.report(base)
        n = max(1, self.items_per_report)
        return [items[i:i + n] for i in range(0, len(items), n)] or [[]]


def standard_model(cs_id: str, evses: int, *, vendor: str, model: str, smart_charging: bool = True,
                   fixed_cable: bool = False, message_timeout: int = 30) -> DeviceModel:
    """The device model of evhil's reference station: every required variable of the Core controllers
    (OCPPCommCtrlr, TxCtrlr, DeviceDataCtrlr, ClockCtrlr, SecurityCtrlr, SampledDataCtrlr,
    AlignedDataCtrlr, AuthCtrlr), the authorisation cache, the local list, smart charging, and the
    ChargingStation / EVSE / Connector components, one Type 2 connector per EVSE (a socket, or with
    ``fixed_cable`` a cable attached)."""
    dm = DeviceModel()
    measurands = ",".join(MEASURANDS)
    points = ",".join(TX_POINTS)

    def v(component: str, name: str, value: str | None, data_type: DataType = "string",
          mutability: Mutability = "ReadWrite", **kw: Any) -> None:
        dm.add(Variable(component, name, value, data_type, mutability, **kw))

    ro: Mutability = "ReadOnly"
    v("ChargingStation", "AvailabilityState", "Available", "OptionList", ro,
      values_list="Available,Occupied,Reserved,Unavailable,Faulted", persistent=False)
    v("ChargingStation", "Available", "true", "boolean", ro, constant=True)
    v("ChargingStation", "SupplyPhases", "3", "integer", ro, constant=True)
    v("ChargingStation", "Model", model, "string", ro, constant=True)
    v("ChargingStation", "VendorName", vendor, "string", ro, constant=True)
    for e in range(1, evses + 1):
        v("EVSE", "AvailabilityState", "Available", "OptionList", ro, evse=e,
          values_list="Available,Occupied,Reserved,Unavailable,Faulted", persistent=False)
        v("EVSE", "Available", "true", "boolean", ro, evse=e, constant=True)
        v("EVSE", "Power", "22080", "decimal", ro, evse=e, unit="W", constant=True)
        v("EVSE", "SupplyPhases", "3", "integer", ro, evse=e, constant=True)
        v("Connector", "AvailabilityState", "Available", "OptionList", ro, evse=e, connector=1,
          values_list="Available,Occupied,Reserved,Unavailable,Faulted", persistent=False)
        v("Connector", "Available", "true", "boolean", ro, evse=e, connector=1, constant=True)
        v("Connector", "ConnectorType", "cType2" if fixed_cable else "sType2", "string", ro, evse=e, connector=1,
          constant=True)  # ConnectorEnumType: cType2 has a cable attached, sType2 is a socket
        v("Connector", "SupplyPhases", "3", "integer", ro, evse=e, connector=1, constant=True)

    c = "OCPPCommCtrlr"
    v(c, "ActiveNetworkProfile", "0", "integer", ro, persistent=False)
    v(c, "FileTransferProtocols", "HTTP,HTTPS", "MemberList", ro, values_list="FTP,FTPS,HTTP,HTTPS,SFTP")
    v(c, "HeartbeatInterval", "300", "integer", unit="s", min_limit=0)
    v(c, "MessageTimeout", str(message_timeout), "integer", ro, instance="Default", unit="s")
    v(c, "MessageAttemptInterval", "10", "integer", instance="TransactionEvent", unit="s", min_limit=0)
    v(c, "MessageAttempts", "3", "integer", instance="TransactionEvent", min_limit=0)
    v(c, "NetworkConfigurationPriority", "0", "SequenceList", values_list="0,1", reboot_required=True)
    v(c, "NetworkProfileConnectionAttempts", "3", "integer", min_limit=0)
    v(c, "OfflineThreshold", "60", "integer", unit="s", min_limit=0)
    v(c, "QueueAllMessages", "false", "boolean")
    v(c, "ResetRetries", "2", "integer", min_limit=0)
    v(c, "RetryBackOffRandomRange", "0", "integer", unit="s", min_limit=0)
    v(c, "RetryBackOffRepeatTimes", "3", "integer", min_limit=0)
    v(c, "RetryBackOffWaitMinimum", "1", "integer", unit="s", min_limit=0)
    v(c, "UnlockOnEVSideDisconnect", "true", "boolean")
    v(c, "WebSocketPingInterval", "0", "integer", unit="s", min_limit=0)

    c = "DeviceDataCtrlr"
    for inst in ("GetReport", "GetVariables", "SetVariables"):
        v(c, "ItemsPerMessage", "20", "integer", ro, instance=inst, constant=True)
        v(c, "BytesPerMessage", "65000", "integer", ro, instance=inst, constant=True)

    c = "ClockCtrlr"
    v(c, "DateTime", "", "dateTime", ro, persistent=False)
    v(c, "TimeSource", "Heartbeat", "SequenceList",
      values_list="Heartbeat,NTP,GPS,RealTimeClock,MobileNetwork,RadioTimeTransmitter")
    v(c, "NextTimeOffsetTransitionDateTime", "2027-03-28T01:00:00Z", "dateTime")

    c = "SecurityCtrlr"
    v(c, "OrganizationName", "evhil", "string")
    v(c, "CertificateEntries", "0", "integer", ro, persistent=False)
    v(c, "SecurityProfile", "1", "integer", ro)
    v(c, "Identity", cs_id, "string", ro)
    v(c, "BasicAuthPassword", None, "string", "WriteOnly", max_limit=40)

    c = "SampledDataCtrlr"
    v(c, "Enabled", "true", "boolean")
    v(c, "Available", "true", "boolean", ro, constant=True)
    v(c, "TxEndedMeasurands", "Energy.Active.Import.Register", "MemberList", values_list=measurands)
    v(c, "TxEndedInterval", "0", "integer", unit="s", min_limit=0)
    v(c, "TxStartedMeasurands", "Energy.Active.Import.Register", "MemberList", values_list=measurands)
    v(c, "TxUpdatedMeasurands", "Energy.Active.Import.Register,Power.Active.Import", "MemberList",
      values_list=measurands)
    v(c, "TxUpdatedInterval", "60", "integer", unit="s", min_limit=0)
    v(c, "RegisterValuesWithoutPhases", "true", "boolean")
    v(c, "SignReadings", "false", "boolean")

    c = "AlignedDataCtrlr"
    v(c, "Enabled", "true", "boolean")
    v(c, "Available", "true", "boolean", ro, constant=True)
    v(c, "Measurands", "Energy.Active.Import.Register", "MemberList", values_list=measurands)
    v(c, "Interval", "0", "integer", unit="s", min_limit=0)
    v(c, "SendDuringIdle", "false", "boolean")
    v(c, "TxEndedMeasurands", "Energy.Active.Import.Register", "MemberList", values_list=measurands)
    v(c, "TxEndedInterval", "0", "integer", unit="s", min_limit=0)

    c = "AuthCtrlr"
    v(c, "Enabled", "true", "boolean")
    v(c, "AuthorizeRemoteStart", "false", "boolean")
    v(c, "LocalAuthorizeOffline", "true", "boolean")
    v(c, "LocalPreAuthorize", "false", "boolean")
    v(c, "OfflineTxForUnknownIdEnabled", "false", "boolean")
    v(c, "DisableRemoteAuthorization", "false", "boolean")
    v(c, "MasterPassGroupId", "", "string", max_limit=36)

    c = "AuthCacheCtrlr"
    v(c, "Enabled", "true", "boolean")
    v(c, "Available", "true", "boolean", ro, constant=True)
    v(c, "LifeTime", "86400", "integer", unit="s", min_limit=0)
    v(c, "Storage", "65536", "integer", ro, unit="B", constant=True)
    v(c, "Policy", "LRU", "OptionList", values_list="LRU,LFU,FIFO,CUSTOM")
    v(c, "DisablePostAuthorize", "false", "boolean")

    c = "LocalAuthListCtrlr"
    v(c, "Enabled", "true", "boolean")
    v(c, "Available", "true", "boolean", ro, constant=True)
    v(c, "Entries", "0", "integer", ro, persistent=False)
    v(c, "ItemsPerMessage", "100", "integer", ro, constant=True)
    v(c, "BytesPerMessage", "65000", "integer", ro, constant=True)
    v(c, "Storage", "65536", "integer", ro, unit="B", constant=True)
    v(c, "DisablePostAuthorize", "false", "boolean")

    c = "TxCtrlr"
    v(c, "EVConnectionTimeOut", "60", "integer", unit="s", min_limit=0)
    v(c, "StopTxOnEVSideDisconnect", "true", "boolean")
    v(c, "TxBeforeAcceptedEnabled", "false", "boolean")
    v(c, "TxStartPoint", "PowerPathClosed", "MemberList", values_list=points)
    v(c, "TxStopPoint", "EVConnected,Authorized", "MemberList", values_list=points)
    v(c, "MaxEnergyOnInvalidId", "0", "integer", unit="Wh", min_limit=0)
    v(c, "StopTxOnInvalidId", "true", "boolean")

    if smart_charging:
        c = "SmartChargingCtrlr"
        v(c, "Enabled", "true", "boolean")
        v(c, "Available", "true", "boolean", ro, constant=True)
        v(c, "Entries", "0", "integer", ro, instance="ChargingProfiles", persistent=False)
        v(c, "LimitChangeSignificance", "1.0", "decimal", min_limit=0)
        v(c, "PeriodsPerSchedule", "24", "integer", ro, constant=True)
        v(c, "ProfileStackLevel", "10", "integer", ro, constant=True)
        v(c, "RateUnit", "A,W", "MemberList", ro, values_list="A,W")
    return dm
