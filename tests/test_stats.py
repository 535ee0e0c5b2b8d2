import math

import numpy as np
import pytest
from scipy.stats import trim_mean

from cartpole_dqn.config import build
from cartpole_dqn.rules import RULES
from cartpole_dqn.stats import (aggregate_summary, bootstrap_band, bootstrap_ci, iqm, median, median_or_none,
                                objective_value, statistics, success_rate)


def test_iqm_is_the_mean_of_the_middle_half():
    assert iqm([1, 2, 3, 4]) == pytest.approx(2.5)                # cut one from each end
    assert iqm([8, 1, 7, 2, 6, 3, 5, 4]) == pytest.approx(4.5)    # order does not matter: mean of 3, 4, 5, 6
    assert iqm([1, 2, 3, 4, 100]) == pytest.approx(3.0)           # n = 5 cuts one each side: the outlier goes
    assert iqm([7]) == 7
    x = np.random.default_rng(0).normal(size=20)
    assert iqm(x) == pytest.approx(trim_mean(x, 0.25))            # what rliable computes


def test_unsolved_runs_are_infinite_in_medians_and_iqms():
    assert iqm([1, 2, 3, None]) == pytest.approx(2.5)             # the unsolved run is cut off the top
    assert math.isinf(iqm([1, 2, None, None]))                    # half unsolved: the IQM is infinite
    assert median([10, 20, None]) == 20
    assert math.isinf(median([10, None, None]))                   # not the budget: never reached


def test_bootstrap_interval_contains_the_estimate_and_is_reproducible():
    x = np.array([120, 131, 95, 160, 142, 110, 138, 101, 150, 127], dtype=float)
    lo, hi = bootstrap_ci(x)
    assert lo <= iqm(x) <= hi and lo >= x.min() and hi <= x.max() and hi - lo > 0
    assert bootstrap_ci(x) == (lo, hi)
    assert bootstrap_ci(np.full(6, 3.0)) == (3.0, 3.0)            # no spread, no width
    lo, hi = bootstrap_ci([1.0, 2.0, None, None, None])           # mostly unsolved: the upper end is infinite
    assert math.isinf(hi)


def test_success_rate_counts_unsolved_runs():
    assert success_rate([True, False, False, True]) == 0.5
    assert success_rate([False, False]) == 0.0
    rows = [dict(seed=s, solved=s < 1, episodes_before_solve=100 if s < 1 else None, steps_to_solve=None,
                 seconds_to_solve=None, final_greedy_score=float(s), eval_steps_to_solve=2000 if s < 3 else None,
                 eval_seconds_to_solve=None) for s in range(4)]
    stats = statistics(rows)
    assert stats["success_rate"] == 0.25 and stats["eval_success_rate"] == 0.75
    assert stats["episodes_before_solve"]["median"] is None       # infinite medians are written as null
    assert stats["final_greedy_score"]["iqm"] == pytest.approx(1.5)


def test_median_counts_unsolved_as_infinity_and_writes_an_infinite_median_as_none():
    assert median([3, None, 1]) == 3 and median_or_none([3, None, 1]) == 3.0
    assert median_or_none([3, None, None]) is None and median_or_none([]) is None
    assert median(np.array([1.0, 2.0, np.inf, np.inf])) == math.inf


def test_iqm_of_a_known_array():
    x = np.arange(1.0, 13.0)                                      # 12 values: cut 3 each end, mean of 4..9
    assert iqm(x) == pytest.approx(6.5)
    assert iqm(np.array([[1.0, 2.0, 3.0, 4.0], [10.0, 0.0, 0.0, 10.0]]), axis=1).tolist() == [2.5, 5.0]


def test_a_bootstrap_interval_of_the_median_contains_the_true_median_of_a_normal_sample():
    x = np.random.default_rng(1).normal(100.0, 15.0, size=200)
    lo, hi = bootstrap_ci(x, statistic=lambda a, axis: np.median(a, axis=axis))
    assert lo < 100.0 < hi and hi - lo < 10


def test_a_bootstrap_band_holds_the_iqm_at_every_point():
    curves = np.random.default_rng(0).normal(size=(8, 5)) + np.arange(5)
    mid, lo, hi = bootstrap_band(curves)
    assert mid.shape == lo.shape == hi.shape == (5,) and (lo <= mid).all() and (mid <= hi).all()


def test_the_tuner_objective_counts_an_unsolved_seed_as_twice_the_budget():
    assert objective_value([100, 300, 200], budget=1000) == 200
    assert objective_value([100, None, None], budget=1000) == 2000
    assert objective_value([None], budget=500) == 1000


def _summary(seed, solved, steps, final):
    figures = dict(episodes_before_solve=steps // 10 if solved else None, steps_to_solve=steps if solved else None,
                   seconds_to_solve=steps / 100 if solved else None, eval_steps_to_solve=steps if solved else None,
                   eval_seconds_to_solve=None, final_greedy_score=final)
    return {"env": "CartPole-v1", "seed": seed, "solved": solved, **figures, "config": {"seed": seed}}


def test_aggregate_summary_of_two_seeds():
    cfg = build(overrides={"seeds": 2, "seed": 3, "rule": "v1"})
    a = aggregate_summary([_summary(3, True, 1000, 500.0), _summary(4, False, 0, 100.0)], cfg, RULES["v1"], False)
    assert a["seeds"] == [3, 4] and a["rule"] == {"name": "v1", "threshold": 475.0, "window": 100}
    assert a["success_rate"] == 0.5 and a["eval_success_rate"] == 0.5
    assert a["median_steps_to_solve"] is None                     # one of two unsolved: the median is infinite
    assert a["median_eval_seconds_to_solve"] is None and a["median_final_greedy_score"] == 300.0
    assert [s["seed"] for s in a["per_seed"]] == [3, 4] and "config" not in a["per_seed"][0]
    assert a["config"]["seeds"] == 2 and not a["interrupted"]
    both = aggregate_summary([_summary(3, True, 1000, 500.0), _summary(4, True, 3000, 480.0)], cfg, RULES["v1"], True)
    assert both["median_steps_to_solve"] == 2000 and both["success_rate"] == 1.0 and both["interrupted"]
