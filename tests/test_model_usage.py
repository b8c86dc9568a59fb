"""``marlow compounding``: the compounding error and communications of every rollout scheme measured on a
run directory (marlow.analysis.model_usage; the measurement itself is tested in test_compounding).
The AORPO run directory holds a freshly initialised state with set opponent-model errors (EPS), saved as
``marlow train`` saves it, so that the file needs no training and the communications have a value by
hand."""

import jax
import numpy as np
import pytest

from marlow.cli import main
from marlow.experiment.config import resolve
from marlow.experiment.loop import Loop
from marlow.runtime import checkpoint
from marlow.runtime.runner import build, prepare_run_dir, seed_keys
from marlow.world.branched import SCHEMES

TASK = "mpe/simple_spread"  # 3 agents, one team: 3 egos x 2 teammates
SMALL = [
    "hidden=8,8",
    "batch_size=16",
    "num_envs=2",
    "update_every=50",
    "total_steps=100",
    "eval_every=100",
    "model_hidden=8,8",
    "model_weight_decay=0.0001",
    "model_num_members=2",
    "model_num_elites=1",
    "model_buffer_size=64",
    "rollout_batch=4",
    "rollout_max=3",
    "opp_hidden=8",
]
STARTS, H = 4, 3


# every ego's opponent-model errors, its two teammates in spec order: the first model is the best one
# (n = k, never queried), the second's n = floor(k 0.1 / 0.4) = floor(0.75) = 0 at k = H = 3: the real
# teammate for all 3 steps, STARTS x 3 queries per ego and seed under both adaptive schemes
EPS = (0.1, 0.4)


def write_run(run_dir, algo, overrides=SMALL, eps=None):
    cfg = resolve([f"algo={algo}", f"task={TASK}", "num_seeds=2", f"run_dir={run_dir}", *overrides])
    run = build(cfg)
    cfg, env = run.cfg, run.env
    prepare_run_dir(run, run_dir)
    state = jax.jit(jax.vmap(Loop(env, run.learner, cfg.experiment).init))(seed_keys(cfg))
    if eps is not None:  # the opponent-model errors the rollouts' n_j are computed from
        errors = {
            ego: {j: np.full(2, e, np.float32) for j, e in zip(state.learner.algo.eps[ego], eps, strict=True)}
            for ego in state.learner.algo.eps
        }
        state = state.replace(learner=state.learner.replace(algo=state.learner.algo.replace(eps=errors)))
    checkpoint.save(run_dir, state, {"chunk": 1, "env_steps": 100, "wall_time": 0.0})
    return run_dir


@pytest.fixture(scope="module")
def aorpo_run(tmp_path_factory):
    return write_run(tmp_path_factory.mktemp("usage") / "aorpo", "aorpo", eps=EPS)


def test_every_scheme_is_measured_with_exact_communication_counts(aorpo_run, capsys):
    """One measurement (its compilation is most of this file's time), checked through the CLI's lines."""
    assert main(["compounding", str(aorpo_run), f"starts={STARTS}"]) == 0  # horizon: the run's rollout_max
    out = capsys.readouterr().out.splitlines()
    assert f"h = 1..{H}" in out[0] and "2 seed(s)" in out[0]
    rows = {line.split()[0]: line.split() for line in out[1:]}
    assert list(rows) == list(SCHEMES)
    pairs = 3 * 2
    comm = {s: int(r[-1].replace(",", "")) for s, r in rows.items()}
    assert comm["all_models"] == 0 and comm["all_real"] == pairs * STARTS * H
    # by hand from EPS: per ego, the worse teammate model's n = 0, so its H steps query the real teammate
    assert comm["adaptive"] == comm["real_to_simu"] == 3 * STARTS * H
    for r in rows.values():
        eps = [float(v) for v in r[2 : 2 + H]]
        assert all(np.isfinite(eps)) and all(e > 0 for e in eps)  # an untrained model is not exact


def test_a_model_free_run_is_a_one_line_error(tmp_path, capsys):
    run = write_run(tmp_path / "masac", "masac", SMALL[:6])
    assert main(["compounding", str(run)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "model-based" in err
