"""pytest fixtures for the OCPP suites (registered by ``hil.plugin``).

``csms`` is evhil's central system on the rig's ``dut.csms_host``/``csms_port``. ``scripted16`` is evhil's scripted charge point connected to the CSMS
under test (``dut.csms_url`` when ``dut.kind`` is ``csms``; otherwise evhil's own CSMS as the reference
device under test). ``cp16`` is the charge
point under test, not yet booted: on an emulated rig it is evhil's reference emulator on the plant's
ports; on a bench it is the charger named in the rig file, which connects by itself (with a
``reset_to_defaults`` command it is put back to its factory state, switched off, before each test, and
switched on by the test's boot: ``hil.ocpp.bench_charger``). ``booted16`` is the
OCTT reusable state "Booted": BootNotification accepted and every connector reported Available.
``cs201`` and ``booted201`` are the same for an OCPP 2.0.1 charging station (evhil's emulator:
``hil.ocpp.charging_station``).

After each test the emulator stops (outlets de-energised), the plant's cables are put back as they were,
and the message trace is attached to the report.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import allure
import pytest

from hil.control import (
    CommandControl, CommandOperator, Control, ControlError, PromptControl, RigControl, ServiceControl, run_command,
)
from hil.instruments.energy_meter import EnergyMeter
from hil.ocpp.bench_charger import RESET_COMMAND
from hil.ocpp.charge_point import ChargePoint
from hil.ocpp.charging_station import ChargingStation
from hil.ocpp.conformance import ConformanceFailure
from hil.ocpp.csms import CSMS, Session
from hil.ocpp.outlet import Outlet
from hil.ocpp.scripted import ScriptedChargePoint
from hil.rig.model import DutSpec
from hil.rig.rig import Rig


@dataclass
class ChargerUnderTest:
    """A charge point under test as a suite sees it: its CSMS session and its control seam."""

    session: Session
    control: Control
    connectors: int
    rig: Rig
    emulator: ChargePoint | ChargingStation | None = None
    switched_off: bool = False
    """A charger in its own process, reset to its factory state and switched off before the test
    (``reset_to_defaults``): ``boot`` switches it on."""

    def meter(self, connector: int = 1) -> EnergyMeter | None:
        """The rig's energy meter on the connector's port (connector k is the rig's k-th port), if any."""
        ports = self.rig.spec.ports
        if not 1 <= connector <= len(ports):
            return None
        for m in self.rig.spec.meters:
            if m.point == ports[connector - 1].name:
                return self.rig.meter(m.name)
        return None

    async def boot(self, timeout: float = 30.0) -> None:
        """Start the emulator, or switch on the charger reset before the test (``power_on``), then wait
        until it is connected (up to ``timeout`` s)."""
        if self.emulator is not None and not self.emulator.running:
            await self.emulator.start()
        elif self.switched_off:
            self.switched_off = False
            await self.control.power_on()
        await self.session.wait_connected(timeout)

    async def booted(self, timeout: float = 30.0) -> None:
        """Reach the reusable state Booted: BootNotification Accepted, every connector Available (in
        2.0.1 also the SecurityEventNotification of the start-up)."""
        await self.boot(timeout)
        await self.session.expect("BootNotification", timeout=timeout)
        for k in range(1, self.connectors + 1):
            match = ({"evseId": k, "connectorId": 1, "connectorStatus": "Available"}
                     if self.session.version == "2.0.1" else {"connectorId": k, "status": "Available"})
            await self.session.expect("StatusNotification", match, timeout=timeout)
        if self.session.version == "2.0.1":
            await self.session.expect("SecurityEventNotification", timeout=timeout)
        await asyncio.sleep(0.1)
        self.session.consume_all()


@pytest.fixture
async def csms(rig: Rig) -> AsyncIterator[CSMS]:
    """evhil's CSMS for a charger under test (fresh per test)."""
    dut = rig.spec.dut
    server = CSMS(dut.csms_host, dut.csms_port, charge_points={dut.charge_point_id: dut.password},
                  versions=(dut.ocpp_version,) if dut.ocpp_version else ("2.0.1", "1.6"))
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def class_option(option: str, spec: str | None, base: type) -> type:
    """The class named ``MODULE:CLASS`` by a command-line option (default ``base``); it must subclass it."""
    if not spec:
        return base
    module, _, name = spec.partition(":")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as exc:
        raise pytest.UsageError(f"{option} {spec}: cannot load it ({exc})") from None
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise pytest.UsageError(f"{option} {spec}: not a subclass of {base.__module__}.{base.__name__}")
    return cls


def capture_suspended(config: pytest.Config) -> Callable[[], contextlib.AbstractContextManager[None]]:
    """A context factory for ``PromptControl``: inside, pytest captures neither stdin nor stdout (nor a
    test's ``capsys``), so the person at the bench sees the question and answers it, as under ``pdb``."""
    capman = config.pluginmanager.getplugin("capturemanager")

    @contextlib.contextmanager
    def suspended() -> Iterator[None]:
        if capman is None:  # -p no:capture
            yield
            return
        capman.suspend(in_=True)
        try:
            yield
        finally:
            capman.resume()

    return suspended


async def _reset_to_defaults(csms: CSMS, dut: DutSpec) -> Session:
    """Run the rig file's ``reset_to_defaults`` command: a charger that runs by itself (and so kept the last
    test's configuration, lists, profiles, transactions and connection) goes back to its factory state,
    switched off, as the in-process emulator starts each test. Its session starts afresh: what it sent
    before it went down belongs to no test."""
    try:
        await run_command(dict(dut.control.commands), RESET_COMMAND, dut.control.timeout_s, (RESET_COMMAND,))
    except ControlError as exc:
        pytest.fail(f"charger under test not reset to its factory state before the test: {exc}", pytrace=False)
    csms.sessions.pop(dut.charge_point_id, None)
    csms.handshakes.pop(dut.charge_point_id, None)
    return csms.session(dut.charge_point_id)


async def _charger_under_test(rig: Rig, csms: CSMS, version: str, emulator_class: type,
                              make: Any, config: pytest.Config) -> AsyncIterator[ChargerUnderTest]:
    dut = rig.spec.dut
    if dut.ocpp_version not in (None, version):
        pytest.skip(f"rig {rig.spec.name!r}: the device under test speaks OCPP {dut.ocpp_version}")
    if dut.kind in ("csms", "site_controller"):
        what = "a CSMS" if dut.kind == "csms" else "a site's load manager"
        pytest.skip(f"rig {rig.spec.name!r}: the device under test is {what}")
    session = csms.session(dut.charge_point_id)
    emulator = None
    restore: list[tuple[Outlet, bool]] = []
    if dut.control.adapter == "emulated":
        if rig.plant is None:
            pytest.fail("dut.control.adapter 'emulated' needs an emulated rig with ports", pytrace=False)
        names = list(rig.plant.ports)[: dut.connectors]
        outlets = [Outlet(rig.plant, name) for name in names]
        restore = [(o, o.plugged_in) for o in outlets]
        for o in outlets:
            o.plug(False)
        emulator = make(emulator_class, dut.charge_point_id, csms.url, outlets, dut.password)
        control: Control = emulator
    else:  # each action: its wired instrument, else its command, else the prompt (or the missing-command error)
        commands = CommandControl(dict(dut.control.commands), dut.control.timeout_s)
        fallback: Control | None = None
        if dut.control.adapter == "prompt":
            fallback = PromptControl(dut.control.timeout_s, suspend=capture_suspended(config))
        elif dut.control.service_url is not None:
            fallback = ServiceControl(dut.control.service_url, dut.control.timeout_s)
        control = RigControl(rig, dut.control.instruments, commands, fallback)
    reset = emulator is None and RESET_COMMAND in dut.control.commands
    if reset:
        session = await _reset_to_defaults(csms, dut)
    charger = ChargerUnderTest(session, control, len(restore) or dut.connectors, rig, emulator, switched_off=reset)
    try:
        yield charger
    finally:
        if emulator is not None:
            await emulator.stop()
        for outlet, plugged in restore:
            outlet.de_energize()
            outlet.plug(plugged)
        allure.attach(session.trace.jsonl(), name=f"OCPP trace {session.id}", attachment_type=allure.attachment_type.JSON,
                      extension="jsonl")
        if session.findings:
            allure.attach("\n".join(session.findings), name="protocol findings", attachment_type=allure.attachment_type.TEXT)


@pytest.fixture
async def cp16(rig: Rig, csms: CSMS, pytestconfig: pytest.Config) -> AsyncIterator[ChargerUnderTest]:
    """The OCPP 1.6 charge point under test, before boot."""
    cls = class_option("--cp-emulator", pytestconfig.getoption("--cp-emulator"), ChargePoint)
    async for charger in _charger_under_test(
            rig, csms, "1.6", cls, lambda c, cs_id, url, outlets, password: c(cs_id, url, outlets, password=password),
            pytestconfig):
        yield charger


EMULATED_201 = {"OCPPCommCtrlr.MessageTimeout[Default]": "5"}
"""Device-model values of the emulated 2.0.1 station in the suites: a short MessageTimeout (read-only on
the wire) keeps the retry cases short."""


@pytest.fixture
async def cs201(rig: Rig, csms: CSMS, pytestconfig: pytest.Config) -> AsyncIterator[ChargerUnderTest]:
    """The OCPP 2.0.1 charging station under test, before boot."""
    cls = class_option("--cs-emulator", pytestconfig.getoption("--cs-emulator"), ChargingStation)
    async for charger in _charger_under_test(
            rig, csms, "2.0.1", cls,
            lambda c, cs_id, url, outlets, password: c(cs_id, url, outlets, password=password, variables=EMULATED_201),
            pytestconfig):
        yield charger


@pytest.fixture
async def booted16(cp16: ChargerUnderTest) -> ChargerUnderTest:
    """The 1.6 charge point in the reusable state Booted."""
    try:
        await cp16.booted()
    except ConformanceFailure as exc:
        pytest.fail(f"reusable state Booted not reached: {exc}", pytrace=False)
    return cp16


@pytest.fixture
async def booted201(cs201: ChargerUnderTest) -> ChargerUnderTest:
    """The 2.0.1 charging station in the reusable state Booted."""
    try:
        await cs201.booted()
    except ConformanceFailure as exc:
        pytest.fail(f"reusable state Booted not reached: {exc}", pytrace=False)
    return cs201


@pytest.fixture
async def scripted16(rig: Rig, pytestconfig: pytest.Config) -> AsyncIterator[ScriptedChargePoint]:
    """evhil's scripted OCPP 1.6 charge point, connected to the CSMS under test."""
    dut = rig.spec.dut
    if dut.kind not in ("csms", "reference"):
        pytest.skip(f"rig {rig.spec.name!r}: the device under test is a {dut.kind}, not a CSMS")
    if dut.ocpp_version not in (None, "1.6"):
        pytest.skip(f"rig {rig.spec.name!r}: the CSMS under test speaks OCPP {dut.ocpp_version}")
    reference = None
    url = dut.csms_url
    if dut.kind != "csms" or url is None:
        cls = class_option("--csms-reference", pytestconfig.getoption("--csms-reference"), CSMS)
        reference = await cls(versions=("1.6",), charge_points={dut.charge_point_id: dut.password}).start()
        url = reference.url
    cp = ScriptedChargePoint(dut.charge_point_id, url, "1.6", password=dut.password)
    if reference is not None:
        cp.operator = reference.operator(dut.charge_point_id)
    elif dut.control.adapter == "command":
        cp.operator = CommandOperator(dut.charge_point_id, dict(dut.control.commands), dut.control.timeout_s)
    try:
        try:
            await cp.connect()
        except (OSError, ConnectionError) as exc:
            pytest.fail(f"CSMS under test at {url}: cannot connect as {dut.charge_point_id}: {exc}", pytrace=False)
        yield cp
    finally:
        await cp.close()
        if reference is not None:
            await reference.stop()
        allure.attach(cp.trace.jsonl(), name=f"OCPP trace {cp.id}", attachment_type=allure.attachment_type.JSON,
                      extension="jsonl")
