"""The session rules: a set point is 0 or at least 6 A (IEC 61851-1), and no session waits while the site
idles with room for it (``hil.compliance.sessions``), on hand-made traces of four ports at 1 s steps."""

from __future__ import annotations

import numpy as np

from hil.compliance.sessions import minimum_current, service

STEPS = 60
T = np.arange(STEPS, dtype=float)
THREE_PHASE = np.ones((4, 3))
LIMIT = np.full((STEPS, 3), 80.0)


def test_set_points_of_zero_or_at_least_6_a_pass_and_a_trickle_fails_naming_the_port() -> None:
    sp = np.zeros((STEPS, 4))
    sp[:, 0], sp[10:, 1] = 32.0, 6.0
    assert minimum_current(T, sp).passed
    sp[30:35, 2] = 3.0
    rule = minimum_current(T, sp)
    assert not rule.passed and rule.measured == 3.0 and rule.first_failure_s == 30.0
    assert "port 3 was set to 3.0 A at 30 s (5 s below 6 A" in rule.message()


def _site(drawn: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The ports draw ``drawn``; the site current is their sum on every phase."""
    return drawn, np.repeat(drawn.sum(axis=1, keepdims=True), 3, axis=1)


def test_one_session_at_a_time_is_service_and_an_idle_site_with_a_waiting_session_is_not() -> None:
    wanting = np.ones((STEPS, 4), dtype=bool)
    sequential = np.zeros((STEPS, 4))
    sequential[:, 0] = 32.0  # one session served, three wait: the site is not idle on their phases
    _, site = _site(np.zeros((STEPS, 4)))  # (also while the one served draws nothing: a tripped port)
    assert service(T, sequential, np.zeros((STEPS, 4)), wanting, THREE_PHASE, LIMIT, site, 10.0).passed
    idle = np.zeros((STEPS, 4))
    idle[:20, 0] = 32.0  # from 20 s nobody is served although every session still wants energy
    _, site = _site(idle)
    rule = service(T, idle, idle, wanting, THREE_PHASE, LIMIT, site, 10.0)
    assert not rule.passed and rule.measured == 40.0 and rule.first_failure_s == 30.0
    assert "waited 40 s from 20 s" in rule.message()
    # Not judged while a fault lets the controller pause everyone; no room for 6 A is no idle headroom either.
    assert service(T, idle, idle, wanting, THREE_PHASE, LIMIT, site, 10.0, [(15.0, 60.0)]).passed
    assert service(T, idle, idle, wanting, THREE_PHASE, np.full((STEPS, 3), 6.0), site, 10.0).passed


def test_a_single_phase_session_waits_only_for_its_own_phase() -> None:
    phases = np.array([[1, 0, 0], [0, 1, 0], [1, 1, 1], [1, 1, 1]], dtype=float)
    wanting = np.zeros((STEPS, 4), dtype=bool)
    wanting[:, :2] = True
    sp = np.zeros((STEPS, 4))
    sp[:, 0] = 16.0  # L1 busy, L2 idle: the session on L2 is starved
    site = sp @ phases
    rule = service(T, sp, sp, wanting, phases, LIMIT, site, 10.0)
    assert not rule.passed and "port 2" in rule.message()


def test_allocating_an_ev_that_stopped_drawing_long_ago_serves_nobody() -> None:
    """A sequential site whose turn never passes from a full EV: served while it draws and for 60 s after,
    then the waiting sessions count as kept waiting (the site allocates only to an EV that takes nothing)."""
    t = np.arange(150, dtype=float)
    sp = np.zeros((150, 4))
    sp[:, 0] = 32.0
    drawn = sp.copy()
    drawn[20:, 0] = 0.0  # full at 20 s
    wanting = np.ones((150, 4), dtype=bool)
    wanting[20:, 0] = False
    rule = service(t, sp, drawn, wanting, THREE_PHASE, np.full((150, 3), 80.0), np.zeros((150, 3)), 10.0)
    assert not rule.passed and rule.first_failure_s == 80.0 + 10.0, rule
    assert "waited 70 s from 80 s" in rule.message()
