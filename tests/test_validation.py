"""Range checks of config values (marlow/schema/ranges.py): every numeric key of every config declares a
range; values outside it, and non-finite floats, are refused with one line naming the key before anything
is built or compiled (exit 2 on the CLI); values inside every range resolve."""

from __future__ import annotations

import math
import typing

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from marlow import cli
from marlow.algos import ALGORITHMS, get_algo
from marlow.errors import ConfigError
from marlow.experiment.config import ExperimentConfig, field_types, resolve
from marlow.schema import ranges
from marlow.schema.ranges import Range
from marlow.world.ensemble import EnsembleConfig, ModelKeys
from marlow.world.opponents import OpponentConfig

CONFIGS = [ExperimentConfig, EnsembleConfig, ModelKeys, OpponentConfig] + [
    get_algo(a).Config for a in ALGORITHMS
]
EXPERIMENT_KEYS = set(field_types(ExperimentConfig))
SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def numeric_keys(cls) -> dict[str, tuple[type, bool, Range]]:
    """key -> (element type, is a tuple, range) for every numeric field of ``cls``."""
    out = {}
    for k, tp in field_types(cls).items():
        if ranges.numeric(tp):
            base, rng = ranges.split(tp)
            is_tuple = typing.get_origin(base) is tuple
            elem = typing.get_args(base)[0] if is_tuple else base
            out[k] = (elem, is_tuple, rng)
    return out


@pytest.mark.parametrize("cls", CONFIGS, ids=lambda c: f"{c.__module__}.{c.__name__}")
def test_every_numeric_key_declares_a_range(cls):
    missing = [k for k, (_, _, rng) in numeric_keys(cls).items() if rng is None]
    assert not missing, f"{cls.__name__}: numeric keys without a Range: {missing}"


def test_range_text_and_membership():
    assert str(ranges.split(ranges.Unit)[1]) == "in [0, 1]"
    assert str(ranges.split(ranges.Positive)[1]) == "> 0"
    assert str(Range(2)) == ">= 2" and str(Range(0, 1, hi_open=True)) == "in [0, 1)"
    r = Range(0, 1, lo_open=True)
    assert not r.contains(0.0) and r.contains(1e-9) and r.contains(1.0) and not r.contains(1.0 + 1e-9)


def _fmt(v) -> str:
    return ",".join(repr(x) for x in v) if isinstance(v, tuple) else repr(v)


def _outside(draw, elem, rng: Range):
    """A value of ``elem``'s type outside ``rng`` (or a non-finite float), or None if there is none."""
    options = []
    if elem is float:
        options += [math.nan, math.inf, -math.inf]
    if rng.lo is not None:
        gap = draw(st.integers(1, 10**6)) if elem is int else draw(st.floats(1e-6, 1e6))
        options.append(elem(rng.lo) if rng.lo_open else elem(rng.lo) - gap)
    if rng.hi is not None:
        gap = draw(st.integers(1, 10**6)) if elem is int else draw(st.floats(1e-6, 1e6))
        options.append(elem(rng.hi) if rng.hi_open else elem(rng.hi) + gap)
    return draw(st.sampled_from(options)) if options else None


def _inside(draw, elem, rng: Range):
    lo = rng.lo if rng.lo is not None else -1e3
    hi = rng.hi if rng.hi is not None else max(lo, 0) + 1e3
    if elem is int:
        lo_i = math.floor(lo) + 1 if rng.lo_open and float(lo).is_integer() else math.ceil(lo)
        hi_i = math.ceil(hi) - 1 if rng.hi_open and float(hi).is_integer() else math.floor(hi)
        return draw(st.integers(lo_i, min(hi_i, lo_i + 64)))  # small sizes: the config stays cheap
    return draw(st.floats(lo, hi, exclude_min=rng.lo_open, exclude_max=rng.hi_open, allow_nan=False))


def _prefixed(k: str) -> str:
    return k if k in EXPERIMENT_KEYS else f"algo.{k}"


@pytest.mark.parametrize("algo", ALGORITHMS)
@SETTINGS
@given(data=st.data())
def test_malformed_values_are_refused_in_one_line(algo, data):
    keys = {**numeric_keys(get_algo(algo).Config), **numeric_keys(ExperimentConfig)}
    key = data.draw(st.sampled_from(sorted(keys)))
    elem, is_tuple, rng = keys[key]
    bad = _outside(data.draw, elem, rng)
    if bad is None:  # an unbounded int: only a wrong type is malformed
        bad = "x"
    value = _fmt((bad,) if is_tuple else bad)
    with pytest.raises(ConfigError) as e:
        resolve([f"algo={algo}", f"{_prefixed(key)}={value}"])
    msg = str(e.value)
    assert repr(key) in msg and "\n" not in msg


@pytest.mark.parametrize("algo", ALGORITHMS)
@SETTINGS
@given(data=st.data())
def test_values_inside_every_range_resolve(algo, data):
    keys = numeric_keys(get_algo(algo).Config)
    chosen = data.draw(st.lists(st.sampled_from(sorted(keys)), min_size=1, max_size=6, unique=True))
    overrides = []
    for k in chosen:
        elem, is_tuple, rng = keys[k]
        v = _inside(data.draw, elem, rng)
        overrides.append(f"algo.{k}={_fmt((v, v) if is_tuple else v)}")
    cfg = resolve([f"algo={algo}", *overrides])
    for o in overrides:
        k = o.split("=")[0].removeprefix("algo.")
        assert getattr(cfg.algo, k) is not None


@pytest.mark.parametrize(
    ("override", "expect"),
    [
        ("gamma=2", "'gamma' = 2.0 is out of range: expects in [0, 1]"),
        ("gamma=-0.1", "'gamma' = -0.1 is out of range"),
        ("tau=1.5", "'tau' = 1.5 is out of range"),
        ("lr_critic=-0.01", "'lr_critic' = -0.01 is out of range: expects > 0"),
        ("warmup_steps=-1", "'warmup_steps' = -1 is out of range: expects >= 0"),
        ("lr_actor=nan", "'lr_actor' = nan is not a finite number"),
        ("lr_critic=inf", "'lr_critic' = inf is not a finite number"),
        ("batch_size=0", "'batch_size' = 0 is out of range: expects >= 1"),
        ("buffer_size=0", "'buffer_size' = 0 is out of range"),
        ("update_every=0", "'update_every' = 0 is out of range"),
        ("hidden=[0]", "'hidden' = 0 is out of range: expects each value >= 1"),
        ("num_envs=0", "'num_envs' = 0 is out of range"),
    ],
)
def test_cli_refuses_the_reported_values_before_training(override, expect, tmp_path, capsys, monkeypatch):
    """The malformed command lines of the reliability issue: exit 2, one line, nothing trained or written."""
    import marlow.runtime.runner as runner

    monkeypatch.setattr(runner, "train", lambda cfg: pytest.fail("train() reached"))
    run_dir = tmp_path / "run"
    rc = cli.main(["train", "algo=masac", "task=mpe/simple_spread", override, f"run_dir={run_dir}"])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert len(err.splitlines()) == 1 and expect in err, err
    assert not run_dir.exists()


def test_direct_construction_is_checked_by_validate():
    import dataclasses

    from marlow.schema.groups import sub_config
    from marlow.world.ensemble import MODEL_PREFIX, EnsembleConfig

    cfg = sub_config(resolve(["algo=aorpo"]).algo, EnsembleConfig, MODEL_PREFIX)
    ranges.validate(cfg)
    bad = dataclasses.replace(cfg, lr=-1.0)
    with pytest.raises(ConfigError, match="'lr' = -1.0 is out of range"):
        ranges.validate(bad)
