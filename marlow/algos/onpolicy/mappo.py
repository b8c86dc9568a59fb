"""MAPPO: PPO with decentralised actors and a centralised critic (Yu et al. 2022, "The Surprising
Effectiveness of PPO in Cooperative Multi-Agent Games"; their code's ``r_mappo``).

Per iteration, ``rollout_steps`` steps of ``num_envs`` envs with the current policies (masks respected),
then ``epochs`` passes of ``num_minibatches`` permuted minibatches of the whole batch, each updating

- every actor group g (one per agent, or one per space with ``share_actor``; :mod:`.actors`) by
  minimising the mean over its members i of  L^CLIP_i - ent_coef H[pi_i]  (PPO's clipped surrogate,
  Schulman et al. 2017, Eq. 7, with the team advantage A(s_t, a_t) shared by all agents), one Adam each;
- the centralised critic V(s) by the clipped Huber value loss on ValueNorm-ed GAE targets, its own Adam
  (learning rate ``critic_lr``).

The machinery (critic input, GAE of the team reward, the losses) is :mod:`.centralised`; the PPO pieces
:mod:`.ppo`. Logged: policy and value losses, entropy, approx-KL, clip fraction, explained variance and
the learning rate. Defaults: conf/algo/mappo.yaml, each with its source.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from marlow import rollout
from marlow.algos.onpolicy import centralised, ppo
from marlow.algos.onpolicy.centralised import SUPPORTED_ACTIONS, CentralisedPPO, State

NAME = "mappo"
KIND = "on_policy"
DESCRIPTION = "MAPPO: decentralised PPO actors, a centralised critic V(s) on the global state"
SUPPORTS_MASKS = True
COOPERATIVE = True
__all__ = ["NAME", "KIND", "DESCRIPTION", "SUPPORTED_ACTIONS", "Config", "Algorithm"]


@dataclass
class Config(centralised.Config):
    """Defaults in conf/algo/mappo.yaml, each with its source."""

    share_actor: bool


class Algorithm(CentralisedPPO):
    """MAPPO as a learner (:mod:`marlow.algos.learner`)."""

    NAME = NAME

    def __init__(self, spec, cfg: Config):
        super().__init__(spec, cfg, share=cfg.share_actor)

    def learn(self, state: State, traj: rollout.Trajectory, step, key: jax.Array) -> tuple[State, dict]:
        cfg, lr_factor = self.cfg, self.lr_factor(step)
        lr, critic_lr = cfg.lr * lr_factor, cfg.critic_lr * lr_factor
        data, vnorm, ev = self.batch(state, traj)
        members = self.actors.members

        def actors_loss(actor_params, mb):
            total, metrics = 0.0, []
            for a in self.spec.agents:
                g = self.actors.group[a]
                loss, m = self.actor_loss(actor_params[g], a, mb, mb["adv"])
                total = total + loss / len(members[g])  # the mean over the members of a shared group
                metrics.append(m)
            return total, jax.tree.map(lambda *v: jnp.mean(jnp.stack(v)), *metrics)

        def minibatch(carry, mb):
            params, opt = carry
            grads, metrics = jax.grad(actors_loss, has_aux=True)(params["actors"], mb)
            actors, actor_opt = {}, {}
            for g in self.actors.groups:
                actors[g], actor_opt[g] = self.apply(grads[g], opt["actors"][g], params["actors"][g], lr)
            critic, critic_opt, m = self.critic_step(params["critic"], opt["critic"], mb, critic_lr)
            params = {"actors": actors, "critic": critic}
            return (params, {"actors": actor_opt, "critic": critic_opt}), {**metrics, **m}

        (params, opt), metrics = ppo.minibatch_epochs(
            (state.params, state.opt), data, key, cfg.epochs, cfg.num_minibatches, minibatch
        )
        metrics.update(
            explained_variance=ev,
            lr=jnp.asarray(lr, jnp.float32),
            updates=jnp.float32(cfg.epochs * cfg.num_minibatches),
        )
        return State(params=params, opt=opt, vnorm=vnorm, updates=state.updates + 1), metrics
