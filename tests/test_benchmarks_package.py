"""The benchmarks are one importable package (``python -m benchmarks.<folder>.<script>`` from the repository
root): no script edits ``sys.path``, and only the scripts that time or drive the runner's own programs
reach past marlow's public API into the run's internals."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted(p for p in (ROOT / "benchmarks").rglob("*.py") if "benchmarl_driver" not in p.name)
# BenchMARL's driver runs in BenchMARL's own virtual environment (benchmarks/peers/setup_benchmarl.sh)
INTERNALS = ("marlow.experiment", "marlow.runtime")
PUBLIC = ("marlow.runtime.report",)  # the plots and tables of runs, as `marlow plot` / `marlow report` use
# the scripts that measure or drive the runner's compiled programs themselves (Loop, jitted_program)
MEASURE = {"throughput.py", "profile.py", "climb.py", "speed.py"}


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return out


def test_every_benchmark_imports_as_part_of_the_package():
    for path in SCRIPTS:
        importlib.import_module(_module(path))  # no sys.path help: sibling modules by package name


def test_no_benchmark_edits_sys_path():
    assert not [p.name for p in SCRIPTS if "sys.path" in p.read_text()]


def test_only_measurements_import_the_runs_internals():
    reach = {
        str(p.relative_to(ROOT)): sorted(
            m for m in _imports(p) if m.startswith(INTERNALS) and m not in PUBLIC
        )
        for p in SCRIPTS
        if p.name not in MEASURE
    }
    assert not {k: v for k, v in reach.items() if v}, "use marlow.api (marlow.config, marlow.train, ...)"
