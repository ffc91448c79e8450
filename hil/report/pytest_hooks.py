"""The reporting half of the evhil pytest plugin: Allure labels, failure origins, measurements, the run
record and the Allure environment and categories.

``hil.plugin`` registers ``ReportHooks`` and exposes the ``measurements`` fixture. With ``--run-dir DIR``
(``hil run`` passes it) the run journal and run record are written into DIR; with ``--alluredir`` every
test gets epic / feature / story (area / profile / test case, where the test sets none), a severity, the
rig as a parameter, and on failure the ``origin`` label and the matching status (``failed`` for the
device under test, ``broken`` for rig and test errors); ``environment.xml`` and ``categories.json`` are
written next to the results at the end. Under pytest-xdist the workers judge and the controller writes.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

import allure_commons
import pytest

from hil.report.categories import allure2_categories, rig_trace_note
from hil.report.environment import host, instrument_identities, rig_environment, versions, write_environment_xml
from hil.report.failure_origin import Origin, failure_origin, rig_cause
from hil.report.measurement import Measurements, slug
from hil.report.run_record import JOURNAL, RECORD, Journal, write_record
from hil.rig.model import RigSpec

_MEASUREMENTS = pytest.StashKey[Measurements]()
_ORIGIN = pytest.StashKey[Origin]()
MESSAGE_LIMIT = 4000
STATUS_S = 1.0
"""How often the journal gets a ``status`` event (running rigs, their clocks, injected faults) [s]."""
"""Longest failure message kept in the run record [characters]."""
PROPERTY = "hil"
"""Name of the JUnit property (``report.user_properties``) carrying a test's record: JSON."""


def add_options(group: Any) -> None:
    """The reporting options (call from ``pytest_addoption``)."""
    group.addoption(
        "--run-dir", action="store", default=None, metavar="DIR",
        help="write the run journal and run record (run-record.json) of this run into DIR",
    )


@pytest.fixture
def measurements(request: pytest.FixtureRequest) -> Measurements:
    """Record measurements (name, value, unit, limits) and figures of this test; see ``hil.report``."""
    item = request.node
    recorder = item.stash.get(_MEASUREMENTS, None)
    if recorder is None:
        run_dir = request.config.getoption("--run-dir")
        figure_dir = Path(run_dir) / "figures" / slug(item.nodeid) if run_dir else None
        recorder = Measurements(item.nodeid, figure_dir)
        item.stash[_MEASUREMENTS] = recorder
    return recorder


def describe(item: pytest.Item) -> tuple[str, str, str]:
    """Area, profile and test case of a test: its Allure epic, feature and story when it sets them,
    otherwise the suite folder (``suites/<area>/``), the module and the test's name."""
    labels: dict[str, str] = {}
    for mark in item.iter_markers(name="allure_label"):
        kind = mark.kwargs.get("label_type")
        if kind in ("epic", "feature", "story") and kind not in labels and mark.args:
            labels[kind] = str(mark.args[0])
    path = Path(item.path)
    try:
        parts = path.relative_to(item.config.rootpath).parts
    except ValueError:  # a suite outside the project: its folder and file
        parts = path.parts[-2:]
    folder = parts[1] if len(parts) > 2 and parts[0] == "suites" else (parts[-2] if len(parts) > 1 else "tests")
    module = path.stem.removeprefix("test_")
    area = labels.get("epic") or _words(folder)
    profile = labels.get("feature") or _words(module)
    case = labels.get("story") or item.name
    return area, profile, case


def _words(name: str) -> str:
    text = name.replace("_", " ").strip()
    return text[:1].upper() + text[1:]


class ReportHooks:
    """Registered once per pytest process by ``hil.plugin``."""

    def __init__(self, config: pytest.Config, spec: RigSpec, rig_file: Path | str,
                 running_rig: Callable[[], Any | None]) -> None:
        self.config = config
        self.spec = spec
        self.rig_file = rig_file
        self.running_rig = running_rig
        self.worker = hasattr(config, "workerinput")
        run_dir = config.getoption("--run-dir")
        self.run_dir = Path(run_dir) if run_dir else None
        self.journal: Journal | None = None
        self._phases: dict[str, dict[str, Any]] = {}
        self._current: str | None = None
        self._attachments: dict[str, list[dict[str, Any]]] = {}
        self._pending: dict[int, tuple[str, str | None]] = {}
        self._identities: dict[str, str] | None = None
        self._instruments: dict[str, str] = {}
        allure_commons.plugin_manager.register(self, f"hil-report-{id(self)}")
        config.add_cleanup(lambda: allure_commons.plugin_manager.unregister(self, f"hil-report-{id(self)}"))

    # -- where things go ----------------------------------------------------------------------------
    @property
    def alluredir(self) -> Path | None:
        value = getattr(self.config.option, "allure_report_dir", None)
        return Path(value) if value else None

    def _relative(self, path: Path) -> str:
        if self.run_dir is not None:
            try:
                return str(path.resolve().relative_to(self.run_dir.resolve()))
            except ValueError:
                pass
        return str(path)

    def _allure_result(self) -> Any | None:
        """The Allure test result being written for the current test (allure-pytest's own object)."""
        listener = self.config.pluginmanager.get_plugin("allure_listener")
        try:
            return listener.allure_logger.get_test(None) if listener is not None else None
        except (AttributeError, KeyError):
            return None

    # -- session ------------------------------------------------------------------------------------
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        if self.worker or self.run_dir is None:
            return
        from hil import __version__

        self.run_dir.mkdir(parents=True, exist_ok=True)
        for stale in (self.run_dir / JOURNAL, self.run_dir / RECORD):
            stale.unlink(missing_ok=True)
        self.journal = Journal(self.run_dir / JOURNAL)
        artefacts = {"journal": JOURNAL, "record": RECORD}
        junit = getattr(self.config.option, "xmlpath", None)
        if junit:
            artefacts["junit"] = self._relative(Path(junit))
        if self.alluredir is not None:
            artefacts["allure_results"] = self._relative(self.alluredir)
        run = {
            "id": self.run_dir.name,
            "rig": {"name": self.spec.name, "file": str(self.rig_file), "emulated": self.spec.emulated,
                    "clock_scale": self.spec.clock.scale},
            "evhil_version": __version__,
            "arguments": [str(a) for a in self.config.invocation_params.args],
        }
        self.journal.write("run_start", run=run, artefacts=artefacts,
                           environment={**rig_environment(self.spec, self.rig_file), **versions()})
        self._heartbeat = threading.Thread(target=self._beat, args=(self.journal,), name="hil-status", daemon=True)
        self._heartbeat.start()

    def _beat(self, journal: Journal) -> None:
        """Every ``STATUS_S`` while the run goes: the running rigs' clocks, instruments and injected faults."""
        from hil.rig.rig import Rig

        while self.journal is journal:
            rigs = [r.status() for r in Rig.running()]
            if rigs:
                journal.write("status", rigs=rigs)
            time.sleep(STATUS_S)

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        if self.journal is not None and not self.config.pluginmanager.has_plugin("dsession"):
            self.journal.write("collected", total=len(session.items))

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node: Any, ids: list[str]) -> None:
        if self.journal is not None:
            self.journal.write("collected", total=len(ids))

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        """Before the rig closes: identify the instruments, write the environment and categories."""
        if self.worker:
            return
        environment = self.environment()
        if self.alluredir is not None:
            write_environment_xml(environment, self.alluredir)
            (self.alluredir / "categories.json").write_text(json.dumps(allure2_categories(), indent=2))
        if self.journal is not None and self.run_dir is not None:
            self.journal.write("run_finish", exit_status=int(exitstatus), environment=environment)
            self.journal.close()
            self.journal = None
            write_record(self.run_dir)

    def environment(self) -> dict[str, str]:
        """Rig, instruments (when the rig ran), device under test, host and package versions."""
        out = rig_environment(self.spec, self.rig_file)
        return {**out, **self._instruments, **versions(), **host()}

    # -- one test -----------------------------------------------------------------------------------
    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_teardown(self, item: pytest.Item, nextitem: pytest.Item | None) -> None:
        """Before the last test's teardown closes the rig: ask its instruments who they are."""
        if nextitem is None and (self.run_dir is not None or self.alluredir is not None):
            rig = self.running_rig()
            if rig is not None:
                self._identities = instrument_identities(rig)

    def pytest_runtest_logstart(self, nodeid: str, location: Any) -> None:
        self._current = nodeid
        if self.journal is not None:
            self.journal.write("test_start", nodeid=nodeid)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Generator[None, object, object]:
        __tracebackhide__ = True
        result = yield
        recorder = item.stash.get(_MEASUREMENTS, None)
        if recorder is not None:
            recorder.check()
        return result

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        report = yield  # allure-pytest has filled in its result by now (this wrapper is outside its own)
        allure_result = self._allure_result()
        if report.failed and call.excinfo is not None and _ORIGIN not in item.stash:
            origin = failure_origin(call.excinfo.value, report.when)
            item.stash[_ORIGIN] = origin
            if allure_result is not None:
                self._mark_origin(allure_result, origin, call.excinfo.value)
        if report.when == "teardown":
            if allure_result is not None:
                self._default_labels(item, allure_result)
            if self.run_dir is not None:  # hil run: the record of this test, also a JUnit property
                report.user_properties = [*report.user_properties, (PROPERTY, json.dumps(self._payload(item, allure_result)))]
        return report

    def _mark_origin(self, result: Any, origin: Origin, exc: BaseException) -> None:
        from allure_commons.model2 import Label, Status

        result.labels.append(Label(name="origin", value=origin))
        if origin != "device under test" and result.status == Status.FAILED:
            result.status = Status.BROKEN
        cause = rig_cause(exc)
        if cause is not None and result.statusDetails is not None:
            result.statusDetails.trace = f"{result.statusDetails.trace or ''}\n\n{rig_trace_note(cause)}"

    def _default_labels(self, item: pytest.Item, result: Any) -> None:
        from allure_commons.model2 import Label, Parameter

        present = {label.name for label in result.labels}
        area, profile, case = describe(item)
        defaults = {"epic": area, "feature": profile, "story": case, "severity": "normal"}
        result.labels.extend(Label(name=k, value=v) for k, v in defaults.items() if k not in present)
        if not any(p.name == "rig" for p in result.parameters):
            result.parameters.append(Parameter(name="rig", value=self.spec.name))

    def _payload(self, item: pytest.Item, allure_result: Any | None) -> dict[str, Any]:
        recorder = item.stash.get(_MEASUREMENTS, None)
        artefacts = self._attachments.pop(item.nodeid, [])
        names = _attachment_names(allure_result) if allure_result is not None else {}
        for artefact in artefacts:  # attachments allure-pytest makes itself (captured output) pass no name
            source = Path(artefact["path"]).name
            if artefact["name"] == source and source in names:
                artefact["name"] = names[source]
        area, profile, case = describe(item)
        if allure_result is not None:  # labels the test set at run time (allure.dynamic) win
            labels = {label.name: label.value for label in reversed(allure_result.labels)}
            area, profile, case = (labels.get("epic", area), labels.get("feature", profile), labels.get("story", case))
        return {
            "area": area, "profile": profile, "case": case,
            "origin": item.stash.get(_ORIGIN, None),
            "measurements": [m.to_dict() for m in recorder.items] if recorder else [],
            "figures": [self._relative(p) for p in recorder.figures] if recorder else [],
            "parameters": dict(recorder.parameters) if recorder else {},
            "artefacts": artefacts,
            "instruments": self._identities or {},  # the last test only: how a worker tells the controller
        }

    # -- Allure attachments, to list them in the run record ------------------------------------------
    @property
    def _listing(self) -> bool:
        """Attachments are listed only where a run record and Allure results are both written."""
        return self.run_dir is not None and self.alluredir is not None

    @allure_commons.hookimpl(tryfirst=True)
    def attach_data(self, body: Any, name: str, attachment_type: Any, extension: Any) -> None:
        if self._listing:
            self._pending[id(body)] = (name, getattr(attachment_type, "mime_type", None))

    @allure_commons.hookimpl(tryfirst=True)
    def attach_file(self, source: Any, name: str, attachment_type: Any, extension: Any) -> None:
        if self._listing:
            self._pending[id(source)] = (name, getattr(attachment_type, "mime_type", None))

    @allure_commons.hookimpl
    def report_attached_data(self, body: Any, file_name: str) -> None:
        self._note_attachment(body, file_name)

    @allure_commons.hookimpl
    def report_attached_file(self, source: Any, file_name: str) -> None:
        self._note_attachment(source, file_name)

    def _note_attachment(self, key: Any, file_name: str) -> None:
        name, mime = self._pending.pop(id(key), (file_name, None))
        if self._current is None or not self._listing:
            return
        assert self.alluredir is not None
        path = self._relative(self.alluredir / file_name)
        self._attachments.setdefault(self._current, []).append({"name": name or file_name, "path": path, "type": mime})

    # -- the run record, on the process that writes it ----------------------------------------------
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if self.journal is None:
            return
        state = self._phases.setdefault(report.nodeid, {"phases": {}, "outcome": None, "message": None})
        state["phases"][report.when] = round(float(report.duration), 6)
        outcome = _outcome(report)
        if outcome is not None and state["outcome"] in (None, "passed", "xpassed"):  # the first failure stays
            state["outcome"] = outcome
            state["message"] = _message(report)
        if report.when != "teardown":
            return
        del self._phases[report.nodeid]
        payload: dict[str, Any] = {}
        for name, value in report.user_properties:
            if name == PROPERTY:
                payload = json.loads(value)
        self._instruments.update(payload.pop("instruments", {}))
        outcome = state["outcome"] or "passed"
        origin = payload.get("origin")
        test = {
            "nodeid": report.nodeid,
            "name": report.nodeid.split("::")[-1],
            "area": payload.get("area", ""), "profile": payload.get("profile", ""), "case": payload.get("case", ""),
            "outcome": outcome,
            "verdict": _verdict(outcome, origin),
            "origin": origin if outcome in ("failed", "error") else None,
            "duration_s": round(sum(state["phases"].values()), 6),
            "phases": state["phases"],
            "message": state["message"],
            "measurements": payload.get("measurements", []),
            "figures": payload.get("figures", []),
            "artefacts": payload.get("artefacts", []),
            "parameters": payload.get("parameters", {}),
        }
        self.journal.write("test", test=test)


def _attachment_names(node: Any) -> dict[str, str]:
    """Attachment file -> name in an Allure test result and its steps."""
    names = {a.source: a.name for a in getattr(node, "attachments", []) if a.name}
    for child in getattr(node, "steps", []):
        names.update(_attachment_names(child))
    return names


def _outcome(report: pytest.TestReport) -> str | None:
    """pytest's outcome of one phase in run-record words; ``None`` for a passed setup or teardown."""
    if hasattr(report, "wasxfail"):
        return "xfailed" if report.skipped else "xpassed"
    if report.skipped:
        return "skipped"
    if report.failed:
        return "failed" if report.when == "call" else "error"
    return "passed" if report.when == "call" else None


def _message(report: pytest.TestReport) -> str | None:
    if report.passed and not hasattr(report, "wasxfail"):
        return None
    if report.skipped and isinstance(report.longrepr, tuple):
        return str(report.longrepr[2]).removeprefix("Skipped: ")
    crash = getattr(report.longrepr, "reprcrash", None)
    text = (crash.message if crash is not None else str(report.longrepr or "")).strip()
    return text[:MESSAGE_LIMIT] if text else None


def _verdict(outcome: str, origin: str | None) -> str:
    if outcome in ("passed", "xpassed"):
        return "pass"
    if outcome in ("skipped", "xfailed"):
        return "skip"
    return "fail" if origin == "device under test" else "error"
