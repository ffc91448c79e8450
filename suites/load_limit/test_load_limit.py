"""Load-limit compliance: does the site stay inside its limit when the limit, the EVs or the building
change? Each condition runs with every reference controller through the rig's drivers (power sources over
SCPI, meters over Modbus, EVs over CAN) and is judged on the reference meter, sampled at 10 Hz, with the
controller's settling time (``hil.compliance.check``), and by the session rules every condition carries
(``hil.compliance.sessions``): a set point is 0 or at least 6 A (IEC 61851-1), and no session waits while the
site idles with room for it. Allocation policy is the controller's own: every reference controller, one
session at a time (``sequential``, ``timer``), equal or weighted shares (``parallel``, ``priority``) or planned
(``adaptive``), passes. Plain plug-in is the negative control: it must fail.

The site: four 22 kW ports (32 A per phase) behind a feeder of 80 A per phase unless a condition says
otherwise, so four EVs want more than the feeder has.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from hil.site.conditions import Condition, SiteVerdict, ev, site
from hil.site.scenarios import GridEvent

CONTROLLERS = ("plain", "sequential", "timer", "parallel", "priority", "adaptive")
LIMIT_A = 80.0
Judge = Callable[[Condition], SiteVerdict]

CONDITIONS = {
    "limit_step_down": Condition(
        "limit step down", "within 10 s of the step to 60 % the site is inside the new band, and stays there",
        site("limit-step-down", [ev(p) for p in range(4)], limit_a=LIMIT_A, duration_s=55,
             events=(GridEvent("limit_step", 25.0, fraction=0.6),)),
        trigger_s=25.0),
    "limit_step_up": Condition(
        "limit step down and up", "the site follows the limit down to 50 % and back up without leaving the band",
        site("limit-step-up", [ev(p) for p in range(4)], limit_a=LIMIT_A, duration_s=60,
             events=(GridEvent("limit_step", 20.0, fraction=0.5), GridEvent("limit_step", 40.0, fraction=2.0))),
        trigger_s=20.0),
    "demand_response_with_notice": Condition(
        "demand response with notice", "a 35 % reduction announced 15 s ahead: inside the reduced limit when it "
        "starts (settling time 0 s)",
        site("dr-notice", [ev(p) for p in range(4)], limit_a=LIMIT_A, duration_s=60,
             events=(GridEvent("demand_response", 35.0, duration=15.0, fraction=0.35, notice=15.0),)),
        trigger_s=35.0),
    "demand_response_without_notice": Condition(
        "demand response without notice", "a 35 % reduction without notice: back inside within the settling time",
        site("dr-no-notice", [ev(p) for p in range(4)], limit_a=LIMIT_A, duration_s=55,
             events=(GridEvent("demand_response", 25.0, duration=20.0, fraction=0.35),)),
        trigger_s=25.0),
    "unmanaged_load_step": Condition(
        "unmanaged load step", "the building draws 30 % of the limit more; the EVs give way within the settling time",
        site("unmanaged-step", [ev(p) for p in range(4)], limit_a=LIMIT_A, duration_s=55, unmanaged_a=4.0,
             events=(GridEvent("unmanaged_step", 25.0, fraction=0.3),)),
        trigger_s=25.0),
    "single_phase_imbalance": Condition(
        "per-phase imbalance", "three single-phase EVs on L1 and one three-phase EV: L1 stays inside its own limit",
        site("imbalance", [ev(0, phases=(0,)), ev(1, phases=(0,)), ev(2, phases=(0,)), ev(3)], limit_a=60.0,
             duration_s=40),
        trigger_s=0.0, min_ports=2, wiring=True),
    "scarcity": Condition(
        "scarcity below the minimum current", "the limit drops to 25 %, 5 A per EV if shared equally: sessions pause "
        "rather than being offered less than 6 A, and the site is inside the new band within the settling time",
        site("scarcity", [ev(p) for p in range(4)], limit_a=LIMIT_A, duration_s=45,
             events=(GridEvent("limit_step", 20.0, fraction=0.25),)),
        trigger_s=20.0, min_ports=2),
    "arrivals": Condition(
        "arrivals at full headroom", "one EV alone charges; a second one takes the rest of the feeder; two more "
        "arrive while the feeder is fully used, and the site stays inside the band",
        site("arrivals", [ev(0), ev(1, 10.0), ev(2, 25.0), ev(3, 40.0)], limit_a=60.0, duration_s=60),
        trigger_s=25.0, min_ports=3),
    "short_sessions": Condition(
        "short sessions in turn", "four EVs that each want 0.08 kWh arrive 5 s apart behind a 40 A feeder: each is "
        "served in the controller's order, and none waits while the site idles",
        site("short-sessions", [ev(p, 5.0 * p, energy_kwh=0.08) for p in range(4)], limit_a=40.0, duration_s=110),
        trigger_s=0.0, min_ports=2),
}


@pytest.mark.parametrize("condition", CONDITIONS.values(), ids=CONDITIONS.keys())
def test_site_stays_inside_the_limit(condition: Condition, controller_name: str, judge: Judge) -> None:
    verdict = judge(condition)
    assert verdict.passed, verdict.summary()
