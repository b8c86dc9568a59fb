"""Tools over trained runs: greedy evaluation of checkpoints (:mod:`.evaluate`), cross-play between runs
(:mod:`.crossplay`), the world models' diagnostics (:mod:`.model_usage`) and the demo (:mod:`.demo`). The
plots and tables of a run's metrics are :mod:`marlow.runtime.report` (every run writes its report)."""
