"""marlow.sweep.aggregate against direct numpy computations on synthetic scores: final scores, AUC and the
per-task normalisation; IQM, mean, median and optimality gap and their stratified bootstrap intervals;
the probability of improvement; the merged report on real runs is covered by tests/test_sweep.py."""

from __future__ import annotations

import numpy as np
import scipy.stats

from marlow.sweep import aggregate as agg

RNG = np.random.default_rng(0)


def synthetic(label: str, offset: float, seeds: int = 5, evals: int = 6) -> agg.Config:
    c = agg.Config(label)
    x = np.arange(evals) * 1000.0
    for task in ("a/one", "b/two"):
        c.curves[task] = {s: (x, offset + RNG.normal(size=evals).cumsum()) for s in range(seeds)}
    return c


def test_final_auc_and_normalisation_match_their_definitions():
    configs = {"p": synthetic("p", 0.0), "q": synthetic("q", 2.0)}
    tasks, final, auc, norm, notes = agg.scores(configs, last=2)
    assert tasks == ["a/one", "b/two"] and not notes
    for label, c in configs.items():
        for j, t in enumerate(tasks):
            for i, (x, y) in enumerate(c.curves[t].values()):
                assert np.isclose(final[label][i, j], (y[-1] + y[-2]) / 2)
                area = sum((y[k] + y[k + 1]) / 2 * (x[k + 1] - x[k]) for k in range(len(x) - 1))
                assert np.isclose(auc[label][i, j], area / (x[-1] - x[0]))
    for j, t in enumerate(tasks):
        every = np.concatenate([y for c in configs.values() for _, y in c.curves[t].values()])
        for label in configs:
            want = (final[label][:, j] - every.min()) / (every.max() - every.min())
            np.testing.assert_allclose(norm[label][:, j], want)


def test_uneven_seeds_are_cut_to_the_fewest_and_said():
    c = synthetic("p", 0.0)
    del c.curves["b/two"][4]
    _, final, _, _, notes = agg.scores({"p": c})
    assert final["p"].shape == (4, 2) and "cut to 4" in notes[0]


def _numpy_bootstrap(x: np.ndarray, fn, reps: int, seed: int) -> np.ndarray:
    """Percentile 95% interval of ``fn`` under resampling the runs within each task (stratified)."""
    rng = np.random.default_rng(seed)
    n, m = x.shape
    stats = [fn(np.stack([x[rng.integers(0, n, n), j] for j in range(m)], 1)) for _ in range(reps)]
    return np.percentile(stats, [2.5, 97.5])


def test_aggregates_and_intervals_match_numpy():
    norm = {"p": RNG.uniform(size=(10, 3)), "q": RNG.uniform(0.3, 1.2, size=(10, 3))}
    stats = agg.aggregates(norm, reps=4000)
    direct = {
        "iqm": lambda x: scipy.stats.trim_mean(x.ravel(), 0.25),
        "mean": lambda x: np.mean(x.mean(0)),
        "median": lambda x: np.median(x.mean(0)),
        "optimality_gap": lambda x: np.mean(np.maximum(1 - x, 0)),
    }
    for label, x in norm.items():
        for name, fn in direct.items():
            point, low, high = stats[label][name]
            assert np.isclose(point, fn(x)), (label, name)
            want_low, want_high = _numpy_bootstrap(x, fn, 4000, 1)
            assert abs(low - want_low) < 0.02 and abs(high - want_high) < 0.02, (label, name)
            assert low <= point <= high


def test_probability_of_improvement_matches_pairwise_counts():
    final = {
        "p": RNG.normal(size=(6, 2)),
        "q": RNG.normal(0.5, 1.0, size=(6, 2)),
        "r": RNG.normal(size=(6, 2)),
    }
    final["r"][:, 1] = final["p"][:, 1]  # a tie on one task counts 1/2
    poi = agg.improvement(final, reps=200)
    assert list(poi) == ["p > q", "p > r", "q > r"]
    for key, (point, low, high) in poi.items():
        x, y = (final[k] for k in key.split(" > "))
        per_task = [
            np.mean((x[:, None, j] > y[None, :, j]) + 0.5 * (x[:, None, j] == y[None, :, j]))
            for j in range(2)
        ]
        assert np.isclose(point, np.mean(per_task)), key
        assert 0 <= low <= high <= 1


def test_step_zero_never_counts_as_a_final_score():
    """Two trials of two evaluations each (step 0 and the end): both trained policies score 125 on every
    seed, so they tie, whatever their untrained step-0 scores (175 vs -375 once reported mappo 150 vs
    ippo -125 and P(ippo > mappo) = 0)."""
    x = np.array([0.0, 2000.0])
    configs = {}
    for label, start in (("ippo", -375.0), ("mappo", 175.0)):
        c = agg.Config(label)
        c.curves["games/climbing"] = {s: (x, np.array([start, 125.0])) for s in range(2)}
        configs[label] = c
    _, final, _, _, notes = agg.scores(configs, last=2)
    np.testing.assert_array_equal(final["ippo"], 125.0)
    np.testing.assert_array_equal(final["mappo"], 125.0)
    assert len(notes) == 2 and all("fewer trained evaluations than last=2" in n for n in notes)
    poi = agg.improvement(final, reps=200)
    assert poi["ippo > mappo"][0] == 0.5  # a tie, not 0


def test_final_score_ignores_step_zero_with_enough_evaluations():
    x = np.array([0.0, 100.0, 200.0, 300.0])
    c = agg.Config("p")
    c.curves["t/a"] = {0: (x, np.array([-50.0, 1.0, 2.0, 4.0]))}
    _, final, _, _, notes = agg.scores({"p": c}, last=3)
    assert final["p"][0, 0] == (1.0 + 2.0 + 4.0) / 3 and not notes
    _, final, _, _, notes = agg.scores({"p": c}, last=4)
    assert final["p"][0, 0] == (1.0 + 2.0 + 4.0) / 3 and "as few as 3" in notes[0]
