"""Key groups that several configs compose instead of declaring the same keys again.

An algorithm's ``Config`` inherits the groups it uses (dataclass inheritance: a group's fields come before
the algorithm's own), so a key's type and range are declared once::

    @dataclass
    class Config(ReplayKeys, TargetKeys):
        hidden: Widths
        ...

Their default values stay in each algorithm's YAML file, with the source of each (the papers' tables
differ per algorithm). A component with a config of its own that an algorithm owns (the dynamics
ensemble, the opponent models) is composed as a prefixed copy of that config: :func:`prefixed` derives the
group from the component's dataclass, so the two cannot drift, and :func:`sub_config` builds the
component's config back from an algorithm's config.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass, fields, make_dataclass
from typing import Any, TypeVar

from marlow.schema.ranges import Count, NonNegative, Size, Unit

T = TypeVar("T")


@dataclass
class ReplayKeys:
    """The replay schedule of a learner that samples a replay buffer (the off-policy and tabular learners):
    ``update_every`` env steps (over all envs) between two update rounds, ``updates_per_step`` gradient
    updates per round, each on ``batch_size`` transitions sampled from the latest ``buffer_size``;
    no update before ``warmup_steps`` env steps."""

    batch_size: Size
    buffer_size: Size
    update_every: Size
    updates_per_step: Size
    warmup_steps: Count


@dataclass
class TargetKeys:
    """A TD learner with target networks: the discount ``gamma``, the Polyak factor ``tau`` of the target
    update (``target <- tau * online + (1 - tau) * target``, once per update) and the global-norm clip of
    every gradient step (0 = no clipping)."""

    gamma: Unit
    tau: Unit
    max_grad_norm: NonNegative  # 0 = no gradient clipping


def prefixed(cls: type, prefix: str, name: str, module: str) -> type:
    """A dataclass with ``cls``'s fields (types and ranges included) named ``prefix + field``: the keys by
    which an algorithm's config sets a component's config (``model_lr`` for ``EnsembleConfig.lr``)."""
    hints = typing.get_type_hints(cls, include_extras=True)
    return make_dataclass(
        name, [(prefix + f.name, hints[f.name]) for f in fields(cls)], namespace={"__module__": module}
    )


def sub_config(cfg: Any, cls: type[T], prefix: str) -> T:
    """The ``cls`` config from the ``prefix``-ed fields of ``cfg`` (the inverse of :func:`prefixed`)."""
    return cls(**{f.name: getattr(cfg, prefix + f.name) for f in fields(cls)})
