#!/usr/bin/env bash
# The committed example of `marlow sweep` and `marlow aggregate` (benchmarks/sweeps/README.md): IPPO vs
# MAPPO at two learning rates on mpe/simple_spread and games/climbing, 5 seeds each (8 trials), on a local
# Ray instance. The trials' run directories go to benchmarks/sweeps/runs/ (git-ignored), the aggregate to
# benchmarks/sweeps/ppo/.
set -euo pipefail
cd "$(dirname "$0")/../.."
.venv/bin/marlow sweep out=benchmarks/sweeps/runs/ppo \
    algo=ippo,mappo task=mpe/simple_spread,games/climbing lr=0.0005,0.002 seeds=0-4 \
    total_steps=204800 eval_every=20480
.venv/bin/marlow aggregate benchmarks/sweeps/runs/ppo out=benchmarks/sweeps/ppo
