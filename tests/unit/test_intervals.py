"""The report's intervals, on numbers computed by hand."""

import math

import numpy as np
import polars as pl
import pytest

from nudgeflow.intervals import event_weight_intervals, relative_increase, share_difference, z


def test_normal_quantiles():
    assert z(0.95) == pytest.approx(1.959964, abs=1e-6)
    assert z(0.99) == pytest.approx(2.575829, abs=1e-6)


def test_share_difference_by_hand():
    # 30/100 vs 20/100: d = 0.1, se = sqrt(.3*.7/100 + .2*.8/100) = sqrt(.0037) = 0.060828
    d, lo, hi = share_difference(30, 100, 20, 100, level=0.99)
    assert d == pytest.approx(0.1)
    assert hi - d == pytest.approx(2.575829 * math.sqrt(0.0037), rel=1e-6)
    assert math.isnan(share_difference(1, 0, 1, 10)[0])


def test_relative_increase_by_hand():
    a, b = np.array([2.0, 4.0]), np.array([1.0, 3.0])  # means 3 and 2: +50 %
    r, lo, hi = relative_increase(a, b, level=0.95)
    se = math.sqrt(2.0 / (2 * 9) + 2.0 / (2 * 4))  # var 2 each (ddof 1)
    assert r == pytest.approx(0.5)
    assert lo == pytest.approx(1.5 * math.exp(-1.959964 * se) - 1, rel=1e-5)
    assert hi == pytest.approx(1.5 * math.exp(1.959964 * se) - 1, rel=1e-5)


def test_event_weight_intervals_match_the_dbt_unit_test():
    """The strata of the dbt unit test event_weight_strata_per_user, as of 2026-01-20: a's
    mh_followed = (1 * (600 - 72) + 1 * (600 - 60)) / 600 = 1.78, mh_not_followed = 1 * 72 / 600."""
    h = 2_160_000_000_000
    strata = pl.DataFrame(
        {
            "user_id": ["u1", "u1", "u3", "u4", "u4"],
            "event_name": ["a", "purchase", "b", "a", "c"],
            "n_followed": [1, 0, 0, 1, 1],
            "n_not_followed": [1, 1, 1, 0, 0],
            "us_followed": [259_200_000_000, 259_200_000_000, 0, 216_000_000_000, 216_000_000_000],
            "horizon_us": [h] * 5,
        }
    )
    rows = {r["event_name"]: r for r in event_weight_intervals(strata, "purchase", replicates=50, seed=0)}
    assert rows["a"]["llr"] == pytest.approx(math.log((1.78 + 0.5) / (0.12 + 0.5)))
    assert rows["purchase"]["weight"] == pytest.approx(max(1.0, rows["a"]["llr"], rows["c"]["llr"]))
    assert rows["a"]["ci"][0] <= rows["a"]["weight"] <= rows["a"]["ci"][1]
