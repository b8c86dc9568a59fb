"""AORPO: adaptive opponent-wise rollout policy optimisation (AORPO paper, Algorithm 1, Sec. 5, App. E-F).

MASAC (``marlow.algos.offpolicy.masac``, Eqs. 4-5) trained on a mix of real transitions and branched model
rollouts. Every agent i (the "ego") has
- the shared probabilistic ensemble dynamics model (``marlow.world.dynamics``; ``model_per_agent`` gives
  every agent its own, the reference code's layout), trained on the real buffer D_env (line 3);
- an opponent model pi^{i->j}(a_j | o_j) of every other agent j (``marlow.world.opponents``), refitted on the
  latest real transitions before every round of policy updates, with its error eps_j (lines 6-7);
- a policy pi_i(a_i | o_i, a_hat_-i) conditioned on the opponent models' (greedy) predictions of the
  others' actions (Sec. 5.1 "Agent Learning", Eq. 4), used both to act in the env and in the rollouts;
- its own model buffer D_model^i filled with branched rollouts (lines 9-20, ``marlow.world.branched``): M
  start observations sampled from D_env, k steps in the model, the opponent model of j used for the first
  n_j = floor(k min_j' eps_j' / eps_j) steps and j's real policy queried afterwards (one communication per
  start state and step; other-team agents are never queried, Appendix G.3).

Policy learning (line 21): ``updates_per_step`` = G updates per round (one round every ``update_every`` real
steps), each on ``batch_size`` transitions of which ``real_ratio`` come from D_env and the rest from
D_model^i. In agent i's update the critic target's next actions of the others are sampled from i's
opponent models (agent i never reads the others' policies; Eq. 5) and its own from pi_i; Eq. 4 takes the
others' actions from the batch. Before the dynamics model is first trained (``model_warmup_steps`` of
model-free data, the reference code's 1500 episodes) AORPO makes MASAC's one update per round on real data
only (``full_round``: the learner runs one update instead of G, a real branch, and logs the updates
applied), so the warm-up is not a G-times-more-updates advantage over the model-free baseline.

Choices the paper leaves open are marked in conf/algo/aorpo.yaml ("ours" with the reason).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import jax
import jax.numpy as jnp
from flax import struct

from marlow.algos import common
from marlow.algos.offpolicy import masac
from marlow.buffers import replay
from marlow.envs.api import EnvSpec
from marlow.errors import ConfigError
from marlow.schema.groups import sub_config
from marlow.schema.ranges import Count, Range, Size
from marlow.world.branched import (
    Actors,
    Length,
    Rollout,
    Scheme,
    branched_rollout,
    flatten,
    opponent_steps,
    rollout_length,
)
from marlow.world.dynamics import DynamicsModel
from marlow.world.ensemble import MODEL_PREFIX, EnsembleConfig, ModelKeys
from marlow.world.model_env import ModelEnv
from marlow.world.opponents import OPP_PREFIX, OpponentConfig, OpponentKeys, OpponentModels

NAME = "aorpo"
KIND = "off_policy"
DESCRIPTION = "AORPO: MASAC on branched model rollouts with adaptive opponent-wise opponent models"
SUPPORTED_ACTIONS = frozenset({"discrete", "multi_discrete", "box"})


@dataclass
class WorldConfig(ModelKeys, OpponentKeys):
    """The world-model and rollout fields shared by AORPO and AORDPG (defaults and sources in
    conf/world.yaml): the ensemble's ``model_*`` fields (:data:`~marlow.world.ensemble.ModelKeys`), the
    world model's schedule, and :class:`~marlow.world.opponents.OpponentConfig`'s fields prefixed ``opp_``
    (:data:`~marlow.world.opponents.OpponentKeys`)."""

    real_ratio: Annotated[float, Range(0, 1, lo_open=True)]  # every batch keeps real rows; 1 = real only
    model_warmup_steps: Count
    model_train_every: Size
    model_lr_halve_every: Count  # 0 = never
    model_per_agent: bool
    model_buffer_size: Size
    epoch_steps: Size
    rollout_batch: Size
    rollout_min: Size
    rollout_max: Size
    rollout_start: Count  # epochs; rollout_start < rollout_end is checked in Algorithm
    rollout_end: Count
    rollout_scheme: Scheme


@dataclass
class Config(masac.Config, WorldConfig):
    """MASAC's fields (conf/algo/masac.yaml) plus :class:`WorldConfig`'s (conf/world.yaml)."""


@struct.dataclass
class State:
    base: Any  # the model-free learner's state (masac.State; maddpg.State for AORDPG)
    dyn: Any
    opp: Any
    model_buf: dict[str, replay.ReplayBuffer]
    eps: dict[str, dict[str, jax.Array]]  # ego -> j -> eps_j of ego's model of j (Appendix E)
    n: dict[str, dict[str, jax.Array]]  # ego -> j -> n_j of the latest rollouts
    k: jax.Array  # rollout length of the latest rollouts
    comm: jax.Array  # real-agent queries inside rollouts so far (float32: sums of multiples of M stay exact
    # up to 2^24 x M, e.g. 1.7e10 for M = 1024, far above the paper's budgets)
    model_mse: jax.Array  # the dynamics model's latest holdout MSE (normalised units)
    model_trains: jax.Array


class Algorithm:
    BASE = masac  # the model-free learner trained on real + model data

    def __init__(self, spec: EnvSpec, cfg: Config):
        if not (1 <= cfg.rollout_min <= cfg.rollout_max and cfg.rollout_start < cfg.rollout_end):
            raise ConfigError(
                "the rollout schedule needs 1 <= rollout_min <= rollout_max and rollout_start < rollout_end"
            )
        if cfg.model_buffer_size < cfg.rollout_batch * cfg.rollout_max:
            raise ConfigError(
                f"model_buffer_size={cfg.model_buffer_size} must hold one round of rollouts "
                f"(rollout_batch x rollout_max = {cfg.rollout_batch * cfg.rollout_max})"
            )
        # eps_j is measured on the held-out rows of the latest window: at the first fit the buffer holds
        # at least max(warmup_steps, update_every) transitions, so the holdout is never empty (an empty one
        # would make eps_j undefined)
        first_fit = min(cfg.opp_window, max(cfg.warmup_steps, cfg.update_every))
        if int(cfg.opp_holdout_ratio * first_fit) < 1:
            raise ConfigError(
                f"opp_holdout_ratio={cfg.opp_holdout_ratio} holds out no transition of the first opponent "
                f"model fit ({first_fit} transitions: min(opp_window, max(warmup_steps, update_every))); "
                "eps_j would be undefined"
            )
        self.spec, self.cfg = spec, cfg
        self.others = {a: tuple(b for b in spec.agents if b != a) for a in spec.agents}
        extra = {a: sum(spec.act_space(b).flat_dim for b in self.others[a]) for a in spec.agents}
        # Eq. 4: pi_i(a_i | o_i, a_hat_-i): the policy input gains the others' flat predicted actions
        self.base = self.BASE.Algorithm(spec, cfg, extra_inputs=extra)
        self.policies = self.base.policies
        self.dyn = DynamicsModel(spec, sub_config(cfg, EnsembleConfig, MODEL_PREFIX), cfg.model_per_agent)
        self.opp = OpponentModels(spec, sub_config(cfg, OpponentConfig, OPP_PREFIX))
        self.n_real = max(1, int(round(cfg.batch_size * cfg.real_ratio)))
        self.n_model = cfg.batch_size - self.n_real

    # ---- state ------------------------------------------------------------------------------------
    def init(self, key: jax.Array) -> State:
        k_base, k_dyn, k_opp = jax.random.split(key, 3)
        spec = self.spec
        example = replay.example_transition(spec)
        zero = jnp.float32(0)
        return State(
            base=self.base.init(k_base),
            dyn=self.dyn.init(k_dyn),
            opp=self.opp.init(k_opp),
            model_buf={a: replay.init(example, self.cfg.model_buffer_size) for a in spec.agents},
            eps={a: {j: jnp.float32(1) for j in self.others[a]} for a in spec.agents},
            n={a: {j: jnp.int32(0) for j in self.others[a]} for a in spec.agents},
            k=jnp.int32(0),
            comm=zero,
            model_mse=jnp.float32(0),  # 0 until the first training (a NaN would read as divergence)
            model_trains=jnp.int32(0),
        )

    # ---- acting -----------------------------------------------------------------------------------
    def policy_input(self, opp_state, agent: str, obs: dict) -> jax.Array:
        """o_i and the greedy predictions a_hat_-i of i's opponent models from the others' observations
        (Eq. 4's conditioning; greedy as the reference code's argmax)."""
        preds = self.opp.predict_others(opp_state, agent, obs, jax.random.PRNGKey(0), True, flat=True)
        return jnp.concatenate([obs[agent]] + [preds[j] for j in self.others[agent]], axis=-1)

    def agent_act(self, state: State, agent: str, obs: dict, key: jax.Array, explore: bool) -> jax.Array:
        x = self.policy_input(state.opp, agent, obs)
        if explore:
            return self.policies.sample(state.base.actor, agent, x, key).env
        return self.policies.mode(state.base.actor, agent, x)[0]

    def act(self, state: State, obs: dict, key: jax.Array, explore: bool) -> dict:
        keys = jax.random.split(key, self.spec.num_agents)
        return {
            a: self.agent_act(state, a, obs, k, explore) for a, k in zip(self.spec.agents, keys, strict=True)
        }

    # ---- models and rollouts (Algorithm 1 lines 3 and 6-20) ----------------------------------------
    def prepare(self, state: State, buffer: replay.ReplayBuffer, key: jax.Array, step) -> tuple[State, dict]:
        cfg = self.cfg
        k_dyn, k_opp, k_roll = jax.random.split(key, 3)
        step = jnp.asarray(step, jnp.int32)
        prev = step - cfg.update_every
        # line 3: (re)train the dynamics model every model_train_every real steps once warm-up is over;
        # ``step`` is the same for every seed, so this cond is a real branch under vmap. The runner calls
        # prepare only from the end of the policy warm-up (warmup_steps) on, so the first training is due
        # at the first call at or after both warm-ups (else a policy warm-up longer than the model's would
        # run rollouts in an untrained model until the next multiple of model_train_every).
        crossed = (step // cfg.model_train_every) > (prev // cfg.model_train_every)
        first = (step >= cfg.model_warmup_steps) & (prev < max(cfg.model_warmup_steps, cfg.warmup_steps))
        train_now = (step >= cfg.model_warmup_steps) & (crossed | first)

        def train(s):
            dyn = s.dyn
            if cfg.model_lr_halve_every > 0:  # Appendix F: the model lr is halved every 5,000 episodes
                scale = 0.5 ** (step // cfg.model_lr_halve_every).astype(jnp.float32)
                dyn = dyn.replace(lr_scale=jnp.full_like(dyn.lr_scale, scale))
            dyn, m = self.dyn.train(dyn, buffer, k_dyn)
            return s.replace(dyn=dyn, model_mse=jnp.mean(m["holdout_mse"]), model_trains=s.model_trains + 1)

        state = jax.lax.cond(train_now, train, lambda s: s, state)

        # lines 6-7: opponent models on the latest real transitions, their errors eps_j
        window = min(cfg.opp_window, buffer.capacity)
        data = replay.recent(buffer, window)
        n_valid = jnp.minimum(buffer.size, window)
        opp, om = self.opp.fit(state.opp, data, n_valid, k_opp)
        eps = om["eps"]  # finite: __init__ checks that every fit has holdout rows
        state = state.replace(opp=opp, eps=eps)

        # lines 8-20: branched rollouts into every ego's model buffer, once the model is trained
        ready = step >= cfg.model_warmup_steps
        state = jax.lax.cond(ready, lambda s: self.rollouts(s, buffer, k_roll, step), lambda s: s, state)
        metrics = {
            "model_mse": state.model_mse,
            "opp_eps": jnp.mean(jnp.stack([e for a in eps for e in eps[a].values()])),
            "rollout_k": state.k.astype(jnp.float32),
            "communications": state.comm,
        }
        return state, metrics

    def rollout_length(self, step) -> jax.Array:
        """k of Tables 1-2 at the current epoch (``epoch_steps`` real steps per epoch)."""
        c = self.cfg
        return rollout_length(
            step // c.epoch_steps, c.rollout_min, c.rollout_max, c.rollout_start, c.rollout_end
        )

    def rollouts(self, state: State, buffer: replay.ReplayBuffer, key: jax.Array, step) -> State:
        cfg, spec = self.cfg, self.spec
        k = self.rollout_length(step)
        bufs, ns, comm = dict(state.model_buf), {}, state.comm
        for ego, key_e in zip(spec.agents, jax.random.split(key, spec.num_agents), strict=True):
            k_start, k_run = jax.random.split(key_e)
            start = replay.sample(buffer, k_start, cfg.rollout_batch)["obs"]
            n, r = self.ego_rollout(state, ego, start, k_run, k)
            trans, valid = flatten(r)
            bufs[ego] = replay.add_masked(bufs[ego], trans, valid)
            ns[ego] = n
            comm = comm + sum(c.astype(jnp.float32) for c in r.communication.values())
        return state.replace(model_buf=bufs, n=ns, k=k, comm=comm)

    def ego_rollout(
        self, state: State, ego: str, start: dict, key: jax.Array, k, scheme: str | None = None, k_max=None
    ) -> tuple[dict[str, jax.Array], Rollout]:
        """One ego's branched rollouts (Algorithm 1 lines 8-19) from the start observations ``start``
        (agent -> ``[M, d]``): the dynamics model, the ego's opponent models, its teammates' real
        (exploring) policies and n_j from its opponent models' errors ``state.eps[ego]``. ``scheme``
        defaults to ``rollout_scheme``, ``k_max`` to ``rollout_max``. Returns ``(n, rollout)``; used by
        :meth:`rollouts` and by :mod:`marlow.world.compounding`."""
        cfg, spec = self.cfg, self.spec
        n = opponent_steps(state.eps[ego], k, simulate_only=spec.opponents(ego))
        dyn_agent = ego if cfg.model_per_agent else None

        def predict(key, obs, actions):
            return self.dyn.step(state.dyn, obs, actions, key, agent=dyn_agent)

        env = ModelEnv(spec, predict, batched=True)
        model_act = {
            j: (lambda obs, kk, j=j: self.opp.predict(state.opp, ego, j, obs[j], kk, False))
            for j in self.others[ego]
        }
        real_act = {
            j: (lambda obs, kk, j=j: self.agent_act(state, j, obs, kk, True)) for j in spec.teammates(ego)
        }
        actors = Actors(lambda obs, kk: self.agent_act(state, ego, obs, kk, True), model_act, real_act)
        length = Length(k, cfg.rollout_max if k_max is None else k_max, n)
        r = branched_rollout(
            key, env, start, ego, actors, length, cfg.rollout_scheme if scheme is None else scheme
        )
        return n, r

    def communications(self, state: State) -> jax.Array:
        return state.comm

    # ---- policy learning (line 21) -----------------------------------------------------------------
    # Before the dynamics model is first trained a round is MASAC's one update on real data
    # (OffPolicyLearner runs REDUCED_UPDATES instead of G when full_round is false: a real branch).
    REDUCED_UPDATES = 1

    def full_round(self, step) -> jax.Array:
        """Whether the round at env step ``step`` makes all G updates: from the first model training on
        (``prepare`` trains the model and fills the model buffers at the first round at or after both
        warm-ups, so from ``model_warmup_steps`` on)."""
        return jnp.asarray(step) >= self.cfg.model_warmup_steps

    def update(self, state: State, batch: dict, key: jax.Array) -> tuple[State, dict]:
        """One MASAC update per agent on its mixed batch (real only while the model buffers are empty)."""
        spec = self.spec
        k_model, k_next, k_pi = jax.random.split(key, 3)
        ready = state.model_buf[spec.agents[0]].size > 0
        parts = []
        keys = zip(
            spec.agents,
            jax.random.split(k_model, spec.num_agents),
            jax.random.split(k_next, spec.num_agents),
            jax.random.split(k_pi, spec.num_agents),
            strict=True,
        )
        for a, km, kn, kp in keys:
            mixed = self.mixed_batch(state.model_buf[a], batch, km)
            b = jax.tree.map(lambda m, r: jnp.where(ready, m, r), mixed, batch)
            # Eq. 5's next actions: the ego's own from its policy, the others' from its opponent models
            k_own, k_opp = jax.random.split(kn)
            nobs = b["next_obs"]
            flats = self.opp.predict_others(state.opp, a, nobs, k_opp, False, flat=True)
            pol_next = self.policy_input(state.opp, a, nobs)
            pol_in = self.policy_input(state.opp, a, b["obs"])
            parts.append(self.agent_step(state.base, a, b, flats, pol_next, pol_in, k_own, kp))
        base, metrics = self.base.combine(state.base, parts)
        return state.replace(base=base), metrics

    def agent_step(self, base_state, a: str, batch: dict, next_flats: dict, pol_next, pol_in, k_own, key):
        """MASAC's Eqs. (4)-(5) for agent ``a``: a'_i ~ pi_i(.|o'_i, a_hat'_-i) with its entropy term."""
        own = self.policies.sample(base_state.actor, a, pol_next, k_own)
        q_next_in = common.joint(self.spec, batch["next_obs"], {**next_flats, a: own.flat})
        return self.base.agent_update(base_state, a, batch, q_next_in, own.entropy, pol_in, key)

    def mixed_batch(self, model_buf: replay.ReplayBuffer, real: dict, key: jax.Array) -> dict:
        """``real_ratio`` of the batch from the real one, the rest sampled from the model buffer."""
        model = replay.sample(model_buf, key, self.n_model)
        return jax.tree.map(lambda r, m: jnp.concatenate([r[: self.n_real], m.astype(r.dtype)]), real, model)

    def diagnostics(self, state: State) -> dict:
        out = {
            "rollout_k": state.k.astype(jnp.float32),
            "communications": state.comm,
            "model_mse": state.model_mse,
        }
        for a in self.spec.agents:
            for j in self.others[a]:
                out[f"eps/{a}/{j}"] = state.eps[a][j]
                out[f"n/{a}/{j}"] = state.n[a][j].astype(jnp.float32)
        return out
