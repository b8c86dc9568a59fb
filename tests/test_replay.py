"""On-device circular replay buffer: wrap-around, sampling only written entries, ``recent``, jit and vmap."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from marlow.buffers import replay


def _example():
    return {"id": jnp.int32(0), "obs": {"a": jnp.zeros(2), "b": jnp.zeros(3)}, "done": jnp.float32(0)}


def _batch(ids):
    ids = jnp.asarray(ids, jnp.int32)
    f = ids.astype(jnp.float32)
    return {
        "id": ids,
        "obs": {"a": jnp.stack([f, -f], -1), "b": jnp.stack([f, f + 0.5, f * 2], -1)},
        "done": f % 2,
    }


def _check_consistent(data):
    """Every stored entry's fields were written together (derived from the same id)."""
    ids = np.asarray(data["id"]).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(data["obs"]["a"]), np.stack([ids, -ids], -1))
    np.testing.assert_array_equal(np.asarray(data["obs"]["b"]), np.stack([ids, ids + 0.5, ids * 2], -1))
    np.testing.assert_array_equal(np.asarray(data["done"]), ids % 2)


def test_init_shapes_and_dtypes():
    buf = replay.init(_example(), 5)
    assert buf.capacity == 5
    assert buf.data["id"].shape == (5,) and buf.data["id"].dtype == jnp.int32
    assert buf.data["obs"]["a"].shape == (5, 2) and buf.data["obs"]["b"].shape == (5, 3)
    assert buf.data["done"].dtype == jnp.float32
    assert int(buf.pos) == 0 and int(buf.size) == 0


def test_add_wraps_around():
    buf = replay.init(_example(), 5)
    buf = replay.add(buf, _batch([1, 2, 3]))
    assert (int(buf.pos), int(buf.size)) == (3, 3)
    np.testing.assert_array_equal(np.asarray(buf.data["id"]), [1, 2, 3, 0, 0])
    buf = replay.add(buf, _batch([4, 5, 6]))
    assert (int(buf.pos), int(buf.size)) == (1, 5)  # size capped at capacity
    np.testing.assert_array_equal(np.asarray(buf.data["id"]), [6, 2, 3, 4, 5])
    buf = replay.add(buf, _batch([7, 8, 9, 10, 11]))  # a full-capacity batch
    assert (int(buf.pos), int(buf.size)) == (1, 5)
    np.testing.assert_array_equal(np.asarray(buf.data["id"]), [11, 7, 8, 9, 10])
    _check_consistent(buf.data)


def test_add_masked_writes_only_kept_rows():
    buf = replay.init(_example(), 5)
    buf = replay.add_masked(buf, _batch([1, 2, 3, 4]), jnp.array([True, False, True, False]))
    assert (int(buf.pos), int(buf.size)) == (2, 2)
    np.testing.assert_array_equal(np.asarray(buf.data["id"]), [1, 3, 0, 0, 0])
    buf = replay.add(buf, _batch([5, 6, 7]))  # now full: pos 0, size 5
    np.testing.assert_array_equal(np.asarray(buf.data["id"]), [1, 3, 5, 6, 7])
    # full buffer: rows that are not kept must not overwrite valid entries
    buf = replay.add_masked(buf, _batch([8, 9, 10, 11]), jnp.array([False, True, False, False]))
    assert (int(buf.pos), int(buf.size)) == (1, 5)
    np.testing.assert_array_equal(np.asarray(buf.data["id"]), [9, 3, 5, 6, 7])
    _check_consistent(buf.data)
    same = replay.add_masked(buf, _batch([12, 13]), jnp.array([False, False]))
    assert (int(same.pos), int(same.size)) == (1, 5)
    np.testing.assert_array_equal(np.asarray(same.data["id"]), np.asarray(buf.data["id"]))


def test_add_casts_to_buffer_dtype():
    buf = replay.init({"x": jnp.float32(0), "i": jnp.int32(0)}, 4)
    buf = replay.add(buf, {"x": jnp.arange(2, dtype=jnp.int32), "i": jnp.array([1.0, 2.0])})
    assert buf.data["x"].dtype == jnp.float32 and buf.data["i"].dtype == jnp.int32
    np.testing.assert_array_equal(np.asarray(buf.data["i"]), [1, 2, 0, 0])


def test_sample_only_returns_written_entries():
    buf = replay.init(_example(), 64)
    buf = replay.add(buf, _batch(np.arange(1, 11)))  # ids 1..10, the rest never written (id 0)
    s = replay.sample(buf, jax.random.PRNGKey(0), 2000)
    ids = np.asarray(s["id"])
    assert ids.shape == (2000,)
    assert set(ids.tolist()) == set(range(1, 11))  # only written entries, every one of them
    _check_consistent(s)
    # after wrapping, only the entries still in the buffer
    buf = replay.init(_example(), 8)
    for start in range(1, 30, 4):
        buf = replay.add(buf, _batch(np.arange(start, start + 4)))
    s = replay.sample(buf, jax.random.PRNGKey(1), 2000)
    assert set(np.asarray(s["id"]).tolist()) == set(range(25, 33))
    _check_consistent(s)


def test_sample_is_roughly_uniform():
    buf = replay.add(replay.init(_example(), 16), _batch(np.arange(1, 5)))
    ids = np.asarray(replay.sample(buf, jax.random.PRNGKey(3), 8000)["id"])
    freq = np.bincount(ids, minlength=5)[1:] / ids.size
    np.testing.assert_allclose(freq, 0.25, atol=0.03)


def test_recent_returns_latest_in_order():
    buf = replay.init(_example(), 5)
    buf = replay.add(buf, _batch([1, 2, 3]))
    np.testing.assert_array_equal(np.asarray(replay.recent(buf, 2)["id"]), [2, 3])
    np.testing.assert_array_equal(np.asarray(replay.recent(buf, 3)["id"]), [1, 2, 3])
    buf = replay.add(buf, _batch([4, 5, 6, 7]))  # wraps: pos 2
    np.testing.assert_array_equal(np.asarray(replay.recent(buf, 3)["id"]), [5, 6, 7])
    np.testing.assert_array_equal(np.asarray(replay.recent(buf, 5)["id"]), [3, 4, 5, 6, 7])
    _check_consistent(replay.recent(buf, 5))


def _program(key, ids):
    """init -> two adds (wrapping) -> sample -> recent, as one pure function."""
    buf = replay.init(_example(), 6)
    buf = replay.add(buf, _batch(ids[:4]))
    buf = replay.add(buf, _batch(ids[4:]))
    return buf, replay.sample(buf, key, 64), replay.recent(buf, 3)


def test_jit_and_vmap_over_seeds_match_unbatched():
    keys = jax.vmap(jax.random.PRNGKey)(jnp.arange(3))
    ids = jnp.stack([jnp.arange(1, 9) + 100 * s for s in range(3)])  # 8 distinct ids per seed
    bufs, samples, recents = jax.jit(jax.vmap(_program))(keys, ids)
    np.testing.assert_array_equal(np.asarray(bufs.pos), [2, 2, 2])
    np.testing.assert_array_equal(np.asarray(bufs.size), [6, 6, 6])
    for s in range(3):
        one = jax.tree.map(lambda x, s=s: x[s], (bufs, samples, recents))
        ref = _program(keys[s], ids[s])
        jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)), one, ref)
        base = 100 * s
        np.testing.assert_array_equal(np.asarray(one[0].data["id"]), base + np.array([7, 8, 3, 4, 5, 6]))
        assert set(np.asarray(one[1]["id"]).tolist()) <= set(range(base + 3, base + 9))
        np.testing.assert_array_equal(np.asarray(one[2]["id"]), base + np.array([6, 7, 8]))
        _check_consistent(one[1])
    # seeds sample independently
    assert not np.array_equal(np.asarray(samples["id"][0]) % 100, np.asarray(samples["id"][1]) % 100)


def test_sample_from_an_empty_buffer_is_nan_not_zeros():
    buf = replay.init(_example(), 4)
    batch = replay.sample(buf, jax.random.PRNGKey(0), 3)
    assert np.isnan(np.asarray(batch["obs"]["a"])).all() and np.isnan(np.asarray(batch["done"])).all()
    assert (np.asarray(batch["id"]) == -1).all()
    full = replay.add(buf, jax.tree.map(lambda x: jnp.stack([x + 1] * 2), _example()))
    assert np.isfinite(np.asarray(replay.sample(full, jax.random.PRNGKey(0), 3)["obs"]["a"])).all()
