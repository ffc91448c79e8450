"""The evhil pytest plugin (entry point ``pytest11: hil``).

Options: ``--rig PATH`` (default: the shipped emulated rig), ``--controller NAMES`` (the controllers the
load-limit and fault-recovery suites run). Fixtures: ``rig_spec``, ``rig``, ``clock``, ``plant``, ``monitor``,
``power_source`` / ``power_sources``, ``meter`` / ``meters``, ``ev`` / ``evs``; for the OCPP suites
``csms``, ``cp16``, ``booted16`` and ``scripted16`` (``hil.ocpp.fixtures``). Every power source is put
in its verified safe state after each test that used one, at the end of the session, on SIGTERM (turned
into KeyboardInterrupt so teardown runs) and at interpreter exit.

Reporting (``hil.report.pytest_hooks``): the ``measurements`` fixture, ``--run-dir DIR`` for the run
journal and record, and Allure labels, failure origins, environment and categories with ``--alluredir``.
"""

from __future__ import annotations

import atexit
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hil.clock import Clock
from hil.dut_process import DutProcess, DutProcessError
from hil.instruments.energy_meter import EnergyMeter
from hil.instruments.errors import InstrumentError
from hil.instruments.ev_simulator import EVSimulator
from hil.instruments.power_source import PowerSource
from hil.compliance.monitor import RATE_HZ, Monitor
from hil.ocpp.fixtures import booted16, booted201, cp16, cs201, csms, scripted16  # noqa: F401 - OCPP suite fixtures
from hil.plant import Plant
from hil.report import transcripts
from hil.report.measurement import Measurements
from hil.report.pytest_hooks import ReportHooks, add_options, measurements  # noqa: F401 - reporting fixture
from hil.rig.loader import DEFAULT_RIG, RigFileError, load_rig
from hil.rig.model import RigSpec
from hil.rig.rig import Rig

_RIG_KEY = pytest.StashKey[RigSpec]()
_state: dict[str, Rig] = {}


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("hil", "evhil hardware-in-the-loop")
    group.addoption(
        "--rig", action="store", default=None, metavar="PATH",
        help=f"rig file naming the instruments (default: the emulated rig {DEFAULT_RIG.name})",
    )
    group.addoption(
        "--cp-emulator", action="store", default=None, metavar="MODULE:CLASS",
        help="charge point emulator class for emulated OCPP 1.6 runs (default: hil.ocpp.charge_point:ChargePoint)",
    )
    group.addoption(
        "--cs-emulator", action="store", default=None, metavar="MODULE:CLASS",
        help="charging station emulator class for emulated OCPP 2.0.1 runs "
             "(default: hil.ocpp.charging_station:ChargingStation)",
    )
    group.addoption(
        "--csms-reference", action="store", default=None, metavar="MODULE:CLASS",
        help="CSMS class serving as the CSMS under test on emulated rigs (default: hil.ocpp.csms:CSMS)",
    )
    group.addoption(
        "--monitor-hz", action="store", type=float, default=RATE_HZ, metavar="HZ",
        help=f"sampling rate of the load-limit monitor per second of the rig's clock (default {RATE_HZ:g})",
    )
    group.addoption(
        "--reference", action="store", default="adaptive", metavar="NAME",
        help="a site load manager under test is shown next to this reference controller on the same condition "
             "(default adaptive; 'none' leaves it out and halves the run)",
    )
    group.addoption(
        "--controller", action="store", default=None, metavar="NAMES",
        help="controllers the load-limit and fault-recovery suites run, comma-separated: reference names "
             "(plain, sequential, parallel, adaptive, ...) or MODULE_OR_FILE.py:NAME (default: the reference set)",
    )
    add_options(group)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "bench: needs a real bench; skipped unless --rig names a real rig")
    config.addinivalue_line("markers", "emulated_only: needs an emulated rig (fault injection, plant access)")
    config.addinivalue_line("markers", "octt(id, version, profile, sut): the OCTT test case a test automates")
    path = Path(config.getoption("--rig") or DEFAULT_RIG)
    try:
        config.stash[_RIG_KEY] = load_rig(path)
    except RigFileError as exc:
        raise pytest.UsageError(str(exc)) from None
    config.pluginmanager.register(ReportHooks(config, config.stash[_RIG_KEY], path, lambda: _state.get("rig")), "hil-report")
    if hasattr(signal, "SIGTERM"):
        try:
            signal.signal(signal.SIGTERM, _sigterm)
        except ValueError:  # not the main thread
            pass


def _sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    spec = config.stash[_RIG_KEY]
    for item in items:
        if item.get_closest_marker("bench") and spec.emulated:
            item.add_marker(pytest.mark.skip(reason=f"needs a real bench; rig {spec.name!r} is emulated"))
        if item.get_closest_marker("emulated_only") and not spec.emulated:
            item.add_marker(pytest.mark.skip(reason=f"injects its fault into an emulator; rig {spec.name!r} has real "
                                                    "instruments (no seam for the fault)"))


def pytest_report_header(config: pytest.Config) -> str:
    spec = config.stash[_RIG_KEY]
    kind = "emulated" if spec.emulated else "real bench"
    return (
        f"evhil rig: {spec.name} ({kind}): {len(spec.power_sources)} power source(s), "
        f"{len(spec.meters)} meter(s), {len(spec.ev_simulators)} EV simulator(s)"
    )


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _close_rig()


def _close_rig() -> None:
    rig = _state.pop("rig", None)
    if rig is not None:
        rig.close()


atexit.register(_close_rig)


LAUNCH_TIMEOUT_S = 30.0
"""How long a launched device under test has to listen on ``dut.launch_ready`` [s]."""


@pytest.fixture(scope="session", autouse=True)
def launched_dut(pytestconfig: pytest.Config, request: pytest.FixtureRequest) -> Iterator[DutProcess | None]:
    """The device under test started by the run (``dut.launch``) for a CSMS or a charger, once for the session
    and stopped at its end; its output goes to ``device-under-test.log`` in the run folder. (A site's load
    manager is started for each condition instead: ``hil.site.under_test``.)"""
    dut = pytestconfig.stash[_RIG_KEY].dut
    if not dut.launch or dut.kind not in ("csms", "charger"):
        yield None
        return
    if getattr(pytestconfig, "workerinput", {}).get("workercount", 1) > 1:  # an xdist worker of several
        raise pytest.UsageError("dut.launch starts one device under test: run its suites without -n")
    run_dir = pytestconfig.getoption("--run-dir")
    folder = Path(run_dir) if run_dir else request.getfixturevalue("tmp_path_factory").mktemp("dut")
    folder.mkdir(parents=True, exist_ok=True)
    product = DutProcess(dut.launch, folder / "device-under-test.log").start()
    try:
        ready = dut.launch_ready or (dut.csms_url if dut.kind == "csms" else None)
        if ready:
            product.wait_listening(ready, LAUNCH_TIMEOUT_S)
        yield product
    except DutProcessError as exc:
        pytest.fail(str(exc), pytrace=False)
    finally:
        product.stop()


@pytest.fixture(scope="session")
def rig(pytestconfig: pytest.Config) -> Iterator[Rig]:
    """The running rig of ``--rig``: emulators started, drivers opened on demand."""
    instance = Rig(pytestconfig.stash[_RIG_KEY], pytestconfig.getoption("--rig") or DEFAULT_RIG)
    _state["rig"] = instance
    try:
        instance.start()
    except InstrumentError as exc:
        pytest.fail(f"rig {instance.spec.name}: {exc}", pytrace=False)
    yield instance
    _close_rig()


@pytest.fixture(scope="session")
def rig_spec(pytestconfig: pytest.Config) -> RigSpec:
    """The rig file of ``--rig``, loaded and checked, without starting anything."""
    return configured_rig(pytestconfig)


def configured_rig(config: pytest.Config) -> RigSpec:
    """The rig file of ``--rig`` as the plugin loaded it at configuration (for collection hooks, which run
    before fixtures)."""
    return config.stash[_RIG_KEY]


@pytest.fixture(scope="session")
def clock(rig: Rig) -> Clock:
    """The rig's clock (real time on benches, scaled on emulated rigs)."""
    return rig.clock


@pytest.fixture(scope="session")
def plant(rig: Rig) -> Plant:
    """The physics behind the emulators (emulated rigs only)."""
    if rig.plant is None:
        pytest.skip(f"rig {rig.spec.name!r} is a real bench: there is no emulated plant")
    return rig.plant


def _open(opener: Any, *args: Any) -> Any:
    try:
        return opener(*args)
    except (InstrumentError, LookupError) as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture
def power_source(rig: Rig) -> Iterator[PowerSource]:
    """The rig's first power source; left in its verified safe state after the test, its SCPI transcript
    attached to the report."""
    if not rig.spec.power_sources:
        pytest.skip(f"rig {rig.spec.name!r} has no power source")
    source = _open(rig.power_source)
    since = time.time()
    try:
        yield source
    finally:
        try:
            source.safe_state()
        finally:
            transcripts.attach(f"SCPI {source.name}", transcripts.scpi(source, since))


@pytest.fixture
def power_sources(rig: Rig) -> Iterator[dict[str, PowerSource]]:
    """Every power source of the rig by name; all left in their verified safe state after the test."""
    sources = {s.name: _open(rig.power_source, s.name) for s in rig.spec.power_sources}
    since = time.time()
    try:
        yield sources
    finally:
        failures = {name: err for name, err in rig.safe_state().items() if err}
        for name, source in sources.items():
            transcripts.attach(f"SCPI {name}", transcripts.scpi(source, since))
        if failures:
            pytest.fail(f"safe state not verified: {failures}", pytrace=False)


@pytest.fixture
def meter(rig: Rig) -> Iterator[EnergyMeter]:
    """The rig's first energy meter (its Modbus transcript attached to the report)."""
    if not rig.spec.meters:
        pytest.skip(f"rig {rig.spec.name!r} has no meter")
    instance = _open(rig.meter)
    since = time.time()
    yield instance
    transcripts.attach(f"Modbus {instance.name}", transcripts.modbus(instance, since))


@pytest.fixture
def meters(rig: Rig) -> Iterator[dict[str, EnergyMeter]]:
    """Every energy meter of the rig by name."""
    instances = {m.name: _open(rig.meter, m.name) for m in rig.spec.meters}
    since = time.time()
    yield instances
    for name, instance in instances.items():
        transcripts.attach(f"Modbus {name}", transcripts.modbus(instance, since))


@pytest.fixture
def ev(rig: Rig) -> Iterator[EVSimulator]:
    """The rig's first EV simulator (its CAN traffic attached to the report in candump format)."""
    if not rig.spec.ev_simulators:
        pytest.skip(f"rig {rig.spec.name!r} has no EV simulator")
    instance = _open(rig.ev)
    since = time.time()
    yield instance
    transcripts.attach(f"CAN {instance.name} (candump)", transcripts.candump(instance, since), "log")


@pytest.fixture
def evs(rig: Rig) -> Iterator[dict[str, EVSimulator]]:
    """Every EV simulator of the rig by name."""
    instances = {e.name: _open(rig.ev, e.name) for e in rig.spec.ev_simulators}
    since = time.time()
    yield instances
    for name, instance in instances.items():
        transcripts.attach(f"CAN {name} (candump)", transcripts.candump(instance, since), "log")


@pytest.fixture
def monitor(rig: Rig, pytestconfig: pytest.Config, measurements: Measurements,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Monitor]:
    """The load-limit monitor on the rig's reference meter (``ref``, else ``site``), sampling at
    ``--monitor-hz`` of the rig's clock from the start of the test, against the rig's site limit. Tell it
    about limit changes (``set_limit``) and events (``log``); after the test its plot and samples are
    attached, and ``monitor.judge(settling_s)`` gives the compliance verdict."""
    names = {m.name for m in rig.spec.meters}
    reference = "ref" if "ref" in names else "site"
    if reference not in names:
        pytest.skip(f"rig {rig.spec.name!r} has no meter named ref or site for the monitor")
    folder = measurements.figure_dir.parent / "traces" if measurements.figure_dir else tmp_path_factory.mktemp("traces")
    instance = Monitor(_open(rig.meter, reference), rig.clock, rig.spec.site.limit_a,
                       rate_hz=pytestconfig.getoption("--monitor-hz"), trace=folder / f"monitor-{time.time_ns()}.csv")
    with instance:
        yield instance
    import matplotlib.pyplot as plt

    fig = instance.plot(f"site current at {reference}")
    measurements.figure(fig, "site current against the limit")
    plt.close(fig)
    if instance.trace is not None and instance.trace.is_file():
        transcripts.attach("reference meter samples", instance.trace.read_text(), "csv")
