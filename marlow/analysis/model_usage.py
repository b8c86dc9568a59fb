"""``marlow compounding <run_dir>``: the model compounding error and communications of every rollout
scheme, measured from each seed's checkpointed state of a finished AORPO / AORDPG run (AORPO paper
Sec. 6.3, Fig. 4; :mod:`marlow.world.compounding` says how it is measured).
"""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np

from marlow.analysis.evaluate import algo_states, eval_keys, load_jax_run
from marlow.errors import ConfigError
from marlow.experiment.setup import build, load_run_config
from marlow.world.branched import SCHEMES
from marlow.world.compounding import make_measure


def measure_run(
    run_dir: str | Path, starts: int = 256, horizon: int | None = None, seed: int = 1234, measure=None
) -> dict:
    """Every scheme of :data:`~marlow.world.branched.SCHEMES` measured on every seed of the run:
    scheme -> {"eps_c": [S, H], "comm": [S, H], "eps_c_ego": [S, N, H]} (numpy), H = ``horizon`` or the
    run's ``rollout_max``. ``measure``: a compiled :func:`~marlow.world.compounding.make_measure` to reuse
    (runs that differ only in their training scheme can share one). Raises ConfigError for a run of an
    algorithm without model rollouts, CheckpointError for an unreadable run."""
    run = build(load_run_config(run_dir))
    cfg, env, algo = run.cfg, run.env, run.algo
    if not hasattr(algo, "ego_rollout"):
        raise ConfigError(
            f"{run_dir} is a {cfg.experiment.algo} run: the compounding error needs a model-based run "
            "(aorpo, aordpg)"
        )
    rs, _ = load_jax_run(run_dir, run)
    h = horizon or cfg.algo.rollout_max
    measure = measure or make_measure(algo, env, starts, h, SCHEMES, seeds=True)
    out = jax.device_get(measure(algo_states(run, rs), eval_keys(seed, cfg.experiment.num_seeds)))
    return {
        s: {f: np.asarray(out[s][f], np.float64) for f in ("eps_c", "comm", "eps_c_ego")} for s in SCHEMES
    }


def summary(run_dir: str | Path, res: dict) -> list[str]:
    """Lines for ``marlow compounding``: eps_c(h) (seed mean) and the communications of one h-step round
    per scheme."""
    h = res[SCHEMES[0]]["eps_c"].shape[1]
    seeds = res[SCHEMES[0]]["eps_c"].shape[0]
    lines = [f"{run_dir}: model compounding error eps_c(h), h = 1..{h}, mean over {seeds} seed(s)"]
    for s in SCHEMES:
        curve = " ".join(f"{v:.4g}" for v in res[s]["eps_c"].mean(axis=0))
        lines.append(
            f"  {s:13s} eps_c: {curve}   communications at h={h}: {res[s]['comm'][:, -1].mean():,.0f}"
        )
    return lines
