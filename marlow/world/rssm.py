"""MAMBA's world model: a per-agent recurrent state-space model (RSSM) with weights shared across agents
and attention across agents in its transition (Egorov & Shpilman 2022, "Scalable Multi-Agent Model-Based
Reinforcement Learning", Sec. 3; upstream jbr-ai-labs/mamba ``agent/models/DreamerModel.py``,
``networks/dreamer/rnns.py``, ``agent/optim/loss.py`` and ``agent/optim/utils.py``). MAG (Wu et al. 2023)
keeps this model unchanged.

Agents are stacked on axis -2 (every array ``[..., N, ...]``), so one network serves all of them. Per agent
i, with ``z`` the stochastic latent (``n_categoricals`` one-hot categoricals of ``n_classes`` classes) and
``h`` the deterministic (GRU) state:

- encoder ``e^i_t = enc(o^i_t)``;
- transition ``h^i_t = GRU(h^i_{t-1}, Attn_i(relu(W [a_{t-1}, z_{t-1}])))``: each agent's previous action
  and latent, then transformer layers across the agents (:class:`marlow.nn.attention.AgentAttention`), then
  that agent's GRU. This is the only place where agents exchange information;
- prior ``p(z^i_t | h^i_t)`` and posterior ``q(z^i_t | h^i_t, e^i_t)``, sampled with straight-through
  gradients (:func:`sample_latent`);
- heads on the features ``f = [z, h]``: observation decoder, available actions (a Bernoulli per action),
  and the action-information head (the agent's previous action from the decoder's hidden features:
  MAMBA's mutual-information term between an agent's latent and its own action, Sec. 3.2); on
  ``[z_t, h_{t+1}]`` (the state and the deterministic part after acting): reward and continuation
  (Bernoulli, 1 - terminated).

Episode starts. A window may span episodes. The state before an episode's first step is zero (``h``, ``z``
and the previous action), so the first deterministic state is ``T0 = transition(0, 0, 0)``; execution
(:meth:`marlow.algos.model_based.mamba.Algorithm.policy`) starts every episode the same way. A window
sampled mid-episode also starts from zero, as MAMBA's does. (MAMBA keeps the previous episode's last action
as the first "previous action" and appends absorbing states after terminations; we use the continuation
head for terminations instead.)

Loss (:func:`model_loss`): KL balancing (Hafner et al. 2021, DreamerV2 Sec. 2; MAMBA's
``state_divergence_loss``, weights 0.2 / 0.8) + observation reconstruction (smooth L1 summed over
features) + reward (smooth L1) + continuation and available-action negative log-likelihoods + action
information (cross-entropy), each averaged over steps, windows and agents, all weighted 1 as MAMBA does.
"""

from __future__ import annotations

from dataclasses import dataclass

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from marlow.nn.attention import AgentAttention
from marlow.nn.mlp import MLP
from marlow.nn.recurrent import gru_cell


@dataclass(frozen=True)
class Sizes:
    obs_dim: int
    n_actions: int
    embed: int
    hidden: int
    deter: int
    n_categoricals: int
    n_classes: int
    attn_layers: int
    attn_heads: int

    @property
    def stoch(self) -> int:
        return self.n_categoricals * self.n_classes

    @property
    def feat(self) -> int:
        return self.stoch + self.deter


class WorldModel(nn.Module):
    """The networks (module docstring); each method maps ``[..., N, ...]`` inputs."""

    sizes: Sizes

    def setup(self):
        s, h = self.sizes, self.sizes.hidden
        self.encoder = MLP((h, h), s.embed)
        self.trans_in = nn.Dense(h)
        self.attention = AgentAttention(s.attn_layers, s.attn_heads, h)
        self.gru = gru_cell(s.deter)  # LeCun-normal recurrent kernels: marlow.nn.recurrent says why
        self.prior_net = MLP((h,), s.stoch)
        self.post_net = MLP((h,), s.stoch)
        self.decoder_trunk = MLP((h,), h)
        self.decoder_out = nn.Dense(s.obs_dim)
        self.reward_net = MLP((h, h), 1, "elu")
        self.cont_net = MLP((h, h), 1, "elu")
        self.avail_net = MLP((h, h), s.n_actions, "elu")
        self.info_net = MLP((h,), s.n_actions, "elu")

    def encode(self, obs):
        return self.encoder(obs)

    def transition(self, deter, stoch, action):
        """``h_t`` from ``h_{t-1}`` ``[..., N, deter]``, ``z_{t-1}`` and the one-hot ``a_{t-1}``."""
        x = nn.relu(self.trans_in(jnp.concatenate([action, stoch], axis=-1)))
        x = self.attention(x)
        lead = deter.shape[:-1]
        new, _ = self.gru(deter.reshape((-1, deter.shape[-1])), x.reshape((-1, x.shape[-1])))
        return new.reshape(lead + (new.shape[-1],))

    def prior(self, deter):
        return self.prior_net(deter)

    def posterior(self, deter, embed):
        return self.post_net(jnp.concatenate([deter, embed], axis=-1))

    def decode(self, feat):
        """``(observation, hidden features)`` from ``f = [z, h]``."""
        x = nn.relu(self.decoder_trunk(feat))
        return self.decoder_out(x), x

    def reward(self, rfeat):
        return self.reward_net(rfeat)[..., 0]

    def cont(self, rfeat):
        """Continuation logit (1 - terminated) from ``[z_t, h_{t+1}]``."""
        return self.cont_net(rfeat)[..., 0]

    def avail(self, feat):
        return self.avail_net(feat)

    def action_info(self, dec_hidden):
        return self.info_net(dec_hidden)

    def __call__(self, obs, action):
        """Touch every network once (for ``init``): ``obs [..., N, D]``, one-hot ``action [..., N, A]``."""
        s = self.sizes
        lead = obs.shape[:-1]
        deter = jnp.zeros(lead + (s.deter,))
        stoch = jnp.zeros(lead + (s.stoch,))
        deter = self.transition(deter, stoch, action)
        self.prior(deter)
        self.posterior(deter, self.encode(obs))
        feat = jnp.concatenate([stoch, deter], axis=-1)
        _, x = self.decode(feat)
        return self.reward(feat), self.cont(feat), self.avail(feat), self.action_info(x)


# ---- latents ---------------------------------------------------------------------------------------
def sample_latent(logits: jax.Array, key: jax.Array, n_categoricals: int, n_classes: int) -> jax.Array:
    """A straight-through one-hot sample of ``n_categoricals`` categoricals (flat ``[..., C*K]`` in and out):
    the forward value is the one-hot sample, the gradient that of the probabilities (Bengio et al. 2013;
    DreamerV2 Sec. 2, MAMBA's ``DiscreteLatentDist``): ``onehot + p - stop_gradient(p)``."""
    lg = logits.reshape(logits.shape[:-1] + (n_categoricals, n_classes))
    idx = jax.random.categorical(key, lg)
    onehot = jax.nn.one_hot(idx, n_classes, dtype=lg.dtype)
    p = jax.nn.softmax(lg)
    return (onehot + p - jax.lax.stop_gradient(p)).reshape(logits.shape)


def categorical_kl(p_logits, q_logits, n_categoricals: int, n_classes: int) -> jax.Array:
    """KL(p || q) of the ``n_categoricals`` categoricals, averaged over them (MAMBA averages; DreamerV2
    sums): ``[...]`` from flat ``[..., C*K]`` logits."""
    shape = p_logits.shape[:-1] + (n_categoricals, n_classes)
    lp = jax.nn.log_softmax(p_logits.reshape(shape))
    lq = jax.nn.log_softmax(q_logits.reshape(shape))
    return jnp.mean(jnp.sum(jnp.exp(lp) * (lp - lq), axis=-1), axis=-1)


def kl_balanced(post_logits, prior_logits, n_categoricals: int, n_classes: int, balance: float = 0.2):
    """KL balancing (DreamerV2 Sec. 2, Algorithm 2; MAMBA's ``state_divergence_loss``, balance 0.2):

        balance * KL(q || sg(p)) + (1 - balance) * KL(sg(q) || p)

    Its value is KL(q || p); its gradient moves the prior toward the posterior with weight 1 - balance and
    the posterior toward the prior with weight balance."""
    sg = jax.lax.stop_gradient
    post = categorical_kl(post_logits, sg(prior_logits), n_categoricals, n_classes)
    pri = categorical_kl(sg(post_logits), prior_logits, n_categoricals, n_classes)
    return balance * post + (1.0 - balance) * pri


def bernoulli_nll(logits, target):
    """-log Bernoulli(target | sigmoid(logits)), elementwise."""
    return optax.sigmoid_binary_cross_entropy(logits, target.astype(logits.dtype))


# ---- filtering real windows ------------------------------------------------------------------------
def observe(model: WorldModel, params, obs, action, done, key):
    """The posterior over a window: ``obs [L, B, N, D]``, one-hot ``action [L, B, N, A]`` (the action taken
    at each step), ``done [L, B]`` (an episode ended at that step: the next step starts from zero).

    Returns per step ``[L, B, N, ...]``: ``deter`` (h_t), ``post`` / ``prior`` logits, ``stoch`` (z_t, from
    the posterior), ``prior_stoch`` (a sample of the prior, for MAG's error predictor), ``next_deter``
    (h_{t+1} = transition(h_t, z_t, a_t) without the episode reset: the reward and continuation features
    of step t)."""
    s = model.sizes
    embed = model.apply(params, obs, method=WorldModel.encode)
    n = obs.shape[-2]
    zeros = jnp.zeros((1, n, s.deter)), jnp.zeros((1, n, s.stoch)), jnp.zeros((1, n, s.n_actions))
    t0 = model.apply(params, *zeros, method=WorldModel.transition)[0]  # T0 = transition(0, 0, 0)
    deter0 = jnp.broadcast_to(t0, obs.shape[1:-1] + (s.deter,))

    def step(deter, inp):
        e, a, d, k = inp
        k_post, k_prior = jax.random.split(k)
        prior = model.apply(params, deter, method=WorldModel.prior)
        post = model.apply(params, deter, e, method=WorldModel.posterior)
        z = sample_latent(post, k_post, s.n_categoricals, s.n_classes)
        z_prior = sample_latent(prior, k_prior, s.n_categoricals, s.n_classes)
        nxt = model.apply(params, deter, z, a, method=WorldModel.transition)
        out = {"deter": deter, "post": post, "prior": prior, "stoch": z, "prior_stoch": z_prior}
        out["next_deter"] = nxt
        return jnp.where(d[:, None, None], t0, nxt), out

    keys = jax.random.split(key, obs.shape[0])
    _, out = jax.lax.scan(step, deter0, (embed, action, done, keys))
    return out


def model_loss(model: WorldModel, params, window: dict, key, kl_balance: float = 0.2):
    """MAMBA's world-model loss on a window (module docstring). ``window``: ``obs [L, B, N, D]``, ``action``
    int ``[L, B, N]``, ``reward [L, B]`` (the team reward), ``terminated`` and ``done [L, B]``, ``avail``
    bool ``[L, B, N, A]`` (the mask at each step's observation).

    Returns ``(loss, (parts, per_step, posterior))``: the scalar loss, its named parts, ``per_step
    [L, B, N]``, the prediction error of every step and agent (KL + reconstruction + reward + continuation
    + available actions; the action-information term is a regulariser, not a prediction, and is left
    out), MAG's target for the model-error predictor, and :func:`observe`'s outputs."""
    s = model.sizes
    a1h = jax.nn.one_hot(window["action"], s.n_actions)
    out = observe(model, params, window["obs"], a1h, window["done"], key)
    feat = jnp.concatenate([out["stoch"], out["deter"]], axis=-1)
    rfeat = jnp.concatenate([out["stoch"], out["next_deter"]], axis=-1)

    obs_hat, dec_h = model.apply(params, feat, method=WorldModel.decode)
    info_logits = model.apply(params, dec_h, method=WorldModel.action_info)
    r_hat = model.apply(params, rfeat, method=WorldModel.reward)
    c_logit = model.apply(params, rfeat, method=WorldModel.cont)
    av_logits = model.apply(params, feat, method=WorldModel.avail)
    kl = kl_balanced(out["post"], out["prior"], s.n_categoricals, s.n_classes, kl_balance)
    rec = jnp.sum(optax.huber_loss(obs_hat, window["obs"], delta=1.0), axis=-1)  # smooth L1
    reward = jnp.broadcast_to(window["reward"][..., None], r_hat.shape)
    rew = optax.huber_loss(r_hat, reward, delta=1.0)
    cont = bernoulli_nll(c_logit, jnp.broadcast_to(~window["terminated"][..., None], c_logit.shape))
    av = jnp.sum(bernoulli_nll(av_logits, window["avail"]), axis=-1)
    # the action-information term: agent i's previous action from its state's decoder features, at steps
    # whose previous action lies in the same episode inside the window
    prev = jnp.concatenate([window["action"][:1], window["action"][:-1]], axis=0)
    has_prev = jnp.concatenate([jnp.zeros_like(window["done"][:1]), ~window["done"][:-1]], axis=0)
    ce = optax.softmax_cross_entropy_with_integer_labels(info_logits, prev)
    w = jnp.broadcast_to(has_prev[..., None], ce.shape).astype(jnp.float32)
    info = jnp.sum(ce * w) / jnp.maximum(jnp.sum(w), 1.0)
    parts = {
        "model_kl": jnp.mean(kl),
        "model_rec": jnp.mean(rec),
        "model_reward": jnp.mean(rew),
        "model_cont": jnp.mean(cont),
        "model_avail": jnp.mean(av),
        "model_info": info,
    }
    loss = sum(parts.values())
    per_step = jax.lax.stop_gradient(kl + rec + rew + cont + av)
    return loss, (parts, per_step, out)


__all__ = [
    "Sizes",
    "WorldModel",
    "bernoulli_nll",
    "categorical_kl",
    "kl_balanced",
    "model_loss",
    "observe",
    "sample_latent",
]
