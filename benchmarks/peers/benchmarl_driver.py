"""Run one BenchMARL experiment from Hydra overrides and record when each evaluation ended.

Run with the BenchMARL virtual env's python (``benchmarks/peers/.venv-benchmarl``), not marlow's::

    python benchmarks/peers/benchmarl_driver.py --times OUT.csv --save-folder DIR \
        algorithm=masac task=vmas/simple_spread experiment.max_n_frames=60000 ...

The overrides are exactly those of BenchMARL's own command line (``python -m benchmarl.run ...``); they are
composed with BenchMARL's Hydra config (``benchmarl/conf/config.yaml``) and the experiment is built by
``benchmarl.hydra_config.load_experiment_from_hydra``, as ``benchmarl.run`` does, plus one callback.

``--torch-threads N`` (N > 0) calls ``torch.set_num_threads(N)`` first; 0 keeps torch's default (one
thread per core). The resolved config is written to ``--config`` (JSON) for ``run.py`` to check and
report; with it go ``torch_num_threads`` and the versions of the stack.

The callback writes ``OUT.csv`` with one row per evaluation: ``total_frames`` (env steps collected so far)
and ``wall_time`` (seconds of ``time.perf_counter`` since ``experiment.run()`` was called). These are the
points between which ``run.py`` computes steady-state frames/s, the same points as marlow's ``metrics.csv``
rows (one after each evaluation).
"""

from __future__ import annotations

import argparse
import csv
import importlib.metadata
import json
import time
from pathlib import Path

import torch
from benchmarl.experiment.callback import Callback
from benchmarl.hydra_config import load_experiment_from_hydra
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

PACKAGES = ("benchmarl", "torch", "torchrl", "tensordict", "vmas", "hydra-core", "numpy")


class EvalTimes(Callback):
    """Records (total_frames, perf_counter) at the end of every evaluation and flushes it to a CSV."""

    def __init__(self, path: Path):
        super().__init__()
        self.path = path
        self.t0 = time.perf_counter()
        self.rows: list[tuple[int, float]] = []

    def on_evaluation_end(self, rollouts):
        self.rows.append((int(self.experiment.total_frames), time.perf_counter() - self.t0))
        with self.path.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["total_frames", "wall_time"])
            w.writerows(self.rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--times", type=Path, required=True, help="CSV of (total_frames, wall_time) per evaluation"
    )
    p.add_argument("--save-folder", type=Path, required=True, help="experiment.save_folder (created)")
    p.add_argument("--config", type=Path, help="write the resolved config, threads and versions (JSON)")
    p.add_argument("--torch-threads", type=int, default=0, help="torch.set_num_threads (0: torch's default)")
    p.add_argument("overrides", nargs="*", help="BenchMARL Hydra overrides, e.g. algorithm=masac")
    ns = p.parse_args()

    task = next((o.split("=", 1)[1] for o in ns.overrides if o.startswith("task=")), None)
    if task is None:
        p.error("a task=... override is required")
    if ns.torch_threads > 0:
        torch.set_num_threads(ns.torch_threads)
    ns.save_folder.mkdir(parents=True, exist_ok=True)
    overrides = [*ns.overrides, f"experiment.save_folder={ns.save_folder.resolve()}"]
    with initialize_config_module(config_module="benchmarl.conf", version_base=None):
        cfg = compose(config_name="config", overrides=overrides)
    if ns.config is not None:
        info = {
            "config": OmegaConf.to_container(cfg, resolve=True),
            "torch_num_threads": torch.get_num_threads(),
            "versions": {name: importlib.metadata.version(name) for name in PACKAGES},
        }
        ns.config.write_text(json.dumps(info, indent=1, default=str))
    callback = EvalTimes(ns.times)
    experiment = load_experiment_from_hydra(cfg, task_name=task, callbacks=[callback])
    callback.t0 = time.perf_counter()
    experiment.run()


if __name__ == "__main__":
    main()
