"""The config foundation (marlow/schema): the layers import one way, key groups are declared once, choice
keys refuse anything else with one line, and the opponent models' defaults have one source."""

from __future__ import annotations

import ast
import dataclasses
import typing
from pathlib import Path

import pytest

from marlow.algos import ALGORITHMS, get_algo
from marlow.algos.common import AnnealKeys
from marlow.algos.offpolicy.masql import ParticleKeys
from marlow.errors import ConfigError
from marlow.experiment.config import resolve
from marlow.schema import ranges
from marlow.schema.coerce import build, coerce, field_types
from marlow.schema.groups import ReplayKeys, TargetKeys, prefixed, sub_config
from marlow.world.ensemble import MODEL_PREFIX, EnsembleConfig, ModelKeys
from marlow.world.opponents import OPP_PREFIX, OpponentConfig, OpponentKeys, recommended_config

PACKAGE = Path(__file__).resolve().parents[1] / "marlow"
# each layer may import the ones before it, never one after it
LAYERS = [
    ("errors", "devices", "schema"),
    ("nn", "envs", "buffers", "rollout"),
    ("world",),
    ("algos",),
    ("experiment",),
    ("runtime",),
    ("analysis",),
    ("sweep", "api", "cli", "__init__", "__main__"),
]
RANK = {name: i for i, names in enumerate(LAYERS) for name in names}


def _marlow_imports(path: Path) -> set[str]:
    """The first component after ``marlow.`` of every marlow module ``path`` imports (at any depth: a
    function-local import counts the same)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "marlow" and len(parts) > 1:
                out.add(parts[1])
    return out


def _top(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    return rel.parts[0].removesuffix(".py")


def test_layers_import_one_way():
    bad = []
    for path in sorted(PACKAGE.rglob("*.py")):
        here = _top(path)
        assert here in RANK, f"{path} is in no layer of LAYERS: add it"
        for used in _marlow_imports(path) - {here}:
            if used in RANK and RANK[used] > RANK[here]:
                bad.append(f"{path.relative_to(PACKAGE)} imports marlow.{used}")
    assert not bad, "imports from a layer above:\n" + "\n".join(bad)


def _module_graph() -> dict[str, set[str]]:
    """marlow module -> the marlow modules it imports (at any depth; ``from marlow.algos import common``
    imports ``marlow.algos.common``)."""
    mods = {}
    for path in PACKAGE.rglob("*.py"):
        parts = ("marlow", *path.relative_to(PACKAGE).with_suffix("").parts)
        mods[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph = {}
    for name, path in mods.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for a in node.names:
                    full = f"{node.module}.{a.name}"
                    deps.add(full if full in mods else node.module)
            elif isinstance(node, ast.Import):
                deps.update(a.name for a in node.names)
        graph[name] = {d for d in deps if d in mods and d != name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out = []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while comp[-1:] != [v]:
                comp.append(stack.pop())
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_circles():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]  # the check works
    assert _cycles(_module_graph()) == []


def test_schema_package_imports_only_errors():
    for path in sorted((PACKAGE / "schema").glob("*.py")):
        assert _marlow_imports(path) <= {"schema", "errors"}, path


def test_the_api_config_function_survives_the_schema_import():
    """``marlow.config`` (the API's function) is not shadowed by a subpackage once the algorithms are
    imported (they import marlow.schema)."""
    import marlow
    import marlow.algos.offpolicy.masac  # noqa: F401

    assert callable(marlow.config)
    assert marlow.config("masac", "mpe/simple_spread").experiment.algo == "masac"


@pytest.mark.parametrize(
    "group",
    [ReplayKeys, TargetKeys, ModelKeys, OpponentKeys, AnnealKeys, ParticleKeys],
    ids=lambda g: g.__name__,
)
def test_a_config_with_a_groups_keys_composes_the_group(group):
    """No algorithm re-declares a group's keys: a config holding all of them inherits the group (so each
    key's type and range is declared once)."""
    names = {f.name for f in dataclasses.fields(group)}
    users = [a for a in ALGORITHMS if names <= set(field_types(get_algo(a).Config))]
    assert users, f"no algorithm uses {group.__name__}"
    for algo in users:
        assert issubclass(get_algo(algo).Config, group), f"{algo} re-declares {group.__name__}'s keys"
    if group is ReplayKeys:  # 7 deep off-policy learners, 7 tabular (with ROMMEO-Q-EMP), AORPO, AORDPG
        assert len(users) == 16
    if group is TargetKeys:
        assert {"masac", "maddpg", "ddpg", "ddpg_om", "masql", "pr2_ac", "rommeo_ac"} <= set(users)
    if group in (AnnealKeys, ParticleKeys):
        assert set(users) == ({"masql", "rommeo_ac"} if group is AnnealKeys else {"masql", "pr2_ac"})


def test_prefixed_groups_follow_their_component():
    for group, cls, prefix in (
        (ModelKeys, EnsembleConfig, MODEL_PREFIX),
        (OpponentKeys, OpponentConfig, OPP_PREFIX),
    ):
        want = {prefix + k: tp for k, tp in field_types(cls).items()}
        assert field_types(group) == want
    cfg = resolve(["algo=aorpo", "model_lr=0.002", "opp_window=64"]).algo
    assert sub_config(cfg, EnsembleConfig, MODEL_PREFIX).lr == 0.002
    assert sub_config(cfg, OpponentConfig, OPP_PREFIX).window == 64
    Extra = prefixed(TargetKeys, "critic_", "Extra", __name__)
    assert [f.name for f in dataclasses.fields(Extra)] == [
        "critic_gamma",
        "critic_tau",
        "critic_max_grad_norm",
    ]


def test_opponent_defaults_have_one_source():
    """recommended_config() is conf/world.yaml's opp_* keys, which AORPO resolves to."""
    aorpo = resolve(["algo=aorpo"]).algo
    assert recommended_config() == sub_config(aorpo, OpponentConfig, OPP_PREFIX)
    assert recommended_config(lr=0.01).lr == 0.01
    with pytest.raises(ConfigError, match="nonsense"):
        recommended_config(nonsense=1)


Choice = typing.Literal["constant", "anneal"]


def test_choice_types_coerce_and_refuse_with_one_line():
    assert ranges.choices(Choice) == ("constant", "anneal")
    assert ranges.choices(str) == ()
    assert coerce("alpha_schedule", "anneal", Choice) == "anneal"
    with pytest.raises(ConfigError) as e:
        coerce("alpha_schedule", "annealed", Choice)
    assert str(e.value) == "config key 'alpha_schedule' must be one of constant, anneal; got 'annealed'"
    with pytest.raises(ConfigError, match="must be one of"):
        coerce("alpha_schedule", 3, Choice)  # a YAML number is not a name

    @dataclasses.dataclass
    class Cfg:
        schedule: Choice
        n: ranges.Size

    assert build(Cfg, {"schedule": "constant", "n": "2"}) == Cfg("constant", 2)
    ranges.validate(Cfg("anneal", 1))
    with pytest.raises(ConfigError, match="'schedule' must be one of constant, anneal; got 'x' \\(here\\)"):
        ranges.validate(Cfg("x", 1), where=" (here)")


@pytest.mark.parametrize(
    "algo,key,choices",
    [
        ("masql", "alpha_schedule", "constant, anneal"),
        ("rommeo_ac", "alpha_schedule", "constant, anneal"),
        ("aorpo", "rollout_scheme", "adaptive, real_to_simu, all_models, all_real"),
        ("aorpo", "opp_holdout", "newest, oldest"),
        ("aorpo", "opp_stop_metric", "loss, greedy_error"),
        ("aorpo", "model_activation", "relu, tanh, swish, elu"),
        ("la_happo", "teammate_factor", "mu, old"),
        ("mag", "plan_select", "joint, agent"),
    ],
)
def test_every_choice_key_is_checked_when_the_config_is_resolved(algo, key, choices):
    with pytest.raises(ConfigError) as e:
        resolve([f"algo={algo}", f"{key}=bogus"])
    assert str(e.value) == f"config key {key!r} must be one of {choices}; got 'bogus'"


def test_an_ensemble_config_built_in_python_is_checked():
    from marlow.world.ensemble import validate

    cfg = sub_config(resolve(["algo=aorpo"]).algo, EnsembleConfig, MODEL_PREFIX)
    validate(cfg)
    with pytest.raises(ConfigError, match="'activation' must be one of relu, tanh, swish, elu; got 'gelu'"):
        validate(dataclasses.replace(cfg, activation="gelu"))
