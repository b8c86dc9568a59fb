"""The config schema, the foundation of every config: what a config key may hold and how a value is read
into it.

Every layer above builds its configs from these pieces, and this package imports nothing of marlow but
:mod:`marlow.errors`, so the layers stay one-directional: ``schema`` < ``nn``, ``envs``, ``buffers`` <
``world`` < ``algos`` < ``experiment`` < ``sweep``, ``cli``. (Its name is not ``config``: that is the
API's :func:`marlow.config`, which a subpackage of that name would shadow once imported.)

- :mod:`marlow.schema.ranges`: range types (``Unit``, ``Positive``, ``Size``, ...) and choice types
  (``typing.Literal``) declared on the config dataclasses beside each key;
- :mod:`marlow.schema.coerce`: a YAML value or a command-line string read into a declared type, and a
  config dataclass built from layers of values;
- :mod:`marlow.schema.groups`: key groups that several algorithms' configs compose instead of
  re-declaring (the replay schedule, the target networks) and prefixed copies of a component's config
  (``model_*`` for an ensemble, ``opp_*`` for the opponent models).

Resolving a run's config from the YAML defaults, the task overrides and the command line is
orchestration and lives above the algorithms, in :mod:`marlow.experiment.config`.
"""
