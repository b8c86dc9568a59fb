"""MAMBA (marlow.algos.model_based.mamba) and its world model (marlow.world.rssm): the straight-through
latents and KL balancing against closed forms, the sequence buffer's windows, MAMBA's lambda-returns, the
execution-time posterior equal to the training-time filter over the same steps (resets and previous
actions bookkept alike), the world model fitting a tiny deterministic two-agent system, imagined actions
respecting the model's predicted masks, presets, and through the runner: a seed trains the same in either
place of a vmapped run, a resumed run equals an uninterrupted one, and MAG with one candidate equals MAMBA."""

from __future__ import annotations

import csv
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from marlow import envs, rollout
from marlow.algos.model_based import mamba
from marlow.algos.onpolicy.actors import MASKED_LOGIT
from marlow.buffers import sequence
from marlow.errors import ConfigError
from marlow.experiment.config import resolve
from marlow.runtime.runner import train
from marlow.world import rssm

TASK = "smax/3m"
TINY_MODEL = [
    *("embed=8", "model_width=8", "deter=8", "n_categoricals=2", "n_classes=4", "attn_heads=2"),
    *("actor_hidden=8", "critic_hidden=8", "seq_len=5", "model_batch=4", "agent_batch=2", "horizon=3"),
    *("model_updates=1", "agent_updates=1", "ppo_epochs=1", "ppo_minibatch=16"),
]
RUN = [
    *("warmup_steps=50", "train_every=50", "num_envs=2", "eval_every=100", "total_steps=300"),
    *("eval_episodes=2", "checkpoint_every=1", "progress=false"),
]


def _algo(*extra: str, algo: str = "mamba", task: str = TASK):
    from marlow.algos import get_algo

    env = envs.make(task)
    cfg = resolve([f"algo={algo}", f"task={task}", "preset=small", *TINY_MODEL, "num_envs=2", *extra])
    alg = get_algo(algo).Algorithm(env.spec, cfg.algo)
    alg.bind(num_envs=2, total_steps=1000)
    return env, alg


# ---- closed forms ----------------------------------------------------------------------------------
def test_straight_through_latent_is_a_one_hot_sample_with_the_probabilities_gradient():
    logits = jax.random.normal(jax.random.PRNGKey(0), (5, 3 * 4))
    key = jax.random.PRNGKey(1)
    z = rssm.sample_latent(logits, key, 3, 4).reshape(5, 3, 4)
    np.testing.assert_allclose(z.sum(-1), 1.0, atol=1e-6)
    np.testing.assert_allclose(jnp.sort(z, axis=-1)[..., :-1], 0.0, atol=1e-6)  # exactly one 1 per group
    w = jax.random.normal(jax.random.PRNGKey(2), (5, 12))
    g = jax.grad(lambda lg: jnp.sum(w * rssm.sample_latent(lg, key, 3, 4)))(logits)
    g_ref = jax.grad(lambda lg: jnp.sum(w * jax.nn.softmax(lg.reshape(5, 3, 4)).reshape(5, 12)))(logits)
    np.testing.assert_allclose(g, g_ref, rtol=1e-5, atol=1e-6)
    # the sample follows the probabilities
    many = jax.vmap(lambda k: rssm.sample_latent(logits[:1], k, 3, 4))(jax.random.split(key, 4000))
    np.testing.assert_allclose(many.mean(0).reshape(3, 4), jax.nn.softmax(logits[0].reshape(3, 4)), atol=0.03)


def test_kl_balancing_value_and_gradient_split():
    p = jax.random.normal(jax.random.PRNGKey(0), (7, 2 * 5))
    q = jax.random.normal(jax.random.PRNGKey(1), (7, 2 * 5))

    def kl_numpy(p, q):
        lp = np.asarray(jax.nn.log_softmax(p.reshape(7, 2, 5)))
        lq = np.asarray(jax.nn.log_softmax(q.reshape(7, 2, 5)))
        return (np.exp(lp) * (lp - lq)).sum(-1).mean(-1)

    bal = rssm.kl_balanced(p, q, 2, 5, 0.2)
    np.testing.assert_allclose(bal, kl_numpy(p, q), rtol=1e-5)
    full = lambda p, q: jnp.sum(rssm.categorical_kl(p, q, 2, 5))  # noqa: E731
    total = lambda p, q: jnp.sum(rssm.kl_balanced(p, q, 2, 5, 0.2))  # noqa: E731
    gp, gq = jax.grad(total, argnums=(0, 1))(p, q)
    fp, fq = jax.grad(full, argnums=(0, 1))(p, q)
    np.testing.assert_allclose(gp, 0.2 * fp, rtol=1e-4, atol=1e-7)  # the posterior moves with weight 0.2
    np.testing.assert_allclose(gq, 0.8 * fq, rtol=1e-4, atol=1e-7)  # the prior with weight 0.8


def test_sequence_windows_are_consecutive_rows_of_one_env_inside_the_written_data():
    buf = sequence.init({"t": jnp.zeros((2,), jnp.int32), "e": jnp.zeros((2,), jnp.int32)}, 5)
    rows = {"t": jnp.arange(7)[:, None] * jnp.ones((1, 2), jnp.int32), "e": jnp.tile(jnp.arange(2), (7, 1))}
    buf = sequence.add(buf, jax.tree.map(lambda x: x[:3], rows))
    w = sequence.sample(buf, jax.random.PRNGKey(0), 200, 3)  # 3 rows written: the one window [0, 1, 2]
    assert (w["t"] == jnp.arange(3)[:, None]).all()
    buf = sequence.add(buf, jax.tree.map(lambda x: x[3:], rows))  # 7 rows into 5: rows 2..6 kept
    w = sequence.sample(buf, jax.random.PRNGKey(1), 400, 3)
    assert (jnp.diff(w["t"], axis=0) == 1).all()  # consecutive, never across the write position
    assert set(np.asarray(w["t"][0]).tolist()) == {2, 3, 4}
    assert (w["e"] == w["e"][:1]).all() and set(np.asarray(w["e"][0]).tolist()) == {0, 1}


def test_lambda_returns_closed_form():
    g, lam = 0.9, 0.8
    r, v, c, boot = jnp.array([1.0, 2.0]), jnp.array([0.5, -1.0]), jnp.array([1.0, 0.5]), jnp.array(3.0)
    R1 = 2.0 + g * 0.5 * 3.0
    R0 = 1.0 + g * 1.0 * ((1 - lam) * -1.0 + lam * R1)
    np.testing.assert_allclose(mamba.lambda_returns(r, v, c, boot, g, lam), [R0, R1], rtol=1e-6)


# ---- the model in execution and in training -----------------------------------------------------------
def test_execution_posterior_equals_the_training_filter_over_the_same_steps():
    """One class per categorical makes the latent deterministic, so the GRU states the behaviour policy
    computed step by step (resets at episode ends, previous actions) must equal rssm.observe's."""
    env, alg = _algo("n_classes=1", "n_categoricals=3")
    state = alg.init(jax.random.PRNGKey(0))
    base = alg.policy(state)

    def pol(pstate, obs, t, key, info):
        new, actions, _ = base(pstate, obs, t, key, info)
        return new, actions, new["h"]

    carry = rollout.reset(env, jax.random.PRNGKey(1), 2, alg.init_pstate(2))
    _, _, traj = jax.jit(
        lambda c: rollout.collect(
            env,
            pol,
            c,
            jax.random.PRNGKey(2),
            130,
            rollout.Options(env_info=True, reset_pstate=alg.reset_pstate),
        )
    )(carry)
    assert traj.done.any(axis=0).all()  # every env ended an episode inside the window
    steps = alg.steps_of(traj)
    out = rssm.observe(
        alg.model,
        state.model,
        steps["obs"],
        jax.nn.one_hot(steps["action"], alg.n_actions),
        steps["done"],
        jax.random.PRNGKey(3),
    )
    np.testing.assert_allclose(out["deter"], traj.extras, rtol=1e-5, atol=1e-5)


def _ring_windows(key, batch: int, length: int = 10):
    """A deterministic two-agent system: positions on a ring of 4, actions stay / +1 / -1, each agent
    observes its own and the other's position (one-hot), team reward 1 when they meet."""
    k_p, k_a = jax.random.split(key)
    pos0 = jax.random.randint(k_p, (batch, 2), 0, 4)
    acts = jax.random.randint(k_a, (length, batch, 2), 0, 3)
    move = jnp.array([0, 1, -1])

    def step(pos, a):
        obs = jnp.stack([jnp.concatenate([jax.nn.one_hot(pos[:, i], 4), jax.nn.one_hot(pos[:, 1 - i], 4)], -1)
                         for i in range(2)], axis=1)  # fmt: skip
        nxt = (pos + move[a]) % 4
        return nxt, (obs, (nxt[:, 0] == nxt[:, 1]).astype(jnp.float32))

    _, (obs, reward) = jax.lax.scan(step, pos0, acts)
    flags = jnp.zeros((length, batch), jnp.bool_)
    return {
        "obs": obs,
        "action": acts,
        "reward": reward,
        "terminated": flags,
        "done": flags.at[-1].set(True),
        "avail": jnp.ones((length, batch, 2, 3), jnp.bool_),
    }


def test_world_model_fits_a_tiny_deterministic_multi_agent_system():
    sizes = rssm.Sizes(
        obs_dim=8, n_actions=3, embed=32, hidden=32, deter=32, n_categoricals=4, n_classes=4,
        attn_layers=1, attn_heads=2,
    )  # fmt: skip
    model = rssm.WorldModel(sizes)
    params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 2, 8)), jnp.zeros((1, 2, 3)))
    tx = optax.adam(3e-3)

    @jax.jit
    def train_steps(params, opt, key):
        def one(carry, k):
            params, opt = carry
            k_w, k_l = jax.random.split(k)
            grads, _ = jax.grad(
                lambda p: rssm.model_loss(model, p, _ring_windows(k_w, 32), k_l), has_aux=True
            )(params)
            upd, opt = tx.update(grads, opt, params)
            return (optax.apply_updates(params, upd), opt), None

        return jax.lax.scan(one, (params, opt), jax.random.split(key, 600))[0]

    params, _ = train_steps(params, tx.init(params), jax.random.PRNGKey(1))
    w = _ring_windows(jax.random.PRNGKey(2), 64)
    out = rssm.observe(
        model, params, w["obs"], jax.nn.one_hot(w["action"], 3), w["done"], jax.random.PRNGKey(3)
    )
    # one-step predictions from the prior (no look at o_t): decode a prior sample at h_t, t >= 1
    z = rssm.sample_latent(out["prior"], jax.random.PRNGKey(4), 4, 4)
    pred, _ = model.apply(params, jnp.concatenate([z, out["deter"]], -1), method=rssm.WorldModel.decode)
    blocks = lambda x: jnp.argmax(x[1:].reshape(x.shape[0] - 1, 64, 2, 2, 4), -1)  # noqa: E731
    accuracy = float(jnp.mean(blocks(pred) == blocks(w["obs"])))
    assert accuracy > 0.9, accuracy  # chance is 0.25; ignoring the actions gives about 0.4
    r_hat = model.apply(
        params, jnp.concatenate([out["stoch"], out["next_deter"]], -1), method=rssm.WorldModel.reward
    )
    assert float(jnp.mean(jnp.abs(r_hat.mean(-1) - w["reward"]))) < 0.1


def test_imagined_actions_respect_the_predicted_available_actions():
    env, alg = _algo()
    state = alg.init(jax.random.PRNGKey(0))
    # make the available-action head predict action 0 only
    last = sorted(k for k in state.model["params"]["avail_net"] if k.startswith("Dense"))[-1]
    bias = jnp.full((alg.n_actions,), -50.0).at[0].set(50.0)
    model = jax.tree.map(lambda x: x, state.model)
    model["params"]["avail_net"][last]["bias"] = bias
    model["params"]["avail_net"][last]["kernel"] = jnp.zeros_like(
        model["params"]["avail_net"][last]["kernel"]
    )
    state = state.replace(model=model)
    s = alg.sizes
    deter = jax.random.normal(jax.random.PRNGKey(1), (6, alg.n, s.deter))
    stoch = rssm.sample_latent(
        jnp.zeros((6, alg.n, s.stoch)), jax.random.PRNGKey(2), s.n_categoricals, s.n_classes
    )
    imag, _ = alg.imagine(state, deter, stoch, jax.random.PRNGKey(3))
    assert (imag["action"] == 0).all()
    assert (imag["logits"][..., 1:] == MASKED_LOGIT).all() and (imag["avail"][..., 0]).all()


def test_presets_and_unknown_preset():
    small = resolve(["algo=mamba", f"task={TASK}", "preset=small"]).algo
    paper = resolve(["algo=mamba", f"task={TASK}"]).algo
    assert (paper.model_width, paper.n_categoricals, paper.model_updates) == (256, 32, 60)
    assert (small.model_width, small.n_categoricals, small.model_updates) == (64, 8, 10)
    assert resolve(["algo=mamba", f"task={TASK}", "preset=small", "model_width=32"]).algo.model_width == 32
    assert resolve(["algo=mag", f"task={TASK}", "preset=small"]).algo.rm_hidden == 64  # presets merge
    with pytest.raises(
        ConfigError, match="unknown preset 'huge' for algorithm 'mamba'; presets: paper, small"
    ):
        resolve(["algo=mamba", f"task={TASK}", "preset=huge"])


def test_heterogeneous_agents_are_refused():
    with pytest.raises(ConfigError, match="one observation and action space"):
        train(resolve(["algo=mamba", "task=mpe/simple_speaker_listener", "preset=small", "progress=false"]))


# ---- through the runner ----------------------------------------------------------------------------
def _rows(run_dir: Path, seed: int | None = None) -> list[dict]:
    with open(Path(run_dir) / "metrics.csv", newline="") as f:
        rows = [
            {k: v for k, v in r.items() if k not in ("wall_time", "steps_per_s")} for r in csv.DictReader(f)
        ]
    return [r for r in rows if seed is None or int(r["seed"]) == seed]


RUNNER_TASK = "games/climbing"  # the cheapest program to compile (SMAX's masks: test_every_pair)


def _seed_rows_do_not_depend_on_the_other_seeds(runs: dict) -> None:
    """Seed 1 trains the same in the seed-0 run's second place as in the seed-1 run's first (vmapped and
    split over the host devices): a seed's run depends on its key alone, not on its place or its
    neighbour. The runner's own vmapping against separate runs is checked in tests/test_runner.py."""
    a, b = _rows(runs[0], 1), _rows(runs[1], 1)
    assert [r["env_steps"] for r in a] == ["0", "100", "200", "300"]
    for ra, rb in zip(a, b, strict=True):
        for k in ra:
            np.testing.assert_allclose(float(ra[k]), float(rb[k]), rtol=2e-4, atol=1e-5, err_msg=k)
    assert float(a[-1]["loss/model_rec"]) > 0
    assert a[-1]["loss/model_rec"] != _rows(runs[0], 0)[-1]["loss/model_rec"]  # the seeds really differ


def _resumed_run_equals_uninterrupted(runs: dict, args: list[str], tmp_path: Path, die_at_checkpoint) -> None:
    die_at_checkpoint(2, train, resolve([*args, "seed=0", f"run_dir={tmp_path / 'k'}"]))
    train(resolve([f"resume={tmp_path / 'k'}", "progress=false"]))
    assert _rows(tmp_path / "k") == _rows(runs[0])


def _mag_with_one_candidate_is_mamba(runs: dict, args: list[str], tmp_path: Path) -> None:
    """MAG with L = 1 (and MAMBA's model learning rate) trains exactly as MAMBA on the same seeds: its
    planning keeps the only candidate, drawn as MAMBA draws its latent, and its error predictor touches
    nothing else."""
    mamba_lr = resolve([*args, "seed=0"]).algo.model_lr
    mag = ["algo=mag", *args[1:], "seed=0", "plan_candidates=1", f"model_lr={mamba_lr}"]
    a = _rows(runs[0])
    b = _rows(train(resolve([*mag, f"run_dir={tmp_path / 'mag'}"])))
    assert len(a) == len(b) == 8  # 4 rows of each seed
    for ra, rb in zip(a, b, strict=True):
        assert {k: ra[k] for k in ra} == {k: rb[k] for k in ra}
    assert "loss/rm_loss" in b[-1] and float(b[-1]["loss/rm_loss"]) > 0


def test_seeds_resume_and_mag_with_one_candidate(tmp_path, die_at_checkpoint, jax_compilation_cache):
    """Through the runner, two-seed MAMBA runs of seeds (0, 1) and (1, 2), one program (one test, so that
    MAMBA's whole program is compiled once, on one worker, and MAG's once): a seed trains the same in
    either place, a resumed run equals the uninterrupted one, and MAG with one candidate equals MAMBA."""
    args = ["algo=mamba", f"task={RUNNER_TASK}", "preset=small", *TINY_MODEL, *RUN, "num_seeds=2"]
    runs = {s: train(resolve([*args, f"seed={s}", f"run_dir={tmp_path / f's{s}'}"])) for s in (0, 1)}
    _seed_rows_do_not_depend_on_the_other_seeds(runs)
    _resumed_run_equals_uninterrupted(runs, args, tmp_path, die_at_checkpoint)
    _mag_with_one_candidate_is_mamba(runs, args, tmp_path)
