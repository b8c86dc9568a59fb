"""AORDPG: AORPO's model-based scheme on MADDPG (AORPO paper Sec. 6, Fig. 2: "AORDPG").

Everything of :mod:`marlow.algos.model_based.aorpo` (world models, opponent models, adaptive
opponent-wise branched rollouts, mixed real/model batches, policies conditioned on the opponent models'
predictions), with MADDPG's deterministic actors and single centralised critics as the learner:

Critic:  y_i = c r_i + gamma (1 - d) Qbar_i(s', mubar_i(o'_i, a_hat'_-i), a_hat'_-i),
         a_hat'_-i sampled from agent i's opponent models (agent i never reads the others' policies);
Actor:   grad J(mu_i) = E[ grad_{a_i} Q_i(s, a_i, a_-i)|_{a_i = mu_i(o_i, a_hat_-i)} grad mu_i ], a_-i from D.
"""

from __future__ import annotations

from dataclasses import dataclass

from marlow.algos import common
from marlow.algos.model_based import aorpo
from marlow.algos.offpolicy import maddpg

NAME = "aordpg"
KIND = "off_policy"
DESCRIPTION = "AORDPG: MADDPG on branched model rollouts with adaptive opponent-wise opponent models"
SUPPORTED_ACTIONS = maddpg.SUPPORTED_ACTIONS


@dataclass
class Config(maddpg.Config, aorpo.WorldConfig):
    """MADDPG's fields (conf/algo/maddpg.yaml) plus the world-model ones (conf/world.yaml)."""


State = aorpo.State


class Algorithm(aorpo.Algorithm):
    BASE = maddpg

    def agent_step(self, base_state, a: str, batch: dict, next_flats: dict, pol_next, pol_in, k_own, key):
        """MADDPG's critic and actor steps for agent ``a``; its next action from the target policy."""
        out = self.policies.out(base_state.target_actor, a, pol_next)
        own = self.base.policy_action(a, out, k_own)
        q_next_in = common.joint(self.spec, batch["next_obs"], {**next_flats, a: own})
        return self.base.agent_update(base_state, a, batch, q_next_in, pol_in, key)
