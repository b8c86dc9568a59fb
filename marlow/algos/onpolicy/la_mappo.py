"""LA-MAPPO: Teammate Lookahead on MAPPO (the Teammate Lookahead paper, Algorithm 1; its toy game, Sec.
4.1, compares MAPPO with it). The learner is :mod:`.lookahead`, the base update :mod:`.mappo`. Defaults:
conf/algo/la_mappo.yaml (MAPPO's, the lookahead's in conf/algo/lookahead.yaml, then its own)."""

from __future__ import annotations

from dataclasses import dataclass

from marlow.algos.onpolicy import mappo
from marlow.algos.onpolicy.lookahead import Lookahead, LookaheadConfig

NAME = "la_mappo"
KIND = "on_policy"
DESCRIPTION = "LA-MAPPO: MAPPO with lookahead policies updated in a learned team model, V-trace ego update"
SUPPORTED_ACTIONS = mappo.SUPPORTED_ACTIONS
SUPPORTS_MASKS = False
COOPERATIVE = True
__all__ = ["NAME", "KIND", "DESCRIPTION", "SUPPORTED_ACTIONS", "Config", "Algorithm"]


@dataclass
class Config(mappo.Config, LookaheadConfig):
    """MAPPO's keys and the lookahead's."""


class Algorithm(Lookahead):
    def __init__(self, spec, cfg: Config):
        super().__init__(spec, cfg, mappo.Algorithm, mappo.Config, NAME)
