"""FLOPs of a jitted function with its loops counted as many times as they run.

XLA's cost analysis (``jax.jit(f).lower(x).compile().cost_analysis()["flops"]``) counts the body of a
``while`` loop once, whatever its trip count, so it undercounts any program built from ``lax.scan`` (a
learner step that scans model updates, window steps and imagination steps). :func:`count` walks the
function's jaxpr instead: a ``scan`` body counts ``length`` times, a ``cond`` its largest branch, calls
(``pjit``, custom derivatives, ``remat``) their inner jaxpr; ``dot_general`` counts ``2 x output size x
contracted size`` and every other arithmetic primitive one FLOP per output element (as XLA's analysis
does); data movement (reshapes, slices, gathers, broadcasts, concatenations) counts nothing.
:func:`xla_flops` gives XLA's own count, which must agree on a loop-free function (``check`` in
benchmarks/mag/speed.py compares them).
"""

from __future__ import annotations

import math

import jax
from jax.extend import core as jcore

MOVES = {
    "reshape", "broadcast_in_dim", "slice", "dynamic_slice", "dynamic_update_slice", "gather", "scatter",
    "concatenate", "transpose", "squeeze", "expand_dims", "convert_element_type", "copy", "copy_p", "iota",
    "select_n", "pad", "rev", "stop_gradient", "random_bits", "random_seed", "random_wrap", "random_unwrap",
    "threefry2x32", "argmax", "argmin", "sort", "split", "device_put", "scatter-add", "scatter_add",
}  # fmt: skip


def _size(aval) -> int:
    return int(math.prod(getattr(aval, "shape", ()) or (1,)))


def _jaxpr_flops(jaxpr, trips: list) -> float:
    total = 0.0
    for eqn in jaxpr.eqns:
        name, params = eqn.primitive.name, eqn.params
        if name == "scan":
            total += params["length"] * _jaxpr_flops(params["jaxpr"].jaxpr, trips)
        elif name == "while":  # trip count unknown: once, as XLA, unless the caller says how many
            n = trips.pop(0) if trips else 1
            total += n * _jaxpr_flops(params["body_jaxpr"].jaxpr, []) + _jaxpr_flops(
                params["cond_jaxpr"].jaxpr, []
            )
        elif name == "cond":  # the largest branch, and the loops of that branch take their trip counts
            best, used = 0.0, 0
            for branch in params["branches"]:
                rest = list(trips)
                flops = _jaxpr_flops(branch.jaxpr, rest)
                if flops >= best:
                    best, used = flops, len(trips) - len(rest)
            total += best
            del trips[:used]
        elif name == "dot_general":
            (lc, _), _ = params["dimension_numbers"]
            lhs = eqn.invars[0].aval
            contracted = math.prod(lhs.shape[d] for d in lc) if lc else 1
            total += 2.0 * _size(eqn.outvars[0].aval) * contracted
        else:
            inner = [v for v in params.values() if isinstance(v, jcore.ClosedJaxpr | jcore.Jaxpr)]
            if inner:
                total += sum(
                    _jaxpr_flops(j.jaxpr if isinstance(j, jcore.ClosedJaxpr) else j, trips) for j in inner
                )
            elif name not in MOVES:
                total += sum(_size(v.aval) for v in eqn.outvars)
    return total


def count(f, *args, trips=()) -> float:
    """FLOPs of ``f(*args)`` with every loop counted as many times as it runs (module docstring).
    ``trips``: how many times each ``while`` loop ran (an early-stopped fit's epochs), in the order the
    jaxpr holds the loops; loops beyond the list count once."""
    return _jaxpr_flops(jax.make_jaxpr(f)(*args).jaxpr, list(trips))


def xla_flops(f, *args) -> float:
    """XLA's cost analysis of ``jax.jit(f)(*args)`` (loop bodies counted once)."""
    cost = jax.jit(f).lower(*args).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    return float(cost.get("flops", float("nan")))
