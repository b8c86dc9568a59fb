#!/usr/bin/env bash
# Create benchmarks/peers/.venv-benchmarl (BenchMARL's stack, requirements-benchmarl.txt) for run.py; the
# work is setup_venv.sh's. Not part of CI.
exec bash "$(dirname "${BASH_SOURCE[0]}")/setup_venv.sh" benchmarl
