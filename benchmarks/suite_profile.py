"""Where the test suite's time goes: a pytest plugin that records, for every test, its wall time and JAX's
own compile-time events (Python tracing to a jaxpr, lowering to StableHLO, XLA's compilation, and loads
from the persistent compilation cache), and a summary that writes benchmarks/suite_profile.md.

    SUITE_PROFILE=/tmp/prof .venv/bin/python -m pytest -q -n 2 -m "not exhaustive" -p benchmarks.suite_profile
    .venv/bin/python -m benchmarks.suite_profile /tmp/prof --wall 1389 --note 'machine, date, commit'

The plugin listens through ``jax.monitoring`` (public API): ``jaxpr_trace_duration``,
``jaxpr_to_mlir_module_duration`` and ``backend_compile_duration`` (XLA's compilation, or the load of the
executable when the persistent cache had it, told apart by the ``cache_hits`` event that precedes it in
the same thread). Each pytest-xdist worker appends one JSON line per test to ``<dir>/worker-<pid>.jsonl``.
Programs compiled in subprocesses (the CLI tests, Ray's sweep trials) are not seen: their time counts in
the test's wall time only.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import threading
import time
from pathlib import Path

import pytest

_ACC: collections.Counter = collections.Counter()
_BY_FUN: dict[str, list] = {}  # a compiled program's name -> [programs, seconds]
_LOCAL = threading.local()
_LOCK = threading.Lock()
_INSTALLED = False


def _on_event(event: str, **_) -> None:
    if event.endswith("/compilation_cache/cache_hits"):
        _LOCAL.hit = True


def _on_duration(event: str, duration: float, **kw) -> None:
    name = event.rsplit("/", 1)[-1]
    with _LOCK:
        if name == "jaxpr_trace_duration":
            _ACC["trace_s"] += duration
        elif name == "jaxpr_to_mlir_module_duration":
            _ACC["lower_s"] += duration
        elif name == "backend_compile_duration":
            if getattr(_LOCAL, "hit", False):
                _LOCAL.hit = False
                _ACC["load_s"] += duration
                _ACC["loaded"] += 1
            else:
                _ACC["compile_s"] += duration
                _ACC["compiled"] += 1
                fun = _BY_FUN.setdefault(str(kw.get("fun_name", "?")), [0, 0.0])
                fun[0] += 1
                fun[1] += duration


def _install() -> None:
    global _INSTALLED
    if not _INSTALLED:
        import jax

        jax.monitoring.register_event_listener(_on_event)
        jax.monitoring.register_event_duration_secs_listener(_on_duration)
        _INSTALLED = True


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):  # noqa: ARG001 - pytest's hook signature
    _install()
    with _LOCK:
        _ACC.clear()
        _BY_FUN.clear()
    start = time.time()
    t0 = time.perf_counter()
    yield
    row = {"test": item.nodeid, "start": start, "wall_s": time.perf_counter() - t0}
    with _LOCK:
        row.update(_ACC)
        row["compile_by_fun"] = dict(_BY_FUN)
    out = Path(os.environ.get("SUITE_PROFILE", "suite_profile"))
    out.mkdir(parents=True, exist_ok=True)
    with open(out / f"worker-{os.getpid()}.jsonl", "a") as f:
        f.write(json.dumps(row) + "\n")


def _load(d: Path) -> list[dict]:
    return [json.loads(line) for f in sorted(d.glob("worker-*.jsonl")) for line in f.read_text().splitlines()]


def _fun_kind(name: str) -> str:
    """A compiled program's family: marlow's jitted init and chunk (JAX's compile events name them
    ``jit(chunk)``), or the rest (eager operations, a test's own jitted helpers, the world models' training
    steps called from Python)."""
    return {"jit(chunk)": "chunk", "jit(init)": "init"}.get(name, "other")


def summarise(rows: list[dict], wall: float | None, workers: int, note: str = "") -> str:
    keys = ("wall_s", "trace_s", "lower_s", "compile_s", "load_s", "compiled", "loaded")
    tot = {k: sum(r.get(k, 0) for r in rows) for k in keys}
    jax_s = tot["trace_s"] + tot["lower_s"] + tot["compile_s"] + tot["load_s"]
    kinds: dict[str, list[float]] = collections.defaultdict(lambda: [0, 0.0])
    for r in rows:
        for fun, (n, s) in r.get("compile_by_fun", {}).items():
            kinds[_fun_kind(fun)][0] += n
            kinds[_fun_kind(fun)][1] += s
    files: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for r in rows:
        c = files[r["test"].split("::")[0]]
        c["tests"] += 1
        for k in keys:
            c[k] += r.get(k, 0)
    wall_txt = f"{wall:.0f} s wall ({wall / 60:.1f} min), " if wall else ""
    cmd = '.venv/bin/python -m pytest -q -n 2 -m "not exhaustive" -p benchmarks.suite_profile'
    lines = [
        "# Where the test suite's time goes",
        "",
        f"`SUITE_PROFILE=<dir> {cmd}`, then",
        "`.venv/bin/python -m benchmarks.suite_profile <dir> --wall <the run's wall seconds> "
        "--note <machine, date, commit>`.",
        "",
        *([note, ""] if note else []),
        f"{len(rows)} tests, {wall_txt}{tot['wall_s']:.0f} s of test time over {workers} pytest worker(s). "
        "JAX's own events, summed over the tests (seconds of one thread each): "
        f"tracing {tot['trace_s']:.0f} s, lowering {tot['lower_s']:.0f} s, "
        f"XLA's compilation {tot['compile_s']:.0f} s of {tot['compiled']} programs, "
        f"loads from a persistent compilation cache {tot['load_s']:.0f} s of {tot['loaded']} programs: "
        f"{jax_s:.0f} s, {100 * jax_s / max(tot['wall_s'], 1e-9):.0f}% of the test time "
        "(thread-seconds: a run compiles its two programs side by side, so a sum can exceed the wall). "
        "Programs compiled in subprocesses (the CLI tests, the sweep's Ray trials) are not counted here; "
        "their time is in the tests' wall time. "
        f"Spread evenly over the {workers} worker(s), JAX's work alone takes "
        f"{jax_s / workers / 60:.1f} min of wall time, whatever the order of the tests.",
        "",
        "| programs | compiled | XLA compile s | mean s |",
        "|---|---|---|---|",
    ]
    for kind in ("chunk", "init", "other"):
        n, s = kinds.get(kind, [0, 0.0])
        lines.append(f"| {kind} | {n} | {s:.0f} | {s / max(n, 1):.2f} |")
    lines += [
        "",
        "chunk: a run's jitted training chunk (which also evaluates); init: a run's first state; other: "
        "everything else (eager operations, each compiled once per shape; tests' own jitted helpers; model "
        "training steps called from Python).",
        "",
        "Per test file (seconds summed over its tests):",
        "",
        "| file | tests | wall | trace | lower | compile | programs compiled |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, c in sorted(files.items(), key=lambda kv: -kv[1]["wall_s"]):
        lines.append(
            f"| {name} | {c['tests']} | {c['wall_s']:.0f} | {c['trace_s']:.0f} | {c['lower_s']:.0f} | "
            f"{c['compile_s']:.0f} | {c['compiled']} |"
        )
    lines += [
        "",
        "The 25 longest tests:",
        "",
        "| test | wall | trace | lower | compile | compiled | loaded |",
    ]
    lines.append("|---|---|---|---|---|---|---|")
    for r in sorted(rows, key=lambda r: -r["wall_s"])[:25]:
        lines.append(
            f"| `{r['test']}` | {r['wall_s']:.1f} | {r.get('trace_s', 0):.1f} | {r.get('lower_s', 0):.1f} | "
            f"{r.get('compile_s', 0):.1f} | {r.get('compiled', 0)} | {r.get('loaded', 0)} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("dir", type=Path, help="the SUITE_PROFILE directory the plugin wrote")
    p.add_argument("--wall", type=float, default=None, help="the pytest run's wall seconds, for the header")
    p.add_argument("--note", default="", help="the run's machine, date and commit, for the header")
    p.add_argument("--out", type=Path, default=Path(__file__).with_suffix(".md"))
    args = p.parse_args()
    rows = _load(args.dir)
    if not rows:
        raise SystemExit(f"suite_profile: no worker-*.jsonl in {args.dir}")
    workers = len(list(args.dir.glob("worker-*.jsonl")))
    args.out.write_text(summarise(rows, args.wall, workers, args.note))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
