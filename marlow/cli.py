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
    marlow list [--json]
    marlow demo [total_steps=N] [num_seeds=N] [key=value ...]
    marlow --version

``marlow <command> --help`` describes a command (``marlow train algo=<name> --help``: that algorithm's
keys and defaults). Keys may also be written ``--key=value`` or ``--key value``.

Bad input (unknown algorithm/task/key, wrong type, unsupported action space, unreadable checkpoint)
prints one line ``marlow: error: ...`` on stderr and exits with code 2; a diverged run exits with 3.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

from marlow.errors import MarlowError, RunInterrupted, TrainingDiverged, did_you_mean

USAGE = __doc__.replace("``", "")


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


HELP = ("-h", "--help")


def _key_values(args: list[str]) -> list[str]:
    """``--key=value`` and ``--key value`` written as ``key=value`` (what train, sweep and demo take);
    ``-`` in such a key becomes ``_`` (``--total-steps=1000``)."""
    out, rest = [], list(args)
    while rest:
        a = rest.pop(0)
        if a.startswith("--") and len(a) > 2:
            key, eq, value = a[2:].partition("=")
            if not eq:
                if not rest or rest[0].startswith("--") or "=" in rest[0]:
                    raise MarlowError(f"{a} needs a value: {key}=VALUE")
                value = rest.pop(0)
            a = f"{key.replace('-', '_')}={value}"
        out.append(a)
    return out


def _key_notes(path: Path) -> dict[str, str]:
    """The comments of a YAML file's top-level keys (``key: value  # note``, continued on the comment lines
    below it)."""
    notes: dict[str, str] = {}
    key = None
    for line in path.read_text().splitlines():
        if m := re.match(r"([A-Za-z_]\w*):[^#]*(#\s*(.*))?$", line):
            key = m.group(1) if m.group(2) else None
            if key:
                notes[key] = m.group(3).strip()
        elif key and line[:1].isspace() and line.strip().startswith("#"):
            notes[key] += " " + line.strip().lstrip("#").strip()
        else:
            key = None
    return notes


def _algo_notes(rel: str) -> dict[str, str]:
    """:func:`_key_notes` of ``conf/<rel>`` and of the files its ``_base`` list names (those first)."""
    from marlow.experiment.config import CONF_DIR, read_yaml

    notes: dict[str, str] = {}
    for base in read_yaml(CONF_DIR / rel).get("_base", []):
        notes.update(_algo_notes(str(base)))
    return {**notes, **_key_notes(CONF_DIR / rel)}


def _key_lines(values: dict, notes: dict[str, str]) -> list[str]:
    """``key=default  note`` per key, the notes wrapped to the terminal's width (at most 100)."""
    import shutil
    import textwrap

    from marlow.api import cli_value

    width = min(shutil.get_terminal_size((100, 24)).columns, 100)
    lines = []
    for k, v in values.items():
        head = f"  {f'{k}={cli_value(v)}':<24} "
        lines += textwrap.wrap(notes.get(k, ""), width, initial_indent=head, subsequent_indent=" " * 27)
        lines += [] if notes.get(k) else [head.rstrip()]
    return lines


TRAIN_USAGE = """usage: marlow train algo=<name> task=<name> [key=value ...]
       marlow train resume=<run_dir> [key=value ...]
`marlow list` names the algorithms and tasks."""


def train_help(args: list[str]) -> str:
    """``marlow train --help``: the experiment keys with their defaults and meaning (conf/experiment.yaml).
    With ``algo=<name>``: that algorithm's keys with their defaults, before any task's overrides, or with
    ``task=<name>`` (and any other keys given) resolved for that task."""
    from marlow.api import cli_value
    from marlow.experiment.config import CONF_DIR, parse_overrides, read_yaml, resolve, to_dict

    given = parse_overrides(args)
    exp_defaults = read_yaml(CONF_DIR / "experiment.yaml")
    if "algo" not in given:
        notes = _key_notes(CONF_DIR / "experiment.yaml")
        notes["algo"] = notes["task"] = "required (`marlow list`)"
        return "\n".join(
            [TRAIN_USAGE, "", "experiment keys (default, meaning):"]
            + _key_lines({**exp_defaults, "algo": "<name>", "task": "<name>"}, notes)
            + [
                "",
                "`marlow train algo=<name> --help` lists that algorithm's keys with their defaults.",
                "Keys may also be written --key=value.",
            ]
        )
    algo = given["algo"]
    # no task=: an empty task name has no override files, so these are the algorithm's own defaults
    cfg = resolve({"task": "", **given})
    task = given.get("task")
    changed = {
        k: v
        for k, v in to_dict(cfg.experiment).items()
        if k not in ("algo", "task") and k not in given and v != exp_defaults.get(k)
    }
    where = f"on {task}" if task else "before any task's overrides; add task=<name> for a task's"
    lines = [TRAIN_USAGE, "", f"{algo} keys (defaults {where}):"]
    values, notes = to_dict(cfg.algo), _algo_notes(f"algo/{algo}.yaml")
    if task:  # a value the task's overrides set: say so, and what the note is about
        own = to_dict(resolve({**given, "task": ""}).algo)
        for k in values:
            if values[k] != own[k]:
                notes[k] = f"{task}'s value; default {cli_value(own[k])}: {notes.get(k, '')}".rstrip(": ")
    lines += _key_lines(values, notes)
    if changed:
        lines += ["", f"experiment defaults of {algo}{' on ' + task if task else ''}:"]
        lines += _key_lines(changed, {})
    return "\n".join(lines + ["", "`marlow train --help` lists the experiment keys."])


def cmd_train(args: list[str]) -> int:
    from marlow.experiment.config import parse_overrides, resolve

    if any(a in HELP for a in args):
        print(train_help(_key_values([a for a in args if a not in HELP])))
        return 0
    args = _key_values(args)
    given = {k for k, v in parse_overrides(args).items() if v.strip()}
    if "resume" not in given and not {"algo", "task"} <= given:
        raise MarlowError(
            "train: algo= and task= are required (or resume=<run_dir>), e.g. "
            "`marlow train algo=ippo task=mpe/simple_spread`; `marlow list` names them"
        )
    cfg = resolve(args)  # before the runner's (JAX's) imports: bad keys are reported at once
    from marlow.runtime.runner import train

    run_dir = train(cfg)
    print(f"run directory: {run_dir}")
    print(f"report: {Path(run_dir) / 'report.md'}")
    return 0


def cmd_eval(args: list[str]) -> int:
    from marlow.analysis.evaluate import evaluate_run

    p = _Parser(prog="marlow eval")
    p.add_argument("run_dir")
    p.add_argument("--episodes", type=int, default=100)
    p.add_argument("--seed", type=int, default=12345)
    ns = p.parse_args(args)
    for line in evaluate_run(ns.run_dir, episodes=ns.episodes, seed=ns.seed):
        print(line)
    return 0


def cmd_crossplay(args: list[str]) -> int:
    from marlow.analysis.crossplay import crossplay, summary

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
    from marlow.analysis.model_usage import measure_run, summary

    p = _Parser(prog="marlow compounding")
    p.add_argument("run_dir")
    p.add_argument("--starts", type=int, default=256)
    p.add_argument("--horizon", type=int, default=None)
    p.add_argument("--seed", type=int, default=1234)
    ns = p.parse_args(args)
    if ns.starts < 1 or (ns.horizon is not None and ns.horizon < 1):
        raise MarlowError("marlow compounding: starts and horizon must be at least 1")
    for line in summary(ns.run_dir, measure_run(ns.run_dir, ns.starts, ns.horizon, ns.seed)):
        print(line)
    return 0


def cmd_plot(args: list[str]) -> int:
    """Curves of ``y`` against ``x`` for the runs, and their summary table; a warning on stderr when the
    runs are of different tasks (their returns share one axis)."""
    from marlow.runtime.report import load_run, plot_runs, summary_table

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
    runs = [load_run(d) for d in ns.run_dirs]
    tasks = sorted({r.task for r in runs if r.task})
    if len(tasks) > 1:
        print(f"marlow: warning: runs of different tasks on one axis: {', '.join(tasks)}", file=sys.stderr)
    out = plot_runs(runs, ns.out, x=ns.x, y=ns.y, title=ns.title)
    print(summary_table(runs, y=ns.y))
    print(f"plot: {out}")
    return 0


LIST_PACKAGES = ("jax", "jaxmarl", "gymnasium_robotics", "mujoco", "pettingzoo", "mpe2")
"""Libraries whose versions can change ``marlow list``'s table (the tasks' spaces)."""


def _list_tables() -> dict[str, list[dict]]:
    """``marlow list``'s tables, built once per version of marlow's source and of the task libraries and
    kept in the compilation cache's directory (``list/`` beside ``programs/``; none with
    ``MARLOW_COMPILE_CACHE=off``); building them imports every algorithm and builds every task (seconds),
    reading them imports neither."""
    import hashlib
    import json

    from marlow.runtime.compile_cache import cache_dir
    from marlow.runtime.fingerprint import source_digest, versions

    where = cache_dir("auto")
    if where is None:
        return _list_rows()
    key = json.dumps([source_digest(), versions(LIST_PACKAGES), sys.version], sort_keys=True)
    path = where / "list" / f"{hashlib.sha256(key.encode()).hexdigest()[:16]}.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        pass
    tables = _list_rows()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(tables))
        os.replace(tmp, path)
    except OSError:  # a read-only home: list without keeping the table
        pass
    return tables


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
    tables = _list_tables()
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

    print_tables(tables, Console())
    return 0


SHORT_KINDS = {"discrete": "disc", "multi_discrete": "multi", "box": "box"}  # action space kinds
_SPACE_KINDS = {"Discrete": "discrete", "MultiDiscrete": "multi_discrete", "Box": "box"}


def _kinds(kinds) -> str:
    return " ".join(short for kind, short in SHORT_KINDS.items() if kind in kinds)


def print_tables(tables: dict[str, list[dict]], console) -> None:
    """``marlow list`` on a terminal: one line per algorithm and per task, cut to the console's width (the
    descriptions end in an ellipsis), and where the full tables are."""
    from rich import box
    from rich.table import Table

    style = dict(title_justify="left", box=box.SIMPLE_HEAD, show_edge=False, padding=(0, 1, 0, 0))
    algos = Table(title="algorithms", expand=True, **style)
    for col in ("algo", "learner", "actions"):
        algos.add_column(col, no_wrap=True)
    algos.add_column("description", no_wrap=True, overflow="ellipsis", ratio=1)
    for r in tables["algorithms"]:
        algos.add_row(r["algo"], r["learner"], _kinds([k for k in SHORT_KINDS if r[k]]), r["description"])
    tasks = Table(title="tasks", **style)
    for col in ("task", "agents", "actions", "length", "algorithms"):
        tasks.add_column(col, no_wrap=True, justify="left" if col in ("task", "actions") else "right")
    for r in tables["tasks"]:
        # the action space's class in each agent's "obs -> action" cell: Discrete(5), Box[-1,1](2,)
        spaces = {re.split(r"[\[(]", cell.split(" -> ")[-1])[0] for cell in r["agents"].values()}
        kinds = _kinds([_SPACE_KINDS.get(s) for s in spaces])
        n_algos = str(len(r["algorithms"]))
        tasks.add_row(r["task"], str(len(r["agents"])), kinds, str(r["episode_length"]), n_algos)
    console.print(algos)
    console.print(tasks)
    console.print(PETTINGZOO_HINT, overflow="fold")
    console.print("Full detail (spaces, teams, each task's algorithms): marlow list --json", overflow="fold")


SWEEP_USAGE = """usage: marlow sweep algo=A[,B] task=T[,U] [seeds=0-4] [key=v1,v2 ...] [option=value ...]

Trains every combination of the comma-separated values (one trial per combination; ';' separates the
alternatives of a list key: 'hidden=64,64;128,128'), each trial a Ray task in its own process. Rerunning
the same command skips finished trials and resumes the others. seeds=0-4 trains seeds 0 to 4 vmapped in
one trial (seeds=0-4,5-9: two trials). Other keys are marlow train's (`marlow train --help`).

options (default):
  out=DIR                  the sweep directory (runs/sweep-<hash of the grid>)
  address=ADDR             a running Ray cluster (auto: this node's); none: a local Ray instance
  cpus_per_trial=1         CPUs of a trial; its seeds are split over that many XLA host devices
  gpus_per_trial=0         GPUs of a trial (a fraction below 1 shares a GPU)
  ray_cpus=N               CPUs of the local Ray instance (all of them)
  aggregate=true           write the aggregate report to <out>/aggregate at the end"""


def cmd_sweep(args: list[str]) -> int:
    from marlow.sweep.run import run_sweep

    if any(a in HELP for a in args):
        print(SWEEP_USAGE)
        return 0
    return run_sweep(_key_values(args))


def cmd_aggregate(args: list[str]) -> int:
    from marlow.sweep.summary import write

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


DEMO_USAGE = """usage: marlow demo {defaults} [key=value ...]

Trains AORPO, MASAC and MASAC with AORPO's policy updates per env step on mpe/simple_spread (minutes on a
CPU at these defaults) and writes runs/demo/report.md with runs/demo/learning_curve.png. Other keys are
marlow train's, passed to every training (world-model keys only to AORPO)."""


def cmd_demo(args: list[str]) -> int:
    from marlow.analysis.demo import DEMO_DEFAULTS, run_demo

    if any(a in HELP for a in args):
        print(DEMO_USAGE.format(defaults=" ".join(f"[{k}={v}]" for k, v in DEMO_DEFAULTS.items())))
        return 0
    run_demo(_key_values(args))
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


def version() -> str:
    """The installed package's version (``marlow.__version__`` when it is not installed)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("marlow")
    except PackageNotFoundError:
        from marlow import __version__

        return __version__


def _to_devnull(stream) -> None:
    """Point ``stream``'s file descriptor at /dev/null (its reader went away): later writes and the
    interpreter's final flush go nowhere instead of raising BrokenPipeError."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, stream.fileno())
    os.close(devnull)


class _PipeSafe:
    """A text stream whose writes go on working after its reader went away (``marlow train ... 2>&1 |
    head``): the first BrokenPipeError points the file descriptor at /dev/null and the write is dropped,
    so the command (training, a sweep) goes on and ends as it would have."""

    def __init__(self, stream):
        self._stream = stream

    def _quiet(self) -> None:
        _to_devnull(self._stream)

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            self._quiet()
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            self._quiet()

    def __getattr__(self, name):
        return getattr(self._stream, name)


def main(argv: list[str] | None = None) -> int:
    from marlow.devices import configure_host_devices

    configure_host_devices()  # one XLA host device per core, before JAX starts (marlow/devices.py)
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    if argv[0] in ("--version", "version"):
        print(f"marlow {version()}")
        return 0
    cmd, rest = argv[0], argv[1:]
    if cmd not in COMMANDS:
        hint = did_you_mean(cmd, COMMANDS) or f"; commands: {', '.join(COMMANDS)}"
        print(f"marlow: error: unknown command {cmd!r}{hint}", file=sys.stderr)
        return 2
    _quiet_jax()
    if cmd not in ("train", "sweep", "demo"):
        return _run(cmd, rest)
    streams = sys.stdout, sys.stderr  # long commands outlive a reader of their output
    sys.stdout, sys.stderr = _PipeSafe(sys.stdout), _PipeSafe(sys.stderr)
    try:
        return _run(cmd, rest)
    finally:
        sys.stdout, sys.stderr = streams


def _run(cmd: str, rest: list[str]) -> int:
    """``cmd`` with its errors as one line and an exit code (the module docstring's)."""
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
            _to_devnull(sys.stdout)
            return 0
        where = f" ({e.filename})" if e.filename else ""
        print(
            f"marlow: error: cannot write{where}: {e.strerror or e}; the last checkpoint is kept",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        # before a run's training started (imports, set-up) or after it ended (the report): a run
        # interrupted while training is a RunInterrupted above, with its resume command
        print("marlow: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
