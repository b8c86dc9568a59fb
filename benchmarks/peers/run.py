"""Side-by-side training speed of marlow and BenchMARL (PyTorch / TorchRL / VMAS) on 3-agent cooperative
navigation with 25-step episodes: MASAC, MADDPG, IPPO and MAPPO at equal schedules, networks and frames.

    .venv/bin/python -m benchmarks.peers.run [--frames 60000,300000] [--algos masac,maddpg,ippo,mappo]
                                             [--out benchmarks/peers/RESULTS.md] [--torch-threads 1]

Run it with marlow's venv python. BenchMARL runs in its own venv, benchmarks/peers/.venv-benchmarl
(``bash benchmarks/peers/setup_benchmarl.sh`` creates it), through ``benchmarl_driver.py`` as a subprocess;
marlow through its ``marlow train`` command. For every algorithm and frame budget, BenchMARL runs and then
marlow, one after the other. ``--out`` (RESULTS.md) is rewritten after every pair, so a stopped run leaves
the rows done so far; a run that does not cover both 60k and 300k frames, or that has one algorithm of a
pair without the other (MASAC with MADDPG, IPPO with MAPPO: the pairs are measured in separate runs, the
on-policy one taking hours on BenchMARL's side), is marked as a trial at the top of the file. marlow
runs each cell twice, cold (an empty compilation cache of the cell's own) and warm (the same command again).

Measured per run:

- **wall time**: the whole process, from launching the command to its exit (``time.perf_counter`` around
  ``subprocess.run``): interpreter start, imports, set-up, compilation, training, evaluations, the end of
  the run (marlow: its final checkpoint and report; BenchMARL: none).
- **steady-state frames/s**: both runs evaluate after every chunk of ``chunk`` frames (10 chunks per run);
  the time of each evaluation's end is recorded (marlow: its ``metrics.csv`` rows, columns ``env_steps``
  and ``wall_time``; BenchMARL: ``benchmarl_driver.py``'s ``on_evaluation_end`` callback, total frames and
  ``time.perf_counter``). Steady-state frames/s = (frames at the last point - frames at the end of the
  first chunk) / (the time between the two): the first chunk (compilation, warm-up) is left out, the
  remaining evaluations are in. Frames are environment steps (of all agents together) on both sides.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import importlib.metadata
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PEERS = Path(__file__).resolve().parent
BENCHMARL_PY = PEERS / ".venv-benchmarl" / "bin" / "python"
DRIVER = PEERS / "benchmarl_driver.py"
SETUP = "bash benchmarks/peers/setup_benchmarl.sh"
FULL_FRAMES = (60_000, 300_000)
ALGOS = ("masac", "maddpg", "ippo", "mappo")
OFF_POLICY = ("masac", "maddpg")
N_CHUNKS = 10  # evaluations per run (and points for the steady-state rate)
EVAL_EPISODES = 10

# Off-policy schedule, both sides (the AORPO/MADDPG code's, marlow's masac.yaml/maddpg.yaml defaults):
# 10 envs, 100 frames collected per iteration, then 1 optimiser step on a batch of 1024 from a 500k buffer.
OFF = {
    "n_envs": 10,
    "frames_per_iter": 100,
    "updates": 1,
    "batch": 1024,
    "buffer": 500_000,
    "hidden": [64, 64],
}

# On-policy schedule, both sides: BenchMARL's defaults (conf/experiment/base_experiment.yaml,
# conf/model/layers/mlp.yaml, conf/algorithm/ippo.yaml and mappo.yaml), checked against the resolved config
# of every BenchMARL run. A BenchMARL "minibatch iter" is one pass over the 6000 frames in 15 minibatches.
ON = {
    "experiment.on_policy_collected_frames_per_batch": 6000,
    "experiment.on_policy_n_envs_per_worker": 10,
    "experiment.on_policy_n_minibatch_iters": 45,
    "experiment.on_policy_minibatch_size": 400,
    "experiment.lr": 5e-05,
    "experiment.adam_eps": 1e-06,
    "experiment.gamma": 0.99,
    "experiment.clip_grad_norm": True,
    "experiment.clip_grad_val": 5,
    "algorithm.lmbda": 0.9,
    "algorithm.clip_epsilon": 0.2,
    "algorithm.entropy_coef": 0.0,
    "algorithm.critic_coef": 1.0,
    "algorithm.loss_critic_type": "l2",
    "algorithm.share_param_critic": True,
    "experiment.share_policy_params": True,
    "model.num_cells": [256, 256],
    "model.activation_class": "torch.nn.Tanh",
    "critic_model.num_cells": [256, 256],
    "critic_model.activation_class": "torch.nn.Tanh",
}

# Off-policy settings of marlow (masac.yaml / maddpg.yaml) given to BenchMARL as well; the learning rates
# stay each library's default (they do not change the computation).
OFF_SHARED = {"experiment.gamma": 0.95, "experiment.polyak_tau": 0.01, "experiment.clip_grad_val": 0.5}

MARLOW_PACKAGES = ("marlow", "jax", "jaxlib", "flax", "optax", "jaxmarl", "numpy")
BENCHMARL_PACKAGES = ("benchmarl", "torch", "torchrl", "tensordict", "vmas", "hydra-core", "numpy")


def chunk_frames(algo: str, frames: int) -> tuple[int, int]:
    """(frames per iteration, frames per chunk) of ``algo`` at budget ``frames``; a chunk is a whole number
    of iterations and divides the budget into about N_CHUNKS evaluations."""
    it = (
        OFF["frames_per_iter"]
        if algo in OFF_POLICY
        else ON["experiment.on_policy_collected_frames_per_batch"]
    )
    if frames % it:
        raise SystemExit(f"--frames {frames}: not a multiple of {algo}'s {it} frames per iteration")
    iters = frames // it
    per_chunk = max(1, iters // N_CHUNKS)
    while iters % per_chunk:
        per_chunk -= 1
    return it, per_chunk * it


def benchmarl_overrides(algo: str, frames: int, chunk: int) -> list[str]:
    common = [
        f"algorithm={algo}",
        "task=vmas/simple_spread",
        "task.max_steps=25",
        "task.n_agents=3",
        f"experiment.max_n_frames={frames}",
        "experiment.evaluation=true",
        f"experiment.evaluation_interval={chunk}",
        f"experiment.evaluation_episodes={EVAL_EPISODES}",
        "experiment.render=false",
        "experiment.loggers=[csv]",
        "experiment.create_json=false",
        "experiment.checkpoint_interval=0",
        "experiment.checkpoint_at_end=false",
        "experiment.sampling_device=cpu",
        "experiment.train_device=cpu",
        "experiment.buffer_device=cpu",
        # discrete actions as marlow's mpe/simple_spread, except MADDPG (BenchMARL's is continuous-only)
        f"experiment.prefer_continuous_actions={'true' if algo == 'maddpg' else 'false'}",
    ]
    if algo in OFF_POLICY:
        hidden = ",".join(map(str, OFF["hidden"]))
        return common + [
            f"experiment.off_policy_collected_frames_per_batch={OFF['frames_per_iter']}",
            f"experiment.off_policy_n_envs_per_worker={OFF['n_envs']}",
            f"experiment.off_policy_n_optimizer_steps={OFF['updates']}",
            f"experiment.off_policy_train_batch_size={OFF['batch']}",
            f"experiment.off_policy_memory_size={OFF['buffer']}",
            "experiment.off_policy_init_random_frames=0",
            # marlow's MASAC/MADDPG: one actor and one (twin) critic per agent, ReLU MLPs
            "experiment.share_policy_params=false",
            "algorithm.share_param_critic=false",
            f"model.num_cells=[{hidden}]",
            f"critic_model.num_cells=[{hidden}]",
            "model.activation_class=torch.nn.ReLU",
            "critic_model.activation_class=torch.nn.ReLU",
            *(f"{k}={v}" for k, v in OFF_SHARED.items()),
            # per-agent critics Q_i(all observations, other agents' actions), closest to marlow's
            *(["algorithm.coupled_discrete_values=false"] if algo == "masac" else []),
        ]
    return common + [
        f"{k}={v}"
        for k, v in ON.items()
        if k.startswith("experiment.on_policy") or k == "experiment.share_policy_params"
    ]


def marlow_args(algo: str, frames: int, chunk: int) -> list[str]:
    common = [
        f"algo={algo}",
        "task=mpe/simple_spread",
        "seed=0",
        "num_seeds=1",
        f"total_steps={frames}",
        f"eval_every={chunk}",
        f"eval_episodes={EVAL_EPISODES}",
        "checkpoint_every=1000000",  # only the checkpoint at the end, which marlow always writes
        "progress=false",
    ]
    if algo in OFF_POLICY:
        hidden = ",".join(map(str, OFF["hidden"]))
        args = common + [
            f"num_envs={OFF['n_envs']}",
            f"update_every={OFF['frames_per_iter']}",
            f"updates_per_step={OFF['updates']}",
            f"batch_size={OFF['batch']}",
            f"buffer_size={OFF['buffer']}",
            f"warmup_steps={OFF['frames_per_iter']}",  # learn from the first iteration on, as BenchMARL
            f"hidden=[{hidden}]",
        ]
        return args + (["task.action_type=Continuous"] if algo == "maddpg" else [])
    batch = ON["experiment.on_policy_collected_frames_per_batch"]
    n_envs = ON["experiment.on_policy_n_envs_per_worker"]
    args = common + [
        f"num_envs={n_envs}",
        f"rollout_steps={batch // n_envs}",
        f"epochs={ON['experiment.on_policy_n_minibatch_iters']}",
        f"num_minibatches={batch // ON['experiment.on_policy_minibatch_size']}",
        "hidden=[{}]".format(",".join(map(str, ON["model.num_cells"]))),
        "activation=tanh",
        f"lr={ON['experiment.lr']}",
        f"adam_eps={ON['experiment.adam_eps']}",
        "anneal_lr=false",
        f"gamma={ON['experiment.gamma']}",
        f"gae_lambda={ON['algorithm.lmbda']}",
        f"clip_eps={ON['algorithm.clip_epsilon']}",
        f"ent_coef={ON['algorithm.entropy_coef']}",
        f"vf_coef={ON['algorithm.critic_coef']}",
        f"max_grad_norm={float(ON['experiment.clip_grad_val'])}",
        "value_norm=false",
        "value_clip=false",
        "huber_delta=0.0",  # squared error, BenchMARL's l2
        "normalize_advantages=false",
    ]
    if algo == "mappo":
        args += [f"critic_lr={ON['experiment.lr']}", "share_actor=true"]
    if algo == "ippo":  # BenchMARL's share_policy_params and share_param_critic (no agent ids on either side)
        args.append("share_params=true")
    return args


def marlow_command() -> list[str]:
    exe = Path(sys.executable).parent / "marlow"
    return [str(exe), "train"] if exe.exists() else [sys.executable, "-m", "marlow.cli", "train"]


@dataclass
class Run:
    side: str  # "BenchMARL" or "marlow"
    algo: str
    frames: int
    chunk: int
    command: list[str]
    rc: int | None = None
    wall: float | None = None
    points: list[tuple[int, float]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def steady(self) -> float | None:
        pts = [(f, t) for f, t in self.points if f >= self.chunk and f % self.chunk == 0]
        if len(pts) < 2 or pts[-1][1] <= pts[0][1]:
            return None
        return (pts[-1][0] - pts[0][0]) / (pts[-1][1] - pts[0][1])


def launch(
    run: Run, log: Path, env: dict | None = None, timeout: float | None = None, cwd: Path = ROOT
) -> None:
    print(f"[{dt.datetime.now():%H:%M:%S}] {run.side} {run.algo} {run.frames} frames ...", flush=True)
    t0 = time.perf_counter()
    with log.open("w") as f:
        try:
            proc = subprocess.run(
                run.command, stdout=f, stderr=subprocess.STDOUT, cwd=cwd, env=env, timeout=timeout
            )
            run.rc = proc.returncode
        except subprocess.TimeoutExpired:
            run.rc = -1
            run.notes.append(f"killed after the {timeout:.0f} s timeout")
    run.wall = time.perf_counter() - t0
    print(f"    rc {run.rc}, {run.wall:.1f} s, log {log}", flush=True)
    if run.rc != 0:
        tail = log.read_text(errors="replace").splitlines()[-15:]
        print("    " + "\n    ".join(tail), file=sys.stderr, flush=True)


def read_points(path: Path, frames_col: str, time_col: str) -> list[tuple[int, float]]:
    if not path.exists():
        return []
    with path.open() as f:
        rows = list(csv.DictReader(f))
    return [(int(float(r[frames_col])), float(r[time_col])) for r in rows if r.get("seed", "0") == "0"]


def check_on_policy(config: dict, algo: str) -> list[str]:
    """The keys of ON that BenchMARL's resolved config does not hold at the mirrored value."""
    bad = []
    for key, want in ON.items():
        node = config
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        same = node == want or (isinstance(want, float) and isinstance(node, int | float) and node == want)
        if not same:
            bad.append(f"{key}={node!r} (marlow mirrors {want!r})")
    return bad


def run_benchmarl(
    algo: str, frames: int, work: Path, threads: int, timeout: float | None
) -> tuple[Run, dict]:
    it, chunk = chunk_frames(algo, frames)
    d = work / f"benchmarl-{algo}-{frames}"
    cmd = [
        str(BENCHMARL_PY),
        str(DRIVER),
        "--times",
        str(d / "times.csv"),
        "--save-folder",
        str(d),
        "--config",
        str(d / "config.json"),
        "--torch-threads",
        str(threads),
        *benchmarl_overrides(algo, frames, chunk),
    ]
    d.mkdir(parents=True, exist_ok=True)
    run = Run("BenchMARL", algo, frames, chunk, cmd)
    env = dict(os.environ, HYDRA_FULL_ERROR="1")
    launch(run, work / f"benchmarl-{algo}-{frames}.log", env, timeout)
    run.points = read_points(d / "times.csv", "total_frames", "wall_time")
    info = json.loads((d / "config.json").read_text()) if (d / "config.json").exists() else {}
    if info and algo not in OFF_POLICY:
        run.notes += check_on_policy(info["config"], algo)
    return run, info


def launch_marlow(
    args: list[str],
    cell: str,
    algo: str,
    frames: int,
    chunk: int,
    work: Path,
    timeout: float | None,
    start: str,
) -> Run:
    """``marlow train`` with ``args`` in ``<work>/marlow-<cell>-<start>``. ``start``: "cold" (an empty
    compilation cache of this cell's own, ``<work>/cache-<cell>``) or "warm" (the cache the cold run of the
    same cell filled: the user's second run of the same command)."""
    d = work / f"marlow-{cell}-{start}"
    cache = work / f"cache-{cell}"
    if start == "cold":
        shutil.rmtree(cache, ignore_errors=True)
    cmd = [*marlow_command(), *args, f"run_dir={d}", f"compile_cache={cache}"]
    run = Run(f"marlow ({start})", algo, frames, chunk, cmd)
    launch(run, work / f"marlow-{cell}-{start}.log", None, timeout)
    run.points = read_points(d / "metrics.csv", "env_steps", "wall_time")
    return run


def run_marlow(algo: str, frames: int, work: Path, timeout: float | None, start: str) -> Run:
    it, chunk = chunk_frames(algo, frames)
    args = marlow_args(algo, frames, chunk)
    return launch_marlow(args, f"{algo}-{frames}", algo, frames, chunk, work, timeout, start)


# ---- report -------------------------------------------------------------------------------------------
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def mem_gib() -> str:
    try:
        kb = int(Path("/proc/meminfo").read_text().split("MemTotal:")[1].split()[0])
        return f"{kb / 2**20:.1f} GiB"
    except (OSError, IndexError, ValueError):
        return "unknown"


def git_rev() -> str:
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "marlow"], cwd=ROOT, capture_output=True, text=True
        )
        return rev.stdout.strip() + (" (marlow/ modified)" if dirty.stdout.strip() else "")
    except OSError:
        return "unknown"


def load_average() -> str:
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())


def machine_meta(command: str) -> dict:
    """The date, ``command``, the machine, its load and marlow's versions and commit, for a results file."""
    return {
        "date": dt.date.today().isoformat(),
        "command": command,
        "nproc": os.cpu_count(),
        "cpu": cpu_model(),
        "mem": mem_gib(),
        "load_start": load_average(),
        "marlow": versions_here(),
        "rev": git_rev(),
    }


def versions_here() -> dict[str, str]:
    out = {}
    for name in MARLOW_PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def benchmarl_versions() -> dict[str, str] | None:
    """The BenchMARL venv's versions, or None when it is missing or incomplete."""
    if not BENCHMARL_PY.exists():
        return None
    code = (
        "import importlib.metadata as m, json, benchmarl, torch, torchrl, tensordict, vmas; "
        f"print(json.dumps({{p: m.version(p) for p in {list(BENCHMARL_PACKAGES)!r}}}))"
    )
    proc = subprocess.run([str(BENCHMARL_PY), "-c", code], capture_output=True, text=True)
    if proc.returncode:
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def fmt(x: float | None, spec: str) -> str:
    return "n/a" if x is None else format(x, spec)


def ratio(a: float | None, b: float | None) -> str:
    return "n/a" if a is None or b is None or b == 0 else f"{a / b:.1f}x"


def show_command(cmd: list[str], work: Path) -> str:
    text = shlex.join(cmd).replace(str(work), "<work>").replace(str(ROOT) + "/", "")
    return text.replace(str(Path(sys.executable).parent), ".venv/bin")


DIFFERENCES = """\
- **Environment implementation.** BenchMARL runs VMAS's port of MPE simple_spread (PyTorch, vectorised over
  the 10 envs); marlow runs JaxMARL's MPE simple_spread (JAX, `jit`-compiled with the whole training chunk).
  Both: 3 agents, 3 landmarks, 25-step episodes. Discrete actions: JaxMARL 5 (no-op and 4 directions), VMAS
  9 (its 3 x 3 grid: -, 0, + on each axis, so diagonals too). Observations: VMAS 14 per agent (own velocity
  and position, landmarks and other agents relative; no communication channel), JaxMARL 18 (the same plus
  the 4 silent-communication entries). Physics and rewards are each library's own.
- **MADDPG actions.** BenchMARL's MADDPG supports only continuous actions, so MADDPG runs continuous on both
  sides: VMAS's 2-d force in [-1, 1], tanh-mapped deterministic policy with annealed Gaussian noise;
  marlow's `task.action_type=Continuous` (JaxMARL's 5-d action in [0, 1]) with its Gaussian exploration
  noise. MASAC, IPPO and MAPPO are discrete on both sides.
- **Critic of discrete MASAC.** BenchMARL runs with `coupled_discrete_values=false`: per agent, twin critics
  Q_i(all observations, the other agents' actions) with one output per own action (discrete SAC); marlow's
  twin critics Q_i(all observations, all actions) have one output (AORPO code). Both: one actor and one twin
  critic per agent, Polyak targets, a learned temperature.
- **Learning rates** are each library's default on the off-policy side (BenchMARL 5e-5 for all; marlow 0.01
  actor/critic, 3e-4 temperature); they do not change the computation. Gamma 0.95, Polyak tau 0.01 and
  gradient-norm clip 0.5 are marlow's on both.
- **IPPO parameter sharing.** BenchMARL's IPPO shares one actor and one critic among the agents
  (`share_policy_params`, `share_param_critic`, its defaults), and so does marlow's here (`share_params=true`:
  one network for the agents of one space, their rows side by side, no agent id on either side). Runs up to
  2026-12-07 gave marlow one actor and one critic per agent (then its only layout): the same arithmetic per
  gradient step, laid out as three networks instead of one on 3x the rows.
- **MAPPO critic.** BenchMARL's centralised shared critic reads the concatenated observations of all agents
  (VMAS gives no global state) and outputs a value per agent; marlow's reads JaxMARL's global state (the
  concatenated observations) and outputs one team value. One actor shared by the agents on both sides
  (marlow's `share_actor=true` appends a one-hot agent id to its input; BenchMARL's does not).
- **Losses.** Both: clipped surrogate (0.2), squared-error value loss without clipping, no entropy bonus, no
  advantage normalisation, no value normalisation, GAE(0.99, 0.9) computed once per iteration, Adam (eps
  1e-6), gradient-norm clip 5, lr 5e-5 constant. BenchMARL's PPO optimises the actor and the critic with
  separate Adam optimisers (one backward pass and step each per minibatch); marlow's IPPO one Adam per agent
  over both, its MAPPO an Adam for the actors and one for the critic.
- **End of run.** marlow always writes a checkpoint (with the replay buffer for MASAC/MADDPG), a report and
  a learning-curve plot at the end (inside its wall time); BenchMARL's checkpoints are off. Both log to CSV
  (marlow also to TensorBoard); BenchMARL logs every iteration, marlow every chunk.
- **Buffer allocation.** BenchMARL allocates its 500k-frame buffer at the first write; marlow caps its
  buffer at the run's total steps (60k or 300k).
- **Threads.** marlow (XLA) runs with its defaults. BenchMARL (torch) runs with the intra-op thread count
  given by `--torch-threads` (see the header): on this 2-core VM, whose cores are shared with other jobs,
  torch's default of 2 OpenMP threads ran a 1024x256x256 matmul at about 8 GFLOP/s against 70 GFLOP/s with 1
  thread, and made BenchMARL's MADDPG iterations 15-20x slower; `--torch-threads 0` keeps torch's default.
"""


def chunk_text(frames: list[int], algos: list[str]) -> list[str]:
    out = []
    for f in frames:
        parts = []
        for kind, members in (("off-policy", OFF_POLICY), ("on-policy", ("ippo", "mappo"))):
            if any(a in members for a in algos):
                it, chunk = chunk_frames(members[0], f)
                n = chunk // it
                parts.append(f"{kind} {chunk:,} ({n} iteration{'s' if n > 1 else ''})")
        out.append(f"{f:,} frames: " + ", ".join(parts))
    return out


def write_results(
    path: Path, runs: list[tuple[Run, Run | None, Run | None]], meta: dict, trial: bool
) -> None:
    lines: list[str] = []
    if trial:
        lines += [
            "> **TRIAL RUN, not the measurement.** These numbers come from a reduced run (frames "
            f"{', '.join(map(str, meta['frames']))}; algorithms {', '.join(meta['algos'])}) on a shared "
            "machine, to show that both sides run and the table is produced. Rerun the full measurement "
            "on a quiet machine with the command under *Full run*.",
            "",
        ]
    lines += [
        "# marlow vs BenchMARL: training speed on 3-agent cooperative navigation",
        "",
        f"Measured {meta['date']} by `{meta['command']}`"
        + ("" if meta.get("finished") else " (**incomplete**: still running or stopped)")
        + ".",
        "",
        f"Machine: {meta['nproc']} cores ({meta['cpu']}), {meta['mem']} memory, {platform.system()} "
        f"{platform.machine()}, Python {platform.python_version()}; load average "
        f"{meta['load_start']} at the start and {meta.get('load_end', 'n/a')} at the end (1/5/15 min).",
        "",
        f"- marlow {meta['marlow']['marlow']} (commit {meta['rev']}): "
        + ", ".join(f"{k} {v}" for k, v in meta["marlow"].items() if k != "marlow")
        + "; XLA CPU, one seed.",
        "- BenchMARL "
        + meta["benchmarl"]["benchmarl"]
        + ": "
        + ", ".join(f"{k} {v}" for k, v in meta["benchmarl"].items() if k != "benchmarl")
        + f"; CPU, torch intra-op threads {meta['torch_threads']}.",
        "",
        "Task: BenchMARL `task=vmas/simple_spread` (VMAS's port of MPE simple_spread, exposed by BenchMARL) "
        "with `task.max_steps=25 task.n_agents=3`; marlow `task=mpe/simple_spread` (JaxMARL's MPE "
        "simple_spread, 3 agents, 25-step episodes). One seed each.",
        "",
        "| algorithm | frames | BenchMARL wall (s) | marlow wall (s), cold / warm | wall ratio (BenchMARL / "
        "marlow), cold / warm | BenchMARL steady frames/s | marlow steady frames/s (warm) | frames/s ratio "
        "(marlow / BenchMARL) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for bm, cold, warm in runs:

        def cell(r: Run | None, what: str) -> str:
            if r is None:
                return "pending"
            if r.rc != 0:
                return f"failed (rc {r.rc})"
            return fmt(r.wall, ".1f") if what == "wall" else fmt(r.steady, ",.0f")

        def ok(ml: Run | None, bm: Run = bm) -> bool:
            return ml is not None and bm.rc == 0 and ml.rc == 0

        def wall_ratio(ml: Run | None, bm: Run = bm) -> str:
            return ratio(bm.wall, ml.wall) if ok(ml) else "n/a"

        lines.append(
            f"| {bm.algo.upper()} | {bm.frames:,} | {cell(bm, 'wall')} | {cell(cold, 'wall')} / "
            f"{cell(warm, 'wall')} | {wall_ratio(cold)} / {wall_ratio(warm)} | {cell(bm, 'fps')} | "
            f"{cell(warm, 'fps')} | {ratio(warm.steady, bm.steady) if ok(warm) else 'n/a'} |"
        )
    lines += [
        "",
        "Wall time: the whole process, from launching the command to its exit. marlow runs each cell twice, "
        "one process after the other: cold, with an empty compilation cache of the cell's own "
        "(`compile_cache=<work>/cache-<algo>-<frames>`), then warm, the same command again with the cache "
        "the cold run filled (a rerun, a resume or a sweep trial of the same setting; README, *Start-up and "
        "the compilation cache*). Steady-state frames/s: both "
        f"sides evaluate ({EVAL_EPISODES} greedy episodes) after every chunk of about 1/{N_CHUNKS} of the "
        "budget and record when each evaluation ends (marlow: `env_steps` and `wall_time` of its "
        "`metrics.csv`; BenchMARL: an `on_evaluation_end` callback in `benchmarl_driver.py` taking "
        "`time.perf_counter()`); the rate is the frames between the end of the first chunk and the last "
        "evaluation over the time between them, so start-up, compilation and the first chunk are left out "
        "and the remaining evaluations are in. Frames are environment steps (all agents together) on both "
        "sides. One process per cell, no repeats: on the 2-core development VM fresh processes vary by "
        "about 10% when it is quiet.",
        "",
    ]
    notes = [(r, n) for cell_runs in runs for r in cell_runs if r is not None for n in r.notes]
    if notes:
        lines += ["Notes on single runs:", ""]
        lines += [f"- {r.side} {r.algo} {r.frames}: {n}" for r, n in notes]
        lines.append("")
    lines += [
        "## Schedules",
        "",
        "Off-policy (MASAC, MADDPG): the schedule of the AORPO/MADDPG code (marlow's `masac.yaml` and "
        "`maddpg.yaml` defaults) on both sides: 10 vectorised envs; per iteration 100 frames "
        "(10 steps x 10 envs) collected, then 1 optimiser step on a batch of 1,024 sampled from a "
        "500,000-frame replay buffer; updates from the first iteration on (BenchMARL trains from its first "
        "batch, so marlow's `warmup_steps=100`); [64, 64] ReLU MLPs, one actor and one critic (twin for "
        "MASAC) per agent.",
        "",
        "On-policy (IPPO, MAPPO): BenchMARL's defaults on both sides: per iteration 6,000 frames "
        "(10 envs x 600 steps), then 45 passes over them in minibatches of 400 (BenchMARL's "
        "`on_policy_n_minibatch_iters=45`, `on_policy_minibatch_size=400`, i.e. 45 x 15 = 675 gradient "
        "steps per iteration; marlow `epochs=45 num_minibatches=15`, each minibatch 6,000 / 15 = 400 "
        "frames); [256, 256] tanh MLPs for actors and critics (BenchMARL's `layers/mlp` default); "
        "lr 5e-5, Adam eps 1e-6, gamma 0.99, GAE lambda 0.9, clip 0.2, no entropy bonus, value loss "
        "coefficient 1 (squared error), gradient-norm clip 5 (BenchMARL's `ippo.yaml`/`mappo.yaml` and "
        "experiment defaults, checked against each BenchMARL run's resolved config).",
        "",
        f"Chunks (frames between evaluations, a whole number of iterations, about {N_CHUNKS} per run): "
        + "; ".join(chunk_text(meta["frames"], meta["algos"]))
        + ". BenchMARL also evaluates after its first iteration, marlow before training; both evaluate "
        "at the end.",
        "",
        "Commands of this run (`<work>` is a temporary folder):",
        "",
    ]
    for cell_runs in runs:
        for r in cell_runs:
            if r is not None:
                lines += [
                    f"- {r.side} {r.algo} {r.frames:,}:",
                    "",
                    "  ```",
                    f"  {show_command(r.command, meta['work'])}",
                    "  ```",
                    "",
                ]
    lines += ["## Remaining differences", "", DIFFERENCES, "## Full run", ""]
    lines += [
        "On a quiet machine, with the BenchMARL venv in place (`" + SETUP + "`):",
        "",
        "```",
        ".venv/bin/python -m benchmarks.peers.run --frames 60000,300000 --algos masac,maddpg,ippo,mappo",
        "```",
        "",
        "It takes about 1.5 h on the 2-core development VM (estimated from the rates of a 12,000-frame trial "
        "on the loaded VM: about 25 min for the off-policy runs, about 75 min for the on-policy ones, most "
        "of it the two 300k-frame on-policy runs on BenchMARL at about 20-30 s per 6,000-frame iteration).",
        "",
    ]
    path.write_text("\n".join(lines))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", default=",".join(map(str, FULL_FRAMES)), help="comma-separated frame budgets")
    p.add_argument("--algos", default=",".join(ALGOS), help=f"comma-separated, from {','.join(ALGOS)}")
    p.add_argument("--out", type=Path, default=PEERS / "RESULTS.md", help="the results file (rewritten)")
    p.add_argument(
        "--torch-threads", type=int, default=1, help="BenchMARL's torch.set_num_threads (0: torch's default)"
    )
    p.add_argument("--timeout", type=float, default=None, help="seconds per run before it is killed")
    p.add_argument("--keep", type=Path, default=None, help="keep logs and run directories in this folder")
    ns = p.parse_args()
    frames = [int(f.replace("_", "")) for f in ns.frames.split(",") if f]
    algos = [a.strip().lower() for a in ns.algos.split(",") if a.strip()]
    unknown = sorted(set(algos) - set(ALGOS))
    if unknown:
        p.error(f"unknown algorithms {unknown}; choose from {', '.join(ALGOS)}")
    for a in algos:
        for f in frames:
            chunk_frames(a, f)

    bm_versions = benchmarl_versions()
    if bm_versions is None:
        print(f"BenchMARL venv missing or incomplete; create it with: {SETUP}", file=sys.stderr)
        return 2

    work = ns.keep.resolve() if ns.keep else Path(tempfile.mkdtemp(prefix="peers-"))
    work.mkdir(parents=True, exist_ok=True)
    # a measurement is a whole pair (off-policy, on-policy or both) at both budgets
    pairs = (set(OFF_POLICY), {"ippo", "mappo"})
    whole = all(p <= set(algos) or not (p & set(algos)) for p in pairs)
    trial = sorted(frames) != sorted(FULL_FRAMES) or not whole
    argv = " ".join(shlex.quote(a) for a in sys.argv[1:]).replace(str(ns.keep or "<none>"), "<work>")
    meta = {
        **machine_meta(f".venv/bin/python -m benchmarks.peers.run {argv}".strip()),
        "benchmarl": bm_versions,
        "torch_threads": ns.torch_threads if ns.torch_threads > 0 else "torch's default",
        "frames": frames,
        "algos": algos,
        "work": work,
    }
    runs: list[tuple[Run, Run | None, Run | None]] = []  # BenchMARL, marlow cold, marlow warm
    failed = False
    try:
        for algo in algos:
            for f in frames:
                bm, info = run_benchmarl(algo, f, work, ns.torch_threads, ns.timeout)
                if info.get("torch_num_threads") and ns.torch_threads <= 0:
                    meta["torch_threads"] = f"torch's default ({info['torch_num_threads']})"
                runs.append((bm, None, None))
                write_results(ns.out, runs, meta, trial)
                cold = run_marlow(algo, f, work, ns.timeout, "cold")
                runs[-1] = (bm, cold, None)
                warm = run_marlow(algo, f, work, ns.timeout, "warm")
                runs[-1] = (bm, cold, warm)
                failed |= bm.rc != 0 or cold.rc != 0 or warm.rc != 0
                write_results(ns.out, runs, meta, trial)
        meta["finished"] = True
        meta["load_end"] = load_average()
        write_results(ns.out, runs, meta, trial)
    finally:
        if ns.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    print(f"wrote {ns.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
