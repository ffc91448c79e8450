"""Shared by the load-limit and fault-recovery suites: which controllers run, and how a condition is run and
recorded.

A test asks for ``controller_name`` and gets one run per controller: those of ``--controller`` if given,
else its module's ``CONTROLLERS``; on a rig whose device under test is a site's load manager (``dut.kind:
site_controller``), that product (``dut``, run by ``hil.site.conditions.run_with_product``). The negative
control (plain plug-in, no coordination) is marked expected-to-fail. ``judge(condition)`` runs the condition on the rig (an emulated site rig of the
condition's ports when ``--rig`` is emulated, the bench itself otherwise), records the verdict with its
measurements, plots and traces, and returns it.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from hil.control import CommandControl, PromptControl, ServiceControl, SiteControl
from hil.ocpp.fixtures import capture_suspended
from hil.report.measurement import Measurements, slug
from hil.plugin import configured_rig
from hil.rig.model import DutSpec, RigSpec
from hil.site.conditions import (
    PRODUCT, Condition, SiteVerdict, Unfit, controller_factory, on_bench, record, run_condition, run_with_product,
)

NEGATIVE_CONTROL = "plain"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "controller_name" not in metafunc.fixturenames:
        return
    option = metafunc.config.getoption("--controller")
    product = _product(metafunc.config)
    if option:
        names = [n.strip() for n in option.split(",") if n.strip()]
    else:
        names = [PRODUCT] if product else list(getattr(metafunc.module, "CONTROLLERS"))
    reference = metafunc.config.getoption("--reference")
    if product and reference != "none":
        try:
            controller_factory(reference)
        except ValueError as exc:
            raise pytest.UsageError(f"--reference: {exc}") from None
    for name in names:
        if name == PRODUCT:
            if not product:
                raise pytest.UsageError(f"--controller {PRODUCT}: the rig's device under test is not a site load "
                                        "manager (dut.kind: site_controller)")
            continue
        try:
            controller_factory(name)
        except ValueError as exc:
            raise pytest.UsageError(f"--controller: {exc}") from None
    params = [
        pytest.param(name, id=name, marks=pytest.mark.xfail(
            strict=True, reason="plain plug-in has no coordination: the negative control must fail"))
        if name == NEGATIVE_CONTROL else pytest.param(name, id=name.rpartition(":")[2] or name)
        for name in names
    ]
    metafunc.parametrize("controller_name", params)


def _product(config: pytest.Config) -> bool:
    """Whether the rig of ``--rig`` names a site's load manager as the device under test."""
    return configured_rig(config).dut.kind == "site_controller"


def site_control(dut: DutSpec, config: pytest.Config) -> SiteControl:
    """How the suites tell a product under test the site limit: the rig file's adapter."""
    if dut.control.adapter == "command":
        return CommandControl(dict(dut.control.commands), dut.control.timeout_s)
    if dut.control.adapter == "prompt":
        return PromptControl(dut.control.timeout_s, suspend=capture_suspended(config))
    if dut.control.service_url is not None:
        return ServiceControl(dut.control.service_url, dut.control.timeout_s)
    raise pytest.UsageError("rig file: a site_controller is told its site limit through dut.control.adapter "
                            "'command', 'prompt' or 'service'")


@pytest.fixture
def judge(rig_spec: RigSpec, request: pytest.FixtureRequest, measurements: Measurements,
          tmp_path_factory: pytest.TempPathFactory, controller_name: str) -> Callable[[Condition], SiteVerdict]:

    def run(condition: Condition) -> SiteVerdict:
        measurements.parameter("controller", rig_spec.dut.name if controller_name == PRODUCT else controller_name)
        folder = measurements.figure_dir.parent / "traces" if measurements.figure_dir else tmp_path_factory.mktemp("traces")
        trace = folder / f"{slug(request.node.nodeid)}.csv"
        rate = request.config.getoption("--monitor-hz")
        if controller_name == PRODUCT:
            reference = request.config.getoption("--reference")
            verdict = run_with_product(condition, rig_spec.dut, site_control(rig_spec.dut, request.config),
                                       scale=rig_spec.clock.scale, trace=trace, rate_hz=rate,
                                       reference=None if reference == "none" else reference)
        else:
            bench = None if rig_spec.emulated else request.getfixturevalue("rig")
            if bench is not None:
                try:
                    condition = on_bench(condition, rig_spec, bench.plant is not None)
                except Unfit as exc:
                    pytest.skip(str(exc))
            verdict = run_condition(condition, controller_factory(controller_name), rig=bench, trace=trace, label=controller_name, rate_hz=rate)
        record(verdict, measurements)
        return verdict

    return run
