"""AORPO (Algorithm 1) wiring: the policy conditioned on its own opponent models' predictions, the
model-training cadence, exact communication counts of a round of rollouts (cooperative and competitive),
the model buffer receiving exactly M x k rollout transitions per ego, the mixed batch's real and model
rows, MASAC's one update per round before the model is trained, Eqs. 4-5 by hand with the others' next
actions from the opponent models, and AORPO reaching the Climb equilibrium (Fig. 3). The world-model
pieces have their own tests (test_ensemble, test_opponents, test_rollout)."""

from __future__ import annotations

import closed_forms
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from marlow import envs
from marlow.algos import get_algo
from marlow.buffers import replay
from marlow.errors import ConfigError
from marlow.experiment.config import resolve
from marlow.runtime.loggers import read_metrics
from marlow.runtime.runner import train

M = 8
SMALL = [
    "hidden=16,16",
    "batch_size=32",
    "update_every=50",
    "warmup_steps=50",
    "model_warmup_steps=100",
    "model_train_every=200",
    "model_lr_halve_every=200",
    "model_num_members=2",
    "model_num_elites=1",
    "model_hidden=16,16",
    "model_weight_decay=0.0001",
    "model_steps_per_epoch=5",
    "model_max_epochs=2",
    "model_buffer_size=256",
    f"rollout_batch={M}",
    "rollout_start=0",
    "rollout_end=2",
    "rollout_min=1",
    "rollout_max=3",
    "epoch_steps=100",
    "opp_hidden=16",
    "opp_max_epochs=3",
    "opp_window=128",
]


class Setup:
    def __init__(self, task: str, *overrides: str, algo: str = "aorpo"):
        self.env = envs.make(task)
        self.spec = self.env.spec
        self.cfg = resolve([f"algo={algo}", f"task={task}", *SMALL, *overrides]).algo
        self.algo = get_algo(algo).Algorithm(self.spec, self.cfg)
        self.prepare = jax.jit(self.algo.prepare)
        self.update = jax.jit(self.algo.update)
        self.state = jax.jit(self.algo.init)(jax.random.PRNGKey(0))
        self.buffer = self.collect(400)

    def collect(self, n: int) -> replay.ReplayBuffer:
        """``n`` real transitions of random joint actions (the runner's transition format)."""
        trans = replay.random_transitions(self.env, jax.random.PRNGKey(1), n)
        return replay.add(replay.init(jax.tree.map(lambda x: x[0], trans), 1024), trans)


@pytest.fixture(scope="module")
def spread():
    return Setup("mpe/simple_spread")


def predicting(s: Setup, opp_state, actions: dict, ego: str | None = None):
    """Opponent models that predict ``actions[target]`` whatever they see (the last layer's kernel zeroed,
    its bias peaked): every ego's models, or only ``ego``'s."""
    params = jax.tree.map(jnp.copy, opp_state.params)
    for target, p in params.items():
        last = p["params"][max(p["params"], key=lambda n: int(n.split("_")[-1]))]
        n = last["bias"].shape[-1]
        for row, e in enumerate(s.algo.opp.egos[target]):
            if ego in (None, e):
                last["kernel"] = last["kernel"].at[row].set(0.0)
                last["bias"] = last["bias"].at[row].set(30.0 * jax.nn.one_hot(actions[target], n))
    return opp_state.replace(params=params)


def test_policy_is_conditioned_on_opponent_predictions(spread):
    """Eq. 4's pi_i(a_i | o_i, a_hat_-i): the policy input is o_i then the one-hot predictions of i's own
    opponent models, and moving agent_0's predictions moves agent_0's actions and no one else's."""
    s = spread
    for a in s.spec.agents:
        kernel = s.state.base.actor[a]["params"]["Dense_0"]["kernel"]
        assert kernel.shape[0] == s.spec.obs_dim(a) + 2 * 5  # o_i + one-hot predictions of 2 others
    obs = jax.tree.map(lambda x: x[:64], s.buffer.data["obs"])
    zeros = s.state.replace(opp=predicting(s, s.state.opp, {a: 0 for a in s.spec.agents}))
    moved = zeros.replace(opp=predicting(s, zeros.opp, {a: 3 for a in s.spec.agents}, ego="agent_0"))
    eye, policy_input = np.eye(5), jax.jit(s.algo.policy_input, static_argnums=1)
    for st, pred in ((zeros, 0), (moved, 3)):
        x = np.asarray(policy_input(st.opp, "agent_0", obs))
        np.testing.assert_array_equal(x[:, :18], obs["agent_0"])
        np.testing.assert_array_equal(x[:, 18:], np.tile(np.concatenate([eye[pred], eye[pred]]), (64, 1)))
    act = jax.jit(s.algo.act, static_argnums=3)
    before = act(zeros, obs, jax.random.PRNGKey(0), False)
    after = act(moved, obs, jax.random.PRNGKey(0), False)
    assert np.any(np.asarray(before["agent_0"]) != np.asarray(after["agent_0"]))
    for a in ("agent_1", "agent_2"):
        np.testing.assert_array_equal(before[a], after[a])


def test_model_training_cadence(spread):
    """Trained at the end of warm-up (step 100), then whenever a multiple of model_train_every (200) is
    crossed: rounds at steps 50, 100, ..., 450 train at 100, 200 and 400, the model lr halved every
    model_lr_halve_every (200) steps (Appendix F)."""
    s, state, trains, scales = spread, spread.state, [], []
    for step in range(50, 451, 50):
        state, _ = s.prepare(state, s.buffer, jax.random.PRNGKey(step), step)
        trains.append(int(state.model_trains))
        scales.append(float(state.dyn.lr_scale))
    assert trains == [0, 1, 1, 2, 2, 2, 2, 3, 3]
    assert scales == [1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.5, 0.25, 0.25]


def test_model_is_trained_at_the_first_round_when_the_policy_warmup_is_longer():
    """warmup_steps = 250 > model_warmup_steps = 100: the runner's first round (step 250) trains the model
    before any rollout, then the cadence goes on (400)."""
    s = Setup("mpe/simple_spread", "warmup_steps=250")
    state, trains = s.state, []
    for step in range(250, 451, 50):
        state, _ = s.prepare(state, s.buffer, jax.random.PRNGKey(step), step)
        trains.append(int(state.model_trains))
    assert trains == [1, 1, 1, 2, 2]
    assert float(state.model_mse) > 0


def expected_comm(s: Setup, state) -> int:
    k = int(state.k)
    return sum(M * (k - int(state.n[ego][j])) for ego in s.spec.agents for j in s.spec.teammates(ego))


def test_one_round_of_rollouts_counts_communication_exactly(spread):
    s = spread
    before, _ = s.prepare(s.state, s.buffer, jax.random.PRNGKey(7), 50)  # warm-up: no rollouts
    assert float(before.comm) == 0 and int(before.model_buf["agent_0"].size) == 0
    after, m = s.prepare(s.state, s.buffer, jax.random.PRNGKey(7), 200)  # epoch 2: k = 3
    assert int(after.k) == 3
    n = {e: {j: int(v) for j, v in after.n[e].items()} for e in after.n}
    by_hand = 0  # M x (k - n_j) real queries per ego and teammate, n_j from the errors alone
    for ego in s.spec.agents:  # n_j = floor(k min eps / eps_j), the best model used for all k steps
        eps = {j: float(v) for j, v in after.eps[ego].items()}
        for j, e in eps.items():
            n_j = min(3, int(np.floor(3 * min(eps.values()) / e + 1e-4)))
            assert n[ego][j] == n_j
            by_hand += M * (3 - n_j)
        assert int(after.model_buf[ego].size) == M * 3  # M start states x k valid steps
    # three agents: each ego's worse model of its two teammates hands over to the real teammate early
    assert float(after.comm) == by_hand > 0
    assert float(m["communications"]) == float(after.comm)
    assert float(s.algo.communications(after)) == float(after.comm)


def test_competitive_egos_never_query_the_other_team():
    s = Setup("mpe/simple_tag")
    state, _ = s.prepare(s.state, s.buffer, jax.random.PRNGKey(3), 200)
    k = int(state.k)
    for ego in s.spec.agents:
        for j in s.spec.opponents(ego):
            assert int(state.n[ego][j]) == k  # always the opponent model
    assert float(state.comm) == expected_comm(s, state)  # the prey has no teammate: queries nobody


def test_before_the_model_a_round_is_one_real_update(spread, tmp_path):
    """Before the world model is trained a round makes MASAC's single update (a real branch, no update
    computed and discarded); afterwards G. The logged ``updates`` count the updates applied."""
    s = spread
    assert not bool(s.algo.full_round(50)) and bool(s.algo.full_round(100)) and s.algo.REDUCED_UPDATES == 1
    run = train(
        resolve(
            [
                "algo=aorpo",
                "task=mpe/simple_spread",
                f"run_dir={tmp_path / 'run'}",
                *SMALL,
                "num_envs=2",
                "updates_per_step=4",
                "eval_every=200",
                "total_steps=400",
                "eval_episodes=2",
                "progress=false",
                "model_warmup_steps=200",
                "model_train_every=200",
            ]
        )
    )
    m = read_metrics(run)[0]
    # 50-step rounds from the warm-up (50) on: one update each at 50, 100, 150, then G = 4 from 200 on
    assert list(m["updates"]) == [0, 1 + 1 + 1 + 4, 4 * 4]


def rows(tree) -> np.ndarray:
    """Every leaf of a batch-like pytree flattened to ``[rows, features]`` and concatenated."""
    return np.concatenate([np.asarray(x).reshape(x.shape[0], -1) for x in jax.tree.leaves(tree)], -1)


def test_aordpg_learns_on_mixed_batches_with_a_conditioned_deterministic_policy():
    """After the first model training: the mixed batch is real_ratio (0.5) x 32 = 16 rows of the real
    batch, in order, then 16 rows of the ego's model buffer; with two agents each ego's one model is the
    best one, so it is used for all k steps (n = k) and nobody is queried (communication exactly 0)."""
    s = Setup("mpe/simple_speaker_listener", algo="aordpg")  # heterogeneous spaces: Discrete(3) / (5)
    state, _ = s.prepare(s.state, s.buffer, jax.random.PRNGKey(1), 200)
    assert int(state.k) == 3 and float(state.comm) == 0.0
    assert all(int(state.n[e][j]) == 3 for e in state.n for j in state.n[e])
    batch = replay.sample(s.buffer, jax.random.PRNGKey(2), s.cfg.batch_size)
    assert (s.algo.n_real, s.algo.n_model) == (16, 16)
    mixed_batch = jax.jit(s.algo.mixed_batch)
    for a in s.spec.agents:
        mixed = mixed_batch(state.model_buf[a], batch, jax.random.PRNGKey(4))
        np.testing.assert_array_equal(rows(mixed)[:16], rows(batch)[:16])
        stored = rows(jax.tree.map(lambda x, a=a: x[: int(state.model_buf[a].size)], state.model_buf[a].data))
        assert int(state.model_buf[a].size) == M * 3
        for row in rows(mixed)[16:]:  # every model row is one of the M x k rollout transitions
            assert np.any(np.all(np.isclose(stored, row, atol=1e-6), axis=1))
    new, m = s.update(state, batch, jax.random.PRNGKey(3))
    for a in s.spec.agents:
        kernel = new.base.actor[a]["params"]["Dense_0"]["kernel"]
        other = next(b for b in s.spec.agents if b != a)
        assert kernel.shape[0] == s.spec.obs_dim(a) + s.spec.act_space(other).flat_dim
        assert not np.array_equal(kernel, state.base.actor[a]["params"]["Dense_0"]["kernel"])
    assert np.isfinite(float(m["critic_loss"])) and np.isfinite(float(m["actor_loss"]))


def predicted(s: Setup, ego: str, plays: dict, n: int, shift: int = 0) -> dict:
    """{j: n one-hot rows of action plays[j] + shift} for the agents ego models, in its order."""
    return {j: np.tile(np.eye(5)[(plays[j] + shift) % 5], (n, 1)) for j in s.algo.others[ego]}


def test_aorpo_losses_take_the_others_next_actions_from_the_opponent_models(spread):
    """Eqs. 4-5 on AORPO's mixed batch, by hand (closed_forms.soft_losses): the ego's next action from its
    policy conditioned on its models' predictions at s', the others' next actions the models' predictions
    themselves (here constant: agent_j predicted to play j + 1). The same formula with other predicted
    next actions gives another critic loss, so the models' predictions are what the target uses."""
    s, spec = spread, spread.spec
    state, _ = s.prepare(s.state, s.buffer, jax.random.PRNGKey(7), 200)  # model buffers filled
    assert int(state.model_buf["agent_0"].size) > 0
    plays = {a: i + 1 for i, a in enumerate(spec.agents)}
    state = state.replace(opp=predicting(s, state.opp, plays))
    batch = replay.sample(s.buffer, jax.random.PRNGKey(8), s.cfg.batch_size)
    key = jax.random.PRNGKey(9)
    new, m = s.update(state, batch, key)
    k_model, k_next, k_pi = (jax.random.split(k, spec.num_agents) for k in jax.random.split(key, 3))
    exact, shifted, n = [], [], len(batch["done"])
    mixed_batch, out = jax.jit(s.algo.mixed_batch), jax.jit(s.algo.policies.out, static_argnums=1)
    for i, a in enumerate(spec.agents):
        b = mixed_batch(state.model_buf[a], batch, k_model[i])
        k_own = jax.random.split(k_next[i])[0]

        def logits(obs, a=a):
            x = np.concatenate([np.asarray(obs[a]), *predicted(s, a, plays, n).values()], -1)
            return np.asarray(out(state.base.actor, a, x), np.float64)

        args = (s.algo.base, state.base, new.base.critic[a], a, b)
        rest = (logits(b["next_obs"]), k_own, logits(b["obs"]), k_pi[i])
        exact.append(closed_forms.soft_losses(*args, predicted(s, a, plays, n), *rest))
        shifted.append(closed_forms.soft_losses(*args, predicted(s, a, plays, n, 1), *rest)[0])
    critic_loss, actor_loss = np.mean(exact, axis=0)
    np.testing.assert_allclose(float(m["critic_loss"]), critic_loss, rtol=1e-4)
    np.testing.assert_allclose(float(m["actor_loss"]), actor_loss, rtol=1e-4)
    assert abs(np.mean(shifted) - critic_loss) > 1e-3 * abs(critic_loss)


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ("rollout_scheme=sometimes", "rollout_scheme"),
        ("real_ratio=0", "real_ratio"),
        ("model_buffer_size=4", "model_buffer_size"),
        ("rollout_end=0", "rollout schedule"),
        ("opp_holdout=middle", "holdout"),
        ("model_num_elites=9", "elites"),
        ("model_lr_halve_every=-1", "model_lr_halve_every"),
    ],
)
def test_bad_world_config_is_a_one_line_error(override, match):
    """Refused when the config is resolved (a key's range) or when the algorithm is built (keys together)."""
    spec = envs.make("mpe/simple_spread").spec
    with pytest.raises(ConfigError, match=match) as err:
        cfg = resolve(["algo=aorpo", "task=mpe/simple_spread", *SMALL, override]).algo
        get_algo("aorpo").Algorithm(spec, cfg)
    assert "\n" not in str(err.value)


def test_an_opponent_holdout_without_rows_is_refused():
    """eps_j needs held-out transitions at the first fit: a ratio that holds out none is a config error
    (eps_j used to become 1.0 silently)."""
    with pytest.raises(ConfigError, match="opp_holdout_ratio"):
        Setup("mpe/simple_spread", "opp_holdout_ratio=0.001")


def test_aorpo_reaches_the_climb_equilibrium(optimised_xla):
    """AORPO Fig. 3 in small: on games/climb both agents' greedy actions reach each state's unique Nash
    equilibrium, (-0.5, -0.5) in state 1 and (0.5, 0.5) in state 2, within 0.1 on both seeds after
    8,000 env steps at benchmarks/aorpo/climb.py's settings with a 4-member ensemble instead of 7 (about a
    minute of one core; measured: 0.022 and 0.040 at 8,000 steps, 0.76 and 0.82 at 2,000; with a 64 x 64
    ensemble it is still 0.26-0.29 at 8,000). In climb.md AORPO's median seed is within 0.1 at 6,000 steps
    and MASAC's at 11,000. The initial policies play near 0, 0.5 from the equilibrium in every coordinate;
    a learner that does not learn, or learns only one state, stays out of reach."""
    from marlow.analysis.demo import AORPO_CPU
    from marlow.envs.games import CLIMB_LANDMARKS
    from marlow.experiment.loop import Loop
    from marlow.runtime.runner import build, seed_keys

    schedule = {
        **AORPO_CPU,
        "model_warmup_steps": "2000",
        "model_train_every": "2000",
        "epoch_steps": "200",
        "model_num_members": "4",
        "model_num_elites": "3",
    }
    cfg = resolve(
        [
            "algo=aorpo",
            "task=games/climb",
            "total_steps=8000",
            "num_seeds=2",
            "warmup_steps=2000",
            "eval_every=4000",
            *[f"{k}={v}" for k, v in schedule.items()],
        ]
    )
    run = build(cfg)
    cfg, env, alg = run.cfg, run.env, run.algo
    loop = Loop(env, run.learner, cfg.experiment)
    rs = jax.jit(jax.vmap(loop.init))(seed_keys(cfg))
    chunk = optimised_xla(jax.jit(jax.vmap(loop.chunk, in_axes=(0, None, None))), rs, *loop.span(0))
    for c in range(2):
        rs, _ = chunk(rs, *loop.span(c))
    states = jnp.eye(2, dtype=jnp.float32)  # row s: the observation of state s

    def greedy(st):  # [state, agent]
        acts = alg.act(st, {a: states for a in env.spec.agents}, jax.random.PRNGKey(0), False)
        return jnp.stack([acts[a][:, 0] for a in env.spec.agents], axis=-1)

    dist = np.abs(np.asarray(jax.vmap(greedy)(rs.learner.algo)) - np.asarray(CLIMB_LANDMARKS)[None])
    assert np.all(dist <= 0.1), dist.max(axis=(1, 2))
