"""Optimiser steps shared by the learners and the world models."""

from __future__ import annotations

import jax
import optax


def make_optimizer(lr: float, max_grad_norm: float, eps: float = 1e-8) -> optax.GradientTransformation:
    """Adam (AORPO paper Appendix F), with global-norm clipping when ``max_grad_norm > 0``."""
    if max_grad_norm > 0:
        return optax.chain(optax.clip_by_global_norm(max_grad_norm), optax.adam(lr, eps=eps))
    return optax.adam(lr, eps=eps)


def opt_step(opt: optax.GradientTransformation, params, opt_state, grads):
    updates, opt_state = opt.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state


def soft_update(target, online, tau: float):
    """Polyak averaging: target <- tau * online + (1 - tau) * target."""
    return jax.tree.map(lambda t, o: (1.0 - tau) * t + tau * o, target, online)
