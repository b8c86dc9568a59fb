"""Multi-agent particle environments (MPE): JaxMARL's tasks behind marlow's env API, plus AORPO's
cooperative scheduling task written in JAX.

Registered tasks (``marlow.envs.make(name)``), agents as name: action space, observation dim:

- ``mpe/simple_spread``: agent_0..2: Discrete(5), 18. One team, shared reward.
- ``mpe/simple_speaker_listener``: speaker_0: Discrete(3), 3; listener_0: Discrete(5), 11. One team, shared.
- ``mpe/simple_schedule``: agent_0 (leader): MultiDiscrete[5,3,3], 20; agent_1, agent_2: Discrete(5), 15.
  One team, shared (already a team reward, see below).
- ``mpe/simple_push``: adversary_0: Discrete(5), 8; agent_0: Discrete(5), 19. Teams adversary / agent.
- ``mpe/simple_adversary``: adversary_0: Discrete(5), 8; agent_0, agent_1: Discrete(5), 10. Two teams.
- ``mpe/simple_tag``: adversary_0..2: Discrete(5), 16; agent_0: Discrete(5), 14. Two teams.

Conventions shared by all six tasks
-----------------------------------
- **Agent names** are JaxMARL's ("agent_0", "speaker_0", "listener_0", "adversary_0", ...), in JaxMARL's
  order (adversaries first in competitive tasks).
- **Episodes last exactly ``episode_length`` = 25 env steps** (the AORPO paper). JaxMARL's ``step_env``
  computes ``done = state.step >= max_steps`` *before* incrementing the step counter, so a JaxMARL env with
  ``max_steps=25`` actually runs 26 steps (checked in the tests). We therefore ignore JaxMARL's ``done`` and
  compute our own from the post-step counter: ``done = state.step >= episode_length`` (``state.step`` counts
  the steps taken in the episode, so the 25th step is the last). ``state.done`` is overwritten with it.
  Passing JaxMARL's ``max_steps`` is refused (use ``episode_length``).
- MPE has no terminal states: every episode end is a time limit, so ``infos["truncated"]`` equals
  ``dones["__all__"]`` (off-policy learners should bootstrap through it).
- Rewards are float32 scalars (JaxMARL's simple_tag gives int32 adversary rewards; they are cast), dones
  are bool scalars and hold every agent plus ``"__all__"``; observations are float32 vectors.
- Observation spaces are ``Box(-inf, inf, (d,))``; discrete actions are int32 indices (``Discrete``) or
  int32 vectors (``MultiDiscrete``). Movement actions follow JaxMARL's (PettingZoo's) convention
  0 = no-op, 1 = -x, 2 = +x, 3 = -y, 4 = +y (the original MPE code has the opposite signs; irrelevant
  for learning).
- The env state is JaxMARL's MPE ``State`` pytree (``p_pos``, ``p_vel``, ``c``, ``done``, ``step``,
  ``goal``); ``reset_to(state)`` restarts from any stored state.
- Physics is JaxMARL's (dt 0.1, damping 0.25, accel 5, mass 1, contact force 100, margin 1e-3). Note
  JaxMARL integrates ``p += v_old * dt`` *before* updating the velocity, whereas the original MPE
  updates the velocity first (``p += v_new * dt``): positions lag one step behind the original MPE.

Teams and reward conventions
----------------------------
- **Cooperative tasks** (spread, speaker_listener): one team ``"team"`` with all agents,
  ``EnvSpec.shared_reward=True``, and every agent receives the **sum of all agents' JaxMARL rewards**
  (``share_team_rewards``; the AORPO/MADDPG code's ``shared_reward`` convention). For simple_spread,
  JaxMARL's per-agent reward is ``0.5 * (-collisions_i) + 0.5 * global`` (``local_ratio=0.5``, PettingZoo
  v3), so the shared reward is ``1.5 * global - 0.5 * total_collisions``; the original MPE code used by AORPO
  gives ``3 * global - total_collisions - 3`` (it counts every agent colliding with itself), i.e. 2x ours
  plus a constant. For speaker_listener both agents already get ``-|listener - goal|^2`` so the shared
  reward is twice that (as in the AORPO code).
- **Competitive tasks** (push, adversary, tag): two teams, ``"adversary"`` (agents whose name starts with
  ``"adversary"``) and ``"agent"`` (the others), ``shared_reward=False``, per-agent rewards exactly as JaxMARL
  gives them (JaxMARL already gives every adversary the same reward in tag, and every good agent the same
  reward in adversary; kept as is).
- **simple_schedule**: one team, ``shared_reward=True``; its reward is already the team reward (the same
  value for every agent) and is **not** summed again over agents (the AORPO code's ``collaborative=True``
  world would triple it; ``sum_team_reward=True`` reproduces that). See :class:`SimpleScheduleMPE`.

Task options: all tasks take ``episode_length`` (default 25); the JaxMARL tasks also pass these on to the
JaxMARL constructor: ``action_type`` (``"Continuous"``), the physics scalars ``dt``, ``damping``,
``contact_force`` and ``contact_margin``, and the task's sizes (spread: ``num_agents``, ``num_landmarks``,
``local_ratio``; push: ``num_good_agents``, ``num_adversaries``; adversary and tag: ``num_good_agents``,
``num_adversaries``, ``num_obs``). Any other option is refused (``marlow.envs.make``).
jaxmarl is imported lazily, so importing this module (e.g. to list tasks) stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp

from marlow.envs.api import Actions, EnvSpec, MultiAgentEnv, Obs, share_team_rewards
from marlow.envs.jaxmarl_import import import_jaxmarl
from marlow.envs.registry import register
from marlow.envs.spaces import Box, Discrete, MultiDiscrete, Space

if TYPE_CHECKING:
    from jaxmarl.environments.mpe.simple import State


EPISODE_LENGTH = 25
"""Time limit of every MPE task (AORPO paper: 25-step episodes)."""

Rewards = dict[str, jax.Array]
Dones = dict[str, jax.Array]
StepOut = tuple[Obs, "State", Rewards, Dones, dict[str, Any]]


# ------------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------------
def _time_limit(agents: tuple[str, ...], step: jax.Array, episode_length: int) -> tuple[Dones, dict]:
    """Dones (every agent plus ``"__all__"``) and infos for a pure time limit after ``step`` steps."""
    done = jnp.asarray(step >= episode_length, dtype=jnp.bool_)
    dones = {a: done for a in agents}
    dones["__all__"] = done
    return dones, {"truncated": done}


def _convert_space(space: Any, *, is_obs: bool) -> Space:
    """A JaxMARL space -> a marlow space (observations always become ``Box(-inf, inf, shape)``)."""
    kind = type(space).__name__
    if is_obs:
        return Box(-jnp.inf, jnp.inf, tuple(space.shape))
    if kind == "Discrete":
        return Discrete(int(space.n))
    if kind == "MultiDiscrete":
        return MultiDiscrete(tuple(int(n) for n in space.num_categories))
    if kind == "Box":
        low, high = jnp.asarray(space.low), jnp.asarray(space.high)
        low_v = float(low) if low.ndim == 0 else tuple(low.ravel().tolist())
        high_v = float(high) if high.ndim == 0 else tuple(high.ravel().tolist())
        return Box(low_v, high_v, tuple(space.shape))
    raise TypeError(f"unsupported JaxMARL space {space!r}")


def _float_obs(obs: dict[str, jax.Array]) -> Obs:
    return {a: jnp.asarray(o, jnp.float32) for a, o in obs.items()}


def _discrete_move(action: jax.Array) -> jax.Array:
    """Unit movement direction of a Discrete(5) action, JaxMARL's convention (0 none, 1 -x, 2 +x, 3 -y,
    4 +y)."""
    axis = jnp.where(action <= 2, 0, 1)
    sign = jnp.where(action % 2 == 0, 1.0, -1.0) * (action != 0)
    return jnp.zeros((2,), jnp.float32).at[axis].set(sign)


# ------------------------------------------------------------------------------------------------------
# JaxMARL wrapper
# ------------------------------------------------------------------------------------------------------
class JaxMARLMPE(MultiAgentEnv):
    """A JaxMARL MPE env behind marlow's API (see the module docstring for the conventions).

    Args:
        name: registered task name (becomes ``spec.name``).
        jaxmarl_env: a JaxMARL ``SimpleMPE`` subclass instance (kept as ``self.jaxmarl_env``).
        cooperative: one shared-reward team (rewards summed over agents) if True, else two teams
            ``"adversary"``/``"agent"`` with JaxMARL's per-agent rewards.
        episode_length: time limit in env steps.
        description: one line for ``spec.description``.
    """

    def __init__(
        self,
        name: str,
        jaxmarl_env: Any,
        *,
        cooperative: bool,
        episode_length: int = EPISODE_LENGTH,
        description: str = "",
    ):
        self.jaxmarl_env = jaxmarl_env
        self.episode_length = int(episode_length)
        self.cooperative = cooperative
        agents = tuple(jaxmarl_env.agents)
        if cooperative:
            teams: tuple[tuple[str, tuple[str, ...]], ...] = (("team", agents),)
        else:
            adversaries = tuple(a for a in agents if a.startswith("adversary"))
            others = tuple(a for a in agents if not a.startswith("adversary"))
            teams = (("adversary", adversaries), ("agent", others))
        self.spec = EnvSpec(
            name=name,
            agents=agents,
            obs_spaces=tuple(_convert_space(jaxmarl_env.observation_spaces[a], is_obs=True) for a in agents),
            act_spaces=tuple(_convert_space(jaxmarl_env.action_spaces[a], is_obs=False) for a in agents),
            teams=teams,
            episode_length=self.episode_length,
            shared_reward=cooperative,
            description=description,
            global_state_dim=sum(int(jaxmarl_env.observation_spaces[a].shape[0]) for a in agents),
        )

    def global_state(self, state: State) -> jax.Array:
        """MPE has no world-state vector: the concatenated observations of all agents in spec order, as
        MAPPO's MPE runs use (Yu et al. 2022, App. C). No action masks: every move is always allowed."""
        obs = self.get_obs(state)
        return jnp.concatenate([obs[a] for a in self.spec.agents], axis=-1)

    def reset(self, key: jax.Array) -> tuple[Obs, State]:
        obs, state = self.jaxmarl_env.reset(key)
        return _float_obs(obs), state

    def get_obs(self, state: State) -> Obs:
        return _float_obs(self.jaxmarl_env.get_obs(state))

    def step_env(self, key: jax.Array, state: State, actions: Actions) -> StepOut:
        """One step without auto-reset; JaxMARL's own ``done`` is replaced by our 25-step time limit."""
        obs, state, rewards, _, _ = self.jaxmarl_env.step_env(key, state, actions)
        dones, infos = _time_limit(self.spec.agents, state.step, self.episode_length)
        state = state.replace(done=dones["__all__"])
        rewards = {a: jnp.asarray(rewards[a], jnp.float32) for a in self.spec.agents}
        if self.cooperative:
            rewards = share_team_rewards(self.spec, rewards)
        return _float_obs(obs), state, rewards, dones, infos


def _make_jaxmarl(
    name: str, cls_name: str, cooperative: bool, description: str, episode_length: int, kwargs: dict
) -> JaxMARLMPE:
    if "max_steps" in kwargs:
        raise TypeError("use episode_length instead of JaxMARL's max_steps (which runs one step too many)")
    module = import_jaxmarl(f"jaxmarl.environments.mpe.{name.split('/')[1]}")
    inner = getattr(module, cls_name)(**kwargs)
    return JaxMARLMPE(
        name, inner, cooperative=cooperative, episode_length=episode_length, description=description
    )


_SPREAD = "Cooperative navigation: 3 agents cover 3 landmarks, avoid collisions (JaxMARL)."
_SPEAKER = "Speaker sees the goal colour, listener moves to it; Discrete(3)/Discrete(5) (JaxMARL)."
_PUSH = "Keep-away: adversary pushes the agent away from its goal landmark (JaxMARL)."
_ADVERSARY = "Physical deception: 2 agents hide the goal landmark from 1 adversary (JaxMARL)."
_TAG = "Predator-prey: 3 slower adversaries chase 1 faster agent among 2 obstacles (JaxMARL)."
_SCHEDULE = "AORPO cooperative scheduling: a leader tells 2 followers their goal landmarks."


# The JaxMARL constructor arguments each task passes on (its ``**kwargs``; see the module docstring).
_COMMON = ("action_type", "dt", "damping", "contact_force", "contact_margin")
_TEAMS = ("num_good_agents", "num_adversaries")


@register(
    "mpe/simple_spread",
    description=_SPREAD,
    options=("num_agents", "num_landmarks", "local_ratio", *_COMMON),
)
def simple_spread(episode_length: int = EPISODE_LENGTH, **kwargs: Any) -> JaxMARLMPE:
    """Cooperative navigation (shared summed reward)."""
    return _make_jaxmarl("mpe/simple_spread", "SimpleSpreadMPE", True, _SPREAD, episode_length, kwargs)


@register("mpe/simple_speaker_listener", description=_SPEAKER, options=_COMMON)
def simple_speaker_listener(episode_length: int = EPISODE_LENGTH, **kwargs: Any) -> JaxMARLMPE:
    """Cooperative communication (shared summed reward)."""
    return _make_jaxmarl(
        "mpe/simple_speaker_listener", "SimpleSpeakerListenerMPE", True, _SPEAKER, episode_length, kwargs
    )


@register("mpe/simple_push", description=_PUSH, options=(*_TEAMS, *_COMMON))
def simple_push(episode_length: int = EPISODE_LENGTH, **kwargs: Any) -> JaxMARLMPE:
    """Keep-away (competitive)."""
    return _make_jaxmarl("mpe/simple_push", "SimplePushMPE", False, _PUSH, episode_length, kwargs)


@register("mpe/simple_adversary", description=_ADVERSARY, options=(*_TEAMS, "num_obs", *_COMMON))
def simple_adversary(episode_length: int = EPISODE_LENGTH, **kwargs: Any) -> JaxMARLMPE:
    """Physical deception (competitive)."""
    return _make_jaxmarl(
        "mpe/simple_adversary", "SimpleAdversaryMPE", False, _ADVERSARY, episode_length, kwargs
    )


@register("mpe/simple_tag", description=_TAG, options=(*_TEAMS, "num_obs", *_COMMON))
def simple_tag(episode_length: int = EPISODE_LENGTH, **kwargs: Any) -> JaxMARLMPE:
    """Predator-prey (competitive)."""
    return _make_jaxmarl("mpe/simple_tag", "SimpleTagMPE", False, _TAG, episode_length, kwargs)


# ------------------------------------------------------------------------------------------------------
# AORPO cooperative scheduling
# ------------------------------------------------------------------------------------------------------
class SimpleScheduleMPE(MultiAgentEnv):
    """AORPO's cooperative scheduling task (the AORPO code's ``simple_schedule`` scenario) in JAX.

    World: 3 agents (radius 0.075) and 3 landmarks (radius 0.04), nothing collides; agents and landmarks
    start at ``U[-1, 1]^2``, agents at rest. MPE physics via JaxMARL's integrator (dt 0.1, damping 0.25,
    accel 5, mass 1; no contact forces at all since nothing collides).

    Each episode the landmarks are randomly permuted into goals: ``state.goal`` (int32, shape (3,)) holds
    the landmark index of the goal of agent 0, 1 and 2 (a uniformly random permutation).

    - ``agent_0`` (leader): ``MultiDiscrete([5, 3, 3])`` = (move, message to agent_1, message to agent_2).
      Observation (20): own velocity (2), own goal relative to itself (2), one-hot landmark index of
      agent_1's goal (3) and of agent_2's goal (3), agent_1 and agent_2 positions relative to itself (4),
      its own current comm state (6 = message to agent_1 one-hot ++ message to agent_2 one-hot).
    - ``agent_1``, ``agent_2`` (followers, silent): ``Discrete(5)`` move. Observation (15): own velocity (2),
      the 3 landmarks relative to itself in landmark order (6), the 2 other agents relative to itself in
      index order (4), their own channel of the leader's comm state (3).
    - Reward (every agent, same value): ``-(|p1-g1|^2 + |p2-g2|^2 + |p0-g0|^2)`` on the post-step
      positions. It is already the team reward and is not summed over agents (``sum_team_reward=True``
      multiplies it by 3, as the AORPO code's ``collaborative=True`` world does).

    Choices the definition leaves open (made here):

    - Comm timing as in MPE: the messages chosen at step t become the comm state ``state.c[0]`` in that
      step and are seen in the observations returned by it (the leader's own 6 comm dims and the
      followers' channels). At reset the comm state is all zeros (no message yet), as in the AORPO code.
    - Goal "colours" are one-hot landmark indices; the AORPO code uses RGB colours (0.65 on the landmark's
      channel, 0.15 elsewhere), an affine transform of the same one-hot.
    - ``state.goal[i]`` is agent i's goal directly; the AORPO code shuffles the landmarks and gives
      positions 0, 1, 2 of the shuffle to agents 1, 2, 0 -- the same distribution.
    - Movement actions use JaxMARL's convention (0 none, 1 -x, 2 +x, 3 -y, 4 +y) and JaxMARL's integration
      order (position updated with the old velocity), like the other MPE tasks here.
    - No noise on actions or messages; landmarks never move; no velocity cap.
    - ``state.c`` has shape (3, 6): row 0 is the leader's comm state, rows 1-2 (silent followers) are 0.
    """

    LEADER = "agent_0"
    FOLLOWERS = ("agent_1", "agent_2")
    NUM_AGENTS = 3
    NUM_LANDMARKS = 3
    DIM_MSG = 3
    AGENT_SIZE = 0.075
    LANDMARK_SIZE = 0.04
    ACCEL = 5.0

    def __init__(self, episode_length: int = EPISODE_LENGTH, sum_team_reward: bool = False):
        SimpleMPE = import_jaxmarl("jaxmarl.environments.mpe.simple").SimpleMPE  # noqa: N806

        self.episode_length = int(episode_length)
        self.sum_team_reward = bool(sum_team_reward)
        n, m = self.NUM_AGENTS, self.NUM_LANDMARKS
        agents = (self.LEADER, *self.FOLLOWERS)
        # JaxMARL's SimpleMPE is used only as the physics engine (its integrator and constants).
        self._physics = SimpleMPE(
            num_agents=n,
            agents=list(agents),
            num_landmarks=m,
            dim_c=2 * self.DIM_MSG,
            rad=jnp.concatenate([jnp.full((n,), self.AGENT_SIZE), jnp.full((m,), self.LANDMARK_SIZE)]),
            collide=jnp.full((n + m,), False),
            silent=jnp.array([0, 1, 1]),
            accel=jnp.full((n,), self.ACCEL),
        )
        obs_leader = 2 + 2 + 2 * self.DIM_MSG + 2 * (n - 1) + 2 * self.DIM_MSG
        obs_follower = 2 + 2 * m + 2 * (n - 1) + self.DIM_MSG
        self.spec = EnvSpec(
            name="mpe/simple_schedule",
            agents=agents,
            obs_spaces=(
                Box(-jnp.inf, jnp.inf, (obs_leader,)),
                Box(-jnp.inf, jnp.inf, (obs_follower,)),
                Box(-jnp.inf, jnp.inf, (obs_follower,)),
            ),
            act_spaces=(MultiDiscrete((5, self.DIM_MSG, self.DIM_MSG)), Discrete(5), Discrete(5)),
            teams=(("team", agents),),
            episode_length=self.episode_length,
            shared_reward=True,
            description=_SCHEDULE,
            global_state_dim=obs_leader + 2 * obs_follower,
            extra=(("leader", self.LEADER),),
        )

    # ---- helpers --------------------------------------------------------------------------------------
    def goal_positions(self, state: State) -> jax.Array:
        """(3, 2) positions of agent 0, 1, 2's goal landmarks."""
        return state.p_pos[self.NUM_AGENTS + state.goal]

    def team_reward(self, state: State) -> jax.Array:
        """``-(sum_i |p_i - g_i|^2)`` as a float32 scalar."""
        d = state.p_pos[: self.NUM_AGENTS] - self.goal_positions(state)
        return -jnp.sum(jnp.square(d)).astype(jnp.float32)

    # ---- env API --------------------------------------------------------------------------------------
    def reset(self, key: jax.Array) -> tuple[Obs, State]:
        from jaxmarl.environments.mpe.simple import State

        n, m = self.NUM_AGENTS, self.NUM_LANDMARKS
        key_a, key_l, key_g = jax.random.split(key, 3)
        p_pos = jnp.concatenate(
            [
                jax.random.uniform(key_a, (n, 2), minval=-1.0, maxval=1.0),
                jax.random.uniform(key_l, (m, 2), minval=-1.0, maxval=1.0),
            ]
        )
        state = State(
            p_pos=p_pos,
            p_vel=jnp.zeros((n + m, 2)),
            c=jnp.zeros((n, 2 * self.DIM_MSG)),
            done=jnp.array(False),
            step=jnp.array(0, jnp.int32),
            goal=jax.random.permutation(key_g, m).astype(jnp.int32),
        )
        return self.get_obs(state), state

    def global_state(self, state: State) -> jax.Array:
        """The concatenated observations of leader and followers (as the other MPE tasks; no masks)."""
        obs = self.get_obs(state)
        return jnp.concatenate([obs[a] for a in self.spec.agents], axis=-1)

    def get_obs(self, state: State) -> Obs:
        n, k = self.NUM_AGENTS, self.DIM_MSG
        pos = state.p_pos[:n]
        landmarks = state.p_pos[n:]
        goals = self.goal_positions(state)
        leader_c = state.c[0]
        obs = {
            self.LEADER: jnp.concatenate(
                [
                    state.p_vel[0],
                    goals[0] - pos[0],
                    jax.nn.one_hot(state.goal[1], self.NUM_LANDMARKS),
                    jax.nn.one_hot(state.goal[2], self.NUM_LANDMARKS),
                    (pos[1:] - pos[0]).ravel(),
                    leader_c,
                ]
            )
        }
        for i, name in enumerate(self.FOLLOWERS, start=1):
            others = [j for j in range(n) if j != i]
            obs[name] = jnp.concatenate(
                [
                    state.p_vel[i],
                    (landmarks - pos[i]).ravel(),
                    (pos[jnp.array(others)] - pos[i]).ravel(),
                    leader_c[(i - 1) * k : i * k],
                ]
            )
        return _float_obs(obs)

    def step_env(self, key: jax.Array, state: State, actions: Actions) -> StepOut:
        """One step without auto-reset (deterministic: ``key`` is unused since nothing is noisy)."""
        del key
        n, m, k = self.NUM_AGENTS, self.NUM_LANDMARKS, self.DIM_MSG
        leader = jnp.asarray(actions[self.LEADER])
        moves = jnp.stack([_discrete_move(leader[0])] + [_discrete_move(actions[a]) for a in self.FOLLOWERS])
        ph = self._physics
        force = jnp.concatenate([moves * ph.accel[:, None], jnp.zeros((m, 2))])
        p_pos, p_vel = ph._integrate_state(
            force, state.p_pos, state.p_vel, ph.mass, ph.moveable, ph.max_speed
        )
        message = jnp.concatenate([jax.nn.one_hot(leader[1], k), jax.nn.one_hot(leader[2], k)])
        c = jnp.zeros((n, 2 * k)).at[0].set(message)
        step = state.step + 1
        dones, infos = _time_limit(self.spec.agents, step, self.episode_length)
        state = state.replace(p_pos=p_pos, p_vel=p_vel, c=c, step=step, done=dones["__all__"])
        r = self.team_reward(state) * (n if self.sum_team_reward else 1)
        rewards = {a: r for a in self.spec.agents}
        return self.get_obs(state), state, rewards, dones, infos


@register("mpe/simple_schedule", description=_SCHEDULE)
def simple_schedule(episode_length: int = EPISODE_LENGTH, sum_team_reward: bool = False) -> SimpleScheduleMPE:
    """AORPO cooperative scheduling (team reward, not summed over agents)."""
    return SimpleScheduleMPE(episode_length=episode_length, sum_team_reward=sum_team_reward)


__all__ = [
    "EPISODE_LENGTH",
    "JaxMARLMPE",
    "SimpleScheduleMPE",
    "simple_adversary",
    "simple_push",
    "simple_schedule",
    "simple_speaker_listener",
    "simple_spread",
    "simple_tag",
]
