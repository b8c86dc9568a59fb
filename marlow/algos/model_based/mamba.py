"""MAMBA (Egorov & Shpilman 2022, "Scalable Multi-Agent Model-Based Reinforcement Learning"): PPO agents
trained in the imagination of a per-agent world model with attention across agents, the base MAG builds on.
Upstream: jbr-ai-labs/mamba (``agent/learners/DreamerLearner.py``, ``agent/optim/loss.py``,
``networks/dreamer/*``); MAG's fork (ZifanWu/MAG, ``src/configs/dreamer/DreamerLearnerConfig.py``) carries the
SMAC settings both papers use.

One learner step every ``train_every`` env steps, once ``warmup_steps`` have been collected (MAMBA trains
after every collected episode, from a buffer of at least 500 steps):

1. the collected steps go to the sequence buffer (:mod:`marlow.buffers.sequence`: episodes in order,
   sampled as ``seq_len``-step windows);
2. ``model_updates`` Adam steps of the world model (:mod:`marlow.world.rssm`) on ``model_batch`` windows;
3. ``agent_updates`` rounds of policy learning in imagination, each on ``agent_batch`` fresh windows: the
   posterior state of every step of every window starts an imagined rollout of ``horizon`` steps, in which
   each agent samples its action from its policy on its own model features ``f = [z, h]`` with the logits
   masked by available actions *sampled* from the model's available-action head; the model's prior gives
   the next latent (MAG replaces this draw by planning); rewards (averaged over agents) and continuation
   probabilities come from the model's heads. Then

       lambda-returns  R_t = r_t + gamma c_t ((1 - lam) V(f_{t+1}) + lam R_{t+1}),  R_{H-1} = V(f_{H-1})

   (MAMBA's ``compute_return``; c_t the predicted continuation probability), advantages R_t - V(f_t)
   normalised over the batch, and ``ppo_epochs`` epochs of PPO over minibatches of ``ppo_minibatch``
   imagined steps: the clipped surrogate (Schulman et al. 2017, Eq. 7) minus ``ent_coef`` x entropy, the
   entropy weight multiplied by ``ent_annealing`` after every minibatch; the critic (attention across the
   agents' features, MAMBA's "MADDPGCritic") regresses R_t with half the squared error. Actor and critic
   have their own Adam (the actor with L2 weight decay, as MAMBA's ``weight_decay=1e-5``) and global-norm
   clipping.

Execution (:meth:`Algorithm.policy`) is **not decentralised**: the world model's posterior runs over all
agents' observations every step (its transition attends across agents), and each agent acts on its
features. That is communication at execution time, as in MAMBA (and MAG and Attention-PPO). The policy
state (:mod:`marlow.rollout`'s ``pstate``) is the model state and the previous actions, reset to zero at
episode ends. Greedy evaluation takes the most likely available action.

Requirements: agents with one observation space and one discrete action space (the weights are shared);
available-action masks are used where the task has them (SMAX).

Logged: the world-model loss parts, the imagined return, actor and critic losses, entropy, and the
*realised* model error on the steps just collected (not yet trained on): the posterior over the first
steps of each env's fresh trajectory, then open-loop prediction with the real actions, the observation
reconstruction error (smooth L1) at the first predicted step (``real_err_1``) and accumulated along the
predicted horizon (``real_err_acc``, and ``real_err_acc_kXX`` after each step k). Defaults:
conf/algo/mamba.yaml, with the ``paper`` and ``small`` presets.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import struct

from marlow import rollout
from marlow.algos.learner import OnPolicyDefaults, learn_when
from marlow.algos.onpolicy import ppo
from marlow.algos.onpolicy.actors import mask_logits
from marlow.buffers import replay, sequence
from marlow.envs.api import EnvSpec
from marlow.errors import ConfigError
from marlow.nn.attention import AgentAttention
from marlow.nn.mlp import MLP
from marlow.schema.ranges import NonNegative, Positive, Range, Size, Unit, Widths
from marlow.world import rssm

NAME = "mamba"
KIND = "world_model"
DESCRIPTION = "MAMBA: PPO in the imagination of a per-agent world model with attention (communicates)"
SUPPORTED_ACTIONS = frozenset({"discrete"})
SUPPORTS_MASKS = True
COOPERATIVE = True
HOMOGENEOUS = True
__all__ = ["NAME", "KIND", "DESCRIPTION", "SUPPORTED_ACTIONS", "Config", "Algorithm"]


@dataclass
class Config:
    """Defaults in conf/algo/mamba.yaml (the ``paper`` preset) and its ``small`` preset."""

    preset: str  # "paper" or "small" (conf/algo/mamba.yaml: presets)
    # world model
    embed: Size
    model_width: Size  # the world model's hidden width
    deter: Size
    n_categoricals: Size
    n_classes: Size
    attn_layers: Size
    attn_heads: Size
    model_lr: Positive
    model_grad_clip: NonNegative  # 0 turns clipping off
    kl_balance: Unit
    # data and schedule
    buffer_size: Size  # env steps kept (per seed)
    warmup_steps: Size  # env steps before the first learner step
    train_every: Size  # env steps between learner steps
    seq_len: Annotated[int, Range(2)]
    model_batch: Size
    model_updates: Size
    # policy learning in imagination
    actor_hidden: Widths
    critic_hidden: Size
    critic_attn_layers: Size
    actor_lr: Positive
    critic_lr: Positive
    actor_weight_decay: NonNegative
    policy_grad_clip: NonNegative
    horizon: Annotated[int, Range(2)]
    gamma: Unit
    gae_lambda: Unit
    clip_eps: Positive
    agent_updates: Size
    agent_batch: Size
    ppo_epochs: Size
    ppo_minibatch: Size
    ent_coef: NonNegative
    ent_annealing: Unit


@struct.dataclass
class State:
    model: Any
    model_opt: Any
    actor: Any
    actor_opt: Any
    critic: Any
    critic_opt: Any
    buffer: replay.ReplayBuffer
    ent_coef: jax.Array  # the annealed entropy weight
    updates: jax.Array  # learner steps so far


class Critic(nn.Module):
    """MAMBA's attention critic ("MADDPGCritic"): embed each agent's features, attend across agents, then an
    MLP to one value per agent."""

    hidden: int
    layers: int
    heads: int

    @nn.compact
    def __call__(self, feat):
        x = nn.relu(nn.Dense(self.hidden)(feat))
        x = nn.relu(AgentAttention(self.layers, self.heads, self.hidden)(x))
        return MLP((self.hidden,), 1)(x)[..., 0]


def lambda_returns(rewards, values, cont, bootstrap, gamma: float, lam: float):
    """MAMBA's ``compute_return`` (``[H-1, ...]`` rewards, values, continuation probabilities; ``bootstrap``
    the value of the last imagined state): ``R_t = r_t + gamma c_t ((1 - lam) V_{t+1} + lam R_{t+1})``."""
    next_values = jnp.concatenate([values[1:], bootstrap[None]], axis=0)

    def back(acc, x):
        r, c, v_next = x
        acc = r + gamma * c * ((1.0 - lam) * v_next + lam * acc)
        return acc, acc

    _, out = jax.lax.scan(back, bootstrap, (rewards, cont, next_values), reverse=True)
    return out


class Algorithm(OnPolicyDefaults):
    """MAMBA as a learner (:mod:`marlow.algos.learner`; module docstring); ready after the warm-up."""

    NAME = NAME

    def __init__(self, spec: EnvSpec, cfg: Config):
        self.spec, self.cfg = spec, cfg
        self.env_info = spec.action_masks  # the policy reads the available-action masks
        spaces = {(spec.obs_space(a), spec.act_space(a)) for a in spec.agents}
        if len(spaces) != 1:
            raise ConfigError(
                f"{self.NAME} shares one world model and one policy across agents and needs agents of one "
                f"observation and action space; task {spec.name!r} has {len(spaces)} kinds"
            )
        if cfg.model_width % cfg.attn_heads or cfg.critic_hidden % cfg.attn_heads:
            raise ConfigError(
                f"{self.NAME}: model_width ({cfg.model_width}) and critic_hidden ({cfg.critic_hidden}) must "
                f"be multiples of attn_heads ({cfg.attn_heads})"
            )
        if cfg.warmup_steps < cfg.seq_len:
            raise ConfigError(
                f"{self.NAME}: warmup_steps ({cfg.warmup_steps}) must be at least seq_len ({cfg.seq_len})"
            )
        a0 = spec.agents[0]
        self.n = spec.num_agents
        self.n_actions = spec.act_space(a0).n
        self.sizes = rssm.Sizes(
            obs_dim=spec.obs_dim(a0),
            n_actions=self.n_actions,
            embed=cfg.embed,
            hidden=cfg.model_width,
            deter=cfg.deter,
            n_categoricals=cfg.n_categoricals,
            n_classes=cfg.n_classes,
            attn_layers=cfg.attn_layers,
            attn_heads=cfg.attn_heads,
        )
        self.model = rssm.WorldModel(self.sizes)
        self.actor = MLP(tuple(cfg.actor_hidden), self.n_actions, "relu")
        self.critic = Critic(cfg.critic_hidden, cfg.critic_attn_layers, cfg.attn_heads)

        def clipped(norm, *rest):
            return optax.chain(*([optax.clip_by_global_norm(norm)] if norm > 0 else []), *rest)

        self.model_tx = clipped(cfg.model_grad_clip, optax.adam(cfg.model_lr))
        self.actor_tx = clipped(
            cfg.policy_grad_clip, optax.add_decayed_weights(cfg.actor_weight_decay), optax.adam(cfg.actor_lr)
        )
        self.critic_tx = clipped(cfg.policy_grad_clip, optax.adam(cfg.critic_lr))
        self.num_envs, self.steps_per_iter = None, None

    def bind(self, num_envs: int, total_steps: int) -> None:
        if self.cfg.train_every % num_envs:
            raise ConfigError(
                f"{self.NAME}: train_every ({self.cfg.train_every}) must be a multiple of num_envs "
                f"({num_envs})"
            )
        self.num_envs = num_envs
        self.steps_per_iter = self.cfg.train_every // num_envs
        self.capacity = max(self.cfg.buffer_size // num_envs, self.cfg.seq_len)

    # ---- state ------------------------------------------------------------------------------------
    def init(self, key: jax.Array) -> State:
        k_model, k_actor, k_critic, k_extra = jax.random.split(key, 4)
        s = self.sizes
        obs = jnp.zeros((1, self.n, s.obs_dim))
        model = self.model.init(k_model, obs, jnp.zeros((1, self.n, self.n_actions)))
        feat = jnp.zeros((1, self.n, s.feat))
        actor, critic = self.actor.init(k_actor, feat), self.critic.init(k_critic, feat)
        E = self.num_envs
        example = {
            "obs": jnp.zeros((E, self.n, s.obs_dim)),
            "action": jnp.zeros((E, self.n), jnp.int32),
            "reward": jnp.zeros((E,)),
            "terminated": jnp.zeros((E,), jnp.bool_),
            "done": jnp.zeros((E,), jnp.bool_),
            "avail": jnp.zeros((E, self.n, self.n_actions), jnp.bool_),
        }
        state = State(
            model=model,
            model_opt=self.model_tx.init(model),
            actor=actor,
            actor_opt=self.actor_tx.init(actor),
            critic=critic,
            critic_opt=self.critic_tx.init(critic),
            buffer=sequence.init(example, self.capacity),
            ent_coef=jnp.float32(self.cfg.ent_coef),
            updates=jnp.int32(0),
        )
        return self.init_extra(state, k_extra)

    def init_extra(self, state: State, key: jax.Array) -> State:
        """More state for a subclass (MAG's error predictor); MAMBA has none."""
        return state

    def ready(self, step) -> jax.Array:
        return jnp.asarray(step >= self.cfg.warmup_steps)

    # ---- the model's pieces -----------------------------------------------------------------------
    def _m(self, params, method, *args):
        return self.model.apply(params, *args, method=method)

    def features(self, deter, stoch):
        return jnp.concatenate([stoch, deter], axis=-1)

    def sample_prior(self, params, deter, key, num: int):
        """``num`` latents drawn from the prior at ``deter`` (``[num, ...]``; MAMBA takes the first)."""
        s = self.sizes
        logits = self._m(params, rssm.WorldModel.prior, deter)
        return jax.vmap(lambda k: rssm.sample_latent(logits, k, s.n_categoricals, s.n_classes))(
            jax.random.split(key, num)
        )

    def next_latent(self, state: State, deter, key) -> tuple[jax.Array, dict]:
        """The next imagined latent at the deterministic state ``deter`` ``[M, N, D]``: a prior sample
        (MAG plans here instead). Returns ``(z, metrics [M])``."""
        k_c = jax.random.split(key, 3)[0]  # MAG splits the same way and draws its candidates with k_c
        return self.sample_prior(state.model, deter, k_c, 1)[0], {}

    # ---- acting -----------------------------------------------------------------------------------
    def init_pstate(self, num_envs: int) -> dict:
        """Per env the previous model state (h, z) and the previous actions (one-hot), all agents."""
        s = self.sizes
        return {
            "h": jnp.zeros((num_envs, self.n, s.deter)),
            "z": jnp.zeros((num_envs, self.n, s.stoch)),
            "a": jnp.zeros((num_envs, self.n, self.n_actions)),
        }

    def reset_pstate(self, pstate: dict, done: jax.Array) -> dict:
        return jax.tree.map(lambda x: jnp.where(done[:, None, None], 0.0, x), pstate)

    def masks(self, info, lead: tuple) -> jax.Array:
        """The agents' available-action masks ``[*lead, N, A]`` (all available on tasks without masks)."""
        if info is None or "avail" not in info:
            return jnp.ones(tuple(lead) + (self.n, self.n_actions), jnp.bool_)
        return jnp.stack([info["avail"][a] for a in self.spec.agents], axis=-2)

    def _step(self, state: State, pstate, obs, key, info, explore: bool):
        """One step of the world-model posterior over all agents, then every agent's action."""
        s = self.sizes
        o = jnp.stack([obs[a] for a in self.spec.agents], axis=-2)
        k_z, k_a = jax.random.split(key)
        deter = self._m(state.model, rssm.WorldModel.transition, pstate["h"], pstate["z"], pstate["a"])
        embed = self._m(state.model, rssm.WorldModel.encode, o)
        post = self._m(state.model, rssm.WorldModel.posterior, deter, embed)
        z = rssm.sample_latent(post, k_z, s.n_categoricals, s.n_classes)
        logits = self.actor.apply(state.actor, self.features(deter, z))
        logits = mask_logits(logits, self.masks(info, o.shape[:1]))
        a = jax.random.categorical(k_a, logits) if explore else jnp.argmax(logits, axis=-1)
        new = {"h": deter, "z": z, "a": jax.nn.one_hot(a, self.n_actions)}
        return new, {ag: a[:, i] for i, ag in enumerate(self.spec.agents)}

    def policy(self, state: State) -> rollout.Policy:
        def behave(pstate, obs, t, key, info=None):
            pstate, actions = self._step(state, pstate, obs, key, info, explore=True)
            return pstate, actions, None

        return behave

    def greedy_policy(self, state: State) -> rollout.Policy:
        def act(pstate, obs, t, key, info=None):
            pstate, actions = self._step(state, pstate, obs, key, info, explore=False)
            return pstate, actions, None

        return act

    def act(self, state: State, obs: dict, key: jax.Array, explore: bool, info: dict | None = None) -> dict:
        """Actions at the first step of fresh episodes; evaluation runs ``greedy_policy``."""
        pstate = self.init_pstate(jax.tree.leaves(obs)[0].shape[0])
        return self._step(state, pstate, obs, key, info, explore)[1]

    # ---- learning ---------------------------------------------------------------------------------
    def steps_of(self, traj: rollout.Trajectory) -> dict:
        """The buffer rows of a collected trajectory ``[T, E]`` (agents stacked, the team reward)."""
        obs = jnp.stack([traj.obs[a] for a in self.spec.agents], axis=-2)
        action = jnp.stack([traj.actions[a] for a in self.spec.agents], axis=-1).astype(jnp.int32)
        reward = jnp.mean(jnp.stack([traj.rewards[a] for a in self.spec.agents]), axis=0)
        avail = self.masks(traj.info, obs.shape[:2])
        return {
            "obs": obs,
            "action": action,
            "reward": reward,
            "terminated": traj.terminated,
            "done": traj.done,
            "avail": avail,
        }

    def learn(self, state: State, traj: rollout.Trajectory, step, key: jax.Array) -> tuple[State, dict]:
        steps = self.steps_of(traj)
        state = state.replace(buffer=sequence.add(state.buffer, steps))
        return learn_when(self.ready(step), lambda s: self.updates(s, steps, key), state)

    def updates(self, state: State, fresh: dict, key: jax.Array) -> tuple[State, dict]:
        """One learner step (module docstring); ``fresh``: the rows just collected (held out so far)."""
        k_err, k_model, k_extra, k_agent = jax.random.split(key, 4)
        metrics = self.realised_error(state, fresh, k_err)
        state, m = self.train_model(state, k_model)
        metrics.update(m)
        state, m = self.train_extra(state, k_extra)
        metrics.update(m)
        state, m = self.train_agent(state, k_agent)
        metrics.update(m)
        metrics["updates"] = jnp.float32(self.cfg.model_updates)
        return state.replace(updates=state.updates + 1), metrics

    def train_model(self, state: State, key) -> tuple[State, dict]:
        cfg = self.cfg

        def one(carry, k):
            params, opt = carry
            k_s, k_l = jax.random.split(k)
            window = sequence.sample(state.buffer, k_s, cfg.model_batch, cfg.seq_len)
            grads, (parts, _, _) = jax.grad(
                lambda p: rssm.model_loss(self.model, p, window, k_l, cfg.kl_balance), has_aux=True
            )(params)
            upd, opt = self.model_tx.update(grads, opt, params)
            return (optax.apply_updates(params, upd), opt), parts

        (params, opt), parts = jax.lax.scan(
            one, (state.model, state.model_opt), jax.random.split(key, cfg.model_updates)
        )
        return state.replace(model=params, model_opt=opt), jax.tree.map(jnp.mean, parts)

    def train_extra(self, state: State, key) -> tuple[State, dict]:
        """More training after the world model's (MAG: the error predictor); MAMBA: nothing."""
        return state, {}

    def imagined_action(self, params, actor, feat, k_av, k_a):
        """An imagined step's actions at the features ``feat``: the available actions sampled from the
        model's Bernoulli head (key ``k_av``), then the actions sampled from the policy's logits under that
        mask (``k_a``). Returns ``(actions, masked logits, mask)``."""
        av = jax.random.bernoulli(k_av, jax.nn.sigmoid(self._m(params, rssm.WorldModel.avail, feat)))
        logits = mask_logits(self.actor.apply(actor, feat), av)
        return jax.random.categorical(k_a, logits), logits, av

    def imagine(self, state: State, deter, stoch, key) -> dict:
        """``horizon`` imagined steps from the states ``[M, N, ...]`` with the current policy (module
        docstring); every output ``[H, M, N, ...]`` (``reward`` ``[H, M, 1]``), plus ``next_latent``'s
        metrics."""
        params = jax.lax.stop_gradient(state.model)
        s = self.sizes

        def step(carry, k):
            deter, z = carry
            k_av, k_a, k_z = jax.random.split(k, 3)
            feat = self.features(deter, z)
            a, logits, av = self.imagined_action(params, state.actor, feat, k_av, k_a)
            nxt = self._m(params, rssm.WorldModel.transition, deter, z, jax.nn.one_hot(a, s.n_actions))
            rfeat = self.features(nxt, z)
            reward = jnp.mean(self._m(params, rssm.WorldModel.reward, rfeat), axis=-1, keepdims=True)
            cont = jax.nn.sigmoid(self._m(params, rssm.WorldModel.cont, rfeat))
            z_next, m = self.next_latent(state, nxt, k_z)
            out = {"feat": feat, "action": a, "logits": logits, "avail": av, "reward": reward, "cont": cont}
            return (nxt, z_next), (out, m)

        _, (out, m) = jax.lax.scan(step, (deter, stoch), jax.random.split(key, self.cfg.horizon))
        return out, m

    def horizon_metrics(self, plan: dict) -> dict:
        """Metrics of :meth:`next_latent`'s outputs along an imagination (``[H, M]`` each; MAG's); none."""
        return {}

    def train_agent(self, state: State, key) -> tuple[State, dict]:
        cfg = self.cfg

        def one(carry, k):
            state = carry
            k_s, k_o, k_i, k_p = jax.random.split(k, 4)
            window = sequence.sample(state.buffer, k_s, cfg.agent_batch, cfg.seq_len)
            params = jax.lax.stop_gradient(state.model)
            post = rssm.observe(
                self.model,
                params,
                window["obs"],
                jax.nn.one_hot(window["action"], self.n_actions),
                window["done"],
                k_o,
            )
            flat = lambda x: x.reshape((-1,) + x.shape[2:])  # noqa: E731  [L, B, N, .] -> [L*B, N, .]
            imag, plan = self.imagine(state, flat(post["deter"]), flat(post["stoch"]), k_i)
            values = self.critic.apply(state.critic, imag["feat"])  # [H, M, N]
            returns = lambda_returns(
                imag["reward"][:-1], values[:-1], imag["cont"][:-1], values[-1], cfg.gamma, cfg.gae_lambda
            )
            adv = returns - values[:-1]
            adv = (adv - jnp.mean(adv)) / (jnp.std(adv) + 1e-4)  # MAMBA's advantage(): std + 1e-4
            data = {
                "feat": imag["feat"][:-1],
                "action": imag["action"][:-1],
                "logits": imag["logits"][:-1],
                "avail": imag["avail"][:-1],
                "adv": adv,
                "returns": returns,
            }
            data = jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), data)  # [(H-1) M, N, ...]
            state, m = self.ppo(state, jax.lax.stop_gradient(data), k_p)
            m["imag_return"] = jnp.mean(returns[0])
            m.update(self.horizon_metrics(plan))
            return state, m

        state, metrics = jax.lax.scan(one, state, jax.random.split(key, cfg.agent_updates))
        return state, jax.tree.map(jnp.mean, metrics)

    def ppo(self, state: State, data: dict, key) -> tuple[State, dict]:
        """``ppo_epochs`` epochs of minibatches of ``ppo_minibatch`` imagined steps (the remainder of each
        permutation left out): actor and critic steps (module docstring)."""
        cfg = self.cfg
        n = data["adv"].shape[0]
        size = min(cfg.ppo_minibatch, n)
        count = n // size

        def actor_loss(p, mb, ent):
            logits = mask_logits(self.actor.apply(p, mb["feat"]), mb["avail"])
            logp_all = jax.nn.log_softmax(logits)

            def taken(lp):
                return jnp.take_along_axis(lp, mb["action"][..., None], -1)[..., 0]

            logp, logp_old = taken(logp_all), taken(jax.nn.log_softmax(mb["logits"]))
            pg, _ = ppo.clipped_surrogate(logp, logp_old, mb["adv"], cfg.clip_eps)
            entropy = jnp.mean(-jnp.sum(jnp.exp(logp_all) * logp_all, axis=-1))
            return pg - ent * entropy, entropy

        def critic_loss(p, mb):
            return jnp.mean(0.5 * (self.critic.apply(p, mb["feat"]) - mb["returns"]) ** 2)

        def minibatch(carry, mb):
            actor, a_opt, critic, c_opt, ent = carry
            (a_loss, entropy), g = jax.value_and_grad(actor_loss, has_aux=True)(actor, mb, ent)
            upd, a_opt = self.actor_tx.update(g, a_opt, actor)
            actor = optax.apply_updates(actor, upd)
            c_loss, g = jax.value_and_grad(critic_loss)(critic, mb)
            upd, c_opt = self.critic_tx.update(g, c_opt, critic)
            critic = optax.apply_updates(critic, upd)
            return (actor, a_opt, critic, c_opt, ent * cfg.ent_annealing), {
                "actor_loss": a_loss,
                "critic_loss": c_loss,
                "entropy": entropy,
            }

        def epoch(carry, k):
            perm = jax.random.permutation(k, n)[: size * count]
            mbs = jax.tree.map(lambda x: x[perm].reshape((count, size) + x.shape[1:]), data)
            return jax.lax.scan(minibatch, carry, mbs)

        carry = (state.actor, state.actor_opt, state.critic, state.critic_opt, state.ent_coef)
        carry, m = jax.lax.scan(epoch, carry, jax.random.split(key, cfg.ppo_epochs))
        actor, a_opt, critic, c_opt, ent = carry
        state = state.replace(actor=actor, actor_opt=a_opt, critic=critic, critic_opt=c_opt, ent_coef=ent)
        return state, jax.tree.map(jnp.mean, m)

    # ---- the realised model error ----------------------------------------------------------------
    def error_horizon(self) -> int:
        """Steps of open-loop prediction in :meth:`realised_error` (the context is the rest)."""
        return min(self.cfg.horizon - 1, self.steps_per_iter - 1)

    def realised_error(self, state: State, fresh: dict, key) -> dict:
        """The model's open-loop error on the rows just collected (module docstring): per env the
        posterior over the first ``T - K`` steps, then ``K`` predicted steps with the real actions, each
        next latent chosen by :meth:`next_latent` (a prior sample; MAG's planning). Steps after an episode
        end are left out. Returns ``real_err_1`` and ``real_err_acc`` (the reconstruction error at the
        first predicted step and summed over the ``K``), or nothing when ``K < 1``."""
        K = self.error_horizon()
        if K < 1:
            return {}
        T = self.steps_per_iter
        ctx = T - K
        params = state.model
        k_obs, k_roll = jax.random.split(key)
        post = rssm.observe(
            self.model,
            params,
            fresh["obs"][:ctx],
            jax.nn.one_hot(fresh["action"][:ctx], self.n_actions),
            fresh["done"][:ctx],
            k_obs,
        )
        actions = jax.nn.one_hot(fresh["action"][ctx - 1 : T - 1], self.n_actions)  # a_{ctx-1+k}
        target = fresh["obs"][ctx:]  # o_{ctx+k}
        ended = jnp.cumsum(fresh["done"][ctx - 1 : T - 1].astype(jnp.int32), axis=0)
        valid = (ended == 0).astype(jnp.float32)  # [K, E]: no episode end since the context's last step

        def step(carry, inp):
            deter, z = carry
            a, k = inp
            nxt = self._m(params, rssm.WorldModel.transition, deter, z, a)
            z_next, _ = self.next_latent(state, nxt, k)
            obs_hat, _ = self._m(params, rssm.WorldModel.decode, self.features(nxt, z_next))
            return (nxt, z_next), obs_hat

        start = (post["deter"][-1], post["stoch"][-1])
        _, pred = jax.lax.scan(step, start, (actions, jax.random.split(k_roll, K)))
        err = jnp.mean(jnp.sum(optax.huber_loss(pred, target, delta=1.0), axis=-1), axis=-1)  # [K, E]
        per_k = jnp.sum(err * valid, axis=1) / jnp.maximum(jnp.sum(valid, axis=1), 1.0)
        acc = jnp.cumsum(per_k)
        out = {f"real_err_acc_k{k + 1:02d}": acc[k] for k in range(K)}
        return {"real_err_1": per_k[0], "real_err_acc": acc[-1], **out}
