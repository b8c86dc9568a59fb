"""Teammate Lookahead (the Teammate Lookahead paper, Algorithms 1-2; the authors' code xlnwel/grl2-jax,
``algo/happo_mb``; facts in docs/reference/lookahead.md): HAPPO or MAPPO whose real data is collected by
*lookahead* policies, one extra policy update ahead of the ego policies, made inside a learned model of the
team, and whose ego update corrects for that with V-trace.

One ``learn`` call at iteration k receives real data collected with the lookahead policies pi-tilde^{k+1}
(their log-probabilities stored as the behaviour mu) and

1. **ego update** pi^k -> pi^{k+1}: the base algorithm's update (HAPPO's sequential agents or MAPPO's
   joint step) on that data with V-trace instead of GAE (Espeholt et al. 2018, Eq. 1; ``ppo.vtrace``):
   agent i's advantage uses its own ratio rho_i = pi_i / mu_i (rho-bar = min(rho_i, rho_clip),
   c = lambda min(rho_i, c_clip)), recomputed at every minibatch from the parameters being updated
   (``vtrace_recompute``; minibatches are then whole env sequences), the PPO ratio is taken against mu,
   and the critic's targets use the joint ratio prod_i rho_i at pi^k (ours: one critic for the team, and
   the joint policy is what it evaluates);
2. **diagnostic** (Sec. 4.3) on ``diag_samples`` fresh real observations:
   D_KL(pi^{k+1} || pi^k) - D_KL(pi^{k+1} || pi-tilde^{k+1}) (joint KL = the sum over agents), > 0 when the
   lookahead policies were closer to the next ego policies than the current ones were;
3. **model**: its one-step error on this (fresh) data, then the data joins the model's replay and the model
   (:class:`marlow.world.team_model.TeamModel`) is trained;
4. **lookahead** (once the run has ``la_warmup_steps`` env steps; before that pi-tilde = pi): copy the new
   ego policies and critic into the lookahead ones (keeping the lookahead's own optimiser state), then
   ``la_rounds`` times: ``la_rollouts`` model episodes of ``la_episode_length`` steps from observations
   drawn from the ``la_start_window`` newest real transitions, rolled by the rollout engine in a
   :class:`marlow.world.model_env.ModelEnv`, and one plain base-algorithm update of the lookahead
   policies on them (``la_epochs`` x ``la_minibatches``, entropy ``la_ent_coef``) -> pi-tilde^{k+2}, which
   collects the next iteration's data.

Steps 1 and 2 of the paper's loop (model training, then lookahead) come in this order at the end of the
previous call, so the sequence model -> lookahead -> real collection -> ego update is the paper's.

The critics of both the ego and the lookahead read the joint observation, not the task's global state:
the model predicts observations only, and the lookahead starts from a copy of the ego critic (ours).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from marlow import rollout
from marlow.algos.learner import OnPolicyDefaults
from marlow.algos.onpolicy import ppo
from marlow.algos.onpolicy.centralised import CentralisedPPO
from marlow.algos.onpolicy.centralised import State as BaseState
from marlow.buffers import replay
from marlow.envs.api import EnvSpec
from marlow.errors import ConfigError
from marlow.schema.groups import sub_config
from marlow.schema.ranges import Count, NonNegative, Positive, Size
from marlow.world.ensemble import MODEL_PREFIX, EnsembleConfig, ModelKeys
from marlow.world.model_env import ModelEnv
from marlow.world.team_model import TeamModel


@dataclass
class LookaheadConfig(ModelKeys):
    """The lookahead, V-trace and model keys (defaults and sources in conf/lookahead.yaml): the ensemble's
    ``model_*`` fields (:data:`~marlow.world.ensemble.ModelKeys`), plus ``model_buffer_size`` and
    ``model_term_steps``."""

    la_rounds: Size
    la_warmup_steps: Count  # 0: look ahead from the first iteration
    la_rollouts: Size
    la_episode_length: Size
    la_epochs: Size
    la_minibatches: Size
    la_ent_coef: NonNegative
    la_start_window: Size
    la_model_mode: bool
    vtrace_rho_clip: Positive  # rho-bar = min(rho, rho_clip): 0 would zero every TD error
    vtrace_c_clip: Positive
    vtrace_recompute: bool
    diag_samples: Size
    model_buffer_size: Size
    model_term_steps: Count  # 0: the termination head is not trained


def _env_major(tree):
    """``[T, B, ...]`` leaves -> ``[B, T, ...]`` (minibatches of whole env sequences)."""
    return jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), tree)


class VTraceEgo:
    """The ego update of step 1 (module docstring), mixed into the base algorithm's class: its ``batch``
    makes V-trace targets, its ``advantage`` recomputes them per minibatch (normalised over the minibatch
    when ``normalize_advantages``). ``factor_against`` (HAPPO's M, through each sample's ``factor_base``):
    ``"mu"`` takes the earlier agents' ratios against the behaviour (the authors' code), ``"old"`` against
    pi^k (HARL's M)."""

    GLOBAL_STATE = False
    factor_against = "mu"

    def _vtrace(self, vt: ppo.Steps, rho, time_major: bool):
        cfg = self.cfg
        if not time_major:
            vt, rho = jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), (vt, rho))
        adv, target = ppo.vtrace(
            vt, rho, cfg.gamma, cfg.gae_lambda, rho_clip=cfg.vtrace_rho_clip, c_clip=cfg.vtrace_c_clip
        )
        if not time_major:
            adv, target = jnp.swapaxes(adv, 0, 1), jnp.swapaxes(target, 0, 1)
        return adv, target

    def _normalise(self, adv):
        return (adv - jnp.mean(adv)) / (jnp.std(adv) + 1e-8) if self.cfg.normalize_advantages else adv

    def batch(self, state: BaseState, traj: rollout.Trajectory):
        cfg, x = self.cfg, traj.extras
        team_r = jnp.mean(jnp.stack([traj.rewards[a] for a in self.spec.agents]), axis=0)
        s = self.critic_input(traj.obs, traj.info)
        v = self.value(state.params, state.vnorm, s)
        nv = self.value(state.params, state.vnorm, self.critic_input(traj.next_obs, traj.info))
        vt = ppo.Steps(team_r, v, nv, traj.terminated, traj.done)
        log_rho, agents = {}, {}
        for a in self.spec.agents:
            mask = None
            logp_k, _ = self.actors.log_prob_entropy(
                self.actor_params(state.params, a), a, traj.obs[a], x["action"][a], mask
            )
            log_rho[a] = logp_k - x["log_prob"][a]
            adv_a, _ = self._vtrace(vt, jnp.exp(log_rho[a]), time_major=True)
            agents[a] = {
                "obs": traj.obs[a],
                "mask": mask,
                "action": x["action"][a],
                "log_prob": x["log_prob"][a],  # mu: the PPO ratio is taken against the behaviour
                "factor_base": x["log_prob"][a] if self.factor_against == "mu" else logp_k,
                "adv": self._normalise(adv_a),
                "vt": vt,
            }
        joint = jnp.exp(sum(log_rho.values()))
        adv, target = self._vtrace(vt, joint, time_major=True)
        adv, target, value, vn, ev = ppo.targets(cfg, adv, target, v, state.vnorm)
        data = {"agents": agents, "adv": adv, "state": s, "target": target, "value": value}
        if cfg.vtrace_recompute:
            data = _env_major(data)  # minibatches of whole sequences, so V-trace can be recomputed
        else:
            data = jax.tree.map(lambda z: z.reshape((-1,) + z.shape[2:]), data)
        return data, vn, ev

    def advantage(self, a: str, mb: dict, adv, logp):
        d = mb["agents"][a]
        if not self.cfg.vtrace_recompute:
            return d["adv"]
        adv_a, _ = self._vtrace(d["vt"], jnp.exp(logp - d["log_prob"]), time_major=False)
        return self._normalise(adv_a)


@struct.dataclass
class State:
    ego: BaseState  # pi^k and the team critic
    la: BaseState  # pi-tilde: the behaviour policies (params), with the lookahead's own optimiser state
    model: Any  # TeamModelState
    buf: replay.ReplayBuffer  # the model's replay of real transitions
    updates: jax.Array


class Lookahead(OnPolicyDefaults):
    """The Teammate Lookahead learner over a base algorithm class (HAPPO's or MAPPO's ``Algorithm``)."""

    def __init__(self, spec: EnvSpec, cfg, base: type[CentralisedPPO], base_config: type, name: str):
        if spec.action_masks:
            raise ConfigError(f"{name} does not support available-action masks (task {spec.name!r})")
        self.NAME, self.spec, self.cfg = name, spec, cfg
        ego_cls = type(f"{name}_ego", (VTraceEgo, base), {"NAME": name})
        if hasattr(cfg, "teammate_factor"):
            ego_cls.factor_against = cfg.teammate_factor
        self.ego = ego_cls(spec, cfg)
        base_fields = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(base_config)}
        la_changes = {
            "ent_coef": cfg.la_ent_coef,
            "epochs": cfg.la_epochs,
            "num_minibatches": cfg.la_minibatches,
            "rollout_steps": cfg.la_episode_length,
            "anneal_lr": False,
        }
        for k in ("critic_epochs", "critic_minibatches"):
            if k in base_fields:
                la_changes[k] = cfg.la_epochs if k == "critic_epochs" else cfg.la_minibatches
        self.la_cfg = base_config(**{**base_fields, **la_changes})
        self.la_spec = dataclasses.replace(spec, episode_length=cfg.la_episode_length)
        inner_cls = type(f"{name}_lookahead", (base,), {"NAME": f"{name} (lookahead)", "GLOBAL_STATE": False})
        self.inner = inner_cls(self.la_spec, self.la_cfg)
        self.model = TeamModel(spec, sub_config(cfg, EnsembleConfig, MODEL_PREFIX), cfg.model_term_steps)
        self.env_info = self.ego.env_info
        self.steps_per_iter = self.ego.steps_per_iter
        self.window = min(cfg.la_start_window, cfg.model_buffer_size)

    def bind(self, num_envs: int, total_steps: int) -> None:
        cfg = self.cfg  # each key's own range: its field's, checked by ego.bind (ppo.check_schedule)
        batch = cfg.rollout_steps * num_envs
        if cfg.model_buffer_size < batch:
            raise ConfigError(
                f"{self.NAME}: model_buffer_size = {cfg.model_buffer_size} cannot hold one iteration's "
                f"rollout_steps x num_envs = {batch} transitions"
            )
        if cfg.vtrace_recompute:  # minibatches of whole env sequences
            for key, n in self.ego._minibatch_counts().items():
                if n > num_envs:
                    raise ConfigError(
                        f"{self.NAME}: with vtrace_recompute the minibatches are env sequences, so {key} = "
                        f"{n} needs num_envs >= {n} (got {num_envs})"
                    )
        self.ego.bind(num_envs, total_steps)
        self.inner.bind(cfg.la_rollouts, total_steps)

    @property
    def iteration_steps(self) -> int:
        return self.ego.iteration_steps

    # ---- state ------------------------------------------------------------------------------------
    def init(self, key: jax.Array) -> State:
        k_ego, k_la, k_model = jax.random.split(key, 3)
        ego = self.ego.init(k_ego)
        la_opt = self.inner.init(k_la).opt  # the lookahead's own optimiser state
        example = replay.example_transition(self.spec)
        return State(
            ego=ego,
            la=ego.replace(opt=la_opt),
            model=self.model.init(k_model),
            buf=replay.init(example, self.cfg.model_buffer_size),
            updates=jnp.int32(0),
        )

    # ---- acting: the ego greedily, the lookahead policies collect ----------------------------------
    def act(self, state: State, obs: dict, key: jax.Array, explore: bool, info: dict | None = None) -> dict:
        return self.ego.act(state.ego, obs, key, explore, info)

    def policy(self, state: State) -> rollout.Policy:
        """The behaviour policy pi-tilde (its log-probs are mu in the ego update)."""
        return self.ego.policy(state.la)

    # ---- the diagnostic ---------------------------------------------------------------------------
    def kl_gain(self, old: BaseState, new: BaseState, tilde: BaseState, obs: dict) -> dict:
        """Sec. 4.3: D_KL(pi^{k+1} || pi^k) - D_KL(pi^{k+1} || pi-tilde^{k+1}) on observations ``obs``
        (agent -> ``[N, d]``), joint KL = sum over agents of the mean per-agent KL."""
        kl_old = kl_tilde = 0.0
        for a in self.spec.agents:
            p_new = self.ego.actor_params(new.params, a)
            kl_old += jnp.mean(self.ego.actors.kl(p_new, self.ego.actor_params(old.params, a), a, obs[a]))
            kl_tilde += jnp.mean(self.ego.actors.kl(p_new, self.ego.actor_params(tilde.params, a), a, obs[a]))
        gain = kl_old - kl_tilde
        return {"la_kl_gain": gain, "la_kl_new_old": kl_old, "la_kl_new_tilde": kl_tilde}

    # ---- the lookahead round ----------------------------------------------------------------------
    def model_env(self, model_state) -> ModelEnv:
        """The learned model behind the env API, with the lookahead's episode length."""

        def predict(key, obs, actions):
            return self.model.predict(model_state, obs, actions, key, self.cfg.la_model_mode)

        return ModelEnv(self.la_spec, predict, batched=True)

    def lookahead(self, ego: BaseState, la_opt, env, buf: replay.ReplayBuffer, step, key: jax.Array):
        """``la_rounds`` lookahead updates of a copy of ``ego`` in the model env ``env``, from start
        observations among the newest real transitions of ``buf``. Returns (lookahead state, metrics)."""
        cfg = self.cfg
        recent = replay.recent(buf, self.window)["obs"]
        n_recent = jnp.clip(buf.size, 1, self.window)
        behave = self.inner.policy  # rebuilt per round: it closes over the lookahead parameters

        def one_round(la: BaseState, k):
            k_start, k_roll, k_learn = jax.random.split(k, 3)
            idx = self.window - 1 - jax.random.randint(k_start, (cfg.la_rollouts,), 0, n_recent)
            starts = jax.tree.map(lambda x: x[idx], recent)
            carry = rollout.from_states(env, env.start(starts))
            pol = behave(la)
            _, _, traj = rollout.collect(
                env, lambda ps, o, t, kk: pol(ps, o, t, kk, None), carry, k_roll, cfg.la_episode_length
            )
            la, m = self.inner.learn(la, traj, step, k_learn)
            team_r = jnp.mean(jnp.stack([traj.rewards[a] for a in self.spec.agents]), axis=0)
            m = {f"la_{k}": v for k, v in m.items() if k not in ("updates", "lr")}
            m["la_model_reward"] = jnp.mean(team_r)
            return la, m

        la, metrics = jax.lax.scan(one_round, ego.replace(opt=la_opt), jax.random.split(key, cfg.la_rounds))
        return la, jax.tree.map(lambda v: v[-1], metrics)

    # ---- one iteration ----------------------------------------------------------------------------
    def learn(self, state: State, traj: rollout.Trajectory, step, key: jax.Array) -> tuple[State, dict]:
        cfg = self.cfg
        k_ego, k_diag, k_model, k_la = jax.random.split(key, 4)
        ego, metrics = self.ego.learn(state.ego, traj, step, k_ego)

        flat_obs = jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), traj.obs)
        n = jax.tree.leaves(flat_obs)[0].shape[0]
        idx = jax.random.choice(k_diag, n, (min(cfg.diag_samples, n),), replace=False)
        diag = self.kl_gain(state.ego, ego, state.la, jax.tree.map(lambda x: x[idx], flat_obs))

        trans = rollout.transitions(traj)
        model_err = self.model.one_step_error(state.model, trans)
        buf = replay.add(state.buf, trans)
        model, model_metrics = self.model.train(state.model, buf, k_model)

        active = jnp.asarray(step) >= cfg.la_warmup_steps  # the step is not batched over seeds
        env = self.model_env(model)

        def with_lookahead(_):
            return self.lookahead(ego, state.la.opt, env, buf, step, k_la)

        la_shapes = jax.eval_shape(with_lookahead, None)[1]

        def without(_):
            return ego.replace(opt=state.la.opt), jax.tree.map(
                lambda s: jnp.zeros(s.shape, s.dtype), la_shapes
            )

        la, la_metrics = jax.lax.cond(active, with_lookahead, without, None)
        prev = jnp.asarray(step) - self.iteration_steps  # the step at which this data's behaviour was made
        was_active = (prev >= cfg.la_warmup_steps) & (prev > 0)
        metrics = {**metrics, **diag, **model_err, **model_metrics, **la_metrics}
        metrics["la_active"] = active.astype(jnp.float32)
        metrics["la_collected"] = was_active.astype(jnp.float32)  # this data came from a lookahead policy
        # the collection of this call's data used a lookahead policy: was the diagnostic positive?
        metrics["la_kl_positive"] = (was_active & (diag["la_kl_gain"] > 0)).astype(jnp.float32)
        metrics["updates"] = metrics["updates"] + active.astype(jnp.float32) * cfg.la_rounds * (
            self._inner_updates()
        )
        new = State(ego=ego, la=la, model=model, buf=buf, updates=state.updates + 1)
        return new, metrics

    def _inner_updates(self) -> float:
        c = self.la_cfg
        n = c.epochs * c.num_minibatches
        if hasattr(c, "critic_epochs"):
            return float(self.spec.num_agents * n + c.critic_epochs * c.critic_minibatches)
        return float(n)


__all__ = ["LookaheadConfig", "Lookahead", "State", "VTraceEgo"]
