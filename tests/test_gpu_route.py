"""The GPU install route: `make ... GPU=cuda12` installs requirements-cuda12.lock on top of the CPU lock.
Nothing here needs a GPU: the lock must pin JAX's CUDA plugin at the CPU lock's jax (a plugin of another
version does not load), agree with the CPU lock on every package both name, and match pyproject's extra;
an unknown GPU value is refused by make in one line."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def pins(name: str) -> dict[str, str]:
    out = {}
    for line in (ROOT / name).read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            pkg, version = line.split("==")
            out[pkg.strip().lower().replace("_", "-")] = version.strip()
    return out


def test_cuda_lock_matches_the_cpu_lock_and_the_extra():
    cpu, cuda = pins("requirements.lock"), pins("requirements-cuda12.lock")
    jax = cpu["jax"]
    assert cuda["jax-cuda12-plugin"] == cuda["jax-cuda12-pjrt"] == jax == cpu["jaxlib"]
    assert {k: (cpu[k], v) for k, v in cuda.items() if k in cpu and cpu[k] != v} == {}
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert extras["cuda12"] == [f"jax[cuda12]=={jax}"]


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_installs_the_cuda_lock_and_refuses_an_unknown_gpu():
    dry = subprocess.run(["make", "-n", "-B", "venv", "GPU=cuda12"], cwd=ROOT, capture_output=True, text=True)
    assert dry.returncode == 0, dry.stderr
    assert re.search(r"pip install .*-r requirements-cuda12\.lock", dry.stdout), dry.stdout
    plain = subprocess.run(["make", "-n", "-B", "venv"], cwd=ROOT, capture_output=True, text=True)
    assert plain.returncode == 0 and "cuda12" not in plain.stdout
    bad = subprocess.run(["make", "-n", "venv", "GPU=rocm"], cwd=ROOT, capture_output=True, text=True)
    assert bad.returncode != 0 and "GPU=rocm: no requirements-rocm.lock" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1, bad.stderr
