"""CommNet-PPO: the MAG paper's CommNet baseline (Wu et al. 2023, Sec. 4.1 "Baselines"; Sukhbaatar, Szlam
& Fergus 2016), on Attention-PPO's learner (:mod:`.attention_ppo`) with the attention replaced by
CommNet's continuous communication (:class:`marlow.nn.comm.CommNet`: ``comm_steps`` steps of an LSTM
module fed the mean of the other agents' hidden states).

Actor and critic are each a CommNet (width ``hidden[0]``) followed by a per-agent MLP (``hidden[1:]``),
weights shared across agents; execution communicates. The MAG paper gives no settings for its baselines
and CommNet's own are REINFORCE's: PPO's keys are IPPO's (conf/algo/commnet.yaml, the SMAX section of
conf/task/smax.yaml). Feed-forward in time (:mod:`marlow.nn.comm`'s docstring says why).
"""

from __future__ import annotations

from dataclasses import dataclass

import flax.linen as nn

from marlow.algos.onpolicy import attention_ppo, ppo
from marlow.nn.comm import CommNet
from marlow.nn.mlp import MLP
from marlow.schema.ranges import Size

NAME = "commnet"
KIND = "on_policy"
DESCRIPTION = "CommNet-PPO: PPO with CommNet's mean-message LSTM communication (communicates)"
SUPPORTED_ACTIONS = frozenset({"discrete"})
SUPPORTS_MASKS = True
COOPERATIVE = True
HOMOGENEOUS = True
__all__ = ["NAME", "KIND", "DESCRIPTION", "SUPPORTED_ACTIONS", "Config", "Algorithm"]


@dataclass
class Config(ppo.Config):
    """IPPO's keys and the number of communication steps (conf/algo/commnet.yaml)."""

    comm_steps: Size


class CommNetNet(nn.Module):
    hidden: tuple[int, ...]
    out_dim: int
    steps: int
    activation: str = "relu"
    out_scale: float = 1.0

    @nn.compact
    def __call__(self, x):
        x = CommNet(self.hidden[0], self.steps)(x)
        return MLP(self.hidden[1:], self.out_dim, self.activation, self.out_scale)(x)


class Algorithm(attention_ppo.Algorithm):
    """Attention-PPO's learner with CommNet networks (module docstring)."""

    NAME = NAME

    def network(self, out_dim: int, out_scale: float) -> nn.Module:
        cfg = self.cfg
        return CommNetNet(tuple(cfg.hidden), out_dim, cfg.comm_steps, cfg.activation, out_scale)
