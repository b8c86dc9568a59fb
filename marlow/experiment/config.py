"""Typed configs backed by YAML defaults, with ``key=value`` overrides.

Each config is a dataclass that declares fields and types; the default *values* live in YAML files
shipped in ``marlow/conf`` (one place, with comments citing the paper table each value comes from):

- ``conf/experiment.yaml``: the :class:`ExperimentConfig` defaults;
- ``conf/algo/<algo>.yaml``: the algorithm's ``Config`` defaults;
- ``conf/task/<family>.yaml`` (optional): defaults for every task of a family (``conf/task/mamujoco.yaml``
  for ``mamujoco/...``), and ``conf/task/<family>/<task>.yaml`` (optional): per-task overrides; both with
  an ``experiment:`` section and one section per algorithm name, which may hold an ``experiment:`` section
  of its own (experiment keys for that algorithm on those tasks, e.g. an on-policy learner's ``num_envs``).

An algorithm with a ``preset`` key (MAMBA, MAG) has named sets of values in its YAML's ``presets:``
section; the chosen preset's values sit just above the YAML defaults.

Resolution order: YAML defaults < the algorithm's ``experiment:`` section (e.g. an on-policy learner's
``num_envs``) < family overrides < task overrides (each: experiment section, then the algorithm's
experiment section) < command line. Command-line keys are experiment
keys (``seed=1``) or algorithm keys, plain (``lr_actor=0.001``) or prefixed (``algo.lr_actor=0.001``);
``task.<option>=value`` sets an option of the task's factory (``task.agent_obsk=0``), collected in the
experiment's ``task_options`` (values parsed as YAML scalars; an unknown option fails when the task is
built).
Unknown keys and values of the wrong type raise :class:`marlow.errors.ConfigError` with one line naming
the problem.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from marlow.errors import CheckpointError, ConfigError, did_you_mean
from marlow.schema import ranges
from marlow.schema.coerce import build, coerce, field_types, to_dict
from marlow.schema.files import CONF_DIR, read_yaml


@dataclass
class ExperimentConfig:
    """What to run and how (see conf/experiment.yaml for the documented defaults)."""

    algo: str
    task: str
    seed: ranges.Count
    num_seeds: ranges.Size
    total_steps: ranges.Size
    num_envs: ranges.Size
    eval_every: ranges.Size
    eval_episodes: ranges.Size
    checkpoint_every: ranges.Size
    run_dir: str
    resume: str
    overwrite: bool
    progress: bool
    compile_cache: str
    task_options: dict[str, Any]


RESUME_KEYS = ("total_steps", "checkpoint_every", "progress", "compile_cache")
"""The keys ``marlow train resume=DIR`` may set: how long the run goes on (a larger ``total_steps`` extends
a run, finished or not) and how it is run here. Every other key is fixed by the run's ``config.yaml``."""
HOST_ONLY = ("run_dir", "resume", "overwrite", "progress", "compile_cache")
"""Experiment keys that say where and how a run is run here, not what it computes."""
CONFIG_NAME = "config.yaml"


# ---------------------------------------------------------------------------------------------------
# YAML files
def task_override_path(task: str) -> Path:
    return CONF_DIR / "task" / (task.replace(":", "_") + ".yaml")


def task_overrides(task: str) -> dict[str, dict[str, Any]]:
    """The family's overrides (``conf/task/<family>.yaml``) updated section by section with the task's
    (``conf/task/<family>/<task>.yaml``)."""
    layers = [read_yaml(task_override_path(task))]
    if "/" in task and ":" not in task:
        layers.insert(0, read_yaml(CONF_DIR / "task" / (task.split("/")[0] + ".yaml")))
    out: dict[str, dict[str, Any]] = {}
    for layer in layers:
        for section, values in layer.items():
            if not isinstance(values, dict):
                raise ConfigError(f"task overrides for {task!r}: section {section!r} must be a mapping")
            out[section] = {**out.get(section, {}), **values}
    return out


def algo_defaults(algo: str) -> dict[str, Any]:
    """``conf/algo/<algo>.yaml`` without its ``experiment:`` and ``presets:`` sections; its optional
    ``_base`` list names YAML files (relative to ``conf/``) whose values come first, e.g. AORPO = MASAC's
    defaults + the world-model ones + its own."""
    data = _with_bases(CONF_DIR / "algo" / f"{algo}.yaml")
    data.pop("experiment", None)
    data.pop("presets", None)
    return data


def algo_preset(algo: str, name: str) -> dict[str, Any]:
    """The values of preset ``name`` from the ``presets:`` section of ``conf/algo/<algo>.yaml`` (named sets of
    values, e.g. MAMBA's ``paper`` sizes and the ``small`` ones that train on a CPU), chosen with the
    algorithm's ``preset`` key; they sit above the file's defaults and below task overrides and the
    command line."""
    presets = _with_bases(CONF_DIR / "algo" / f"{algo}.yaml").get("presets", {})
    if name not in presets:
        raise ConfigError(f"unknown preset {name!r} for algorithm {algo!r}; presets: {', '.join(presets)}")
    values = presets[name] or {}
    if not isinstance(values, dict):
        raise ConfigError(f"conf/algo/{algo}.yaml: preset {name!r} must be a mapping")
    return values


def algo_experiment_defaults(algo: str) -> dict[str, Any]:
    """The ``experiment:`` section of ``conf/algo/<algo>.yaml``: experiment defaults of that algorithm
    (an on-policy learner's ``num_envs``, say), above conf/experiment.yaml and below task overrides."""
    section = _with_bases(CONF_DIR / "algo" / f"{algo}.yaml").get("experiment", {})
    if not isinstance(section, dict):
        raise ConfigError(f"conf/algo/{algo}.yaml: experiment must be a mapping")
    return section


def _with_bases(path: Path) -> dict[str, Any]:
    data = read_yaml(path)
    bases = data.pop("_base", [])
    if not isinstance(bases, list):
        raise ConfigError(f"{path}: _base must be a list of YAML files")
    out: dict[str, Any] = {}
    for layer in [_with_bases(CONF_DIR / str(base)) for base in bases] + [data]:
        presets = {**out.get("presets", {})}
        for name, values in (layer.get("presets") or {}).items():  # presets merge name by name
            presets[name] = {**presets.get(name, {}), **(values or {})}
        out.update(layer)
        if presets:
            out["presets"] = presets
    return out


@dataclass
class RunConfig:
    """A fully resolved run: the experiment and the algorithm's config."""

    experiment: ExperimentConfig
    algo: Any  # the algorithm module's Config instance

    def to_dict(self) -> dict[str, Any]:
        d = to_dict(self.experiment)
        d["algo_params"] = to_dict(self.algo)
        return d


def parse_overrides(args: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for a in args:
        if "=" not in a or a.startswith("="):
            raise ConfigError(f"expected key=value, got {a!r}")
        k, v = a.split("=", 1)
        out[k.strip()] = v
    return out


def resolve(overrides: dict[str, Any] | list[str] | None = None) -> RunConfig:
    """Resolve defaults < task overrides < ``overrides`` into a :class:`RunConfig`."""
    from marlow.algos import get_algo  # local: algos import this module

    if isinstance(overrides, list):
        overrides = parse_overrides(overrides)
    overrides = dict(overrides or {})
    if overrides.get("resume"):
        return resolve_resume(overrides)
    if isinstance(overrides.get("task"), str):
        overrides["task"] = absolute_task(overrides["task"])
    exp_defaults = read_yaml(CONF_DIR / "experiment.yaml")
    exp_keys = set(field_types(ExperimentConfig))
    algo_name = str(overrides.get("algo", exp_defaults.get("algo")))
    task = str(overrides.get("task", exp_defaults.get("task")))
    algo_mod = get_algo(algo_name)
    algo_keys = set(field_types(algo_mod.Config))

    exp_cli, algo_cli, task_cli = {}, {}, {}
    for k, v in overrides.items():
        if k.startswith("task.") and len(k) > 5:
            task_cli[k[5:]] = yaml.safe_load(v) if isinstance(v, str) else v
        elif k.startswith("algo."):
            algo_cli[k[5:]] = v
        elif k in exp_keys:
            exp_cli[k] = v
        elif k in algo_keys:
            algo_cli[k] = v
        else:
            raise ConfigError(
                f"unknown config key {k!r}{did_you_mean(k, exp_keys | algo_keys)}; "
                f"`marlow train algo={algo_name} --help` lists the keys"
            )
    task_over = task_overrides(task)
    algo_exp = algo_experiment_defaults(algo_name)
    task_algo = dict(task_over.get(algo_name, {}))
    task_algo_exp = task_algo.pop("experiment", {})  # experiment keys for this algorithm on this task
    exp = build(
        ExperimentConfig, exp_defaults, algo_exp, task_over.get("experiment", {}), task_algo_exp, exp_cli
    )
    if task_cli:
        exp = dataclasses.replace(exp, task_options={**exp.task_options, **task_cli})
    defaults = algo_defaults(algo_name)
    preset = {}
    if "preset" in algo_keys:  # the preset named last (command line > task > file) picks its values
        name = algo_cli.get("preset", task_algo.get("preset", defaults.get("preset")))
        preset = algo_preset(algo_name, str(name))
    algo_cfg = build(
        algo_mod.Config,
        defaults,
        preset,
        task_algo,
        algo_cli,
        where=f" for algorithm {algo_name!r}",
    )
    return RunConfig(exp, algo_cfg)


def absolute_task(task: str) -> str:
    """A user env given by a ``.py`` path (``jax:myenv/env.py[:factory]``, ``pettingzoo:...``) with the
    path made absolute, so the saved run can be evaluated or resumed from any directory."""
    for prefix in ("jax:", "pettingzoo:"):
        if task.startswith(prefix):
            spec = task.removeprefix(prefix)
            path, sep, factory = (spec, "", "") if spec.endswith(".py") else spec.rpartition(":")
            if path.endswith(".py"):
                return prefix + str(Path(path).expanduser().resolve()) + sep + factory
    return task


def resolve_resume(overrides: dict[str, Any]) -> RunConfig:
    """The config of the run in ``overrides["resume"]`` (its ``config.yaml``) with the :data:`RESUME_KEYS`
    of ``overrides`` applied. Any other key is refused unless it repeats the run's own value, so a resume
    never silently drops a setting."""
    run_dir = str(overrides["resume"])
    saved = load_run_config(run_dir)
    e = saved.experiment
    exp_types, algo_types = field_types(ExperimentConfig), field_types(type(saved.algo))
    exp = to_dict(e)
    for k, v in overrides.items():
        if k == "resume" or k in RESUME_KEYS:
            exp[k] = v
            continue
        if k == "task" and isinstance(v, str):
            v = absolute_task(v)  # as saved
        name = k[5:] if k.startswith("algo.") else k
        if k in exp_types:
            same = coerce(k, v, exp_types[k]) == getattr(e, k)
        elif name in algo_types:
            same = coerce(name, v, algo_types[name]) == getattr(saved.algo, name)
        elif k.startswith("task.") and len(k) > 5:
            same = e.task_options.get(k[5:], object()) == (yaml.safe_load(v) if isinstance(v, str) else v)
        else:
            raise ConfigError(
                f"unknown config key {k!r}{did_you_mean(k, exp_types | algo_types)}; a resumed run takes "
                f"{', '.join(RESUME_KEYS)} (the {e.algo} run's other keys are in {run_dir}/{CONFIG_NAME})"
            )
        if not same:
            raise ConfigError(
                f"{k} cannot change when resuming {run_dir} (its {CONFIG_NAME} fixes it); a resumed run "
                f"takes {', '.join(RESUME_KEYS)}"
            )
    resumed = build(ExperimentConfig, exp)
    if resumed.total_steps < e.total_steps:
        raise ConfigError(
            f"total_steps can only grow when resuming: {run_dir} is a run of {e.total_steps:,} env steps, "
            f"at least that many must be asked for (got {resumed.total_steps:,})"
        )
    return RunConfig(resumed, saved.algo)


def load_run_config(run_dir: str | Path) -> RunConfig:
    """The resolved config a run directory was trained with (its ``config.yaml``)."""
    path = Path(run_dir) / CONFIG_NAME
    if not path.exists():
        raise CheckpointError(f"{run_dir} is not a run directory (no {CONFIG_NAME})")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise CheckpointError(f"unreadable {path}: {e}".splitlines()[0]) from None
    if not isinstance(data, dict):
        raise CheckpointError(f"unreadable {path}: not a mapping")
    return from_dict(data)


def from_dict(d: dict[str, Any]) -> RunConfig:
    """Rebuild a RunConfig saved by :meth:`RunConfig.to_dict` (e.g. a run directory's config.yaml)."""
    from marlow.algos import get_algo

    d = dict(d)
    algo_params = d.pop("algo_params", {})
    d.setdefault("task_options", {})  # run directories written before task options existed
    if str(d.get("task", "")).startswith("mamujoco/") and "simulator" not in d["task_options"]:
        # written before the in-loop simulator became MA-MuJoCo's default: those ran Gymnasium-Robotics'
        d["task_options"] = {**d["task_options"], "simulator": "gymnasium"}
    d.setdefault("compile_cache", "auto")  # ... and before the compilation cache
    d.setdefault("overwrite", False)
    exp = build(ExperimentConfig, d)
    return RunConfig(exp, build(get_algo(exp.algo).Config, algo_params))
