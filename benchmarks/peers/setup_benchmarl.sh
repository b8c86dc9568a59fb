#!/usr/bin/env bash
# Create benchmarks/peers/.venv-benchmarl: BenchMARL's stack (torch CPU, torchrl, tensordict, vmas, benchmarl)
# at the versions pinned in requirements-benchmarl.txt, for benchmarks/peers/run.py. Not part of CI.
#
#   bash benchmarks/peers/setup_benchmarl.sh          # PYTHON=python3.11 by default
#
# Idempotent: does nothing when the venv was completed from the same requirements file (a stamp holding
# the file's hash, written after a successful install and import check); otherwise (re)installs into it.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.venv-benchmarl"
req="$here/requirements-benchmarl.txt"
stamp="$venv/.requirements.sha256"
python="${PYTHON:-python3.11}"
command -v "$python" >/dev/null 2>&1 || python=python3

want="$(sha256sum "$req" | cut -d' ' -f1)"
if [[ -x "$venv/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    echo "BenchMARL venv is complete: $venv"
    exit 0
fi

if [[ ! -x "$venv/bin/python" ]]; then
    "$python" -m venv "$venv"
fi
rm -f "$stamp"
# torch==2.13.0 must resolve to the CPU wheel (see the header of requirements-benchmarl.txt)
"$venv/bin/python" -m pip install --disable-pip-version-check -q -r "$req"
"$venv/bin/python" -m pip check
"$venv/bin/python" -c "import importlib.metadata as m, benchmarl, tensordict, torch, torchrl, vmas
print('imported:', ', '.join(p + ' ' + m.version(p) for p in ('benchmarl', 'torch', 'torchrl', 'tensordict', 'vmas')))
assert not torch.cuda.is_available() and '+cpu' in torch.__version__, 'expected the CPU build of torch'"
echo "$want" > "$stamp"
echo "BenchMARL venv ready: $venv"
