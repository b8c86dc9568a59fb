"""SMAX: JaxMARL's jitted, simplified StarCraft micromanagement battles behind marlow's env API.

SMAX (Rutherford et al. 2024, JaxMARL; upstream ``jaxmarl/environments/smax/smax_env.py``) re-implements
the unit-vs-unit battles of the StarCraft Multi-Agent Challenge (SMAC) in pure JAX, so thousands of
battles run vmapped on one accelerator without the StarCraft II binary. The learners control the allied
team; the enemy team is played by JaxMARL's built-in heuristic AI (``HeuristicEnemySMAX``, as JaxMARL's
own MAPPO baseline uses it), so every task is a cooperative single-team task.

Registered tasks (``marlow.envs.make(name)``); agents ``ally_0..``, obs dim / actions / global state dim:

- ``smax/3m``: 3 marines vs 3 marines; 75 / 8 / 72.
- ``smax/2s3z``: 2 stalkers + 3 zealots vs the same; 127 / 10 / 120.
- ``smax/3s_vs_5z``: 3 stalkers vs 5 zealots; 101 / 10 / 96.
- ``smax/3s5z_vs_3s6z``: 3 stalkers + 5 zealots vs 3 stalkers + 6 zealots; 218 / 14 / 204.
- ``smax/3s_vs_3z``: 3 stalkers vs 3 zealots (a SMAC map that JaxMARL does not register); 75 / 8 / 72.
- ``smax/3s_vs_4z``: 3 stalkers vs 4 zealots (idem); 88 / 9 / 84.
- ``smax/6z_vs_24zg``: 6 zealots vs 24 zerglings, the units of SMAC's ``corridor`` but on SMAX's open
  map (SMAX has no terrain, so no corridor to hold); 387 / 29 / 360.

The first four are JaxMARL's registered scenarios; the last three are built here as JaxMARL ``Scenario``
objects (JaxMARL's global map registry is left untouched).

How SMAX differs from SMAC (so **SMAX numbers are not comparable with SMAC numbers**):

- **Dynamics.** Units are circles on an open 32 x 32 map without terrain or high ground; one env step is
  8 world sub-steps of 1/16 s in which all units act simultaneously (so both sides can die in the same
  step: a draw). Unit stats (speed, damage, range, cooldown, health) approximate StarCraft's; shields,
  armour, damage bonuses and special abilities are not modelled (a stalker's or zealot's health is its
  hit points plus shields). Units touching the map edge die (JaxMARL's default ``walls_cause_death``).
  No StarCraft II binary is involved.
- **Opponent.** JaxMARL's heuristic: attack the closest enemy in range (keeping the target until it is
  dead or out of range), else walk towards a random visible enemy, else towards the point mirroring its
  start through the map centre. SMAC uses StarCraft II's built-in AI (difficulty 7, "very hard").
- **Episodes.** Every map has a 100-step time limit (``episode_length``); SMAC's limits are per map
  (60 steps on 3m up to 400 on corridor). JaxMARL's own ``done`` fires one step late (it compares the step
  counter before incrementing it, so its episodes last 101 steps); we ignore it and compute ``dones``
  ourselves from the post-step state, ending every episode after at most ``episode_length`` steps.
- **Reward** (every ally gets the same team reward, as SMAX gives it; it is *not* summed over agents):
  the enemy team's health fraction lost this step, ``sum_j (h_j(t) - h_j(t+1)) / h_j^max / n_enemies``,
  plus 1 on the winning step. Dead allies keep receiving it. The return of a won episode is therefore 2
  (all enemy health lost plus the win bonus); SMAC's reward counts damage, kills and a win bonus,
  rescaled to a maximum return of 20.
- **Observations** (flat float32, JaxMARL's ``unit_list`` type): for every other unit (allies first, then
  enemies) within sight range 7 + 6 features (health fraction, position relative to the observer over its
  sight range, the unit's last move and attack, weapon cooldown fraction, unit-type one-hot; zeros when out
  of sight or dead), then 4 + 6 own features (health, position over the map size, cooldown, unit type).
  Allies see the enemies' last actions (JaxMARL's default ``see_enemy_actions``), unlike SMAC.
- **Actions** (``Discrete(5 + n_enemies)``): 0 north, 1 east, 2 south, 3 west, 4 stop, ``5 + j`` attack
  enemy ``j``. There is no SMAC-style no-op for dead units: a dead unit can only "stop", which does
  nothing (SMAC: 0 no-op, 1 stop, 2-5 moves, 6+ attacks).

Action masks (``spec.action_masks``): ``avail_actions(state)`` is SMAX's ``get_avail_actions``: moves only
while alive, stop always, attack ``j`` only while alive and enemy ``j`` is alive and within attack range.
So at least one action (stop) is always available. SMAX itself never rejects an action: an unavailable
attack (target dead or out of range) does nothing that step (no damage, no movement; the weapon cooldown
keeps ticking down, so it acts as "stop"), and a dead unit's moves do nothing. The learners should still
mask, since an unmasked policy wastes steps on no-op attacks.

Global state (``global_state(state)``, ``spec.global_state_dim = 12 * (n_allies + n_enemies)``): SMAX's own
``get_world_state``, the state JaxMARL's MAPPO baseline feeds its critic (without the agent-id one-hot it
can append per agent). Per unit, allies then enemies, 4 + 6 features: health fraction, x and y in map
coordinates (0-32, not normalised), weapon cooldown in seconds, unit-type one-hot (all zeros for a dead
unit); then every unit's team (0 ally, 1 enemy) and unit-type index.

Win: all enemy units dead while at least one ally is alive (the condition of SMAX's win bonus). The step
of a win has ``infos["won"] = True`` (``spec.episode_events``: logged as ``win_rate``); a draw (both teams
eliminated in the same step) and a time-out are not wins.

Episode ends: ``dones["__all__"]`` when a team is eliminated or after ``episode_length`` steps;
``infos["truncated"]`` only when the time limit ended it with both teams still standing (off-policy
learners bootstrap there). ``dones[agent]`` is true for a dead ally or at the episode end.

The env state is JaxMARL's ``HeuristicEnemySMAX`` state: the SMAX battle state (``state.state``: unit
positions, health, alive flags, cooldowns, last actions, step counter) and the heuristic enemies' policy
state. jaxmarl is imported lazily (in the factories), so importing this module stays cheap.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from marlow.envs.api import Actions, EnvSpec, MultiAgentEnv, Obs
from marlow.envs.jaxmarl_import import import_jaxmarl
from marlow.envs.registry import register
from marlow.envs.spaces import Box, Discrete

EPISODE_LENGTH = 100
"""SMAX's time limit (JaxMARL's ``max_steps`` default), the same for every map."""

UNIT_TYPES = ("marine", "marauder", "stalker", "zealot", "zergling", "hydralisk")
"""SMAX's unit types, in the order of its unit-type indices and one-hot features."""

# Maps JaxMARL 0.2.0 does not register, as (allied units, enemy units).
CUSTOM_MAPS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "3s_vs_3z": (("stalker",) * 3, ("zealot",) * 3),
    "3s_vs_4z": (("stalker",) * 3, ("zealot",) * 4),
    "6z_vs_24zg": (("zealot",) * 6, ("zergling",) * 24),
}

_DESCRIPTIONS = {
    "3m": "3 marines vs 3 marines (SMAX, heuristic enemy).",
    "2s3z": "2 stalkers + 3 zealots vs 2 stalkers + 3 zealots (SMAX, heuristic enemy).",
    "3s_vs_5z": "3 stalkers vs 5 zealots: kite the melee units (SMAX, heuristic enemy).",
    "3s5z_vs_3s6z": "3 stalkers + 5 zealots vs 3 stalkers + 6 zealots (SMAX, heuristic enemy).",
    "3s_vs_3z": "3 stalkers vs 3 zealots (SMAC map built as a SMAX scenario, heuristic enemy).",
    "3s_vs_4z": "3 stalkers vs 4 zealots (SMAC map built as a SMAX scenario, heuristic enemy).",
    "6z_vs_24zg": "6 zealots vs 24 zerglings: SMAC corridor's units on SMAX's open map (heuristic enemy).",
}


def _smax_module():
    """JaxMARL's SMAX core (``Scenario``, ``map_name_to_scenario``, ``SMAX``), without the rest of JaxMARL."""
    return import_jaxmarl("jaxmarl.environments.smax.smax_env")


def scenario(map_name: str) -> Any:
    """The JaxMARL ``Scenario`` of ``map_name``: JaxMARL's registered one, or one of :data:`CUSTOM_MAPS`
    built directly (without registering it in JaxMARL's global map registry)."""
    smax = _smax_module()
    if map_name in CUSTOM_MAPS:
        allies, enemies = CUSTOM_MAPS[map_name]
        types = jnp.array([UNIT_TYPES.index(u) for u in allies + enemies], dtype=jnp.uint8)
        return smax.Scenario(types, len(allies), len(enemies), False, False)
    return smax.map_name_to_scenario(map_name)


class SMAXEnv(MultiAgentEnv):
    """One SMAX map, allies controlled by the learners, enemies by JaxMARL's heuristic (module docstring).

    Args:
        name: registered task name (becomes ``spec.name``).
        map_name: a JaxMARL map name or a key of :data:`CUSTOM_MAPS`.
        episode_length: time limit in env steps (SMAX's 100 by default).
        description: one line for ``spec.description``.
    """

    def __init__(
        self, name: str, map_name: str, *, episode_length: int = EPISODE_LENGTH, description: str = ""
    ):
        if episode_length < 1:
            raise ValueError(f"episode_length must be >= 1, got {episode_length}")
        heuristic = import_jaxmarl("jaxmarl.environments.smax.heuristic_enemy_smax_env")
        self.map_name = map_name
        self.episode_length = int(episode_length)
        # JaxMARL's own time limit is ignored (see the module docstring); max_steps only keeps it quiet.
        self.jaxmarl_env = heuristic.HeuristicEnemySMAX(
            scenario=scenario(map_name), attack_mode="closest", max_steps=self.episode_length
        )
        inner = self.jaxmarl_env._env
        self.num_allies = int(inner.num_allies)
        self.num_enemies = int(inner.num_enemies)
        agents = tuple(self.jaxmarl_env.agents)
        obs_dim = int(inner.obs_size)
        n_actions = int(inner.num_ally_actions)
        types = [UNIT_TYPES[int(t)] for t in np.asarray(inner.scenario)]  # one copy, not an eager op per unit
        self.spec = EnvSpec(
            name=name,
            agents=agents,
            obs_spaces=tuple(Box(-jnp.inf, jnp.inf, (obs_dim,)) for _ in agents),
            act_spaces=tuple(Discrete(n_actions) for _ in agents),
            teams=(("allies", agents),),
            episode_length=self.episode_length,
            shared_reward=True,
            description=description,
            extra=(
                ("map", map_name),
                ("num_enemies", self.num_enemies),
                ("ally_units", tuple(types[: self.num_allies])),
                ("enemy_units", tuple(types[self.num_allies :])),
            ),
            action_masks=True,
            global_state_dim=int(inner.state_size),
            episode_events=(("won", "win_rate"),),
        )

    # ---- env API ------------------------------------------------------------------------------------
    def _ally_obs(self, obs: dict) -> Obs:
        return {a: jnp.asarray(obs[a], jnp.float32) for a in self.spec.agents}

    def reset(self, key: jax.Array) -> tuple[Obs, Any]:
        obs, state = self.jaxmarl_env.reset(key)
        return self._ally_obs(obs), state

    def get_obs(self, state: Any) -> Obs:
        return self._ally_obs(self.jaxmarl_env.get_obs(state))

    def avail_actions(self, state: Any) -> dict[str, jax.Array]:
        """SMAX's ``get_avail_actions`` for the allies, as bool masks ``[n_actions]``."""
        masks = self.jaxmarl_env.get_avail_actions(state)
        return {a: jnp.asarray(masks[a], jnp.bool_) for a in self.spec.agents}

    def global_state(self, state: Any) -> jax.Array:
        """SMAX's ``get_world_state`` (module docstring), float32 ``[spec.global_state_dim]``."""
        return jnp.asarray(self.jaxmarl_env.get_world_state(state), jnp.float32)

    def step_env(self, key: jax.Array, state: Any, actions: Actions):
        """One step without auto-reset: the heuristic enemies act, then the battle advances one env step.

        ``HeuristicEnemySMAX.step_env`` itself never resets (only JaxMARL's ``step`` does); its ``done`` is
        replaced by ours (module docstring)."""
        actions = {a: jnp.asarray(actions[a], jnp.int32) for a in self.spec.agents}
        obs, state, rewards, _, _ = self.jaxmarl_env.step_env(key, state, actions)
        battle = state.state
        alive = battle.unit_alive
        allies_dead = ~jnp.any(alive[: self.num_allies])
        enemies_dead = ~jnp.any(alive[self.num_allies :])
        time_up = battle.step >= self.episode_length
        eliminated = allies_dead | enemies_dead
        done = eliminated | time_up
        state = state.replace(state=battle.replace(done=done))
        dones = {a: done | ~alive[i] for i, a in enumerate(self.spec.agents)}
        dones["__all__"] = done
        infos = {"truncated": time_up & ~eliminated, "won": enemies_dead & ~allies_dead}
        rewards = {a: jnp.asarray(rewards[a], jnp.float32) for a in self.spec.agents}
        return self._ally_obs(obs), state, rewards, dones, infos


def _factory(map_name: str):
    """The registered factory of ``smax/<map_name>``: its one task option is ``episode_length``."""

    def factory(episode_length: int = EPISODE_LENGTH) -> SMAXEnv:
        return SMAXEnv(
            f"smax/{map_name}", map_name, episode_length=episode_length, description=_DESCRIPTIONS[map_name]
        )

    factory.__name__ = factory.__qualname__ = f"smax_{map_name}"
    factory.__doc__ = _DESCRIPTIONS[map_name]
    return factory


for _map in _DESCRIPTIONS:
    register(f"smax/{_map}", description=_DESCRIPTIONS[_map])(_factory(_map))


__all__ = [
    "CUSTOM_MAPS",
    "EPISODE_LENGTH",
    "UNIT_TYPES",
    "SMAXEnv",
    "scenario",
]
