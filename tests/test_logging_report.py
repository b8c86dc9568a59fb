"""RunLogger (CSV / TensorBoard / marl-eval JSON, resume) and the report helpers."""

from __future__ import annotations

import csv
import json
import math
import struct
from pathlib import Path

import numpy as np
import pytest

from marlow.errors import CheckpointError, ConfigError
from marlow.runtime.loggers import RunDirError, RunLogger, read_metrics, split_task
from marlow.runtime.report import (
    MissingMetricError,
    aligned_seeds,
    load_run,
    plot_grid,
    plot_runs,
    summary_table,
    write_report,
)

SEEDS = [0, 1, 2]


def _rows(point: int, seeds=SEEDS, *, interactions: bool = True, n_episodes: int = 2) -> list[dict]:
    """Eval point ``point`` (0-based) at env_steps = 100 * (point + 1); values depend on (seed, point)."""
    rows = []
    for s in seeds:
        ret = float(10 * point + s)
        row = {
            "env_steps": 100 * (point + 1),
            "episodes": 4 * (point + 1),
            "wall_time": 1.5 * (point + 1),
            "steps_per_s": 66.5,
            "eval/team_return": ret,
            "eval/return/agent_0": ret / 2,
            "eval/return/agent_1": ret / 2,
            "loss/actor": 0.25 * point - s,
            "eval/episode_returns": [ret - 1.0, ret + 1.0][:n_episodes],
        }
        if interactions:
            row["agent_interactions"] = 300 * (point + 1)
        rows.append(row)
    return rows


def _read_csv(run_dir: Path) -> tuple[list[str], list[list[str]]]:
    with open(run_dir / "metrics.csv", newline="") as f:
        lines = list(csv.reader(f))
    return lines[0], lines[1:]


def _tb_events(seed_dir: Path) -> list:
    """All Event protos of the event files in ``seed_dir`` (a minimal TFRecord reader, no CRC check)."""
    from tensorboardX.proto import event_pb2

    events = []
    for path in sorted(seed_dir.glob("events.out.tfevents.*")):
        data = path.read_bytes()
        i = 0
        while i < len(data):
            (n,) = struct.unpack("<Q", data[i : i + 8])
            ev = event_pb2.Event()
            ev.ParseFromString(data[i + 12 : i + 12 + n])
            events.append(ev)
            i += 12 + n + 4
    return events


# --------------------------------------------------------------------------- CSV


def test_csv_header_rows_and_flush(tmp_path):
    logger = RunLogger(tmp_path, algo="ippo", task="mpe/simple_spread", seeds=SEEDS)
    logger.log(_rows(0))
    # Flushed after the log call: readable while the logger is still open.
    header, rows = _read_csv(tmp_path)
    assert header == [
        "seed",
        "env_steps",
        "agent_interactions",
        "episodes",
        "eval/return/agent_0",
        "eval/return/agent_1",
        "eval/team_return",
        "loss/actor",
        "steps_per_s",
        "wall_time",
    ]
    assert "eval/episode_returns" not in header
    assert len(rows) == 3
    assert [r[0] for r in rows] == ["0", "1", "2"]
    assert rows[1][:2] == ["1", "100"]
    assert float(rows[1][header.index("eval/team_return")]) == 1.0

    # Missing keys are written empty.
    second = _rows(1)
    del second[2]["loss/actor"]
    logger.log(second)
    header, rows = _read_csv(tmp_path)
    assert len(rows) == 6
    assert rows[5][header.index("loss/actor")] == ""
    assert rows[4][header.index("loss/actor")] == "-0.75"
    logger.close()
    logger.close()  # idempotent


def test_unknown_key_raises(tmp_path):
    with RunLogger(tmp_path, algo="ippo", task="mpe/simple_spread", seeds=SEEDS) as logger:
        logger.log(_rows(0, interactions=False))
        with pytest.raises(ValueError, match="agent_interactions"):
            logger.log(_rows(1, interactions=True))
        with pytest.raises(ValueError, match="rows"):
            logger.log(_rows(1, seeds=[0, 1], interactions=False))
        bad = _rows(1, interactions=False)
        del bad[0]["env_steps"]
        with pytest.raises(ValueError, match="env_steps"):
            logger.log(bad)


def test_numpy_scalars_accepted(tmp_path):
    rows = _rows(0, seeds=[7])
    rows[0]["eval/team_return"] = np.float32(2.5)
    rows[0]["env_steps"] = np.int64(100)
    rows[0]["eval/episode_returns"] = np.array([2.0, 3.0])
    with RunLogger(tmp_path, algo="ippo", task="mpe", seeds=[7]) as logger:
        logger.log(rows)
    m = read_metrics(tmp_path)
    assert m[7]["eval/team_return"][0] == 2.5
    js = json.loads((tmp_path / "marl_eval.json").read_text())
    assert js["mpe"]["mpe"]["ippo"]["seed_7"]["step_0"]["return"] == [2.0, 3.0]


# --------------------------------------------------------------------------- marl-eval JSON


def test_marl_eval_json_structure(tmp_path):
    with RunLogger(tmp_path, algo="ippo", task="mpe/simple_spread", seeds=SEEDS) as logger:
        for p in range(3):
            logger.log(_rows(p))
    data = json.loads((tmp_path / "marl_eval.json").read_text())
    assert list(data) == ["mpe"]
    assert list(data["mpe"]) == ["simple_spread"]
    assert list(data["mpe"]["simple_spread"]) == ["ippo"]
    algo = data["mpe"]["simple_spread"]["ippo"]
    assert sorted(algo) == ["seed_0", "seed_1", "seed_2"]
    for s in SEEDS:
        run = algo[f"seed_{s}"]
        assert sorted(run) == ["absolute_metrics", "step_0", "step_1", "step_2"]
        for p in range(3):
            ret = float(10 * p + s)
            assert run[f"step_{p}"] == {
                "step_count": 100 * (p + 1),
                "elapsed_time": 1.5 * (p + 1),
                "return": [ret - 1.0, ret + 1.0],
            }
        assert run["absolute_metrics"] == {"return": [20.0 + s - 1.0, 20.0 + s + 1.0]}
    assert not list(tmp_path.glob(".*.tmp"))  # atomic write leaves no temp file


def test_json_falls_back_to_team_return_and_split_task(tmp_path):
    assert split_task("mpe/simple_spread") == ("mpe", "simple_spread")
    assert split_task("smax/3m/hard") == ("smax", "3m/hard")
    assert split_task("cartpole") == ("cartpole", "cartpole")
    rows = _rows(0, seeds=[3])
    del rows[0]["eval/episode_returns"]
    with RunLogger(tmp_path, algo="mappo", task="cartpole", seeds=[3]) as logger:
        logger.log(rows)
    data = json.loads((tmp_path / "marl_eval.json").read_text())
    run = data["cartpole"]["cartpole"]["mappo"]["seed_3"]
    assert run["step_0"]["return"] == [3.0]
    assert run["absolute_metrics"] == {"return": [3.0]}


# --------------------------------------------------------------------------- resume


def test_resume_truncates_csv_json_and_tb(tmp_path):
    # Uninterrupted reference run: 5 points.
    ref = tmp_path / "ref"
    with RunLogger(ref, algo="ippo", task="mpe/simple_spread", seeds=SEEDS) as logger:
        for p in range(5):
            logger.log(_rows(p))

    # Interrupted run: 5 points logged with different values, then resumed from the 3rd point's
    # checkpoint (env_steps 300); points 4 and 5 are logged again.
    run = tmp_path / "run"
    with RunLogger(run, algo="ippo", task="mpe/simple_spread", seeds=SEEDS) as logger:
        for p in range(5):
            rows = _rows(p)
            if p >= 3:
                for r in rows:
                    r["eval/team_return"] = -999.0
                    r["eval/episode_returns"] = [-999.0]
            logger.log(rows)
    with open(run / "metrics.csv", "a") as f:
        f.write("0,600,1")  # a partial line from a run killed mid-write
    with RunLogger(run, algo="ippo", task="mpe/simple_spread", seeds=SEEDS, resume_step=300) as logger:
        header, rows = _read_csv(run)
        assert sorted({int(r[1]) for r in rows}) == [100, 200, 300]
        for p in (3, 4):
            logger.log(_rows(p))

    assert _read_csv(run) == _read_csv(ref)
    got = json.loads((run / "marl_eval.json").read_text())
    want = json.loads((ref / "marl_eval.json").read_text())
    assert got == want
    steps = got["mpe"]["simple_spread"]["ippo"]["seed_1"]
    assert [steps[f"step_{i}"]["step_count"] for i in range(5)] == [100, 200, 300, 400, 500]
    assert "step_5" not in steps

    # TensorBoard: the resumed writer carries purge_step = 301.
    ev = _tb_events(run / "tb" / "seed_0")
    starts = [e.step for e in ev if e.HasField("session_log") and e.session_log.status == 1]
    assert 301 in starts


def test_resume_without_files_starts_fresh(tmp_path):
    with RunLogger(tmp_path, algo="ippo", task="mpe/x", seeds=[0], resume_step=500) as logger:
        logger.log(_rows(0, seeds=[0]))
    assert len(_read_csv(tmp_path)[1]) == 1


def test_fresh_start_overwrites(tmp_path):
    for _ in range(2):
        with RunLogger(tmp_path, algo="ippo", task="mpe/x", seeds=[0]) as logger:
            logger.log(_rows(0, seeds=[0]))
    assert len(_read_csv(tmp_path)[1]) == 1
    js = json.loads((tmp_path / "marl_eval.json").read_text())
    assert sorted(js["mpe"]["x"]["ippo"]["seed_0"]) == ["absolute_metrics", "step_0"]


# --------------------------------------------------------------------------- TensorBoard


def test_tensorboard_event_files_per_seed(tmp_path):
    with RunLogger(tmp_path, algo="ippo", task="mpe/simple_spread", seeds=SEEDS) as logger:
        for p in range(2):
            logger.log(_rows(p))
    for s in SEEDS:
        files = list((tmp_path / "tb" / f"seed_{s}").glob("events.out.tfevents.*"))
        assert files and all(f.stat().st_size > 0 for f in files)
        scalars = {
            (v.tag, e.step): v.simple_value
            for e in _tb_events(tmp_path / "tb" / f"seed_{s}")
            for v in e.summary.value
        }
        assert scalars[("eval/team_return", 200)] == pytest.approx(10.0 + s)
        assert ("eval/return/agent_0", 100) in scalars
        assert not any(tag == "eval/episode_returns" for tag, _ in scalars)


# --------------------------------------------------------------------------- read_metrics


def test_read_metrics_round_trip(tmp_path):
    with RunLogger(tmp_path, algo="ippo", task="mpe/simple_spread", seeds=SEEDS) as logger:
        for p in range(4):
            rows = _rows(p)
            if p == 2:
                del rows[1]["loss/actor"]
            logger.log(rows)
    m = read_metrics(tmp_path)
    assert sorted(m) == SEEDS
    for s in SEEDS:
        assert "seed" not in m[s]
        np.testing.assert_array_equal(m[s]["env_steps"], [100, 200, 300, 400])
        np.testing.assert_array_equal(m[s]["eval/team_return"], [s, 10 + s, 20 + s, 30 + s])
        np.testing.assert_array_equal(m[s]["agent_interactions"], [300, 600, 900, 1200])
        assert m[s]["env_steps"].dtype == np.float64
    assert math.isnan(m[1]["loss/actor"][2])
    assert m[0]["loss/actor"][2] == 0.5

    with pytest.raises(RunDirError) as ei:
        read_metrics(tmp_path / "missing")
    assert isinstance(ei.value, CheckpointError) and isinstance(ei.value, FileNotFoundError)


# --------------------------------------------------------------------------- report


def _synthetic_run(run_dir: Path, algo: str, seeds, n_points: int, offset: float, *, interactions=True):
    rng = np.random.default_rng(len(seeds) + int(offset))
    with RunLogger(run_dir, algo=algo, task="mpe/simple_spread", seeds=list(seeds)) as logger:
        for p in range(n_points):
            rows = []
            for s in seeds:
                row = {
                    "env_steps": 1000 * (p + 1),
                    "eval/team_return": offset + p + float(rng.normal()) + 0.1 * s,
                    "wall_time": float(p),
                }
                if interactions:
                    row["agent_interactions"] = 3000 * (p + 1)
                rows.append(row)
            logger.log(rows)
    (run_dir / "config.yaml").write_text(f"algo: {algo}\ntask: mpe/simple_spread\nseed: 0\n")


def _is_png(path: Path) -> bool:
    return path.is_file() and path.stat().st_size > 1000 and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_runs_two_runs_three_seeds_and_one_seed(tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    _synthetic_run(a, "ippo", [0, 1, 2], 8, 0.0)
    _synthetic_run(b, "mappo", [0, 1, 2], 8, 5.0)
    _synthetic_run(c, "iql", [4], 8, 2.0, interactions=False)

    out = plot_runs([a, b], tmp_path / "plots" / "two.png", title="two runs")
    assert out == tmp_path / "plots" / "two.png" and _is_png(out)
    out1 = plot_runs([c], tmp_path / "one.png")
    assert _is_png(out1)
    out2 = plot_runs([a, b], tmp_path / "ai.png", x="agent_interactions", labels=["A", "B"])
    assert _is_png(out2)
    with pytest.raises(ValueError, match="iql"):
        plot_runs([a, c], tmp_path / "bad.png", x="agent_interactions")
    with pytest.raises(ConfigError):
        plot_runs([c], tmp_path / "bad.png", x="agent_interactions")
    assert not (tmp_path / "bad.png").exists()

    grid = plot_grid([a, b], tmp_path / "grid.png", xs=("env_steps", "agent_interactions"))
    assert _is_png(grid)


def test_plot_grid_takes_loaded_runs_with_derived_columns(tmp_path):
    """A RunData with a column computed after loading (benchmarks/aorpo/fig2.py's second interaction
    count) plots like a run dir; the given labels replace the runs' own without changing the caller's."""
    a, b = tmp_path / "a", tmp_path / "b"
    _synthetic_run(a, "ippo", [0, 1], 4, 0.0)
    _synthetic_run(b, "ippo", [0, 1], 4, 1.0)
    run = load_run(a)
    for cols in run.metrics.values():
        cols["derived"] = cols["agent_interactions"] / 2
    grid, _ = aligned_seeds(run, "derived")
    np.testing.assert_array_equal(grid, [1500, 3000, 4500, 6000])
    out = plot_grid([run, run], tmp_path / "derived.png", xs=("env_steps", "derived"), labels=["x", "y"])
    assert _is_png(out) and run.label == "ippo"
    assert _is_png(plot_grid([run, b], tmp_path / "both.png"))
    with pytest.raises(MissingMetricError, match="derived"):
        plot_grid([run, b], tmp_path / "bad.png", xs=("derived",))  # b lacks it


def test_labels_from_config_and_fallbacks(tmp_path):
    a, b = tmp_path / "run_a", tmp_path / "run_b"
    _synthetic_run(a, "ippo", [0], 2, 0.0)
    _synthetic_run(b, "ippo", [0], 2, 0.0)
    assert load_run(a).label == "ippo" and load_run(a).task == "mpe/simple_spread"
    (b / "config.yaml").unlink()
    run_b = load_run(b)  # falls back to marl_eval.json
    assert (run_b.label, run_b.task) == ("ippo", "mpe/simple_spread")
    (b / "marl_eval.json").unlink()
    assert load_run(b).label == "run_b"


def test_alignment_interpolates_onto_common_range(tmp_path):
    d = tmp_path / "r"
    d.mkdir()
    (d / "metrics.csv").write_text(
        "seed,env_steps,eval/team_return\n0,0,0\n0,10,10\n0,20,20\n1,5,0\n1,25,0\n"
    )
    grid, values = aligned_seeds(load_run(d))
    np.testing.assert_array_equal(grid, [5, 10, 20])
    np.testing.assert_allclose(values, [[5, 10, 20], [0, 0, 0]])


def test_summary_table_matches_hand_computation(tmp_path):
    d = tmp_path / "r"
    d.mkdir()
    # Two seeds, 10 eval points each; last_frac=0.2 -> the last 2 points of each seed.
    y0 = [0, 1, 2, 3, 4, 5, 6, 7, 8.0, 10.0]
    y1 = [0, 2, 4, 6, 8, 9, 9, 9, 12.0, 14.0]
    lines = ["seed,env_steps,eval/team_return"]
    lines += [f"0,{100 * (i + 1)},{v}" for i, v in enumerate(y0)]
    lines += [f"1,{100 * (i + 1)},{v}" for i, v in enumerate(y1)]
    (d / "metrics.csv").write_text("\n".join(lines) + "\n")
    (d / "config.yaml").write_text("algo: ippo\ntask: mpe/simple_spread\n")

    table = summary_table([d], last_frac=0.2)
    f0, f1 = (8 + 10) / 2, (12 + 14) / 2  # 9, 13
    mean = (f0 + f1) / 2  # 11
    std = math.sqrt(((f0 - mean) ** 2 + (f1 - mean) ** 2) / 1)  # sample std: 2.828...
    best = max((a + b) / 2 for a, b in zip(y0, y1, strict=True))  # 12
    row = table.strip().splitlines()[-1]
    assert row == f"| ippo | mpe/simple_spread | 2 | {mean:.2f} ± {std:.2f} | {best:.2f} |"
    assert row == "| ippo | mpe/simple_spread | 2 | 11.00 ± 2.83 | 12.00 |"
    assert table.splitlines()[1].startswith("|---")

    # Default last_frac=0.1 -> the last point only.
    row = summary_table([d]).strip().splitlines()[-1]
    assert row == "| ippo | mpe/simple_spread | 2 | 12.00 ± 2.83 | 12.00 |"


def test_write_report(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    _synthetic_run(a, "ippo", [0, 1, 2], 5, 0.0)
    _synthetic_run(b, "mappo", [0, 1, 2], 5, 3.0)
    path = write_report([a, b], tmp_path / "out")
    assert path == tmp_path / "out" / "report.md"
    text = path.read_text()
    assert "![learning curve](learning_curve.png)" in text
    assert "| ippo |" in text and "| mappo |" in text
    assert _is_png(tmp_path / "out" / "learning_curve.png")
    single = write_report(a, tmp_path / "out1")
    assert "ippo on mpe/simple_spread" in single.read_text()


def test_missing_y_column_raises(tmp_path):
    a = tmp_path / "a"
    _synthetic_run(a, "ippo", [0], 3, 0.0)
    with pytest.raises(MissingMetricError, match="loss/critic"):
        summary_table([a], y="loss/critic")


def test_report_leads_with_the_win_rate_and_says_what_its_band_is(tmp_path):
    """SMAX's main metric is the win rate: it was missing from report.md and the learning curve; a
    one-seed run printed "± 0.00" and every report said "(with 2 seeds: their range)"."""
    run = tmp_path / "smax"
    with RunLogger(run, algo="mappo", task="smax/3m", seeds=[0]) as logger:
        for p in range(4):
            logger.log([{"env_steps": 1000 * p, "eval/team_return": float(p), "eval/win_rate": p / 4}])
    (run / "config.yaml").write_text("algo: mappo\ntask: smax/3m\nseed: 0\n")
    text = write_report(run, tmp_path / "out").read_text()
    tables = [line for line in text.splitlines() if line.startswith("| run |")]
    assert len(tables) == 2 and "eval/win_rate" in tables[0] and "eval/team_return" in tables[1]
    assert "| mappo | smax/3m | 1 | 0.75 (one seed) | 0.75 |" in text
    assert "± 0.00" not in text and "two seeds" not in text and "no band for one seed" in text
    assert "Curve: `eval/win_rate`" in text

    many = tmp_path / "many"
    _synthetic_run(many, "ippo", [0, 1, 2], 3, 0.0)
    text = write_report(many, tmp_path / "out2").read_text()
    assert "win_rate" not in text and "95% Student-t" in text and "two seeds" not in text


def test_counts_are_logged_as_integers_and_float32_as_its_shortest_decimal(tmp_path):
    """agent_interactions showed 819.199951171875 and updates 100.0 in metrics.csv."""
    from marlow.runtime.session import _rows

    metrics = {
        "agent_interactions": np.array([819.2], np.float32),
        "updates": np.array([100.0], np.float32),
        "loss/critic": np.array([np.nan], np.float32),
        "env_steps": np.array([400], np.int32),
    }
    (row,) = _rows(metrics, [0], 1.5, 10.0)
    assert row["agent_interactions"] == 819.2 and isinstance(row["updates"], int) and row["updates"] == 100
    with RunLogger(tmp_path / "r", algo="x", task="y", seeds=[0]) as logger:
        logger.log([row])
    header, rows = _read_csv(tmp_path / "r")
    values = dict(zip(header, rows[0], strict=True))
    assert values["agent_interactions"] == "819.2" and values["updates"] == "100"


def test_demo_reading_weighs_aorpo_against_masac_at_equal_updates(tmp_path):
    """The demo's reading compares AORPO with MASAC at AORPO's update ratio, against the seeds' spread."""
    from marlow.analysis.demo import reading

    labels = ["AORPO", "MASAC (1)", "MASAC (10)"]
    close = [tmp_path / n for n in ("a", "m1", "m10")]
    for d, off in zip(close, (20.5, 10.0, 20.0), strict=True):  # one noise stream for 20.5 and 20
        _synthetic_run(d, "x", [0, 1, 2], 5, off)
    text = reading(close, labels)
    assert "against MASAC (10)" in text and "inconclusive" in text
    far = [tmp_path / n for n in ("b", "n1", "n10")]
    for d, off in zip(far, (20.0, 10.0, 0.0), strict=True):
        _synthetic_run(d, "x", [0, 1, 2], 5, off)
    assert "AORPO is ahead of MASAC at equal updates beyond two standard errors" in reading(far, labels)
