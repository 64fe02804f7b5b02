"""The gateway's entity API: last values, history and distance filters.

The query parsers first (pure), then the routes over HTTP against the real gateway on a real
nats-server, with readings published through the bus.
"""

from __future__ import annotations

import pytest

from adapters.gateway.query import (
    MAX_LIST,
    BadQuery,
    Near,
    parse_list,
    parse_near,
    parse_since,
    sort_by_distance,
)

# Bragernes strand, Drammen; Sota fjordpark is about 3.7 km east-north-east of it.
BRAGERNES = (59.7409, 10.2138)
SOTA = (59.7513, 10.2767)


def test_near_and_radius() -> None:
    near = parse_near("59.7409,10.2138", "500")
    assert near == Near(lat=59.7409, lon=10.2138, radius=500.0)
    assert parse_near(None, None) is None
    assert parse_near(" 59.7409 , 10.2138 ", None) == Near(lat=59.7409, lon=10.2138)


@pytest.mark.parametrize(
    ("near", "radius", "said"),
    [
        ("59.74", None, "must be LAT,LON"),
        ("59.74,10.2,3", None, "must be LAT,LON"),
        ("north,10.2", None, "'north' is not a number"),
        ("10.2,200", None, "longitude 200.0 is out of range"),
        ("95,10", None, "latitude 95.0 is out of range"),
        ("nan,10", None, "not a finite number"),
        ("59.74,10.2", "-5", "must be a distance in metres"),
        ("59.74,10.2", "far", "'far' is not a number"),
        (None, "500", "radius needs a point"),
        ("1," * 5000, None, "at most 2048 are read"),
    ],
)
def test_bad_near_says_what_to_fix(near: str | None, radius: str | None, said: str) -> None:
    with pytest.raises(BadQuery, match=said):
        parse_near(near, radius)


def test_since_is_a_moment_or_a_window() -> None:
    now = 1_800_000_000.0
    assert parse_since(None, now) is None
    assert parse_since("600", now) == now - 600
    assert parse_since("2027-01-15T07:00:00Z", now) == now - 3600
    assert parse_since("2027-01-15T08:00:00+01:00", now) == now - 3600
    with pytest.raises(BadQuery, match="no UTC offset"):
        parse_since("2027-01-15T08:00:00", now)
    with pytest.raises(BadQuery, match="neither seconds"):
        parse_since("yesterday", now)
    with pytest.raises(BadQuery, match="0 or more"):
        parse_since("-5", now)


def test_lists() -> None:
    assert parse_list("entity", "a,b") == ["a", "b"]
    with pytest.raises(BadQuery, match="empty item"):
        parse_list("entity", "a,,b")
    with pytest.raises(BadQuery, match=f"at most {MAX_LIST}"):
        parse_list("entity", ",".join(["a"] * (MAX_LIST + 1)))


def test_sorting_by_haversine_distance() -> None:
    places = {"sota": SOTA, "bragernes": BRAGERNES, "nowhere": None}
    near = Near(lat=BRAGERNES[0], lon=BRAGERNES[1])
    ranked = sort_by_distance(near, list(places), places.get)
    assert [name for _, name in ranked] == ["bragernes", "sota"]  # no place, no distance: left out
    assert ranked[0][0] == 0.0
    assert 3600 < ranked[1][0] < 3800
    within = sort_by_distance(Near(lat=BRAGERNES[0], lon=BRAGERNES[1], radius=1000), list(places), places.get)
    assert [name for _, name in within] == ["bragernes"]
