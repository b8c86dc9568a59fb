"""marlow's benchmarks and reproductions, a package run from the repository root with
``python -m benchmarks.<folder>.<script>`` (e.g. ``python -m benchmarks.aorpo.fig2 --help``). Each result
page in these folders names the command that regenerated it; :mod:`benchmarks.harness` runs the seeds of
an arm and tabulates them."""
