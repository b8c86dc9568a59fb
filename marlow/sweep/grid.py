"""A sweep's grid: ``key=v1,v2 ...`` arguments expanded into trials, every trial resolved up front.

- ``key=v1,v2,...``: one trial per value, the product over keys. A key whose value is itself a list
  (``hidden=64,64``, a ``task.`` option) keeps its commas; its alternatives are separated by ``;``
  (``'hidden=64,64;128,128'``, quoted for the shell).
- ``seeds=0-9``: seeds 0 to 9 vmapped in one trial (``seed=0 num_seeds=10``); ``seeds=0-4,5-9`` makes two
  trials; ``seeds=3`` is seed 3 alone. Without ``seeds`` the config's ``seed`` and ``num_seeds`` hold.
- Every other argument is an override of every trial, checked as ``marlow train`` checks it.

A trial is one run directory, ``<sweep dir>/<task>/<algo>/<the swept values>``. Every trial's config is
resolved before any trial starts, so a bad key, type or range, or an algorithm that cannot run on a task,
stops the sweep with one line naming the trial.
"""

from __future__ import annotations

import hashlib
import itertools
import re
import typing
from dataclasses import dataclass
from pathlib import Path

from marlow.errors import ConfigError

SWEEP_FILE = "sweep.json"
"""A sweep's record in its output folder: its trials and how each ended (:mod:`marlow.sweep.run` writes it,
:mod:`marlow.sweep.aggregate` reads it)."""

SEEDS = "seeds"
_SAFE = re.compile(r"[^A-Za-z0-9._=-]+")


@dataclass(frozen=True)
class Trial:
    """One run of the sweep: its overrides (``key=value`` strings, as ``marlow train`` takes them), the
    swept values that name it, and its run directory."""

    overrides: tuple[str, ...]
    swept: tuple[tuple[str, str], ...]
    run_dir: Path

    @property
    def label(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.swept)


def _is_list_key(key: str, algos: list[str]) -> bool:
    """Whether ``key``'s value is itself a list (its alternatives then separated by ``;``)."""
    from marlow.algos import get_algo
    from marlow.experiment.config import ExperimentConfig, field_types
    from marlow.schema import ranges

    if key.startswith("task."):
        return True
    name = key.removeprefix("algo.")
    types = dict(field_types(ExperimentConfig))
    for algo in algos:
        types.update(field_types(get_algo(algo).Config))
    if name not in types:
        raise KeyError(key)
    return typing.get_origin(ranges.split(types[name])[0]) is tuple


def _seed_ranges(value: str) -> list[tuple[int, int]]:
    """``"0-4,5-9"`` -> [(0, 5), (5, 5)]: (first seed, number of seeds) per trial."""
    out = []
    for part in value.split(","):
        m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if not m:
            raise ConfigError(f"sweep: seeds expects ranges like 0-9 or 0-4,5-9, got {value!r}")
        lo, hi = int(m[1]), int(m[2] if m[2] is not None else m[1])
        if hi < lo:
            raise ConfigError(f"sweep: seed range {part.strip()!r} ends before it starts")
        out.append((lo, hi - lo + 1))
    return out


def _split(key: str, value: str, algos: list[str]) -> list[str]:
    sep = ";" if _is_list_key(key, algos) else ","
    values = [v.strip() for v in value.split(sep)]
    if not value.strip() or any(not v for v in values):
        raise ConfigError(f"sweep: empty value in {key}={value!r}")
    return values


def _dir_part(text: str) -> str:
    """A file-name-safe rendering of ``text``; long ones get a hash so names stay unique and short."""
    safe = _SAFE.sub("_", text).strip("_") or "_"
    if len(safe) > 80:
        safe = safe[:60] + "-" + hashlib.sha1(text.encode()).hexdigest()[:10]
    return safe


def expand(args: list[str], sweep_dir: Path) -> list[Trial]:
    """The trials of ``args`` (see the module docstring), each resolved once to check it."""
    from marlow.algos import get_algo
    from marlow.experiment.config import parse_overrides, resolve
    from marlow.experiment.setup import build

    raw = parse_overrides(args)
    for key in ("run_dir", "resume"):
        if key in raw:
            raise ConfigError(f"sweep: {key} is set per trial by the sweep; drop {key}={raw[key]}")
    if SEEDS in raw and ({"seed", "num_seeds"} & raw.keys()):
        raise ConfigError("sweep: give seeds=A-B or seed/num_seeds, not both")
    algos = [a.strip() for a in raw.get("algo", "").split(",") if a.strip()]
    if not algos:
        from marlow.experiment.config import CONF_DIR, read_yaml

        algos = [str(read_yaml(CONF_DIR / "experiment.yaml")["algo"])]
    for algo in algos:
        get_algo(algo)  # an unknown algorithm is named before any key is looked up
    grid: dict[str, list[str]] = {}
    for key, value in raw.items():
        if key == SEEDS:
            grid[key] = [f"{lo}-{lo + n - 1}" if n > 1 else str(lo) for lo, n in _seed_ranges(value)]
        elif key == "algo":
            grid[key] = algos
        else:
            try:
                grid[key] = _split(key, value, algos)
            except KeyError:
                grid[key] = [value]  # not a config key: resolve() below names it
    swept_keys = [k for k, v in grid.items() if k != SEEDS and (len(v) > 1 or k in ("algo", "task"))]
    swept_keys += [SEEDS] if SEEDS in grid else []  # the last level: a configuration's seeds side by side
    trials, names = [], set()
    for combo in itertools.product(*grid.values()):
        chosen = dict(zip(grid, combo, strict=True))
        overrides = []
        for key, value in chosen.items():
            if key == SEEDS:
                (lo, n), *_ = _seed_ranges(value)
                overrides += [f"seed={lo}", f"num_seeds={n}"]
            else:
                overrides.append(f"{key}={value}")
        overrides.append("progress=false")
        label = " ".join(overrides[:-1])
        try:
            cfg = resolve(overrides)
            build(cfg, quiet=True)  # the env, the algorithm and the schedule, as `marlow train` checks them
        except ConfigError as err:
            raise ConfigError(f"sweep trial {label}: {err}") from None
        e = cfg.experiment
        swept = tuple((k, chosen[k]) for k in swept_keys if k not in ("algo", "task"))
        run_dir = sweep_dir / _dir_part(e.task) / e.algo
        for k, v in swept:
            run_dir = run_dir / _dir_part(f"{k}={v}")
        if run_dir in names:
            raise ConfigError(f"sweep: two trials would share {run_dir}")
        names.add(run_dir)
        trials.append(Trial(tuple(overrides), (("algo", e.algo), ("task", e.task), *swept), run_dir))
    return trials
