"""Regression for the recurrent cells' initialisation (marlow.nn.recurrent): with flax's orthogonal
recurrent kernels, initialising 3 vmapped seeds in one jitted program deadlocked XLA's CPU runtime (0% CPU,
forever) for every learner with a GRU or LSTM. Each init runs in a subprocess so a hang fails the test
instead of blocking the suite."""

import subprocess
import sys

import pytest

CODE = """
import jax, marlow
from marlow.algos import get_algo
algo, task = {algo!r}, {task!r}
alg = get_algo(algo).Algorithm(marlow.make_env(task).spec, marlow.config(algo, task).algo)
jax.block_until_ready(jax.jit(jax.vmap(alg.init))(jax.random.split(jax.random.PRNGKey(0), 3)))
print("ok")
"""


@pytest.mark.parametrize(
    "algo, task",
    [("tappo", "games/lookahead_toy"), ("g2a", "games/climbing"), ("commnet", "games/climbing")],
)
def test_vmapped_multi_seed_init_completes(algo, task):
    code = CODE.format(algo=algo, task=task)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
