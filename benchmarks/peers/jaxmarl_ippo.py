"""Whole-process time of marlow's IPPO against JaxMARL's own IPPO baseline script, at that script's settings.

    bash benchmarks/peers/setup_venv.sh jaxmarl        # benchmarks/peers/.venv-jaxmarl: the script's packages
    git clone https://github.com/FLAIROx/JaxMARL <checkout> && git -C <checkout> checkout c793d09
    .venv/bin/python -m benchmarks.peers.jaxmarl_ippo --jaxmarl <checkout> [--steps 1000000] [--seeds 1,10]

JaxMARL's ``baselines/IPPO/ippo_ff_mpe.py`` with its ``config/ippo_ff_mpe.yaml`` (16 envs x 128 steps per
update, 4 epochs x 4 minibatches, [64, 64] tanh, lr 2.5e-4 annealed, MPE simple_spread) runs unchanged
from the checkout, with Hydra overrides for the budget and the seed count only, in its own venv (the same
JAX stack and jaxmarl as marlow's, requirements-jaxmarl.txt). marlow runs ``marlow train algo=ippo`` with
the same settings, key by key (``marlow_args``). Nothing of JaxMARL is copied here.

Measured per cell, one process after the other: the wall time of the whole process (interpreter start to
exit), for

- JaxMARL as its script runs (JAX's persistent compilation cache off, JAX's default);
- JaxMARL warm: the same command with JAX's persistent cache switched on through environment variables and
  filled by a first run of its own (what a JaxMARL user gets by hand);
- marlow cold: an empty compilation cache of the cell's own (``compile_cache=``);
- marlow warm: the same command again with the cache the cold run filled.

``--out`` (JAXMARL.md) is rewritten after every cell.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.peers.run import Run, launch, launch_marlow, load_average, machine_meta, show_command

PEERS = Path(__file__).resolve().parent
JAXMARL_PY = PEERS / ".venv-jaxmarl" / "bin" / "python"
SCRIPT = Path("baselines") / "IPPO" / "ippo_ff_mpe.py"
CONFIG = Path("baselines") / "IPPO" / "config" / "ippo_ff_mpe.yaml"
SETUP = "bash benchmarks/peers/setup_venv.sh jaxmarl"

# The keys of JaxMARL's ippo_ff_mpe.yaml that define the computation, read from the checkout and checked
# against the values marlow is given below (a checkout with other values stops the run).
EXPECTED = {
    "NUM_ENVS": 16,
    "NUM_STEPS": 128,
    "UPDATE_EPOCHS": 4,
    "NUM_MINIBATCHES": 4,
    "LR": 2.5e-4,
    "GAMMA": 0.99,
    "GAE_LAMBDA": 0.95,
    "CLIP_EPS": 0.2,
    "ENT_COEF": 0.01,
    "VF_COEF": 0.5,
    "MAX_GRAD_NORM": 0.5,
    "ACTIVATION": "tanh",
    "ENV_NAME": "MPE_simple_spread_v3",
    "ANNEAL_LR": True,
}


def updates(steps: int) -> int:
    """JaxMARL's NUM_UPDATES: whole updates of NUM_ENVS x NUM_STEPS env steps within ``steps``."""
    return steps // EXPECTED["NUM_ENVS"] // EXPECTED["NUM_STEPS"]


def jaxmarl_command(checkout: Path, steps: int, seeds: int, out: Path) -> list[str]:
    return [
        str(JAXMARL_PY),
        str(checkout / SCRIPT),
        f"TOTAL_TIMESTEPS={steps}",
        f"NUM_SEEDS={seeds}",
        f"hydra.run.dir={out}",
    ]


def marlow_args(steps: int, seeds: int) -> list[str]:
    """``marlow train`` at the script's settings; the run is the script's whole updates (``updates``)."""
    e = EXPECTED
    total = updates(steps) * e["NUM_ENVS"] * e["NUM_STEPS"]
    return [
        "algo=ippo",
        "task=mpe/simple_spread",
        "seed=0",
        f"num_seeds={seeds}",
        f"total_steps={total}",
        f"eval_every={total}",  # the script evaluates nothing; marlow evaluates at step 0 and at the end
        "eval_episodes=1",
        "checkpoint_every=100000000",  # only the checkpoint at the end, which marlow always writes
        "progress=false",
        f"num_envs={e['NUM_ENVS']}",
        f"rollout_steps={e['NUM_STEPS']}",
        f"epochs={e['UPDATE_EPOCHS']}",
        f"num_minibatches={e['NUM_MINIBATCHES']}",
        "hidden=[64,64]",
        f"activation={e['ACTIVATION']}",
        f"lr={e['LR']}",
        f"anneal_lr={str(e['ANNEAL_LR']).lower()}",
        "adam_eps=1e-05",
        f"gamma={e['GAMMA']}",
        f"gae_lambda={e['GAE_LAMBDA']}",
        f"clip_eps={e['CLIP_EPS']}",
        f"ent_coef={e['ENT_COEF']}",
        f"vf_coef={e['VF_COEF']}",
        f"max_grad_norm={e['MAX_GRAD_NORM']}",
        "value_norm=false",  # the script has no value normalisation
        "value_clip=true",  # its value loss is clipped with CLIP_EPS
        "huber_delta=0.0",  # squared error
        "normalize_advantages=true",
        "share_params=true",  # one actor-critic for the three agents, batched on one axis, as the script's
    ]


def check_checkout(checkout: Path) -> str | None:
    """None when the checkout holds the script and a config with EXPECTED's values, else why not."""
    if not (checkout / SCRIPT).is_file():
        return f"--jaxmarl {checkout}: no {SCRIPT} there (a clone of github.com/FLAIROx/JaxMARL)"
    code = "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))"
    proc = subprocess.run(
        [str(JAXMARL_PY), "-c", code, str(checkout / CONFIG)], capture_output=True, text=True
    )
    if proc.returncode:
        return f"cannot read {checkout / CONFIG}: {proc.stderr.strip().splitlines()[-1]}"
    cfg = json.loads(proc.stdout)
    bad = [f"{k}={cfg.get(k)!r} (expected {v!r})" for k, v in EXPECTED.items() if cfg.get(k) != v]
    return f"{checkout / CONFIG} differs: {', '.join(bad)}" if bad else None


def checkout_rev(checkout: Path) -> str:
    proc = subprocess.run(
        ["git", "-C", str(checkout), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    )
    return proc.stdout.strip() or "unknown (not a git checkout)"


def jaxmarl_versions() -> dict[str, str] | None:
    if not JAXMARL_PY.exists():
        return None
    names = ["jaxmarl", "jax", "jaxlib", "flax", "optax", "distrax", "hydra-core"]
    code = f"import importlib.metadata as m, json; print(json.dumps({{p: m.version(p) for p in {names!r}}}))"
    proc = subprocess.run([str(JAXMARL_PY), "-c", code], capture_output=True, text=True)
    return None if proc.returncode else json.loads(proc.stdout.strip().splitlines()[-1])


def run_jaxmarl(checkout: Path, steps: int, seeds: int, work: Path, timeout: float | None, warm: bool) -> Run:
    name = f"jaxmarl-{seeds}-{'warm' if warm else 'plain'}"
    d = work / name
    d.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, WANDB_MODE="disabled", HYDRA_FULL_ERROR="1")
    if warm:  # JAX's own persistent cache, on by hand; filled by a first run that is not timed here
        env |= {
            "JAX_COMPILATION_CACHE_DIR": str(work / f"jax-cache-{seeds}"),
            "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
            "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "-1",
        }
    run = Run(
        "JaxMARL" + (" (warm)" if warm else ""),
        "ippo",
        steps,
        steps,
        jaxmarl_command(checkout, steps, seeds, d),
    )
    if warm:
        fill = Run("JaxMARL (filling the cache)", "ippo", steps, steps, run.command)
        launch(fill, d / "fill.log", env, timeout, cwd=d)
    launch(run, work / f"{name}.log", env, timeout, cwd=d)  # cwd: the script saves its plot there
    return run


def run_marlow(steps: int, seeds: int, work: Path, timeout: float | None, start: str) -> Run:
    return launch_marlow(marlow_args(steps, seeds), str(seeds), "ippo", steps, steps, work, timeout, start)


def first_step(run: Run) -> float | None:
    """Seconds from marlow's process start to its first training step (its ``startup.json``)."""
    path = next((Path(a.split("=", 1)[1]) for a in run.command if a.startswith("run_dir=")), None)
    try:
        return json.loads((path / "startup.json").read_text())["since_process_start_s"]["first_step"]
    except (OSError, KeyError, TypeError, ValueError):
        return None


def write_results(path: Path, rows: list[dict[str, Run | None]], meta: dict) -> None:
    def wall(r: Run | None) -> str:
        if r is None:
            return "pending"
        return f"failed (rc {r.rc})" if r.rc != 0 else f"{r.wall:.1f}"

    def ratio(a: Run | None, b: Run | None) -> str:
        ok = a is not None and b is not None and a.rc == 0 and b.rc == 0
        return f"{a.wall / b.wall:.2f}x" if ok else "n/a"

    def step(r: Run | None) -> str:
        s = first_step(r) if r is not None and r.rc == 0 else None
        return "n/a" if s is None else f"{s:.1f}"

    jv, mv = meta["jaxmarl"], meta["marlow"]
    lines = [
        "# marlow vs JaxMARL's IPPO script: whole-process time on MPE simple_spread",
        "",
        f"Measured {meta['date']} by `{meta['command']}`"
        + ("" if meta.get("finished") else " (**incomplete**: still running or stopped)")
        + ".",
        "",
        f"Machine: {meta['nproc']} cores ({meta['cpu']}), {meta['mem']} memory, {platform.system()} "
        f"{platform.machine()}, Python {platform.python_version()}; load average {meta['load_start']} at the "
        f"start and {meta.get('load_end', 'n/a')} at the end (1/5/15 min).",
        "",
        f"- JaxMARL: `{SCRIPT}` and `{CONFIG}` of github.com/FLAIROx/JaxMARL at commit {meta['checkout']}, "
        "run unchanged in benchmarks/peers/.venv-jaxmarl: "
        + ", ".join(f"{k} {v}" for k, v in jv.items())
        + ".",
        f"- marlow {mv['marlow']} (commit {meta['rev']}): "
        + ", ".join(f"{k} {v}" for k, v in mv.items() if k != "marlow")
        + ".",
        "",
        "| seeds | env steps per seed | JaxMARL wall (s) | JaxMARL wall, JAX cache warm (s) | "
        "marlow wall (s), cold / warm | marlow to first training step (s), cold / warm | "
        "JaxMARL / marlow cold | JaxMARL warm / marlow warm |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['seeds']} | {r['total']:,} | {wall(r['jaxmarl'])} | {wall(r['jaxmarl_warm'])} | "
            f"{wall(r['cold'])} / {wall(r['warm'])} | {step(r['cold'])} / {step(r['warm'])} | "
            f"{ratio(r['jaxmarl'], r['cold'])} | {ratio(r['jaxmarl_warm'], r['warm'])} |"
        )
    lines += [
        "",
        "Wall: the whole process, from launching the command to its exit, one process after the other. "
        "A ratio above 1 means marlow took less time. JaxMARL runs as its script does, with no persistent "
        "compilation cache (JAX's default); \"JAX cache warm\" is the same command with JAX's persistent "
        "cache switched on by environment variables (`JAX_COMPILATION_CACHE_DIR`, no minimum compile time "
        "or entry size) after a first run filled it. That cache cannot serve the script's training program: "
        "the program calls back to the host after every update (`io_callback`, its wandb logging), a "
        "callback's address is part of JAX's cache key, so the program compiles again in every process and "
        "only the script's small eager operations load from the cache. marlow cold starts from an empty "
        "compilation cache of the cell's own (`compile_cache=<work>/cache-<seeds>`), warm is the same "
        "command again.",
        "",
        "## Settings",
        "",
        "Both: MPE simple_spread (jaxmarl 0.2.0's `MPE_simple_spread_v3`, 3 agents, 25-step episodes, "
        "discrete actions), 16 envs x 128 steps per update, 4 epochs of 4 minibatches, [64, 64] tanh "
        "actor and critic, Adam (eps 1e-5) at lr 2.5e-4 annealed linearly over the run, global-norm clip "
        "0.5, gamma 0.99, GAE lambda 0.95, clipped surrogate and clipped value loss (0.2), entropy "
        "coefficient 0.01, value coefficient 0.5, advantages normalised. The run is the script's "
        "NUM_UPDATES = steps // 16 // 128 whole updates on both sides; seeds are vmapped on both sides "
        "(the script's NUM_SEEDS, marlow's `num_seeds`). Both train one actor and one critic shared by the "
        "three agents, the agents' observations batched on one axis (marlow's `share_params=true`).",
        "",
        "Differences that remain:",
        "",
        "- **Advantage normalisation.** The script normalises per minibatch; marlow over the whole batch "
        "(MAPPO's choice).",
        "- **Initialisation.** The script initialises its layers orthogonally; marlow with variance "
        "scaling (the same arithmetic either way).",
        "- **What else each process does.** The script logs its metrics to wandb (disabled) through an "
        "`io_callback` after every update, then saves a plot of its returns. marlow evaluates 1 greedy "
        "episode before training and one at the end, writes `metrics.csv`, TensorBoard events, a "
        "checkpoint, `startup.json`, a report and a learning-curve plot, all inside its wall time.",
        "",
        "Commands of this run (`<work>` is a temporary folder, `<checkout>` the JaxMARL clone):",
        "",
    ]
    for r in rows:
        for key in ("jaxmarl", "jaxmarl_warm", "cold", "warm"):
            run = r[key]
            if run is not None:
                text = show_command(run.command, meta["work"]).replace(
                    str(meta["checkout_path"]), "<checkout>"
                )
                lines += [f"- {run.side}, {r['seeds']} seed(s):", "", "  ```", f"  {text}", "  ```", ""]
    path.write_text("\n".join(lines))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jaxmarl", type=Path, required=True, help="a clone of github.com/FLAIROx/JaxMARL")
    p.add_argument("--steps", type=int, default=1_000_000, help="env steps per seed (TOTAL_TIMESTEPS)")
    p.add_argument("--seeds", default="1,10", help="comma-separated seed counts, one row each")
    p.add_argument("--out", type=Path, default=PEERS / "JAXMARL.md", help="the results file (rewritten)")
    p.add_argument("--timeout", type=float, default=None, help="seconds per run before it is killed")
    p.add_argument("--keep", type=Path, default=None, help="keep logs and run directories in this folder")
    ns = p.parse_args()
    try:
        seeds = [int(s) for s in ns.seeds.split(",") if s.strip()]
    except ValueError:
        p.error(f"--seeds {ns.seeds!r}: expected comma-separated whole numbers")
    if not seeds or min(seeds) < 1:
        p.error(f"--seeds {ns.seeds!r}: each count must be at least 1")
    if updates(ns.steps) < 1:
        p.error(
            f"--steps {ns.steps}: less than one update of "
            f"{EXPECTED['NUM_ENVS'] * EXPECTED['NUM_STEPS']} env steps"
        )
    jv = jaxmarl_versions()
    if jv is None:
        print(f"JaxMARL venv missing or incomplete; create it with: {SETUP}", file=sys.stderr)
        return 2
    checkout = ns.jaxmarl.resolve()
    problem = check_checkout(checkout)
    if problem:
        print(problem, file=sys.stderr)
        return 2

    work = ns.keep.resolve() if ns.keep else Path(tempfile.mkdtemp(prefix="peers-jaxmarl-"))
    work.mkdir(parents=True, exist_ok=True)
    argv = (
        shlex.join(sys.argv[1:])
        .replace(str(ns.jaxmarl), "<checkout>")
        .replace(str(ns.keep or "<none>"), "<work>")
    )
    meta = {
        **machine_meta(f".venv/bin/python -m benchmarks.peers.jaxmarl_ippo {argv}"),
        "jaxmarl": jv,
        "checkout": checkout_rev(checkout),
        "checkout_path": checkout,
        "work": work,
    }
    total = updates(ns.steps) * EXPECTED["NUM_ENVS"] * EXPECTED["NUM_STEPS"]
    rows: list[dict] = []
    failed = False
    try:
        for n in seeds:
            row: dict = {
                "seeds": n,
                "total": total,
                "jaxmarl": None,
                "jaxmarl_warm": None,
                "cold": None,
                "warm": None,
            }
            rows.append(row)
            row["jaxmarl"] = run_jaxmarl(checkout, ns.steps, n, work, ns.timeout, warm=False)
            write_results(ns.out, rows, meta)
            row["jaxmarl_warm"] = run_jaxmarl(checkout, ns.steps, n, work, ns.timeout, warm=True)
            row["cold"] = run_marlow(ns.steps, n, work, ns.timeout, "cold")
            row["warm"] = run_marlow(ns.steps, n, work, ns.timeout, "warm")
            failed |= any(row[k].rc != 0 for k in ("jaxmarl", "jaxmarl_warm", "cold", "warm"))
            write_results(ns.out, rows, meta)
        meta["finished"] = True
        meta["load_end"] = load_average()
        write_results(ns.out, rows, meta)
    finally:
        if ns.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    print(f"wrote {ns.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
