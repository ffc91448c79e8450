"""Scenarios are reproducible from their seed, physically possible, and bad files get a clear error."""

from __future__ import annotations

from pathlib import Path

import pytest

from hil.site.scenarios import FIXTURES, ScenarioError, load_scenario, load_sessions_csv, load_tariff, scenario_names


@pytest.mark.parametrize("name", scenario_names())
def test_every_shipped_scenario_is_reproducible_and_possible(name: str) -> None:
    a, b = load_scenario(name), load_scenario(name)
    assert a.sessions == b.sessions and a.sessions
    assert load_scenario(name, seed=a.seed + 1).sessions != a.sessions
    assert 0 < a.limit_a < a.nameplate_a * 10
    by_port: dict[int, list] = {}
    for s in a.sessions:
        assert 0 <= s.arrival < s.departure <= a.duration
        deliverable = s.max_current_a * len(s.phases) * a.phase_voltage * (s.departure - s.arrival) / 3.6e6
        assert 0 < s.energy_kwh <= deliverable
        by_port.setdefault(s.port, []).append(s)
    for sessions in by_port.values():
        for earlier, later in zip(sessions, sessions[1:]):
            assert earlier.departure <= later.arrival, "two EVs at one port at once"


def test_overrides_change_capacity_and_size() -> None:
    s = load_scenario("workplace", capacity=0.1, ports=10)
    assert s.ports == 10 and s.limit_a == pytest.approx(0.1 * 10 * 32)
    assert max(x.port for x in s.sessions) < 10


def test_depot_has_its_demand_response_event_relative_to_the_start() -> None:
    s = load_scenario("depot")
    (dr,) = s.events
    assert dr.kind == "demand_response" and dr.start == 8 * 3600 and dr.notice == 3600 and dr.fraction == 0.35


def test_tou_tariff_prices() -> None:
    t = load_tariff("tou_ev4")
    assert t.price(11 * 3600) == 0.0925 and t.price(13 * 3600) == 0.267 and t.price(23.5 * 3600) == 0.056
    assert t.price(1 * 3600, start_h=12) == 0.267  # 13:00 when the run starts at noon
    assert list(t.prices([0, 13 * 3600])) == [0.056, 0.267]


def test_acn_style_csv() -> None:
    sessions = load_sessions_csv(FIXTURES / "sessions" / "acn_sample.csv")
    assert [s.id for s in sessions] == ["evhil-0001", "evhil-0002", "evhil-0003", "evhil-0004", "evhil-0005"]
    first = sessions[0]
    assert first.arrival == 15 * 3600 + 2 * 60 + 11 and first.energy_kwh == 14.0  # requested wins over delivered
    assert sessions[1].energy_kwh == 6.881  # no request: what was delivered
    assert sessions[4].port == first.port  # same station, same port


def test_bad_csv_names_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "s.csv"
    bad.write_text("sessionID,stationID,connectionTime,disconnectTime,kWhDelivered\nx,CA-1,yesterday,today,3\n")
    with pytest.raises(ScenarioError, match=r"s.csv:2: "):
        load_sessions_csv(bad)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("name: x\nsessions: workplace\nports: 0\ncapacity: 0.3\n", "ports: Input should be greater than 0"),
        ("name: x\nsessions: moon\nports: 3\ncapacity: 0.3\n", "sessions: Input should be"),
        ("name: x\nsessions: depot\nports: 3\ncapacity: 0.3\ncolour: red\n", "colour: Extra inputs are not permitted"),
        ("name: [x\n", "not valid YAML"),
    ],
)
def test_bad_scenario_file_gets_one_line(tmp_path: Path, text: str, fragment: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ScenarioError) as err:
        load_scenario(path)
    assert str(err.value).startswith(str(path)) and fragment in str(err.value) and "\n" not in str(err.value)


def test_unknown_scenario_lists_the_known_ones() -> None:
    with pytest.raises(ScenarioError, match="known: depot"):
        load_scenario("mars")
