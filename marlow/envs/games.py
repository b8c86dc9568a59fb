"""Small two-agent games used to study coordination, opponent modelling and equilibrium convergence.

- ``games/climbing``: iterated climbing game (ROMMEO Sec. 5.1); ``Discrete(3)``; one team, shared reward.
- ``games/max_of_two_quadratics``: ROMMEO Sec. 5.2; ``Box(-10, 10, (1,))``; one team, shared reward.
- ``games/lookahead_toy``: Teammate Lookahead Sec. 4.1; ``Box(0, 1, (1,))``; one team, shared reward.
- ``games/climb``: AORPO Sec. 6.1 / App. G.1; ``Box(-1, 1, (1,))``; two one-agent teams, competitive.

All envs follow :mod:`marlow.envs.api`: pure JAX, jittable and vmappable; ``step_env`` never resets
(``MultiAgentEnv.step`` does). Agents are ``"agent_0"`` (the papers' agent 1 / row player / ``a0``)
and ``"agent_1"`` (agent 2 / column player / ``a1``).

Conventions shared by the three stateless games (climbing, max of two quadratics, lookahead toy):

- **Observation**: the constant vector ``[1.0]`` (``Box(0, 1, (1,))``) for both agents. The games have
  a single state, so the observation carries no information; a constant input lets network policies
  and critics learn a bias (the ROMMEO/maci reference code also observes a constant).
- **Iterated vs one-shot.** With ``one_shot=False`` an episode is ``episode_length`` repetitions of the
  stage game and ends by time limit (``infos["truncated"] = True``, so off-policy learners bootstrap).
  With ``one_shot=True`` every step is a complete game: ``episode_length`` is 1 and the episode ends
  in a true terminal state (``truncated = False``), which is what the ROMMEO/maci reference code does
  (it returns ``done = True`` after every step and groups 25 steps into an "episode" only for logging).
- Continuous actions are clipped to the action bounds before the reward is computed; the exposed
  reward functions themselves do not clip (they are meant for plotting reward surfaces).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from marlow.envs.api import Actions, EnvSpec, MultiAgentEnv, Obs
from marlow.envs.registry import register
from marlow.envs.spaces import Box, Discrete
from marlow.errors import ConfigError
from marlow.schema import ranges

AGENTS = ("agent_0", "agent_1")


# ================================================================================================
# Reward functions (pure, broadcastable; exposed for plotting reward surfaces)
# ================================================================================================

#: Climbing-game payoff (Claus & Boutilier 1998; ROMMEO Sec. 5.1), shared by both agents.
#: Rows: agent_0's action A, B, C; columns: agent_1's action A, B, C.
CLIMBING_PAYOFF = ((11.0, -30.0, 0.0), (-30.0, 7.0, 6.0), (0.0, 0.0, 5.0))


def climbing_payoffs(cc_payoff: tuple[float, float] = (5.0, 5.0)) -> jax.Array:
    """Per-agent payoff tables, shape ``(2, 3, 3)`` (agent, agent_0 action, agent_1 action).

    ``cc_payoff`` is the pair of payoffs (agent_0, agent_1) at the joint action (C, C). The ROMMEO
    paper prints ``(5, 3)`` there, but its reference code (and Claus & Boutilier's original game)
    uses a shared 5; we follow the code by default.
    """
    table = jnp.asarray(CLIMBING_PAYOFF, jnp.float32)
    return jnp.stack([table.at[2, 2].set(cc_payoff[0]), table.at[2, 2].set(cc_payoff[1])])


def max_of_two_quadratics_reward(a1, a2):
    """Shared reward of ROMMEO's Max of Two Quadratics game (Sec. 5.2, after Wei et al. 2018).

    ``r = max(f1, f2)`` with ``f1 = 0.8 [-((a1+5)/3)^2 - ((a2+5)/3)^2]`` (a wide local optimum of 0 at
    (-5, -5)) and ``f2 = 1.0 [-((a1-5)/1)^2 - ((a2-5)/1)^2] + 10`` (a narrow global optimum of 10 at
    (5, 5)). Not clipped.
    """
    a1, a2 = jnp.asarray(a1, jnp.float32), jnp.asarray(a2, jnp.float32)
    f1 = 0.8 * (-(((a1 + 5.0) / 3.0) ** 2) - ((a2 + 5.0) / 3.0) ** 2)
    f2 = 1.0 * (-(((a1 - 5.0) / 1.0) ** 2) - ((a2 - 5.0) / 1.0) ** 2) + 10.0
    return jnp.maximum(f1, f2)


def lookahead_toy_reward(a0, a1):
    """Shared reward of the Teammate Lookahead toy game (Sec. 4.1): ``R = a0^3 - 2 (a0 - a1)^2 + 3 a0``.

    On ``[0, 1]^2`` the optimum is ``(1, 1)`` with ``R = 4``. Agent 1's best response to any ``a0`` is
    ``a1 = a0`` (the "teammate delay" the paper studies). Not clipped.
    """
    a0, a1 = jnp.asarray(a0, jnp.float32), jnp.asarray(a1, jnp.float32)
    return a0**3 - 2.0 * (a0 - a1) ** 2 + 3.0 * a0


#: Climb landmarks (AORPO Sec. 6.1): state index 0 ("state 1") <-> lower-left, 1 ("state 2") <->
#: upper-right. Each is the state's unique Nash equilibrium.
CLIMB_LANDMARKS = ((-0.5, -0.5), (0.5, 0.5))


def climb_agent2_reward(state, a, b):
    """Agent 2's (``agent_1``'s) Climb reward, verbatim from AORPO Appendix G.1.

    state 0 ("state 1"): ``max(-2(a+0.5)^2 - 2(b+0.5)^2, -(a-0.5)^2 - (b-0.5)^2)``;
    state 1 ("state 2"): ``max(-(a+0.5)^2 - (b+0.5)^2, -2(a-0.5)^2 - 2(b-0.5)^2)``.
    Both landmarks give agent 2 its maximum 0; the landmark agent 1 prefers has the narrower peak.
    """
    a, b = jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32)
    lower_left = (a + 0.5) ** 2 + (b + 0.5) ** 2
    upper_right = (a - 0.5) ** 2 + (b - 0.5) ** 2
    r_state1 = jnp.maximum(-2.0 * lower_left, -upper_right)
    r_state2 = jnp.maximum(-lower_left, -2.0 * upper_right)
    return jnp.where(jnp.asarray(state) == 0, r_state1, r_state2)


def climb_agent1_reward(state, a, b, coef: float = 2.0):
    """Agent 1's (``agent_0``'s) Climb reward: a single peak at the state's landmark (our choice).

    ``-coef ((a - x_s)^2 + (b - y_s)^2)`` with ``(x_s, y_s)`` the lower-left landmark in state 0 and the
    upper-right one in state 1. With the default ``coef = 2`` this is exactly agent 2's branch for that
    landmark, so the two agents' rewards agree near the equilibrium. See :class:`Climb`.
    """
    a, b = jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32)
    centre = jnp.where(jnp.asarray(state) == 0, -0.5, 0.5)
    return -coef * ((a - centre) ** 2 + (b - centre) ** 2)


def climb_rewards(state, a, b, agent1_coef: float = 2.0) -> tuple[jax.Array, jax.Array]:
    """``(agent 1's reward, agent 2's reward)`` of the Climb stage game in ``state`` (0 or 1)."""
    return climb_agent1_reward(state, a, b, agent1_coef), climb_agent2_reward(state, a, b)


# ================================================================================================
# Env states
# ================================================================================================


@struct.dataclass
class GameState:
    """State of a stateless (single-state) repeated game: just the step counter."""

    t: jax.Array  # int32 scalar, steps taken in this episode


@struct.dataclass
class ClimbState:
    """State of Climb: step counter and the game state (0 = "state 1", 1 = "state 2")."""

    t: jax.Array  # int32 scalar
    s: jax.Array  # int32 scalar in {0, 1}


# ================================================================================================
# Envs
# ================================================================================================


def _scalar(action) -> jax.Array:
    """A one-agent action of shape ``()`` or ``(1,)`` as a scalar."""
    return jnp.reshape(jnp.asarray(action), ())


def _check_length(episode_length: int | None, one_shot: bool, default: int) -> int:
    if episode_length is None:
        return 1 if one_shot else default
    if int(episode_length) < 1:
        raise ConfigError(f"episode_length must be >= 1, got {episode_length}")
    if one_shot and int(episode_length) != 1:
        raise ConfigError("one_shot=True means one step per episode; leave episode_length unset or 1")
    return int(episode_length)


class _StatelessGame(MultiAgentEnv):
    """A two-agent repeated stage game with a single state (see the module docstring for the
    observation and the iterated/one-shot conventions). Subclasses define ``_rewards(actions)``."""

    def __init__(
        self,
        name: str,
        act_space,
        episode_length: int,
        one_shot: bool,
        shared_reward: bool,
        description: str,
        extra: tuple = (),
    ):
        self.episode_length = episode_length
        self.one_shot = bool(one_shot)
        self.spec = EnvSpec(
            name=name,
            agents=AGENTS,
            obs_spaces=(Box(0.0, 1.0, (1,)),) * 2,
            act_spaces=(act_space,) * 2,
            teams=(("team", AGENTS),),
            episode_length=episode_length,
            shared_reward=shared_reward,
            description=description,
            extra=(("one_shot", self.one_shot),) + tuple(extra),
            num_states=1,
        )

    def _rewards(self, actions: Actions) -> tuple[jax.Array, jax.Array]:
        raise NotImplementedError

    def get_obs(self, state: GameState) -> Obs:
        return {a: jnp.ones((1,), jnp.float32) for a in AGENTS}

    def reset(self, key: jax.Array) -> tuple[Obs, GameState]:
        state = GameState(t=jnp.zeros((), jnp.int32))
        return self.get_obs(state), state

    def step_env(self, key: jax.Array, state: GameState, actions: Actions):
        r0, r1 = self._rewards(actions)
        t = state.t + 1
        done = t >= self.episode_length
        new_state = GameState(t=t)
        rewards = {"agent_0": r0.astype(jnp.float32), "agent_1": r1.astype(jnp.float32)}
        dones = {"agent_0": done, "agent_1": done, "__all__": done}
        truncated = jnp.logical_and(done, not self.one_shot)
        return self.get_obs(new_state), new_state, rewards, dones, {"truncated": truncated}


@register("games/climbing", description="Iterated climbing game (ROMMEO Sec. 5.1), 3x3 shared payoff")
class ClimbingGame(_StatelessGame):
    """The iterated climbing game (Claus & Boutilier 1998) as used in ROMMEO Sec. 5.1.

    Fully cooperative, stateless, two players with actions {A, B, C} = {0, 1, 2}. Shared payoff

        agent_0 \\ agent_1    A     B    C
        A                   11   -30    0
        B                  -30     7    6
        C                    0     0    5

    Nash equilibria (A, A) and (B, B); global optimum (A, A) = 11. Miscoordination is punished most for
    A, so learners tend to settle on (B, B) or the "safe" (C, C).

    Choices:
        - (C, C): the paper prints ``(5, 3)`` but the reference code (rommeoijcai2019/rommeo) and the
          original game use a shared 5; we follow the code. ``cc_payoff=(5, 3)`` reproduces the printed
          matrix (then rewards differ at (C, C) and ``spec.shared_reward`` is False).
        - 25 steps per episode (ROMMEO's iterated setting; ``episode_length``), ending by time limit,
          or ``one_shot=True`` for the reference code's done-every-step convention.
        - Observation: constant ``[1.0]`` (single state).
    """

    def __init__(
        self,
        episode_length: int | None = None,
        cc_payoff: tuple[float, float] = (5.0, 5.0),
        one_shot: bool = False,
    ):
        cc_payoff = (float(cc_payoff[0]), float(cc_payoff[1]))
        self.cc_payoff = cc_payoff
        self.payoffs = climbing_payoffs(cc_payoff)
        super().__init__(
            name="games/climbing",
            act_space=Discrete(3),
            episode_length=_check_length(episode_length, one_shot, 25),
            one_shot=one_shot,
            shared_reward=cc_payoff[0] == cc_payoff[1],
            description="Iterated climbing game (ROMMEO Sec. 5.1)",
            extra=(("cc_payoff", cc_payoff),),
        )

    def _rewards(self, actions):
        i = jnp.clip(_scalar(actions["agent_0"]).astype(jnp.int32), 0, 2)
        j = jnp.clip(_scalar(actions["agent_1"]).astype(jnp.int32), 0, 2)
        return self.payoffs[0, i, j], self.payoffs[1, i, j]


@register(
    "games/max_of_two_quadratics",
    description="Max of Two Quadratics differential game (ROMMEO Sec. 5.2), actions in [-10, 10]",
)
class MaxOfTwoQuadratics(_StatelessGame):
    """ROMMEO's differential Max of Two Quadratics game (Sec. 5.2, after Wei et al. 2018).

    Each agent picks a scalar in ``[-10, 10]`` (``Box(-10, 10, (1,))``, clipped); both receive
    :func:`max_of_two_quadratics_reward`: local optimum (-5, -5) -> 0 (wide basin), global optimum
    (5, 5) -> 10 (narrow basin). The paper trains 200 episodes x 25 steps; here 25 steps per episode
    (``episode_length``) ending by time limit, or ``one_shot=True`` for the reference code's
    done-every-step convention. Observation: constant ``[1.0]``.
    """

    low, high = -10.0, 10.0

    def __init__(self, episode_length: int | None = None, one_shot: bool = False):
        super().__init__(
            name="games/max_of_two_quadratics",
            act_space=Box(self.low, self.high, (1,)),
            episode_length=_check_length(episode_length, one_shot, 25),
            one_shot=one_shot,
            shared_reward=True,
            description="Max of Two Quadratics (ROMMEO Sec. 5.2)",
        )

    def _rewards(self, actions):
        a1 = jnp.clip(_scalar(actions["agent_0"]), self.low, self.high)
        a2 = jnp.clip(_scalar(actions["agent_1"]), self.low, self.high)
        r = max_of_two_quadratics_reward(a1, a2)
        return r, r


@register(
    "games/lookahead_toy",
    description="Teammate Lookahead toy game R = a0^3 - 2(a0-a1)^2 + 3a0 (Sec. 4.1), one-shot",
)
class LookaheadToy(_StatelessGame):
    """The two-variable toy game of the Teammate Lookahead paper (Sec. 4.1, Figure 2).

    Two agents pick ``a0, a1`` in ``[0, 1]`` (``Box(0, 1, (1,))``, clipped) and both receive
    :func:`lookahead_toy_reward` ``R = a0^3 - 2 (a0 - a1)^2 + 3 a0``; optimum (1, 1) -> 4. The paper
    initialises the joint policy at (0.1, 0.1).

    Choices: the paper calls it "a two-variable function optimization problem" where "whenever the
    agents execute a joint action, the environment yields reward" and gives no episode length, so by
    default the game is **one-shot**: one step per episode, ending in a true terminal state
    (``truncated = False``), i.e. a bandit. ``one_shot=False, episode_length=N`` gives an iterated
    version that ends by time limit. Observation: constant ``[1.0]``.
    """

    low, high = 0.0, 1.0

    def __init__(self, episode_length: int | None = None, one_shot: bool = True):
        super().__init__(
            name="games/lookahead_toy",
            act_space=Box(self.low, self.high, (1,)),
            episode_length=_check_length(episode_length, one_shot, 25),
            one_shot=one_shot,
            shared_reward=True,
            description="Teammate Lookahead toy game (Sec. 4.1)",
        )

    def _rewards(self, actions):
        a0 = jnp.clip(_scalar(actions["agent_0"]), self.low, self.high)
        a1 = jnp.clip(_scalar(actions["agent_1"]), self.low, self.high)
        r = lookahead_toy_reward(a0, a1)
        return r, r


@register(
    "games/climb", description="AORPO two-state continuous Climb game (Sec. 6.1, App. G.1), competitive"
)
class Climb(MultiAgentEnv):
    """AORPO's Climb task (Sec. 6.1 and Appendix G.1), a modified Battle of the Sexes.

    Agent 1 (``agent_0``) picks ``a`` in ``[-1, 1]``, agent 2 (``agent_1``) picks ``b`` in ``[-1, 1]``
    (``Box(-1, 1, (1,))`` each, clipped); ``(a, b)`` is a position. Two states with landmarks
    lower-left (-0.5, -0.5) ("state 1", index 0) and upper-right (0.5, 0.5) ("state 2", index 1). The
    paper: "the only Nash equilibrium is that the agents go to the lower-left landmark at state 1 and
    go to the upper right landmark at state 2". Each agent is its own team (competitive, general-sum,
    ``shared_reward=False``).

    From the paper:
        - Agent 2's rewards (App. G.1), see :func:`climb_agent2_reward`:
          state 1: ``max(-2(a+0.5)^2 - 2(b+0.5)^2, -(a-0.5)^2 - (b-0.5)^2)``;
          state 2: ``max(-(a+0.5)^2 - (b+0.5)^2, -2(a-0.5)^2 - 2(b-0.5)^2)``.
          Agent 2 gets its maximum 0 at either landmark (the paper: it "can get different rewards by
          moving to both landmarks"); the landmark agent 1 prefers has the narrower peak.
        - Agent 1 "maximizes the reward by moving to the lower left landmark" in state 1 and to the
          upper right one in state 2.
        - 25 steps per episode (the paper's episode length for all tasks, App. F).

    Left open by the paper, our choices:
        - **Agent 1's reward** (:func:`climb_agent1_reward`): a single quadratic peak at the state's
          landmark, ``-c ((a - x_s)^2 + (b - y_s)^2)`` with ``c = agent1_coef = 2``. With ``c = 2`` it
          equals agent 2's branch at that landmark, so both agents' rewards coincide near the
          equilibrium (scale comparable to agent 2's). Why it gives the paper's unique equilibrium:
          agent 1's reward is separable in ``(a, b)`` and strictly concave in ``a``, so ``a = x_s`` is a
          strictly dominant action for agent 1 whatever agent 2 does. Against ``a = x_s`` agent 2's
          reward is ``max(-2(b - y_s)^2, -1 - (b + y_s)^2)`` (state 1; state 2 symmetric), uniquely
          maximised at ``b = y_s`` (value 0, versus at most -1 near the other landmark). Hence the
          landmark is the unique Nash equilibrium of each stage game, also among mixed strategies
          (agent 1 never mixes over a strictly dominated action). Any ``c > 0`` keeps this; a
          two-peaked agent-1 reward (mirroring agent 2's) would make the other landmark a second
          equilibrium, which the paper rules out.
        - **State transition**: independent of the actions, so the Markov game's (Markov perfect)
          equilibria are exactly the per-state stage-game equilibria above and the paper's statement
          holds for any discount. Default ``transition="alternate"``: the state flips every step
          (1, 2, 1, 2, ...), starting from a uniformly random state at reset. Both states are then
          visited equally often (12 or 13 of 25 steps), which the paper's per-state reward-surface
          plots (Figure 3) need, and the next state is a deterministic function of the current one,
          so a learned dynamics model (AORPO) can fit it exactly. ``transition="random"`` draws the
          next state uniformly at random every step instead (i.i.d.); the first state is uniform in
          both cases.
        - **Observation**: the one-hot of the current state (``Box(0, 1, (2,))``), identical for both
          agents; no time feature (the game is stationary and the episode end is a truncation).
        - Episodes end by time limit (``infos["truncated"] = True``) after ``episode_length`` steps.
    """

    TRANSITIONS = ("alternate", "random")

    def __init__(self, episode_length: int = 25, transition: str = "alternate", agent1_coef: float = 2.0):
        ranges.check_choice("task.transition", transition, self.TRANSITIONS)
        if not agent1_coef > 0:
            raise ConfigError(f"agent1_coef must be > 0 for a unique equilibrium, got {agent1_coef}")
        self.episode_length = _check_length(episode_length, False, 25)
        self.transition = transition
        self.agent1_coef = float(agent1_coef)
        self.spec = EnvSpec(
            name="games/climb",
            agents=AGENTS,
            obs_spaces=(Box(0.0, 1.0, (2,)),) * 2,
            act_spaces=(Box(-1.0, 1.0, (1,)),) * 2,
            teams=(("agent_0", ("agent_0",)), ("agent_1", ("agent_1",))),
            episode_length=self.episode_length,
            shared_reward=False,
            description="AORPO Climb (Sec. 6.1, App. G.1)",
            extra=(("transition", transition), ("agent1_coef", self.agent1_coef)),
            num_states=2,
        )

    def get_obs(self, state: ClimbState) -> Obs:
        one_hot = jax.nn.one_hot(state.s, 2, dtype=jnp.float32)
        return {a: one_hot for a in AGENTS}

    def reset(self, key: jax.Array) -> tuple[Obs, ClimbState]:
        s = jax.random.randint(key, (), 0, 2, dtype=jnp.int32)
        state = ClimbState(t=jnp.zeros((), jnp.int32), s=s)
        return self.get_obs(state), state

    def step_env(self, key: jax.Array, state: ClimbState, actions: Actions):
        a = jnp.clip(_scalar(actions["agent_0"]), -1.0, 1.0)
        b = jnp.clip(_scalar(actions["agent_1"]), -1.0, 1.0)
        r1, r2 = climb_rewards(state.s, a, b, self.agent1_coef)
        if self.transition == "alternate":
            s_next = 1 - state.s
        else:
            s_next = jax.random.randint(key, (), 0, 2, dtype=jnp.int32)
        t = state.t + 1
        done = t >= self.episode_length
        new_state = ClimbState(t=t, s=s_next)
        rewards = {"agent_0": r1, "agent_1": r2}
        dones = {"agent_0": done, "agent_1": done, "__all__": done}
        return self.get_obs(new_state), new_state, rewards, dones, {"truncated": done}


__all__ = [
    "CLIMBING_PAYOFF",
    "CLIMB_LANDMARKS",
    "Climb",
    "ClimbState",
    "ClimbingGame",
    "GameState",
    "LookaheadToy",
    "MaxOfTwoQuadratics",
    "climb_agent1_reward",
    "climb_agent2_reward",
    "climb_rewards",
    "climbing_payoffs",
    "lookahead_toy_reward",
    "max_of_two_quadratics_reward",
]
