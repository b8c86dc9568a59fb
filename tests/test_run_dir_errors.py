"""An unwritable or full run directory is a one-line error (exit 2), and the previous checkpoint stays."""

from __future__ import annotations

import errno

from flax import serialization
from test_runner import TINY  # noqa: E402  the runner tests' tiny MASAC run, a checkpoint per chunk

from marlow import cli
from marlow.runtime import checkpoint


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def test_unwritable_run_dir(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    assert cli.main(["train", *TINY, f"run_dir={blocker / 'run'}"]) == 2
    line = _one_line(capsys.readouterr().err)
    assert "cannot write the run directory" in line and str(blocker / "run") in line


def test_full_disk_while_checkpointing_keeps_the_previous_checkpoint(tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    real = serialization.msgpack_serialize
    calls = []

    def full_on_the_third(payload):
        calls.append(1)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(payload)

    monkeypatch.setattr(checkpoint.serialization, "msgpack_serialize", full_on_the_third)
    assert cli.main(["train", *TINY, f"run_dir={run}"]) == 2
    line = _one_line(capsys.readouterr().err)
    assert "No space left on device" in line and "the previous checkpoint is kept" in line
    meta = serialization.msgpack_restore((run / "checkpoint.msgpack").read_bytes())["meta"]
    assert meta["chunk"] == 2  # the second save, intact
    assert not (run / "checkpoint.tmp").exists()
    monkeypatch.setattr(checkpoint.serialization, "msgpack_serialize", real)
    assert cli.main(["train", f"resume={run}", "progress=false"]) == 0  # and the run goes on from it
