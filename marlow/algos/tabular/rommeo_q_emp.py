"""ROMMEO-Q-EMP: the ROMMEO paper's ablation of ROMMEO-Q (Sec. 5.1) with the opponent model rho replaced
by the empirical frequency P of the other agents' actions. Everything else (Eq. 10 conditional policy,
marginal policy, table updates, schedules, defaults) is ROMMEO-Q's; see
:mod:`marlow.algos.tabular.rommeo_q`."""

from __future__ import annotations

from marlow.algos.tabular import rommeo_q
from marlow.algos.tabular.rommeo_q import Config, State  # noqa: F401  (the protocol's names)

NAME = "rommeo_q_emp"
KIND = "off_policy"
DESCRIPTION = "ROMMEO-Q-EMP ablation: ROMMEO-Q with the empirical opponent frequency as opponent model"
SUPPORTED_ACTIONS = rommeo_q.SUPPORTED_ACTIONS
TABULAR = True


class Algorithm(rommeo_q.Algorithm):
    empirical_opponent = True
