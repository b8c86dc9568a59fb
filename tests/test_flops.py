"""benchmarks/flops.py, the FLOP count behind the benchmarks' GFLOP/s and bounds: closed-form counts of a
matmul, a scan, a while loop at a given trip count, and a cond's largest branch with its own loops."""

import jax
import jax.numpy as jnp

from benchmarks.flops import count, xla_flops

X = jnp.ones((4, 4))
MATMUL = 2 * 4 * 4 * 4  # 2 x output size x contracted size


def test_matmul_and_scan_match_xla_and_the_closed_form():
    assert count(lambda x: x @ x, X) == MATMUL == xla_flops(lambda x: x @ x, X)
    scanned = count(lambda x: jax.lax.scan(lambda c, _: (c @ x, None), x, None, length=5)[0], X)
    assert scanned == 5 * MATMUL


def _loop(x, stop=7):
    return jax.lax.while_loop(lambda c: c[0] < stop, lambda c: (c[0] + 1, c[1] @ x), (0, x))[1]


def test_while_loops_count_their_trips_in_order():
    body = MATMUL + 1  # the product and the counter's increment
    assert count(_loop, X) == body + 1  # once, as XLA (the condition's comparison once)
    assert count(_loop, X, trips=[7]) == 7 * body + 1
    two = count(lambda x: _loop(x) + _loop(x, 3), X, trips=[7, 3])
    assert two == 10 * body + 2 + X.size  # the two loops at their own counts, and the sum


def test_a_cond_counts_its_largest_branch_and_that_branch_takes_the_trips():
    def f(x, p):
        y = jax.lax.cond(p, lambda v: _loop(v), lambda v: v + 1.0, x)
        return _loop(y, 2)

    body = MATMUL + 1
    assert count(f, X, True, trips=[7, 2]) == 7 * body + 1 + 2 * body + 1
