"""The ``hil`` command: check rigs, serve emulated rigs, scan for instruments, run suites."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
import yaml
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from hil.rig.loader import DEFAULT_RIG, RigFileError, load_rig
from hil.rig.model import RigSpec
from hil.rig.rig import Rig

ROOT = Path(__file__).resolve().parents[1]
SUITES = ROOT / "suites"

app = typer.Typer(
    help="evhil: hardware-in-the-loop testing and conformance checking of EV charging systems.",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
)
rig_app = typer.Typer(help="Work with rig files.", no_args_is_help=True)
app.add_typer(rig_app, name="rig")
# Tables keep their columns when the output goes to a file or a CI log (rich assumes 80 columns there).
out = Console(width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 200)

RigPath = Annotated[Path, typer.Argument(help="rig file (YAML), e.g. rigs/emulated.yaml", show_default=False)]


def _load(path: Path) -> RigSpec:
    try:
        return load_rig(path)
    except RigFileError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None


@rig_app.command("check")
def rig_check(path: RigPath) -> None:
    """Validate a rig file, then reach and identify every instrument in it.

    Power sources answer *IDN?, meters report model and serial, EV simulators must be heard on their CAN
    channel. Emulated instruments are started first. Exit status: 0 all identified, 1 some not, 2 bad file.
    """
    spec = _load(path)
    table = Table(title=f"rig {spec.name}", show_lines=False)
    for col in ("instrument", "role", "address", "result"):
        table.add_column(col)
    failed = 0
    with Rig(spec, path) as rig:
        addresses = {a.name: a for a in rig.addresses()}
        checks: list[tuple[str, str, Any]] = (
            [(s.name, "power source", lambda n=s.name: rig.power_source(n).identify()) for s in spec.power_sources]
            + [(m.name, "meter", lambda n=m.name: rig.meter(n).identify()) for m in spec.meters]
            + [(e.name, "EV simulator", lambda n=e.name: rig.ev(n).identify()) for e in spec.ev_simulators]
        )
        def check(identify: Any) -> tuple[bool, str]:
            try:
                return True, f"[green]ok[/green] {_describe(identify())}"
            except Exception as exc:  # noqa: BLE001 - every instrument gets a line with its reason
                return False, f"[red]FAILED[/red] {exc}"

        with ThreadPoolExecutor(max_workers=8) as pool:  # each instrument has its own lock and session
            results = list(pool.map(check, [identify for _, _, identify in checks]))
        for (name, role, _), (ok, result) in zip(checks, results):
            failed += not ok
            table.add_row(name, role, addresses[name].text, result)
    out.print(table)
    if failed:
        err.print(f"{failed} instrument(s) not identified")
        raise typer.Exit(1)


def _describe(identity: Any) -> str:
    for attr in ("summary", "raw"):
        value = getattr(identity, attr, None)
        if isinstance(value, str) and value:
            return value
    return str(identity)


@app.command()
def emulate(
    path: Annotated[Path, typer.Argument(help="rig file whose emulated instruments to serve")] = DEFAULT_RIG,
    as_json: Annotated[bool, typer.Option("--json", help="print exactly one JSON line with the addresses")] = False,
    rig_out: Annotated[
        Optional[Path], typer.Option(help="also write a rig file that reaches these emulators as real instruments")
    ] = None,
) -> None:
    """Serve the emulated instruments of a rig on 127.0.0.1 until Ctrl-C.

    Prints each address: VISA resource strings for power sources, Modbus host:port and unit for meters,
    socketcand host:port and channel for EV simulators. Point a charger controller under test, a vendor
    tool or another evhil (with --rig-out) at them.
    """
    spec = _load(path)
    if not spec.emulated:
        err.print(f"error: {path}: no instrument is marked emulated: nothing to serve")
        raise typer.Exit(2)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with Rig(spec, path) as rig:
        addresses = [a for a in rig.addresses() if _is_emulated(spec, a.name)]
        if rig_out is not None:
            rig_out.write_text(yaml.safe_dump(rig.resolved_spec().model_dump(mode="json"), sort_keys=False))
        if as_json:
            payload = {"rig": spec.name, "instruments": [{"name": a.name, "role": a.role, "address": a.text, **a.fields}
                                                         for a in addresses]}
            print(json.dumps(payload), flush=True)
        else:
            table = Table(title=f"serving rig {spec.name} (Ctrl-C stops)")
            for col in ("instrument", "role", "address"):
                table.add_column(col)
            for a in addresses:
                table.add_row(a.name, a.role, a.text)
            out.print(table)
            if rig_out is not None:
                out.print(f"rig file for these emulators: {rig_out}")
        while not stop.wait(0.2):
            pass
    if not as_json:
        out.print("stopped; every source left off")


def _is_emulated(spec: RigSpec, name: str) -> bool:
    return any(i.name == name and i.emulated for i in spec.instruments())


@app.command()
def scan(
    timeout: Annotated[float, typer.Option(help="seconds to spend per transport")] = 5.0,
) -> None:
    """List the VISA resources (pyvisa-py) and CAN interfaces (python-can) this machine can see.

    Use the strings it prints as `resource:` and `interface:`/`channel:` in a rig file.
    """
    import pyvisa

    table = Table(title="instruments visible from this machine")
    table.add_column("kind")
    table.add_column("address")
    try:
        rm = pyvisa.ResourceManager("@py")
        with warnings.catch_warnings():  # pyvisa-py nags about optional discovery packages
            warnings.simplefilter("ignore")
            resources = rm.list_resources("?*")
        for resource in resources:
            table.add_row("VISA", resource)
        rm.close()
    except Exception as exc:  # noqa: BLE001 - report and go on to CAN
        table.add_row("VISA", f"[red]scan failed:[/red] {exc}")
    result: list[dict[str, Any]] = []
    worker = threading.Thread(target=lambda: result.extend(_can_configs()), daemon=True)
    worker.start()
    worker.join(timeout)
    for config in result:
        table.add_row("CAN", f"interface={config.get('interface')} channel={config.get('channel')}")
    if worker.is_alive():
        table.add_row("CAN", f"[yellow]scan still running after {timeout:g} s; partial list[/yellow]")
    out.print(table)


def _can_configs() -> list[dict[str, Any]]:
    import can

    interfaces = [i for i in ("socketcan", "pcan", "kvaser", "vector", "ixxat", "slcan") if i in can.VALID_INTERFACES]
    configs: list[dict[str, Any]] = []
    for interface in interfaces:
        try:
            configs.extend(can.detect_available_configs(interfaces=[interface]))
        except Exception:  # noqa: BLE001 - a missing vendor library just means no such adapters
            continue
    return configs


EMULATED_WORKERS = 4
"""``hil run``'s pytest-xdist workers on an emulated rig."""


@app.command()
def run(
    suites: Annotated[Optional[list[Path]], typer.Argument(help="suite folders or test files (default: all suites)")] = None,
    rig_path: Annotated[Path, typer.Option("--rig", help="rig file")] = DEFAULT_RIG,
    reports: Annotated[Path, typer.Option(help="where runs write their output")] = Path("reports"),
    pytest_args: Annotated[Optional[list[str]], typer.Option("--pytest-arg", help="extra argument for pytest (repeatable)")] = None,
    html: Annotated[bool, typer.Option("--report/--no-report", help="build the HTML report at the end")] = True,
    progress: Annotated[Optional[bool], typer.Option(
        "--progress/--no-progress", help="live progress line (default: on a terminal, unless the rig prompts a person)",
        show_default=False)] = None,
    workers: Annotated[Optional[int], typer.Option(
        help="pytest-xdist workers (default: 4 on an emulated rig with evhil's own devices, whose tests mostly wait "
             "on its clock; 1 on a bench or with a product in the loop, which one test at a time may drive)",
        min=1, show_default=False)] = None,
) -> None:
    """Run suites against a rig and build the HTML report; print its path last.

    Writes under reports/<run>/: run-record.json (and its journal), junit.xml, allure-results/ and
    html/index.html. Live progress on a terminal.

    Exit status is pytest's (0 all passed, 1 failures), 2 for a bad rig file, 3 when every test passed
    but the HTML report could not be built.
    """
    from hil.report.progress import run_with_progress, wanted
    from hil.report.run_record import JOURNAL

    spec = _load(rig_path)
    run_dir = _new_run_dir(reports)
    targets = [str(p) for p in (suites or [SUITES])]
    live = wanted(sys.stdout) and spec.dut.control.adapter != "prompt" if progress is None else progress
    command = [
        sys.executable, "-m", "pytest", *targets, "--rig", str(rig_path), "-p", "no:cacheprovider",
        f"--junitxml={run_dir / 'junit.xml'}", f"--alluredir={run_dir / 'allure-results'}", f"--run-dir={run_dir}",
        "-q", f"--rootdir={ROOT}", *(["--color=yes"] if live else []), *(pytest_args or []),
    ]
    own = spec.emulated and spec.dut.kind in ("reference", "none")  # evhil's own devices only: no product to share
    parallel = workers if workers is not None else (EMULATED_WORKERS if own else 1)
    if parallel > 1:
        command += ["-n", str(parallel)]
    out.print(f"run {run_dir.name}: {' '.join(targets)} on rig {rig_path}", highlight=False)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if live:
        status = run_with_progress(command, run_dir / JOURNAL, out, env=env, clock_scale=spec.clock.scale if spec.emulated else None)
    else:
        status = subprocess.call(command, env=env)
    if status < 0:  # pytest was killed by a signal: say so the shell's way
        status = 128 - status
    _summarise(run_dir)
    out.print(f"results: {run_dir}/run-record.json, {run_dir}/junit.xml, {run_dir}/allure-results/", highlight=False)
    if html:
        if not _build_report(run_dir) and status == 0:
            status = 3
    raise typer.Exit(status)


def _new_run_dir(reports: Path) -> Path:
    """``reports/<YYYYmmdd-HHMMSS>``, with ``-2``, ``-3``... when a run of the same second exists."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for n in range(1, 1000):
        run_dir = reports / (stamp if n == 1 else f"{stamp}-{n}")
        try:
            run_dir.mkdir(parents=True)
            return run_dir
        except FileExistsError:
            continue
    raise RuntimeError(f"{reports}: cannot make a new run folder for {stamp}")


def _summarise(run_dir: Path) -> None:
    """One line from the run record (folded from the journal when the run did not finish)."""
    from hil.report.run_record import JOURNAL, RECORD, write_record

    record_path = run_dir / RECORD
    if not record_path.is_file():
        if not (run_dir / JOURNAL).is_file():
            err.print(f"error: {run_dir}: pytest wrote no run journal (did it start?)")
            return
        record_path = write_record(run_dir)
    record = json.loads(record_path.read_text())
    s = record["summary"]
    where = f", in {record['run']['interrupted_in']}" if record["run"]["interrupted_in"] else ""
    stopped = "" if record["run"]["complete"] else f" [red](run stopped early{where})[/red]"
    out.print(f"{s['total']} tests: [green]{s['pass']} passed[/green], [red]{s['fail']} failed[/red] (device under test), "
              f"[yellow]{s['error']} errors[/yellow] (rig or test), {s['skip']} skipped{stopped}", highlight=False)


def _build_report(run_dir: Path) -> bool:
    """Build the HTML report of ``run_dir`` and print its path; one error line when it cannot."""
    from hil.report.allure_html import ReportBuildError, build_html
    from hil.report.run_record import RECORD, add_artefact

    try:
        built = build_html(run_dir, log=lambda text: err.print(text, highlight=False))
    except ReportBuildError as exc:
        err.print(f"error: HTML report not built: {exc}", highlight=False, soft_wrap=True)
        return False
    if (run_dir / RECORD).is_file():
        add_artefact(run_dir, "html", str(built.index.relative_to(run_dir)))
        add_artefact(run_dir, "traceability", str(built.traceability.relative_to(run_dir)))
    out.print(f"requirements traceability: {built.traceability}", highlight=False, soft_wrap=True)
    out.print(f"HTML report (built in {built.seconds:.1f} s):", highlight=False)
    print(built.index, flush=True)  # alone on the last line, whatever the terminal width
    return True


@app.command()
def report(
    run_dir: Annotated[Optional[Path], typer.Argument(
        help="run folder (default: the newest under --reports)", show_default=False)] = None,
    reports: Annotated[Path, typer.Option(help="where runs write their output")] = Path("reports"),
) -> None:
    """Build the HTML report of a run with Allure 3 into <run>/html/ and print its path.

    A run that stopped early gets its run record from the journal first. Allure 3 (npm package allure)
    is installed with npm into evhil's cache on first use. Exit status 1 when the report cannot be built,
    2 when there is no such run.
    """
    from hil.report.run_record import JOURNAL, RECORD, write_record

    if run_dir is None:
        runs = sorted((d for d in reports.glob("*") if (d / "allure-results").is_dir() or (d / JOURNAL).is_file()),
                      key=lambda d: d.stat().st_mtime)
        if not runs:
            err.print(f"error: no run folder under {reports}/ (run hil run first, or name the folder)")
            raise typer.Exit(2)
        run_dir = runs[-1]
    if not run_dir.is_dir():
        err.print(f"error: {run_dir}: no such run folder")
        raise typer.Exit(2)
    if (run_dir / JOURNAL).is_file() and not _record_complete(run_dir / RECORD):
        write_record(run_dir)
    if not _build_report(run_dir):
        raise typer.Exit(1)


def _record_complete(path: Path) -> bool:
    try:
        return bool(json.loads(path.read_text())["run"]["complete"])
    except (OSError, ValueError, KeyError, TypeError):  # missing, cut short or not a run record: fold again
        return False


@app.command()
def compare(
    scenario: Annotated[str, typer.Option(help="scenario name in fixtures/scenarios, or a scenario file")] = "workplace",
    controllers: Annotated[str, typer.Option(help="comma-separated reference controllers")] = "plain,sequential,timer,parallel",
    capacity: Annotated[Optional[float], typer.Option(help="site limit as a fraction of nameplate (overrides the file)")] = None,
    seed: Annotated[Optional[int], typer.Option(help="session seed (overrides the file)")] = None,
    ports: Annotated[Optional[int], typer.Option(help="number of ports (overrides the file)")] = None,
    json_path: Annotated[Optional[Path], typer.Option("--json", help="also write the comparison as JSON here")] = None,
    plots: Annotated[Optional[Path], typer.Option(help="folder for the PNG plots (default reports/compare/SCENARIO)")] = None,
) -> None:
    """Run reference controllers through one scenario in memory and compare what they achieve.

    Columns: energy delivered (% of requested), sessions fully met, peak power, highest use of the limit,
    Jain's fairness, energy and demand cost, set-point changes per session-hour, control step time, the
    load-limit compliance verdict with its worst settling time, and simulation speed. Writes, per
    controller, plots of the site current against the limit and band, per-port current and energy.
    """
    from hil.controllers.reference import CONTROLLERS
    from hil.site.metrics import measure
    from hil.plots import run_plots
    from hil.site.scenarios import ScenarioError, load_scenario
    from hil.site.simulation import simulate

    names = [c.strip() for c in controllers.split(",") if c.strip()]
    unknown = [c for c in names if c not in CONTROLLERS]
    if unknown:
        err.print(f"error: unknown controller(s) {', '.join(unknown)}; known: {', '.join(CONTROLLERS)}")
        raise typer.Exit(2)
    try:
        spec = load_scenario(scenario, seed=seed, capacity=capacity, ports=ports)
    except ScenarioError as exc:
        err.print(f"error: {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    table = Table(title=f"{spec.name}: {spec.ports} ports, {len(spec.sessions)} sessions, limit {spec.limit_a:.0f} A/phase "
                  f"({100 * spec.limit_a / spec.nameplate_a:.0f} % of nameplate), seed {spec.seed}")
    columns = ("controller", "energy %", "met %", "peak kW", "max use %", "Jain", f"cost {spec.tariff.currency}",
               "changes/s-h", "step ms p95", "compliance", "settle s", "x real time")
    for col in columns:
        table.add_column(col, justify="left" if col in ("controller", "compliance") else "right")
    results = []
    plot_dir = plots or Path("reports") / "compare" / spec.name
    for name in names:
        run = simulate(spec, CONTROLLERS[name](spec))
        m = measure(run)
        results.append({**m.to_dict(), "plots": [str(p) for p in run_plots(run, plot_dir)]})
        c = m.compliance
        settle = "never" if c.worst_settling_s is None else f"{c.worst_settling_s:.0f}"
        table.add_row(
            f"{name} ({m.architecture})", f"{m.energy_pct:.1f}", f"{m.met_pct:.1f}", f"{m.peak_kw:.1f}",
            f"{m.max_utilisation_pct:.0f}", f"{m.jain:.3f}", f"{m.energy_cost + m.demand_cost:.2f}",
            f"{m.changes_per_session_hour:.2f}", f"{m.step_ms_p95:.3f}",
            "[green]PASS[/green]" if c.passed else f"[red]{c.verdict}[/red]", settle, f"{m.realtime_factor:,.0f}",
        )
    out.print(table)
    out.print(f"plots: {plot_dir}/")
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps({"schema": 1, "scenario": spec.name, "seed": spec.seed, "runs": results}, indent=2, default=float))
        out.print(f"written: {json_path}")


@app.command()
def recommend(
    use: Annotated[str, typer.Option(help="what the site is for: workplace, retail, residential or depot")] = "workplace",
    sessions: Annotated[int, typer.Option(help="concurrent sessions (ports) today", min=1)] = 20,
    capacity: Annotated[float, typer.Option(help="power constraint: site limit as a fraction of the ports' nameplate")] = 0.2,
    growth: Annotated[float, typer.Option(help="expected growth in ports (0.5 = half as many again)", min=0.0)] = 0.0,
    uptime: Annotated[str, typer.Option(help="normal, or high: must keep charging without a cloud connection")] = "normal",
    json_path: Annotated[Optional[Path], typer.Option("--json", help="also write the recommendation as JSON here")] = None,
) -> None:
    """Recommend a site architecture from measurements.

    Every reference controller runs on the scenario matching the site's use, size (with growth) and power
    constraint; the simplest one that passes the load-limit check and delivers within half a point of the
    best wins, unless a more complex one cuts the bill by 10 % or more without leaving sessions short.
    Prints the numbers behind the choice.
    """
    from hil.site.recommend import ARCHITECTURES, SiteProfile
    from hil.site.recommend import recommend as choose
    from hil.site.scenarios import ScenarioError

    if uptime not in ("normal", "high"):
        err.print(f"error: --uptime must be normal or high, not {uptime!r}")
        raise typer.Exit(2)
    try:
        result = choose(SiteProfile(use, sessions, capacity, growth, uptime))
    except ScenarioError as exc:
        err.print(f"error: {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    names = dict(ARCHITECTURES)
    table = Table(title=f"{use} site, {sessions} sessions (+{growth:.0%} growth), limit {capacity:.0%} of nameplate")
    for col in ("architecture", "energy %", "met %", "Jain", "cost", "compliance"):
        table.add_column(col, justify="left" if col in ("architecture", "compliance") else "right")
    for m in result.results:
        table.add_row(names[m.controller], f"{m.energy_pct:.1f}", f"{m.met_pct:.1f}", f"{m.jain:.3f}",
                      f"{m.energy_cost + m.demand_cost:.2f}", "PASS" if m.compliance.passed else m.compliance.verdict)
    out.print(table)
    out.print(f"recommended: [bold]{result.architecture}[/bold]")
    for reason in result.reasons:
        out.print(f"  - {reason}")
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps({"schema": 1, **result.to_dict()}, indent=2, default=float))


@app.command()
def precheck(
    declare: Annotated[Path, typer.Option("--declare", help="declaration file: what the product claims")],
    rig_path: Annotated[Path, typer.Option("--rig", help="rig file naming the device under test")] = DEFAULT_RIG,
    json_path: Annotated[Optional[Path], typer.Option("--json", help="also write the report as JSON here")] = None,
    reports: Annotated[Path, typer.Option(help="where runs write their output")] = Path("reports"),
    pytest_args: Annotated[Optional[list[str]], typer.Option("--pytest-arg", help="extra argument for pytest (repeatable)")] = None,
) -> None:
    """Certification pre-check: run the OCTT cases the declaration makes applicable, report per profile.

    Exit status 0 when no mandatory case failed, 1 otherwise, 2 for a bad rig or declaration file.
    """
    from hil.ocpp import precheck as pc
    from hil.ocpp.catalogue import DeclarationError, load_declaration

    _load(rig_path)
    try:
        declaration = load_declaration(declare)
        pc.suite_folder(declaration)
    except (DeclarationError, LookupError) as exc:
        err.print(f"error: {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    run_dir = reports / time.strftime("%Y%m%d-%H%M%S")
    report = pc.run(declaration, rig_path, run_dir, pytest_args)
    out.print(report.render(), highlight=False)
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(report.to_dict(), indent=2))
        out.print(f"written: {json_path}")
    raise typer.Exit(0 if report.ok else 1)


def _print_frame(cs_id: str, frame: Any) -> None:
    arrow = "->" if frame.direction == "sent" else "<-"
    kind = {2: "CALL", 3: "RESULT", 4: "ERROR"}.get(frame.message_type, "BAD")
    stamp = time.strftime("%H:%M:%S", time.localtime(frame.time)) + f".{int(frame.time * 1000) % 1000:03d}"
    body = json.dumps(frame.payload, separators=(",", ":"))
    out.print(f"{stamp} {cs_id} {arrow} {kind} {frame.action or '?'} {body}", markup=False, highlight=False,
              soft_wrap=True)
    out.file.flush()


@app.command()
def csms(
    rig_path: Annotated[Path, typer.Option("--rig", help="rig file: dut.charge_point_id, password, csms_host/port")] = DEFAULT_RIG,
    host: Annotated[Optional[str], typer.Option(help="listen address (default: the rig's dut.csms_host, 127.0.0.1)")] = None,
    port: Annotated[Optional[int], typer.Option(help="listen port (default: the rig's dut.csms_port; 0 = free)")] = None,
    any_id: Annotated[bool, typer.Option("--any", help="accept any charge point id, not only the rig's")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print exactly one JSON line with the URL, then the log")] = False,
    operator_port: Annotated[Optional[int], typer.Option(
        "--operator-port", help="serve the operator interface (POST /<charge point id>/<action>, see `hil do`) "
                                "on this port (0 = free); default: none", min=0, max=65535)] = None,
    operator_host: Annotated[str, typer.Option("--operator-host", help="address of the operator interface")] = "127.0.0.1",
) -> None:
    """Run evhil's CSMS standalone: print its URL, log every OCPP message, until Ctrl-C.

    Point a real charger at it (OCPP 1.6J or 2.0.1, chosen by subprotocol) to watch what it sends. With
    --operator-port, its operator console takes requests over HTTP (remote start, reset, configuration,
    charging profiles...: ``hil.ocpp.operator_port``), e.g.
    ``hil do http://127.0.0.1:9401/EVHIL-CP1/remote_start connector:=1 token=EVHILVALID01``.
    """
    import asyncio

    from hil.ocpp.csms import CSMS
    from hil.ocpp.operator_port import operator_port as make_operator_port

    dut = _load(rig_path).dut
    allowed = None if any_id else {dut.charge_point_id: dut.password}

    async def serve() -> None:
        server = CSMS(host or dut.csms_host, dut.csms_port if port is None else port, charge_points=allowed)
        try:
            await server.start()
        except OSError as exc:
            err.print(f"error: cannot listen on {server.host}:{server.port}: {exc.strerror or exc}", markup=False)
            raise typer.Exit(2) from None
        op_port = None
        if operator_port is not None:
            op_port = make_operator_port(server, operator_host, operator_port)
            try:
                await op_port.start()
            except OSError as exc:
                await server.stop()
                err.print(f"error: --operator-port: cannot listen on {operator_host}:{operator_port}: "
                          f"{exc.strerror or exc}", markup=False)
                raise typer.Exit(2) from None
        if as_json:
            print(json.dumps({"url": server.url, "charge_points": sorted(allowed) if allowed else None,
                              "operator": op_port.url if op_port else None}), flush=True)
        else:
            out.print(f"CSMS listening on {server.url} (charge points connect to {server.url}<id>); Ctrl-C stops",
                      markup=False, highlight=False)
            if op_port is not None:
                out.print(f"operator interface on {op_port.url}/<charge point id>/<action> "
                          f"(`hil do`; GET {op_port.url}/ lists the actions)", markup=False, highlight=False)
        watched: set[str] = set()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        while not stop.is_set():
            for cs_id, session in server.sessions.items():
                if cs_id not in watched:
                    watched.add(cs_id)
                    for frame in session.trace.frames:
                        _print_frame(cs_id, frame)
                    session.trace.listen(lambda f, i=cs_id: _print_frame(i, f))
            try:
                await asyncio.wait_for(stop.wait(), 0.2)
            except asyncio.TimeoutError:
                pass
        if op_port is not None:
            await op_port.stop()
        await server.stop()

    asyncio.run(serve())


@app.command("charge-point")
def charge_point(
    csms_url: Annotated[str, typer.Option("--csms", help="CSMS base URL, e.g. ws://127.0.0.1:9000/ocpp/")],
    cs_id: Annotated[str, typer.Option("--id", help="charge point id (appended to the URL)")] = "EVHIL-CP1",
    rig_path: Annotated[Path, typer.Option("--rig", help="emulated rig whose ports are the connectors")] = DEFAULT_RIG,
    connectors: Annotated[int, typer.Option(help="number of connectors (the rig's first ports)", min=1)] = 1,
    password: Annotated[Optional[str], typer.Option(help="basic-auth password (security profile 1)")] = None,
    ca: Annotated[Optional[Path], typer.Option(help="CA certificate to trust for wss:// (security profile 2)")] = None,
    ocpp: Annotated[str, typer.Option("--ocpp", help="OCPP version: 1.6 (charge point) or 2.0.1 (charging station)")] = "1.6",
    settings: Annotated[Optional[list[str]], typer.Option("--set", help="KEY=VALUE: a 1.6 configuration key or a 2.0.1 "
                                                          "device-model variable (Component.Variable\\[instance]) it is built with (repeatable)")] = None,
    control_port: Annotated[Optional[int], typer.Option(help="serve the test-mode service port on 127.0.0.1:N (0 = a free port; "
                                                        "default: none)", min=0, max=65535)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print exactly one JSON line (id, control URL...) first, then the log")] = False,
    rig_out: Annotated[Optional[Path], typer.Option(help="also write the rig file through which the suites reach this charger "
                                                    "(needs --control-port)")] = None,
) -> None:
    """Run evhil's OCPP 1.6J charge point emulator (or, with --ocpp 2.0.1, its charging station emulator)
    against a CSMS, logging every message, until Ctrl-C.

    Its connectors (EVSEs) are ports of the rig's plant, so the port meters measure what its transactions
    report. With --control-port it has a charger's test mode: POST /<action> for every control-seam action
    (plug_in, present_token, cut_network, power_off, ev_suspend, bay_enter...), /factory_reset (factory
    settings, switched off until power_on) and /status; `hil do URL/<action> key:=value` calls them. With
    --rig-out it also writes the rig file for `hil run suites/ocpp16 --rig FILE`: the command adapter on
    that port and its port meters served over Modbus TCP.
    """
    import asyncio
    import logging

    from hil.ocpp.bench_charger import BenchCharger, hil_do, suite_rig
    from hil.ocpp.charge_point import ChargePoint
    from hil.ocpp.charging_station import ChargingStation
    from hil.ocpp.outlet import Outlet
    from hil.ocpp.tls import client_context
    from hil.service_port import ServicePort

    spec = _load(rig_path)
    logging.basicConfig(format="%(asctime)s %(message)s", datefmt="%H:%M:%S", level=logging.WARNING)
    logging.getLogger("hil.ocpp.uplink").setLevel(logging.INFO)  # say why a connection attempt failed
    if not spec.emulated or len(spec.ports) < connectors:
        err.print(f"error: {rig_path}: needs an emulated rig with at least {connectors} port(s)", markup=False)
        raise typer.Exit(2)
    emulators = {"1.6": ChargePoint, "2.0.1": ChargingStation}
    if ocpp not in emulators:
        err.print(f"error: --ocpp {ocpp}: evhil emulates OCPP {' and '.join(emulators)}", markup=False)
        raise typer.Exit(2)
    if rig_out is not None and control_port is None:
        err.print("error: --rig-out: the suites drive the charger through its service port; add --control-port 0")
        raise typer.Exit(2)
    seeds: dict[str, str] = {}
    for item in settings or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            err.print(f"error: --set {item}: expected KEY=VALUE", markup=False)
            raise typer.Exit(2)
        seeds[key] = value
    seed_name = "configure" if ocpp == "1.6" else "variables"
    tls = client_context(ca) if ca else None

    with Rig(spec, rig_path) as rig:
        assert rig.plant is not None
        outlets = [Outlet(rig.plant, p.name) for p in spec.ports[:connectors]]

        async def emulate_cp() -> None:
            def make() -> Any:
                return emulators[ocpp](cs_id, csms_url, outlets, password=password, tls=tls, **{seed_name: seeds})

            try:
                charger = BenchCharger(make, outlets, lambda frame: _print_frame(cs_id, frame))
            except KeyError as exc:
                err.print(f"error: --set: {exc.args[0]}", markup=False)
                raise typer.Exit(2) from None
            port = None
            if control_port is not None:
                try:
                    port = await ServicePort(charger.actions(), port=control_port).start()
                except OSError as exc:
                    err.print(f"error: --control-port {control_port}: cannot listen on 127.0.0.1: {exc.strerror or exc}",
                              markup=False)
                    raise typer.Exit(2) from None
            if rig_out is not None and port is not None:
                try:
                    suite = suite_rig(rig, ocpp=ocpp, charge_point_id=cs_id, csms_url=csms_url, connectors=connectors,
                                      control_url=port.url, password=password, do=hil_do())
                except ValueError as exc:
                    err.print(f"error: --rig-out {rig_out}: {exc}", markup=False)
                    raise typer.Exit(2) from None
                rig_out.write_text(yaml.safe_dump(suite.model_dump(mode="json", exclude_defaults=True), sort_keys=False))
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            if as_json:
                print(json.dumps({"charge_point": cs_id, "ocpp": ocpp, "csms": csms_url,
                                  "control": port.url if port else None,
                                  "rig": str(rig_out) if rig_out else None}), flush=True)
            else:
                out.print(f"charge point {cs_id} connecting to {csms_url.rstrip('/')}/{cs_id}; Ctrl-C stops",
                          markup=False, highlight=False)
                if port is not None:
                    out.print(f"test mode: {port.url}/<action> (`hil do {port.url}/plug_in connector:=1`)",
                              markup=False, highlight=False)
                if rig_out is not None:
                    out.print(f"rig file for the suites: {rig_out}", markup=False, highlight=False)
            await charger.start()
            try:
                await stop.wait()
            finally:
                if port is not None:
                    await port.stop()
                await charger.stop()

        asyncio.run(emulate_cp())


SELFTEST_FAMILIES = ("site", "ocpp16", "ocpp201", "csms")


@app.command()
def selftest(
    family: Annotated[Optional[str], typer.Option(
        help=f"comma-separated families to run: {', '.join(SELFTEST_FAMILIES)} (default: all)")] = None,
    catalogues: Annotated[Path, typer.Option(help="folder of the catalogues of defects and legal variants")] = ROOT / "tests",
    names: Annotated[Optional[str], typer.Option(help="comma-separated defects or variants (default: every one)")] = None,
    quick: Annotated[bool, typer.Option("--quick", help="each legal variant only through the tests its difference "
                                                        "touches (default: through whole suites)")] = False,
    reports: Annotated[Path, typer.Option(help="where runs write their output")] = Path("reports"),
    workers: Annotated[int, typer.Option(help="pytest-xdist workers of the site suites, and OCPP runs at a time (half "
                                              "as many, rounded up, beside the site suites)", min=1)] = 4,
    json_path: Annotated[Optional[Path], typer.Option("--json", help="also write the table as JSON here")] = None,
) -> None:
    """Sensitivity of the suites: run them against every seeded defect (site controllers, OCPP 1.6 charge
    points, 2.0.1 charging stations, Central Systems) and every legal but unusual variant, and print one
    table: per defect the tests that caught it and how fast, per legal variant its false failures.

    Exit status 0 when every defect was caught by every test expected to catch it and no legal variant
    failed, 1 otherwise, 2 for a bad catalogue or family.
    """
    from hil import sensitivity
    from hil.ocpp import selftest as ocpp_selftest
    from hil.site import selftest as site_selftest

    chosen = [f.strip() for f in (family or ",".join(SELFTEST_FAMILIES)).split(",") if f.strip()]
    unknown = [f for f in chosen if f not in SELFTEST_FAMILIES]
    if unknown:
        err.print(f"error: unknown family {', '.join(unknown)}; known: {', '.join(SELFTEST_FAMILIES)}", highlight=False)
        raise typer.Exit(2)
    wanted = {n.strip() for n in names.split(",") if n.strip()} if names else None
    run_dir = _new_run_dir(reports)
    started = time.monotonic()
    try:
        with ThreadPoolExecutor(max_workers=2) as pool:
            site = pool.submit(site_selftest.run, catalogues, run_dir / "site", names=wanted, quick=quick,
                               workers=workers) if "site" in chosen else None
            ocpp = [f for f in chosen if f != "site"]
            rows = ocpp_selftest.run(catalogues, run_dir / "ocpp", families=ocpp, names=wanted, quick=quick,
                                     workers=(workers + 1) // 2 if site is not None else workers) if ocpp else []
            rows = (site.result() if site is not None else []) + rows
    except (ValueError, RuntimeError) as exc:
        err.print(f"error: {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    table = Table(title=f"suite sensitivity ({'quick: expected tests only' if quick else 'full'})")
    for column in ("family", "defect or legal variant", "caught by / failed", "time to detection", "verdict"):
        table.add_column(column)
    for row in sensitivity.table_rows(rows):
        table.add_row(*(escape(cell) for cell in row))
    out.print(table)
    counts = sensitivity.totals(rows)
    out.print(f"{counts['caught']} of {counts['defects']} defects caught, {counts['legal variants']} legal variants with "
              f"{counts['false failures']} false failures, in {time.monotonic() - started:.0f} s; details: {run_dir}",
              highlight=False)
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps({"rows": [r.to_dict() for r in rows], "totals": counts}, indent=2))
    raise typer.Exit(0 if rows and all(r.ok for r in rows) else 1)


@app.command("do")
def do(
    url: Annotated[str, typer.Argument(help="the action's address on a service port, e.g. http://127.0.0.1:9402/plug_in")],
    values: Annotated[Optional[list[str]], typer.Argument(help="the action's values: key=text or key:=json",
                                                          show_default=False)] = None,
    timeout: Annotated[float, typer.Option(help="seconds to wait for the answer")] = 60.0,
) -> None:
    """Ask a service port (``hil charge-point --control-port``, ``hil csms --operator-port``, a product's
    own) to carry out one action and print its result as JSON: the command a rig file's ``command``
    adapter runs. Exit status 1 with the device's message when it refuses or fails."""
    from hil.service_port import ServicePortError, call, parse_values

    try:
        result = call(url, timeout=timeout, **parse_values(values or []))
    except (ServicePortError, ValueError) as exc:
        err.print(f"error: {escape(str(exc))}", highlight=False)
        raise typer.Exit(1) from None
    print(json.dumps(result))


if __name__ == "__main__":
    app()
