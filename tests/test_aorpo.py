"""AORPO (Algorithm 1) wiring: the policy conditioned on opponent predictions, the model-training cadence,
exact communication counts of a round of rollouts (cooperative and competitive), the model buffer
receiving exactly M x k rollout transitions per ego, and MASAC's one update per round before the model is
trained. The world-model pieces have their own tests (test_ensemble, test_opponents, test_rollout)."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from marlow import envs
from marlow.algos import get_algo
from marlow.buffers import replay
from marlow.errors import ConfigError
from marlow.experiment.config import resolve
from marlow.experiment.logging import read_metrics
from marlow.experiment.runner import train

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


def test_policy_is_conditioned_on_opponent_predictions(spread):
    s = spread
    for a in s.spec.agents:
        kernel = s.state.base.actor[a]["params"]["Dense_0"]["kernel"]
        assert kernel.shape[0] == s.spec.obs_dim(a) + 2 * 5  # o_i + one-hot predictions of 2 others
    obs = jax.tree.map(lambda x: x[:4], s.buffer.data["obs"])
    acts = s.algo.act(s.state, obs, jax.random.PRNGKey(0), True)
    assert all(acts[a].shape == (4,) for a in s.spec.agents)


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
    for ego in s.spec.agents:  # n_j = floor(k min eps / eps_j), the best model used for all k steps
        eps = {j: float(v) for j, v in after.eps[ego].items()}
        for j, e in eps.items():
            assert n[ego][j] == min(3, int(np.floor(3 * min(eps.values()) / e + 1e-4)))
        assert int(after.model_buf[ego].size) == M * 3  # M start states x k valid steps
    assert float(after.comm) == expected_comm(s, after)
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


def test_aordpg_learns_on_mixed_batches_with_a_conditioned_deterministic_policy():
    s = Setup("mpe/simple_speaker_listener", algo="aordpg")  # heterogeneous spaces: Discrete(3) / (5)
    state, _ = s.prepare(s.state, s.buffer, jax.random.PRNGKey(1), 200)
    assert float(state.comm) == expected_comm(s, state) and float(state.comm) >= 0
    batch = replay.sample(s.buffer, jax.random.PRNGKey(2), s.cfg.batch_size)
    new, m = s.update(state, batch, jax.random.PRNGKey(3))
    for a in s.spec.agents:
        kernel = new.base.actor[a]["params"]["Dense_0"]["kernel"]
        other = next(b for b in s.spec.agents if b != a)
        assert kernel.shape[0] == s.spec.obs_dim(a) + s.spec.act_space(other).flat_dim
        assert not np.array_equal(kernel, state.base.actor[a]["params"]["Dense_0"]["kernel"])
    assert np.isfinite(float(m["critic_loss"])) and np.isfinite(float(m["actor_loss"]))


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
