#!/usr/bin/env bash
# Create benchmarks/peers/.venv-<peer>: a peer library's stack at the versions pinned in
# requirements-<peer>.txt, for the side-by-side scripts in benchmarks/peers. Not part of CI.
#
#   bash benchmarks/peers/setup_venv.sh benchmarl   # BenchMARL (torch CPU, torchrl, tensordict, vmas), run.py
#   bash benchmarks/peers/setup_venv.sh jaxmarl     # JaxMARL's IPPO script's packages, jaxmarl_ippo.py
#
# PYTHON=python3.11 by default. Idempotent: does nothing when the venv was completed from the same
# requirements file (a stamp holding the file's hash, written after a successful install and import check);
# otherwise (re)installs into it.
set -euo pipefail

peer="${1:-}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
case "$peer" in
benchmarl)
    check="import importlib.metadata as m, benchmarl, tensordict, torch, torchrl, vmas
print('imported:', ', '.join(p + ' ' + m.version(p) for p in ('benchmarl', 'torch', 'torchrl', 'tensordict', 'vmas')))
assert not torch.cuda.is_available() and '+cpu' in torch.__version__, 'expected the CPU build of torch'" ;;
jaxmarl)
    check="import importlib.metadata as m, distrax, hydra, jax, jaxmarl, omegaconf, wandb
from jaxmarl.wrappers.baselines import MPELogWrapper
print('imported:', ', '.join(p + ' ' + m.version(p) for p in ('jaxmarl', 'jax', 'distrax', 'hydra-core', 'wandb')))" ;;
*)
    echo "usage: bash benchmarks/peers/setup_venv.sh benchmarl|jaxmarl" >&2
    exit 2 ;;
esac
venv="$here/.venv-$peer"
req="$here/requirements-$peer.txt"
stamp="$venv/.requirements.sha256"
python="${PYTHON:-python3.11}"
command -v "$python" >/dev/null 2>&1 || python=python3

want="$(sha256sum "$req" | cut -d' ' -f1)"
if [[ -x "$venv/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    echo "$peer venv is complete: $venv"
    exit 0
fi

if [[ ! -x "$venv/bin/python" ]]; then
    "$python" -m venv "$venv"
fi
rm -f "$stamp"
# benchmarl: torch==2.13.0 must resolve to the CPU wheel (see the header of requirements-benchmarl.txt)
"$venv/bin/python" -m pip install --disable-pip-version-check -q -r "$req"
"$venv/bin/python" -m pip check
"$venv/bin/python" -c "$check"
echo "$want" > "$stamp"
echo "$peer venv ready: $venv"
