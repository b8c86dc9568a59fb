"""A run's definition: its config resolved from the YAML layers and the command line (:mod:`.config`),
the env, algorithm and learner built once from it (:mod:`.setup`), and the jitted training loop that
alternates collection and learning and evaluates (:mod:`.loop`). Running it in a process, with its files,
logs and checkpoints, is :mod:`marlow.runtime`; tools over finished runs are :mod:`marlow.analysis`."""
