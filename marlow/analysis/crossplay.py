"""Cross-play evaluation of two trained runs on a competitive task (AORPO paper, Appendix G.3, Tables 3-4).

One run's policies play the ``"agent"`` team, the other run's the ``"adversary"`` team, in greedy
(``explore=False``) episodes: at every step each algorithm's ``act`` gives all agents' actions and each agent
takes the action of the run that controls its team. Seed ``i`` of the agent run plays seed ``i`` of the
adversary run (a one-seed run plays every seed of the other).

Teams and score. The competitive MPE tasks (``mpe/simple_push`` = keep-away, ``mpe/simple_adversary`` =
physical deception, ``mpe/simple_tag`` = predator-prey) have two teams (``marlow.envs.mpe``): ``"adversary"``,
the agents whose name starts with ``adversary`` (push: adversary_0; adversary: adversary_0; tag: the three
predators adversary_0..2), and ``"agent"``, the others (push: agent_0; adversary: agent_0, agent_1; tag: the
prey agent_0), each agent with its own JaxMARL reward. A team's *episode return* is the mean over its
members of their undiscounted episode returns (in these tasks the members of a team get the same reward,
so it is also each member's return: the MADDPG/AORPO evaluation's "agent reward" and "adversary
reward"). The *score* of an episode is ``agent-team return - adversary-team return``; the higher, the
better for the agent team (Appendix G.3: "agent reward minus adversary reward"). In Tables 3-4 the rows
are the adversaries' algorithm, the columns the agents' algorithm, and each entry is the score, i.e. the
performance of the column algorithm.

Episodes use the keys of ``marlow eval`` (:func:`marlow.analysis.evaluate.eval_keys` and
:func:`marlow.experiment.loop.evaluate_policy`'s key schedule), so crossing a run with itself plays exactly
the episodes ``marlow eval`` plays and gives the same per-seed team returns.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from marlow.analysis.evaluate import algo_states, eval_keys, load_jax_run
from marlow.errors import ConfigError
from marlow.experiment.loop import episode_returns, return_metrics
from marlow.experiment.setup import build, load_run_config

AGENT, ADVERSARY = "agent", "adversary"


@dataclass(frozen=True)
class CrossPlay:
    """Result of :func:`crossplay`; arrays have a leading seed axis (pairs of seeds)."""

    task: str
    agent_algo: str
    adversary_algo: str
    episodes: int
    agent_return: np.ndarray  # [seeds] mean agent-team episode return
    adversary_return: np.ndarray  # [seeds] mean adversary-team episode return
    score: np.ndarray  # [seeds] agent_return - adversary_return
    episode_agent_return: np.ndarray  # [seeds, episodes]
    episode_adversary_return: np.ndarray  # [seeds, episodes]

    @property
    def episode_score(self) -> np.ndarray:
        """[seeds, episodes] score of every episode."""
        return self.episode_agent_return - self.episode_adversary_return


def crossplay(
    agent_run: str | Path, adversary_run: str | Path, episodes: int = 100, seed: int = 12345
) -> CrossPlay:
    """Greedy episodes of ``agent_run``'s policies (agent team) against ``adversary_run``'s (adversary
    team); ``episodes`` per pair of seeds, evaluation keys from ``seed`` as ``marlow eval``.

    The two runs must be on the same task, one with an ``"agent"`` and an ``"adversary"`` team, and hold
    the same number of seeds (or one of them a single seed). Raises ConfigError for unfit runs and
    CheckpointError for a missing or unreadable run directory or checkpoint."""
    if episodes < 1:
        raise ConfigError(f"crossplay needs at least one episode, got {episodes}")
    run_g, run_b = build(load_run_config(agent_run)), build(load_run_config(adversary_run))
    cfg_g, cfg_b, env, algo_g, algo_b = run_g.cfg, run_b.cfg, run_g.env, run_g.algo, run_b.algo
    task = cfg_g.experiment.task
    if cfg_b.experiment.task != task:
        raise ConfigError(
            f"crossplay needs two runs of the same task: {agent_run} is on {task}, "
            f"{adversary_run} on {cfg_b.experiment.task}"
        )
    spec = env.spec
    teams = dict(spec.teams)
    if set(teams) != {AGENT, ADVERSARY}:
        raise ConfigError(
            f"crossplay needs a task with an {AGENT!r} and an {ADVERSARY!r} team; {task} has "
            f"{len(teams)} team(s): {', '.join(teams)}"
        )
    if not env.is_jax:
        raise ConfigError(f"crossplay needs a JAX env; {task} runs on the host")
    n_g, n_b = cfg_g.experiment.num_seeds, cfg_b.experiment.num_seeds
    if n_g != n_b and 1 not in (n_g, n_b):
        raise ConfigError(
            f"crossplay pairs seed i with seed i: {agent_run} has {n_g} seeds and {adversary_run} has {n_b}"
        )
    rs_g, _ = load_jax_run(agent_run, run_g)
    rs_b, _ = load_jax_run(adversary_run, run_b)
    num_seeds = max(n_g, n_b)
    states_g, axis_g = _broadcast(algo_states(run_g, rs_g), n_g, num_seeds)
    states_b, axis_b = _broadcast(algo_states(run_b, rs_b), n_b, num_seeds)
    agents = [a for a in spec.agents if spec.team_of(a) == AGENT]

    def one(state_g, state_b, key):
        def policy(obs, k):  # both algorithms see the same key, as each would alone
            acts_g = algo_g.act(state_g, obs, k, False)
            acts_b = algo_b.act(state_b, obs, k, False)
            return {a: (acts_g if a in agents else acts_b)[a] for a in spec.agents}

        per_agent = episode_returns(env, policy, key, episodes)
        means = return_metrics(spec, per_agent)
        team = {t: jnp.mean(jnp.stack([per_agent[a] for a in members]), axis=0) for t, members in spec.teams}
        return means[f"eval/team_return/{AGENT}"], means[f"eval/team_return/{ADVERSARY}"], team

    play = jax.jit(jax.vmap(one, in_axes=(axis_g, axis_b, 0)))
    g, b, team = jax.device_get(play(states_g, states_b, eval_keys(seed, num_seeds)))
    g, b = np.asarray(g), np.asarray(b)
    return CrossPlay(
        task=task,
        agent_algo=cfg_g.experiment.algo,
        adversary_algo=cfg_b.experiment.algo,
        episodes=episodes,
        agent_return=g,
        adversary_return=b,
        score=g - b,
        episode_agent_return=np.asarray(team[AGENT]),
        episode_adversary_return=np.asarray(team[ADVERSARY]),
    )


def _broadcast(states, n: int, num_seeds: int):
    """A one-seed run plays every seed of the other: drop its seed axis and do not vmap over it."""
    if n == num_seeds:
        return states, 0
    return jax.tree.map(lambda x: x[0], states), None


def mean_ci(x) -> tuple[float, float]:
    """Mean and half-width of a normal-approximation 95% interval of the values of ``x`` (all axes)."""
    x = np.ravel(np.asarray(x, np.float64))
    return float(x.mean()), float(1.96 * x.std(ddof=1) / np.sqrt(x.size)) if x.size > 1 else 0.0


def summary(res: CrossPlay) -> list[str]:
    """Lines for ``marlow crossplay``."""
    s, ci = mean_ci(res.episode_score)
    n = len(res.score)
    return [
        f"{res.task}: agents {res.agent_algo} vs adversaries {res.adversary_algo}, {res.episodes} episodes x "
        f"{n} seed pair(s)",
        f"  score (agent - adversary return): {s:.3f} +- {ci:.3f} (95% CI over episodes)",
        f"  agent team return {res.agent_return.mean():.3f}, adversary team return "
        f"{res.adversary_return.mean():.3f}",
        f"  score per seed pair: {', '.join(f'{v:.3f}' for v in res.score)}",
    ]
