"""LA-HAPPO: Teammate Lookahead on HAPPO (the Teammate Lookahead paper, Algorithm 2; the learner is
:mod:`.lookahead`, the base update :mod:`.happo`). Defaults: conf/algo/la_happo.yaml (HAPPO's, the
lookahead's in conf/algo/lookahead.yaml, then its own), each with its source."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from marlow.algos.onpolicy import happo
from marlow.algos.onpolicy.lookahead import Lookahead, LookaheadConfig

NAME = "la_happo"
KIND = "on_policy"
DESCRIPTION = "LA-HAPPO: HAPPO with lookahead policies updated in a learned team model, V-trace ego update"
SUPPORTED_ACTIONS = happo.SUPPORTED_ACTIONS
SUPPORTS_MASKS = False
COOPERATIVE = True
__all__ = ["NAME", "KIND", "DESCRIPTION", "SUPPORTED_ACTIONS", "Config", "Algorithm"]


@dataclass
class Config(happo.Config, LookaheadConfig):
    """HAPPO's keys, the lookahead's, and ``teammate_factor``: the policy HAPPO's factor M takes the
    earlier agents' ratios against, ``mu`` (the behaviour, the authors' code) or ``old`` (pi^k, HARL)."""

    teammate_factor: Literal["mu", "old"]


class Algorithm(Lookahead):
    def __init__(self, spec, cfg: Config):
        super().__init__(spec, cfg, happo.Algorithm, happo.Config, NAME)
