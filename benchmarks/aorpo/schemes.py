"""AORPO paper Sec. 6.3 (Figs. 4-5, Appendix G.5 Fig. 7) at a scaled budget: the model usage of the rollout
schemes on mpe/simple_spread. The claim: the adaptive opponent-wise scheme (simu-to-real: the opponent
model of j for the first n_j steps, then j's real policy) has a lower model compounding error than
rolling out with the opponent models only, and needs fewer communications than rolling out with the
real policies only.

    .venv/bin/python -m benchmarks.aorpo.schemes [--steps 50000] [--seeds 5] [--reuse]
        [--schemes adaptive,all_models,all_real] [--starts 256] [--horizon H] [--out DIR] [--runs DIR]
        [key=value ...]

1. Training (Fig. 5): AORPO trained once per scheme in ``--schemes`` (``rollout_scheme``), ``--seeds``
   vmapped seeds each, with the scaled CPU settings (marlow.analysis.demo.AORPO_CPU: a 3 x 200
   ensemble of 7, at most 500 gradient steps per retraining, model warm-up and retraining every 5,000
   steps, 512 rollout starts, G = 10), epoch_steps = 7,500 x steps / 750,000 (the paper's simple_spread
   budget, so k climbs 1 -> 6 over the same fraction of the run as in the paper: 500 at 50k steps),
   learning after 5,000 random steps and an evaluation every 2,500 steps (as benchmarks/aorpo/fig2.py).
   Extra ``key=value`` arguments go to every training. Runs go to ``--runs`` (default
   benchmarks/aorpo/runs, git-ignored), one directory per scheme (the adaptive one is fig2.py's
   simple_spread run: same settings); ``--reuse`` keeps finished ones.
2. Compounding error (Fig. 4): for every trained seed, the final state is restored from its checkpoint
   and marlow.world.compounding measures eps_c(h) = 1/h sum_{i<=h} ||s_i - s_hat_i||^2 for h = 1..H
   (H = ``--horizon``, default the run's rollout_max) of EVERY scheme (the four of
   marlow.world.branched.SCHEMES) from the same ``--starts`` real start states and keys, so the
   comparison isolates the scheme: same dynamics model, same opponent models, same policies. Start
   states: fresh resets run for a uniform 0..24 steps with the trained exploring policies. The h-step
   rollout uses k = h (n_j = floor(h min eps / eps_j) from the state's opponent-model errors), and its
   communications are counted as in training (M x (h - n_j) per teammate and ego under "adaptive").
3. Report: ``--out``/schemes.md (table, reading), schemes.png (eps_c vs h per scheme with the
   measurement's communications; training communications and return vs env steps per trained scheme)
   and schemes.json (the raw measurements).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
import marlow  # noqa: E402
from benchmarks.aorpo.fig2 import model_overrides  # noqa: E402
from benchmarks.harness import mean_ci, per_seed, run_sweep, table  # noqa: E402
from marlow.analysis import model_usage  # noqa: E402
from marlow.world.branched import SCHEMES  # noqa: E402
from marlow.world.compounding import make_measure  # noqa: E402

TASK = "mpe/simple_spread"
COMMON = ["warmup_steps=5000", "eval_every=2500"]
RUNS = HERE / "runs"
LABELS = {
    "adaptive": "adaptive (simu-to-real)",
    "real_to_simu": "real-to-simu",
    "all_models": "all opponent models",
    "all_real": "all real opponents",
}
COLORS = {"adaptive": "C0", "real_to_simu": "C3", "all_models": "C1", "all_real": "C2"}
Y = "eval/team_return"


def overrides(steps: int, scheme: str, extra: list[str]) -> list[str]:
    """fig2.py's scaled simple_spread settings (so the adaptive run is fig2's) with ``scheme``."""
    return [
        f"total_steps={steps}",
        *COMMON,
        *model_overrides("aorpo", TASK, steps),
        f"rollout_scheme={scheme}",
        *extra,
    ]


_MEASURES: dict = {}  # one compiled measurement for runs that differ only in their training scheme


def measure_run(run_dir: Path, starts: int, horizon: int | None, key: int = 1234) -> dict:
    """marlow.analysis.model_usage.measure_run, with one compiled measurement shared by runs whose
    configs differ only in ``rollout_scheme`` (the measurement passes every scheme explicitly)."""
    cfg = marlow.run_config(run_dir)
    h = horizon or cfg.algo.rollout_max
    same = {k: v for k, v in cfg.to_dict().items() if k not in ("run_dir", "experiment")}
    same["algo_params"] = {k: v for k, v in same["algo_params"].items() if k != "rollout_scheme"}
    cache_key = (json.dumps(same, sort_keys=True, default=str), cfg.experiment.num_seeds, starts, h)
    if cache_key not in _MEASURES:
        run = marlow.build(cfg)
        _MEASURES[cache_key] = make_measure(run.algo, run.env, starts, h, SCHEMES, seeds=True)
    return model_usage.measure_run(run_dir, starts, h, key, measure=_MEASURES[cache_key])


def training_stats(run_dir: Path, last: int = 3) -> dict:
    cfg = marlow.run_config(run_dir)
    comm = per_seed(run_dir, "diag/communications")  # cumulative, [S, evals]
    ret = per_seed(run_dir, Y)
    rounds = cfg.experiment.eval_every // cfg.algo.update_every  # policy-update rounds per evaluation
    return {
        "steps": per_seed(run_dir, "env_steps")[0],
        "comm": np.nan_to_num(comm),
        "return": ret,
        "final_return": ret[:, -last:].mean(axis=1),
        "comm_total": np.nan_to_num(comm[:, -1]),
        "comm_per_round": np.nan_to_num(comm[:, -1] - comm[:, -2]) / rounds,
    }


def fmt(x: np.ndarray, digits: int = 3) -> str:
    m, ci = mean_ci(x)
    return f"{m:.{digits}g} ± {ci:.{digits}g}" if digits else f"{m:,.0f} ± {ci:,.0f}"


def plot(out_png: Path, meas: dict, ref: str, train: dict, starts: int) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, bx, cx) = plt.subplots(1, 3, figsize=(17, 4.6))
    horizon = meas[ref]["adaptive"]["eps_c"].shape[1]
    h = np.arange(1, horizon + 1)
    twin = ax.twinx()
    for s in SCHEMES:
        e = meas[ref][s]["eps_c"]
        m = e.mean(0)
        ci = 1.96 * e.std(0, ddof=1) / np.sqrt(len(e)) if len(e) > 1 else np.zeros_like(m)
        ax.plot(h, m, "-o", color=COLORS[s], label=LABELS[s])
        ax.fill_between(h, m - ci, m + ci, color=COLORS[s], alpha=0.2)
        twin.plot(h, meas[ref][s]["comm"].mean(0), ":", color=COLORS[s])
    ax.set_xlabel("rollout length h (= k)")
    ax.set_ylabel("model compounding error eps_c (solid)")
    twin.set_ylabel(f"communications of one round, M={starts} x 3 egos (dotted)")
    ax.set_title(f"Fig. 4: every scheme on the {ref}-trained states", fontsize=10)
    ax.plot([], [], ":", color="grey", label="communications (right axis)")
    ax.legend(fontsize=8, loc="upper left")
    for s, t in train.items():
        for axis, field in ((bx, "comm"), (cx, "return")):
            v = t[field]
            m = v.mean(0)
            ci = 1.96 * v.std(0, ddof=1) / np.sqrt(len(v)) if len(v) > 1 else np.zeros_like(m)
            axis.plot(t["steps"], m, color=COLORS[s], label=f"trained with {LABELS[s]}")
            axis.fill_between(t["steps"], m - ci, m + ci, color=COLORS[s], alpha=0.2)
    bx.set_title("communications during training")
    bx.set_ylabel("real-policy queries in rollouts (cumulative)")
    cx.set_title("Fig. 5: greedy team return")
    cx.set_ylabel(Y)
    for axis in (bx, cx):
        axis.set_xlabel("env steps")
        axis.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return out_png


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=50_000)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--reuse", action="store_true")
    p.add_argument("--schemes", default="adaptive,all_models,all_real", help="schemes to train with")
    p.add_argument("--starts", type=int, default=256, help="start states M of the measurement")
    p.add_argument("--horizon", type=int, default=None, help="H (default: the run's rollout_max)")
    p.add_argument("--out", type=Path, default=HERE, help="where schemes.md/.png/.json go")
    p.add_argument("--runs", type=Path, default=RUNS, help="where the run directories go")
    p.add_argument("overrides", nargs="*", help="key=value for every training")
    args = p.parse_args()
    trained = args.schemes.split(",")
    bad = [s for s in trained if s not in SCHEMES]
    if bad:
        p.error(f"unknown schemes {bad}; choose from {SCHEMES}")
    args.out.mkdir(parents=True, exist_ok=True)

    runs, times, meas, train, measure_s = {}, {}, {}, {}, {}
    for s in trained:
        ov = overrides(args.steps, s, args.overrides)
        # the adaptive run has exactly fig2.py's simple_spread settings: one run directory serves both
        tag = "" if s == "adaptive" else f"_scheme_{s}"
        run_dir, wall, total = run_sweep(
            "aorpo", TASK, args.seeds, ov, reuse=args.reuse, tag=tag, root=args.runs
        )
        runs[s], times[s] = run_dir, (wall, total)
        t0 = time.perf_counter()
        meas[s] = measure_run(run_dir, args.starts, args.horizon)
        measure_s[s] = time.perf_counter() - t0
        train[s] = training_stats(run_dir)
        print(f"{s}: trained {wall:.0f} s, measured {measure_s[s]:.0f} s", flush=True)

    ref = "adaptive" if "adaptive" in trained else trained[0]
    horizon = meas[ref]["adaptive"]["eps_c"].shape[1]
    png = plot(args.out / "schemes.png", meas, ref, train, args.starts)
    cfg = marlow.run_config(runs[ref])

    # main table: every scheme measured on the reference (adaptive-trained) states + its own training run
    rows = []
    for s in SCHEMES:
        e, c = meas[ref][s]["eps_c"], meas[ref][s]["comm"]
        row = [LABELS[s], *(fmt(e[:, i]) for i in range(horizon)), fmt(c[:, -1], 0)]
        if s in train:
            t = train[s]
            row += [fmt(t["comm_per_round"], 0), fmt(t["comm_total"], 0), fmt(t["final_return"])]
        else:
            row += ["not trained"] * 3
        rows.append(row)
    header = [
        "scheme",
        *(f"eps_c h={i}" for i in range(1, horizon + 1)),
        f"comm. of one h={horizon} round (measured)",
        "training comm. per round (final)",
        "training comm. total",
        "final return",
    ]
    matrix = [
        [f"trained with {LABELS[t]}", *(fmt(meas[t][s]["eps_c"][:, -1]) for s in SCHEMES)] for t in trained
    ]

    # the reading: paired per-seed differences on the reference states
    ea, em = meas[ref]["adaptive"]["eps_c"], meas[ref]["all_models"]["eps_c"]
    below = [i + 1 for i in range(horizon) if ea[:, i].mean() < em[:, i].mean()]
    d_m, d_ci = mean_ci(ea[:, -1] - em[:, -1])
    wins = int(np.sum(ea[:, -1] < em[:, -1]))
    ca, cr = meas[ref]["adaptive"]["comm"][:, -1], meas[ref]["all_real"]["comm"][:, -1]
    reading = [
        f"- Compounding error (on the {LABELS[ref]}-trained states): adaptive < all opponent models in the "
        f"seed mean at h = {below or 'none'} of 1..{horizon}; at h = {horizon} the paired difference "
        f"adaptive - all_models is {d_m:.3g} ± {d_ci:.3g} (95% CI), adaptive lower in "
        f"{wins}/{len(ea)} seeds. "
        + (
            "**Claim holds.**"
            if len(below) == horizon and d_m + d_ci < 0
            else "**Claim not (fully) supported.**"
        ),
        f"- Communications of one measured round at h = {horizon}: adaptive {ca.mean():,.0f} vs all real "
        f"{cr.mean():,.0f} ({ca.mean() / max(cr.mean(), 1):.0%}); all opponent models 0.",
    ]
    if "adaptive" in train and "all_real" in train:
        ta, tr = train["adaptive"]["comm_total"], train["all_real"]["comm_total"]
        ra, rr = train["adaptive"]["final_return"], train["all_real"]["final_return"]
        d, d_ci = mean_ci(ra - rr)  # paired by seed: the same seeds, keys and budgets
        fewer, same = ta.mean() < tr.mean(), d + d_ci >= 0  # same: not below all_real beyond the interval
        verdict = "**Holds.**" if fewer and same else "**Fails.**"
        if fewer and not same:
            verdict = "**Partly holds** (fewer interactions, a lower return)."
        reading.append(
            "- Fig. 5, 'the adaptive scheme achieves the same performance with fewer interactions among the "
            f"agents than interacting with all real opponents': adaptive made {ta.mean():,.0f} "
            f"communications in training vs {tr.mean():,.0f} with all real opponents "
            f"({ta.mean() / max(tr.mean(), 1):.0%}), for a final return of {fmt(ra)} vs {fmt(rr)} (paired "
            f"difference {d:.3g} ± {d_ci:.3g}). " + verdict
        )
    if "adaptive" in train and "all_models" in train:
        ra, rm = train["adaptive"]["final_return"], train["all_models"]["final_return"]
        d, d_ci = mean_ci(ra - rm)
        reading.append(
            "- Fig. 5, 'it avoids the performance drop caused by compounding error compared with using all "
            f"opponent models': final return adaptive {fmt(ra)} vs all opponent models {fmt(rm)} (paired "
            f"difference {d:.3g} ± {d_ci:.3g}). "
            + (
                "**Holds.**"
                if d - d_ci > 0
                else (
                    "**Not separated** at this budget (the interval covers 0)."
                    if d + d_ci >= 0
                    else "**Fails.**"
                )
            )
        )
    if "real_to_simu" in train and "adaptive" in train:
        ra, rs = train["adaptive"]["final_return"], train["real_to_simu"]["final_return"]
        d, d_ci = mean_ci(ra - rs)
        reading.append(
            "- Simu-to-real (the paper's adaptive order) vs real-to-simu: final return "
            f"{fmt(ra)} vs {fmt(rs)} (paired difference {d:.3g} ± {d_ci:.3g}); training communications "
            f"{train['adaptive']['comm_total'].mean():,.0f} vs "
            f"{train['real_to_simu']['comm_total'].mean():,.0f}."
        )

    cmd = " ".join(["benchmarks/aorpo/schemes.py", *sys.argv[1:]])
    train_time = ", ".join(
        f"{s} {w:.0f} s" + (f" ({t:.0f} s with compilation)" if t else " (reused)")
        for s, (w, t) in times.items()
    )
    lines = [
        "# AORPO Sec. 6.3: model usage of the rollout schemes (Figs. 4-5) on mpe/simple_spread",
        "",
        f"`.venv/bin/python {cmd}`",
        "",
        f"Training: AORPO with `rollout_scheme` = each of {', '.join(trained)}, {args.seeds} vmapped seeds, "
        f"{args.steps:,} env steps per seed, the scaled CPU settings (AORPO_CPU, epoch_steps "
        f"{cfg.algo.epoch_steps}: k = {cfg.algo.rollout_min} -> {cfg.algo.rollout_max} over epochs "
        f"{cfg.algo.rollout_start} -> {cfg.algo.rollout_end}, M = {cfg.algo.rollout_batch} rollout starts "
        f"per ego and round, G = {cfg.algo.updates_per_step}, one round per {cfg.algo.update_every} steps, "
        f"model warm-up {cfg.algo.model_warmup_steps}), learning after {cfg.algo.warmup_steps} steps"
        + (f", extra overrides `{' '.join(args.overrides)}`" if args.overrides else "")
        + f". Training time: {train_time}.",
        "",
        f"Measurement (marlow.world.compounding): from each seed's final state, {args.starts} real start "
        "states (fresh resets run for a uniform 0..24 steps with the trained exploring policies), the real "
        "trajectory (real dynamics, every agent's own policy) against every ego's branched rollout under "
        f"each scheme (learned dynamics, the ego's opponent models as the scheme uses them), h = "
        f"1..{horizon} with k = h; eps_c = 1/h sum ||s_i - s_hat_i||^2 over the joint observation, "
        "averaged over starts and the 3 egos; the same starts and keys for every scheme. Mean ± 95% CI "
        "over seeds. "
        f"Measurement time: {', '.join(f'{s} {t:.0f} s' for s, t in measure_s.items())}.",
        "",
        f"## Every scheme measured on the {LABELS[ref]}-trained states (Fig. 4), with its own training run",
        "",
        table(header, rows),
        "",
        "Communications: real-policy queries inside model rollouts (one per start state, step and queried "
        "teammate, summed over the 3 egos). 'Training comm. per round' is the last evaluation interval's "
        "increase over its rounds (k at its final value).",
        "",
        f"## eps_c at h = {horizon}: trained scheme (rows) x measured scheme (columns)",
        "",
        table(["states of", *(LABELS[s] for s in SCHEMES)], matrix),
        "",
        "## Reading",
        "",
        *reading,
        "",
        f"![schemes]({png.name})",
        "",
    ]
    (args.out / "schemes.md").write_text("\n".join(lines))
    raw = {
        "measured": {
            t: {s: {f: v.tolist() for f, v in d.items()} for s, d in m.items()} for t, m in meas.items()
        },
        "training": {
            s: {f: np.asarray(v).tolist() for f, v in t.items() if f != "comm" and f != "return"}
            for s, t in train.items()
        },
    }
    (args.out / "schemes.json").write_text(json.dumps(raw))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
