import json
import os

import pytest

from cartpole_dqn.errors import CheckpointError
from cartpole_dqn.files import atomic_write, read_json, write_json


def test_atomic_write_leaves_the_old_file_when_writing_fails(tmp_path, monkeypatch):
    f = tmp_path / "a.json"
    atomic_write(f, "old")
    monkeypatch.setattr("os.replace", lambda *a: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError):
        atomic_write(f, "new")
    assert f.read_text() == "old" and list(tmp_path.iterdir()) == [f]


@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_an_atomic_write_gets_the_mode_the_umask_gives_a_new_file(tmp_path, umask, mode):
    """Not the 0600 of the temporary file it was written to: a run's files are as readable as any other."""
    previous = os.umask(umask)
    try:
        atomic_write(tmp_path / "a.txt", "x")
        write_json(tmp_path / "b.json", {"a": 1})
    finally:
        os.umask(previous)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == mode
    assert (tmp_path / "b.json").stat().st_mode & 0o777 == mode


def test_json_round_trips_and_a_damaged_file_is_named(tmp_path):
    write_json(tmp_path / "a.json", {"x": [1, 2], "y": None})
    assert read_json(tmp_path / "a.json") == {"x": [1, 2], "y": None}
    assert (tmp_path / "a.json").read_text().endswith("\n")
    (tmp_path / "b.json").write_text(json.dumps({"x": 1})[:-1])
    with pytest.raises(CheckpointError, match="b.json.*not valid JSON"):
        read_json(tmp_path / "b.json")
    with pytest.raises(CheckpointError, match="c.json' does not exist"):
        read_json(tmp_path / "c.json")
