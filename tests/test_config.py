"""Typed configs: YAML defaults, key=value overrides, errors, round trips."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from marlow.algos import ALGORITHMS, get_algo
from marlow.errors import ConfigError
from marlow.experiment import config as config_mod
from marlow.experiment.config import (
    CONF_DIR,
    ExperimentConfig,
    RunConfig,
    field_types,
    from_dict,
    parse_overrides,
    resolve,
)
from marlow.schema import ranges


@pytest.mark.parametrize("algo", ALGORITHMS)
def test_resolve_defaults(algo):
    cfg = resolve([f"algo={algo}"])
    assert isinstance(cfg, RunConfig)
    assert cfg.experiment.algo == algo
    assert isinstance(cfg.algo, get_algo(algo).Config)
    defaults = config_mod.algo_defaults(algo)  # the YAML with its _base files merged
    for k, v in defaults.items():
        got = getattr(cfg.algo, k)
        assert (list(got) if isinstance(got, tuple) else got) == v, k
    exp = yaml.safe_load((CONF_DIR / "experiment.yaml").read_text())
    exp.update(config_mod.algo_experiment_defaults(algo))  # e.g. an on-policy learner's num_envs
    for k, v in exp.items():
        if k != "algo":
            assert getattr(cfg.experiment, k) == v, k
    # declared types are respected by the defaults
    for k, tp in field_types(type(cfg.algo)).items():
        tp, _ = ranges.split(tp)
        v = getattr(cfg.algo, k)
        if tp is float:
            assert isinstance(v, float), k
        elif tp in (int, bool, str):
            assert type(v) is tp, k
        elif ranges.choices(tp):
            assert v in ranges.choices(tp), k
        else:
            assert isinstance(v, tuple), k


def test_resolve_without_overrides_uses_experiment_yaml():
    cfg = resolve()
    exp = yaml.safe_load((CONF_DIR / "experiment.yaml").read_text())
    assert cfg.experiment.algo == exp["algo"] and cfg.experiment.task == exp["task"]
    assert resolve([]) == cfg and resolve({}) == cfg


@pytest.mark.parametrize("path", sorted((CONF_DIR / "algo").glob("*.yaml")), ids=lambda p: p.stem)
def test_algo_yaml_has_exactly_the_config_fields(path):
    assert path.stem in ALGORITHMS
    data = config_mod.algo_defaults(path.stem)  # with its _base files (world.yaml for AORPO/AORDPG)
    assert set(data) == set(field_types(get_algo(path.stem).Config))


def test_algo_yaml_bases_come_first(tmp_path, monkeypatch):
    """``_base`` files are merged in order, then the file's own values win; a non-list is an error."""
    (tmp_path / "algo").mkdir()
    (tmp_path / "a.yaml").write_text("x: 1\ny: 1\n")
    (tmp_path / "b.yaml").write_text("_base: [a.yaml]\ny: 2\nz: 2\n")
    (tmp_path / "algo" / "c.yaml").write_text("_base: [b.yaml]\nz: 3\n")
    (tmp_path / "algo" / "bad.yaml").write_text("_base: a.yaml\n")
    monkeypatch.setattr(config_mod, "CONF_DIR", tmp_path)
    assert config_mod.algo_defaults("c") == {"x": 1, "y": 2, "z": 3}
    with pytest.raises(ConfigError, match="_base"):
        config_mod.algo_defaults("bad")


def test_every_algorithm_has_a_yaml():
    assert {p.stem for p in (CONF_DIR / "algo").glob("*.yaml")} == set(ALGORITHMS)


def test_experiment_yaml_has_exactly_the_experiment_fields():
    data = yaml.safe_load((CONF_DIR / "experiment.yaml").read_text())
    assert set(data) == set(field_types(ExperimentConfig))


def test_task_override_files_are_valid():
    for path in sorted((CONF_DIR / "task").rglob("*.yaml")):
        data = yaml.safe_load(path.read_text()) or {}
        assert set(data) <= {"experiment", *ALGORITHMS}, path
        assert set(data.get("experiment", {})) <= set(field_types(ExperimentConfig)), path
        for algo in ALGORITHMS:
            section = dict(data.get(algo, {}))
            assert set(section.pop("experiment", {})) <= set(field_types(ExperimentConfig)), path
            assert set(section) <= set(field_types(get_algo(algo).Config)), path


@pytest.mark.parametrize(
    "override,where,key,expected",
    [
        ("total_steps=1e3", "experiment", "total_steps", 1000),
        ("seed=7", "experiment", "seed", 7),
        ("eval_every=2_000", "experiment", "eval_every", 2000),
        ("batch_size=1e2", "algo", "batch_size", 100),
        ("lr_actor=3e-4", "algo", "lr_actor", 3e-4),
        ("lr_critic=1", "algo", "lr_critic", 1.0),
        ("gamma=.9", "algo", "gamma", 0.9),
        ("progress=false", "experiment", "progress", False),
        ("progress=True", "experiment", "progress", True),
        ("progress=0", "experiment", "progress", False),
        ("autotune_alpha=no", "algo", "autotune_alpha", False),
        ("autotune_alpha=on", "algo", "autotune_alpha", True),
        ("hidden=32,32", "algo", "hidden", (32, 32)),
        ("hidden=[8, 16, 4]", "algo", "hidden", (8, 16, 4)),
        ("hidden=(12,)", "algo", "hidden", (12,)),
        ("task=games/climbing", "experiment", "task", "games/climbing"),
        ("run_dir=/tmp/x=y", "experiment", "run_dir", "/tmp/x=y"),
        ("algo.lr_actor=0.5", "algo", "lr_actor", 0.5),
        ("algo.hidden=4,4", "algo", "hidden", (4, 4)),
    ],
)
def test_overrides_are_typed(override, where, key, expected):
    cfg = resolve([override])
    got = getattr(cfg.experiment if where == "experiment" else cfg.algo, key)
    assert got == expected and type(got) is type(expected)


def test_overrides_as_dict_with_python_values():
    cfg = resolve({"algo": "maddpg", "seed": 3, "lr_actor": 1, "hidden": [8, 8], "progress": False})
    assert cfg.experiment.seed == 3 and cfg.algo.lr_actor == 1.0 and isinstance(cfg.algo.lr_actor, float)
    assert cfg.algo.hidden == (8, 8) and cfg.experiment.progress is False


def test_later_overrides_win_and_prefixed_keys():
    cfg = resolve(["lr_actor=0.1", "algo.lr_actor=0.2", "algo=maddpg", "exploration_noise=0.3"])
    assert cfg.algo.lr_actor == 0.2 and cfg.algo.exploration_noise == 0.3
    assert cfg.experiment.algo == "maddpg"


def _error(args) -> str:
    with pytest.raises(ConfigError) as ei:
        resolve(args)
    msg = str(ei.value)
    assert "\n" not in msg
    return msg


def test_unknown_key_names_the_key():
    assert "'no_such_key'" in _error(["no_such_key=1"])
    assert "'nope'" in _error(["algo.nope=1"])
    # algorithm-specific keys belong to their algorithm only
    assert "'exploration_noise'" in _error(["algo=masac", "exploration_noise=0.1"])
    assert "'lr_alpha'" in _error(["algo=maddpg", "lr_alpha=0.1"])
    # experiment keys are not algorithm keys
    assert "'seed'" in _error(["algo.seed=1"])


@pytest.mark.parametrize(
    "override,key",
    [
        ("lr_actor=abc", "lr_actor"),
        ("seed=1.5", "seed"),
        ("seed=abc", "seed"),
        ("seed=true", "seed"),
        ("progress=maybe", "progress"),
        ("autotune_alpha=2", "autotune_alpha"),
        ("hidden=32,x", "hidden"),
        ("hidden=1.5", "hidden"),
        ("batch_size=", "batch_size"),
        ("gamma=", "gamma"),
    ],
)
def test_wrong_type_raises(override, key):
    msg = _error([override])
    assert f"'{key}'" in msg


def test_wrong_python_types_raise():
    for bad in ({"progress": 1}, {"seed": True}, {"lr_actor": [1]}, {"hidden": 3}, {"task": 5}):
        with pytest.raises(ConfigError):
            resolve(bad)


def test_malformed_overrides():
    for bad in (["seed"], ["=3"]):
        with pytest.raises(ConfigError):
            resolve(bad)
    assert parse_overrides(["a=b=c", " k =v"]) == {"a": "b=c", "k": "v"}


def test_unknown_algorithm():
    msg = _error(["algo=nope"])
    assert "'nope'" in msg and "masac" in msg and "maddpg" in msg


def test_unknown_task_is_rejected_when_built():
    from marlow.runtime.runner import build

    cfg = resolve(["task=mpe/nope"])  # task names are checked when the env is built
    with pytest.raises(ConfigError, match="mpe/nope"):
        build(cfg)


@pytest.mark.parametrize(
    "override",
    [
        "num_seeds=0",
        "num_seeds=-2",
        "total_steps=0",
        "eval_every=-1",
        "eval_episodes=0",
        "num_envs=0",
        "checkpoint_every=0",
        "seed=-1",
    ],
)
def test_non_positive_values_raise(override):
    assert f"'{override.split('=')[0]}'" in _error([override])


@pytest.mark.parametrize("algo", ALGORITHMS)
def test_to_dict_from_dict_round_trip(algo):
    fields = field_types(get_algo(algo).Config)
    extra = [o for o in ("hidden=8,4", "lr_actor=0.25") if o.split("=")[0] in fields]
    cfg = resolve([f"algo={algo}", "seed=5", "num_seeds=2", "task=games/climbing", "progress=0", *extra])
    d = cfg.to_dict()
    if "hidden" in fields:
        assert d["algo_params"]["hidden"] == [8, 4]  # YAML-friendly lists
    assert from_dict(d) == cfg
    # through YAML text, as in a run directory's config.yaml
    assert from_dict(yaml.safe_load(yaml.safe_dump(d, sort_keys=False))) == cfg
    assert from_dict(d) is not cfg and dataclasses.asdict(from_dict(d).algo) == dataclasses.asdict(cfg.algo)


def test_from_dict_rejects_bad_input():
    d = resolve().to_dict()
    with pytest.raises(ConfigError):
        from_dict({**d, "bogus": 1})
    with pytest.raises(ConfigError):
        from_dict({**d, "algo_params": {**d["algo_params"], "bogus": 1}})
    missing = dict(d)
    del missing["seed"]
    with pytest.raises(ConfigError, match="seed"):
        from_dict(missing)
    with pytest.raises(ConfigError):
        from_dict({**d, "algo": "nope"})


def test_task_overrides_layer(tmp_path, monkeypatch):
    """conf/task/<family>/<task>.yaml sits between the defaults and the command line."""
    monkeypatch.setattr(config_mod, "CONF_DIR", tmp_path)
    (tmp_path / "algo").mkdir()
    (tmp_path / "algo" / "masac.yaml").write_text((CONF_DIR / "algo" / "masac.yaml").read_text())
    (tmp_path / "experiment.yaml").write_text((CONF_DIR / "experiment.yaml").read_text())
    (tmp_path / "task" / "games").mkdir(parents=True)
    (tmp_path / "task" / "games" / "climbing.yaml").write_text(
        "experiment:\n  total_steps: 5000\nmasac:\n  gamma: 0.5\n  hidden: [3, 3]\n"
    )
    cfg = resolve(["algo=masac", "task=games/climbing"])
    assert cfg.experiment.total_steps == 5000 and cfg.algo.gamma == 0.5 and cfg.algo.hidden == (3, 3)
    cfg = resolve(["algo=masac", "task=games/climbing", "gamma=0.7"])
    assert cfg.algo.gamma == 0.7 and cfg.experiment.total_steps == 5000
    # the family's file sits below the task's
    (tmp_path / "task" / "games.yaml").write_text(
        "experiment:\n  seed: 3\nmasac:\n  gamma: 0.1\n  tau: 0.2\n"
    )
    cfg = resolve(["algo=masac", "task=games/climbing"])
    assert (cfg.experiment.seed, cfg.algo.gamma, cfg.algo.tau) == (3, 0.5, 0.2)
    assert cfg.experiment.total_steps == 5000
    (tmp_path / "task" / "games" / "climbing.yaml").write_text("masac:\n  bogus: 1\n")
    with pytest.raises(ConfigError, match="bogus"):
        resolve(["algo=masac", "task=games/climbing"])
