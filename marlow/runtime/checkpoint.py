"""Checkpoints: the whole runner state (all seeds) as flax msgpack bytes, never pickle.

A checkpoint is ``checkpoint.msgpack`` in the run directory, holding ``{"state": ..., "meta": {...}}``.
It is written to a temporary file and moved into place, so a run killed while saving keeps the previous
checkpoint. Restoring needs a template state of the same structure (the runner builds one from the
saved config), so a corrupted or mismatched file is reported as a one-line CheckpointError.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import jax
import numpy as np
from flax import serialization

from marlow.errors import CheckpointError

CKPT_NAME = "checkpoint.msgpack"


def template(init_fn, *args) -> Any:
    """Zeros shaped like ``init_fn(*args)``, a template for :func:`load` that neither compiles nor runs
    ``init_fn`` (only traces it)."""
    return jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), jax.eval_shape(init_fn, *args))


def save(run_dir: str | Path, state: Any, meta: dict[str, Any]) -> Path:
    path = Path(run_dir) / CKPT_NAME
    payload = {"state": serialization.to_state_dict(jax.device_get(state)), "meta": meta}
    tmp = path.with_suffix(".tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(serialization.msgpack_serialize(payload))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:  # unwritable or full: the previous checkpoint is untouched
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        kept = "the previous checkpoint is kept" if path.exists() else "no checkpoint was written"
        raise CheckpointError(f"cannot write checkpoint {path}: {e.strerror or e}; {kept}") from None
    return path


def read(run_dir: str | Path) -> dict[str, Any]:
    """The checkpoint's raw payload (``{"state": ..., "meta": ...}``), before it meets a template: its
    ``meta`` tells a resumed run where it stands before its programs are compiled."""
    path = Path(run_dir) / CKPT_NAME
    if not path.exists():
        raise CheckpointError(f"no checkpoint in {run_dir} (expected {CKPT_NAME})")
    try:
        payload = serialization.msgpack_restore(path.read_bytes())
        payload["meta"]["env_steps"]
    except Exception as e:  # msgpack/structure errors: report in one line
        raise CheckpointError(
            f"corrupted or incompatible checkpoint {path}: {type(e).__name__}: {e}"
        ) from None
    return payload


def load(run_dir: str | Path, template: Any, payload: dict | None = None) -> tuple[Any, dict[str, Any]]:
    """The checkpoint's state (in ``template``'s structure, shapes checked) and meta; ``payload``: what
    :func:`read` returned, if it was read already."""
    path = Path(run_dir) / CKPT_NAME
    payload = read(run_dir) if payload is None else payload
    try:
        state = serialization.from_state_dict(template, payload["state"])
        meta = dict(payload["meta"])
        _check_shapes(template, state)
    except CheckpointError:
        raise
    except Exception as e:  # msgpack/structure errors: report in one line
        raise CheckpointError(
            f"corrupted or incompatible checkpoint {path}: {type(e).__name__}: {e}"
        ) from None
    return state, meta


def _check_shapes(template: Any, state: Any) -> None:
    for t, s in zip(jax.tree.leaves(template), jax.tree.leaves(state), strict=True):
        if np.shape(t) != np.shape(s):
            raise CheckpointError(
                f"checkpoint array shape {np.shape(s)} does not match expected {np.shape(t)}"
            )
