"""The ``marlow`` command line.

    marlow train algo=masac task=mpe/simple_spread seed=0 num_seeds=4 total_steps=100000 [key=value ...]
    marlow train resume=<run_dir>
    marlow eval <run_dir> [episodes=N] [seed=N]
    marlow crossplay <agent_run_dir> <adversary_run_dir> [episodes=N] [seed=N]
    marlow compounding <aorpo_run_dir> [starts=M] [horizon=H] [seed=N]
    marlow plot <run_dir> [<run_dir> ...] [out=FILE] [x=env_steps] [y=eval/team_return] [title=TEXT]
    marlow sweep algo=ippo,mappo task=mpe/simple_spread seeds=0-4 lr=0.001,0.0005 [out=DIR] [address=ADDR]
        [cpus_per_trial=1] [gpus_per_trial=0] [ray_cpus=N] [aggregate=true] [key=value ...]
    marlow aggregate <sweep_dir|run_dir> [...] [out=DIR] [y=eval/team_return] [last=2] [reps=2000]
    marlow list
    marlow demo [total_steps=N]

Bad input (unknown algorithm/task/key, wrong type, unsupported action space, unreadable checkpoint)
prints one line ``marlow: error: ...`` on stderr and exits with code 2; a diverged run exits with 3.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from marlow.errors import MarlowError, RunInterrupted, TrainingDiverged

USAGE = __doc__


class _Parser(argparse.ArgumentParser):
    """argparse that also takes ``key=value`` options (like ``marlow train``) and reports errors as one
    line (a MarlowError) instead of a usage dump."""

    def parse_args(self, args=None, namespace=None):
        opts = {a.dest for a in self._actions if a.option_strings}
        expanded = []
        for a in args or []:
            key = a.split("=", 1)[0]
            if "=" in a and not a.startswith("-") and key in opts:
                expanded += [f"--{key}", a.split("=", 1)[1]]
            else:
                expanded.append(a)
        return super().parse_args(expanded, namespace)

    def error(self, message):
        raise MarlowError(f"{self.prog}: {message}")


def _quiet_jax() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def cmd_train(args: list[str]) -> int:
    from marlow.experiment.config import resolve
    from marlow.experiment.runner import train

    cfg = resolve(args)
    run_dir = train(cfg)
    print(f"run directory: {run_dir}")
    print(f"report: {Path(run_dir) / 'report.md'}")
    return 0


def cmd_eval(args: list[str]) -> int:
    from marlow.experiment.evaluate import evaluate_run

    p = _Parser(prog="marlow eval")
    p.add_argument("run_dir")
    p.add_argument("--episodes", type=int, default=100)
    p.add_argument("--seed", type=int, default=12345)
    ns = p.parse_args(args)
    for line in evaluate_run(ns.run_dir, episodes=ns.episodes, seed=ns.seed):
        print(line)
    return 0


def cmd_crossplay(args: list[str]) -> int:
    from marlow.experiment.crossplay import crossplay, summary

    p = _Parser(prog="marlow crossplay")
    p.add_argument("agent_run")
    p.add_argument("adversary_run")
    p.add_argument("--episodes", type=int, default=100)
    p.add_argument("--seed", type=int, default=12345)
    ns = p.parse_args(args)
    for line in summary(crossplay(ns.agent_run, ns.adversary_run, episodes=ns.episodes, seed=ns.seed)):
        print(line)
    return 0


def cmd_compounding(args: list[str]) -> int:
    from marlow.experiment.model_usage import measure_run, summary

    p = _Parser(prog="marlow compounding")
    p.add_argument("run_dir")
    p.add_argument("--starts", type=int, default=256)
    p.add_argument("--horizon", type=int, default=None)
    p.add_argument("--seed", type=int, default=1234)
    ns = p.parse_args(args)
    for line in summary(ns.run_dir, measure_run(ns.run_dir, ns.starts, ns.horizon, ns.seed)):
        print(line)
    return 0


def cmd_plot(args: list[str]) -> int:
    from marlow.experiment.report import plot_runs, summary_table

    p = _Parser(prog="marlow plot")
    p.add_argument("run_dirs", nargs="+")
    p.add_argument("--out", default="learning_curves.png")
    p.add_argument("--x", default="env_steps")
    p.add_argument("--y", default="eval/team_return")
    p.add_argument("--title", default=None)
    ns = p.parse_args(args)
    for d in ns.run_dirs:
        if not Path(d).is_dir():
            raise MarlowError(f"{d} is not a run directory")
    out = plot_runs(ns.run_dirs, ns.out, x=ns.x, y=ns.y, title=ns.title)
    print(summary_table(ns.run_dirs, y=ns.y))
    print(f"plot: {out}")
    return 0


def _list_rows() -> dict[str, list[dict]]:
    """The rows of ``marlow list``: one dict per algorithm and per task."""
    from marlow import envs
    from marlow.algos import ALGORITHMS, GROUPS, get_algo, unsupported
    from marlow.envs.spaces import describe

    group = {
        a: g.replace("_", "-").replace("offpolicy", "off-policy").replace("onpolicy", "on-policy")
        for g, names in GROUPS.items()
        for a in names
    }
    algos = []
    for name in ALGORITHMS:
        m = get_algo(name)
        algos.append(
            {
                "algo": name,
                "learner": group[name],
                **{k: k in m.SUPPORTED_ACTIONS for k in ("discrete", "multi_discrete", "box")},
                "states": "finite" if getattr(m, "TABULAR", False) else "any",
                "description": m.DESCRIPTION,
            }
        )
    tasks = []
    for name in envs.task_names():
        spec = envs.make(name).spec
        tasks.append(
            {
                "task": name,
                "agents": {
                    a: f"{describe(o)} -> {describe(s)}"
                    for a, o, s in zip(spec.agents, spec.obs_spaces, spec.act_spaces, strict=True)
                },
                "teams": {n: list(m) for n, m in spec.teams},
                "episode_length": spec.episode_length,
                "global_state_dim": spec.global_state_dim or None,
                "action_masks": bool(spec.action_masks),
                "algorithms": [a for a in ALGORITHMS if unsupported(get_algo(a), spec) is None],
            }
        )
    return {"algorithms": algos, "tasks": tasks}


def _cell(v) -> str:
    if isinstance(v, bool):
        return "yes" if v else "-"
    if isinstance(v, dict):
        return "; ".join(f"{k}: {', '.join(x) if isinstance(x, list) else x}" for k, x in v.items())
    if isinstance(v, list):
        return ", ".join(v)
    return "-" if v is None else str(v)


PETTINGZOO_HINT = "Any PettingZoo Parallel env: task=pettingzoo:<module>[:<factory>]"


def cmd_list(args: list[str]) -> int:
    """Algorithms and tasks: a rich table on a terminal; otherwise one tab-separated row per line (a header
    line first), or JSON with ``--json``."""
    import json

    p = _Parser(prog="marlow list")
    p.add_argument("--json", action="store_true", help="print the tables as JSON")
    ns = p.parse_args(args)
    tables = _list_rows()
    if ns.json:
        print(json.dumps(tables, indent=1))
        return 0
    if not sys.stdout.isatty():
        for title, rows in tables.items():
            print(f"# {title}\n# " + "\t".join(rows[0]))
            for row in rows:
                print("\t".join(_cell(v) for v in row.values()))
        print(f"# {PETTINGZOO_HINT}")
        return 0
    from rich.console import Console
    from rich.table import Table

    console = Console()
    for title, rows in tables.items():
        t = Table(title=title)
        for col in rows[0]:
            t.add_column(col, overflow="fold")
        for row in rows:
            t.add_row(*(_cell(v).replace("; ", "\n") for v in row.values()))
        console.print(t)
    console.print(PETTINGZOO_HINT)
    return 0


def cmd_sweep(args: list[str]) -> int:
    from marlow.sweep.run import run_sweep

    return run_sweep(args)


def cmd_aggregate(args: list[str]) -> int:
    from marlow.sweep.report import write

    p = _Parser(prog="marlow aggregate")
    p.add_argument("paths", nargs="+")
    p.add_argument("--out", default=None)
    p.add_argument("--y", default="eval/team_return")
    p.add_argument("--last", type=int, default=2)
    p.add_argument("--reps", type=int, default=2000)
    ns = p.parse_args(args)
    if ns.last < 1 or ns.reps < 1:
        raise MarlowError("marlow aggregate: last and reps must be at least 1")
    paths = [Path(x) for x in ns.paths]
    out = Path(ns.out) if ns.out else paths[0] / "aggregate"
    print(f"aggregate: {write(paths, out, y=ns.y, last=ns.last, reps=ns.reps)}")
    return 0


def cmd_demo(args: list[str]) -> int:
    from marlow.experiment.demo import run_demo

    run_demo(args)
    return 0


COMMANDS = {
    "train": cmd_train,
    "eval": cmd_eval,
    "crossplay": cmd_crossplay,
    "compounding": cmd_compounding,
    "plot": cmd_plot,
    "list": cmd_list,
    "sweep": cmd_sweep,
    "aggregate": cmd_aggregate,
    "demo": cmd_demo,
}


def main(argv: list[str] | None = None) -> int:
    from marlow.devices import configure_host_devices

    configure_host_devices()  # one XLA host device per core, before JAX starts (marlow/devices.py)
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    cmd, rest = argv[0], argv[1:]
    if cmd not in COMMANDS:
        print(f"marlow: error: unknown command {cmd!r}; commands: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    _quiet_jax()
    try:
        return COMMANDS[cmd](rest)
    except RunInterrupted as e:
        print(f"marlow: {e}", file=sys.stderr)
        return 128 + e.signum
    except TrainingDiverged as e:
        print(f"marlow: error: {e}", file=sys.stderr)
        return 3
    except MarlowError as e:
        print(f"marlow: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a full disk or an unwritable run directory while training or logging
        if isinstance(e, BrokenPipeError):  # the reader went away, e.g. `marlow list | head`
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 0
        where = f" ({e.filename})" if e.filename else ""
        print(
            f"marlow: error: cannot write{where}: {e.strerror or e}; the last checkpoint is kept",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        print("marlow: interrupted; resume with `marlow train resume=<run_dir>`", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
