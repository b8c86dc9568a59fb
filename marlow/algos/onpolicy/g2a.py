"""G2A-PPO: the MAG paper's G2A baseline (Wu et al. 2023, Sec. 4.1 "Baselines"; Liu et al. 2020, "Multi-Agent
Game Abstraction via Graph Attention Neural Network", GA-Comm), on Attention-PPO's learner
(:mod:`.attention_ppo`) with the attention replaced by G2A's two-stage attention
(:class:`marlow.nn.comm.G2A`: a hard attention from a bidirectional GRU over agent pairs decides which
agents interact, a soft attention weighs them).

Actor and critic are each a G2A body (width ``hidden[0]``, output ``[h_i ; x_i]``) followed by a per-agent
MLP (``hidden[1:]``), weights shared across agents; execution communicates. The hard weights are the
noiseless straight-through argmax (ours; :class:`marlow.nn.comm.G2A` says why). PPO's keys are IPPO's
(conf/algo/g2a.yaml, the SMAX section of conf/task/smax.yaml); the MAG paper gives none for its baselines.
"""

from __future__ import annotations

from dataclasses import dataclass

import flax.linen as nn

from marlow.algos.onpolicy import attention_ppo, ppo
from marlow.nn.comm import G2A
from marlow.nn.mlp import MLP
from marlow.schema.ranges import Positive

NAME = "g2a"
KIND = "on_policy"
DESCRIPTION = "G2A-PPO: PPO with G2A's hard + soft two-stage attention across agents (communicates)"
SUPPORTED_ACTIONS = frozenset({"discrete"})
SUPPORTS_MASKS = True
COOPERATIVE = True
HOMOGENEOUS = True
__all__ = ["NAME", "KIND", "DESCRIPTION", "SUPPORTED_ACTIONS", "Config", "Algorithm"]


@dataclass
class Config(ppo.Config):
    """IPPO's keys and the hard attention's gradient temperature (conf/algo/g2a.yaml)."""

    hard_temperature: Positive


class G2ANet(nn.Module):
    hidden: tuple[int, ...]
    out_dim: int
    temperature: float
    activation: str = "relu"
    out_scale: float = 1.0

    @nn.compact
    def __call__(self, x):
        x = G2A(self.hidden[0], self.temperature)(x)
        return MLP(self.hidden[1:], self.out_dim, self.activation, self.out_scale)(x)


class Algorithm(attention_ppo.Algorithm):
    """Attention-PPO's learner with G2A networks (module docstring)."""

    NAME = NAME

    def network(self, out_dim: int, out_scale: float) -> nn.Module:
        cfg = self.cfg
        return G2ANet(tuple(cfg.hidden), out_dim, cfg.hard_temperature, cfg.activation, out_scale)
