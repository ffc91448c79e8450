"""Allocation properties: for any ports and headroom, no phase is overloaded, every port gets 0 or at least
6 A and never more than its cap, and equal share is max-min fair."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from hil.controllers.allocation import MIN_CURRENT_A, admit, equal_share, quantise, water_fill

PHASE_SETS = [(1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 1, 1)]


@st.composite
def sites(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    n = draw(st.integers(1, 40))
    caps = draw(arrays(float, n, elements=st.floats(0, 80)))
    phases = np.array([PHASE_SETS[k] for k in draw(st.lists(st.integers(0, 3), min_size=n, max_size=n))], dtype=float)
    headroom = draw(arrays(float, 3, elements=st.floats(0, 400)))
    weights = draw(arrays(float, n, elements=st.sampled_from([1.0, 2.0, 4.0])))
    return caps, phases, headroom, weights


def load(phases: np.ndarray, rates: np.ndarray) -> np.ndarray:
    return (phases * rates[:, None]).sum(axis=0)


@settings(max_examples=300, deadline=None)
@given(sites())
def test_equal_share_respects_phases_floor_and_caps(site: tuple) -> None:
    caps, phases, headroom, _ = site
    order = np.random.default_rng(0).permutation(len(caps))
    rates = equal_share(caps, phases, headroom, order=order)
    assert (load(phases, rates) <= headroom + 1e-6).all()
    assert ((rates == 0) | (rates >= MIN_CURRENT_A - 1e-9)).all()
    assert (rates <= caps + 1e-9).all()


@settings(max_examples=300, deadline=None)
@given(sites())
def test_water_fill_is_max_min_fair(site: tuple) -> None:
    caps, phases, headroom, weights = site
    rates = water_fill(caps, phases, headroom, weights)
    assert (load(phases, rates) <= headroom + 1e-6).all() and (rates <= caps + 1e-9).all() and (rates >= 0).all()
    used = load(phases, rates)
    level = rates / weights
    for i in range(len(caps)):
        if rates[i] >= caps[i] - 1e-6:
            continue
        # Not at its cap: some phase it uses is full, and nobody on that phase has a higher level.
        bottlenecks = [p for p in range(3) if phases[i, p] and used[p] >= headroom[p] - 1e-6]
        assert bottlenecks, (i, rates, used, headroom)
        assert any(level[i] >= level[phases[:, p] > 0].max() - 1e-6 for p in bottlenecks), (i, rates)


@settings(max_examples=200, deadline=None)
@given(sites())
def test_admission_fits_six_amps_everywhere(site: tuple) -> None:
    caps, phases, headroom, _ = site
    admitted = admit(np.arange(len(caps)), phases, headroom, caps)
    assert (load(phases[admitted], np.full(admitted.sum(), MIN_CURRENT_A)) <= headroom + 1e-6).all()
    assert (caps[admitted] >= MIN_CURRENT_A).all()


def test_single_phase_port_fits_where_three_phase_did_not() -> None:
    phases = np.array([[1, 1, 1], [1, 1, 1], [0, 1, 0]], dtype=float)
    assert list(admit([0, 1, 2], phases, [6, 12, 6], [32, 32, 32])) == [True, False, True]


def test_equal_split_closed_form() -> None:
    # One phase, caps 5, 10, 40, 40 and 60 A of headroom: 5 and 10 fill, the rest share 45: 22.5 each.
    rates = water_fill([5, 10, 40, 40], np.ones((4, 1)), [60])
    assert rates == pytest.approx([5, 10, 22.5, 22.5])


def test_weights_share_in_proportion() -> None:
    rates = water_fill([100, 100, 100], np.ones((3, 1)), [70], weights=[1, 2, 4])
    assert rates == pytest.approx([10, 20, 40])


def test_quantiser() -> None:
    assert list(quantise([5.99, 6.0, 12.37, 40.0], caps=[32, 32, 32, 32])) == pytest.approx([0.0, 6.0, 12.3, 32.0])
