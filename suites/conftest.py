"""Shared by the load-limit and fault-recovery suites: which controllers run, and how a condition is run and
recorded.

A test asks for ``controller_name`` and gets one run per controller: those of ``--controller`` if given,
else its module's ``CONTROLLERS``. The negative control (plain plug-in, no coordination) is marked
expected-to-fail. ``judge(condition)`` runs the condition on the rig (an emulated site rig of the
condition's ports when ``--rig`` is emulated, the bench itself otherwise), records the verdict with its
measurements, plots and traces, and returns it.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from hil.site.conditions import Condition, SiteVerdict, controller_factory, record, run_condition
from hil.report.measurement import Measurements, slug
from hil.rig.model import RigSpec

NEGATIVE_CONTROL = "plain"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "controller_name" not in metafunc.fixturenames:
        return
    option = metafunc.config.getoption("--controller")
    names = [n.strip() for n in option.split(",") if n.strip()] if option else list(getattr(metafunc.module, "CONTROLLERS"))
    for name in names:
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


@pytest.fixture
def judge(rig_spec: RigSpec, request: pytest.FixtureRequest, measurements: Measurements,
          tmp_path_factory: pytest.TempPathFactory, controller_name: str) -> Callable[[Condition], SiteVerdict]:
    factory = controller_factory(controller_name)

    def run(condition: Condition) -> SiteVerdict:
        measurements.parameter("controller", controller_name)
        bench = None if rig_spec.emulated else request.getfixturevalue("rig")
        folder = measurements.figure_dir.parent / "traces" if measurements.figure_dir else tmp_path_factory.mktemp("traces")
        verdict = run_condition(condition, factory, rig=bench, trace=folder / f"{slug(request.node.nodeid)}.csv",
                                label=controller_name, rate_hz=request.config.getoption("--monitor-hz"))
        record(verdict, measurements)
        return verdict

    return run
