"""Whole files written atomically, and the JSON files of runs, benchmarks and checkpoints.

A write goes to a temporary file in the same folder, is flushed to disk and then renamed over the target, so a
crash at any moment leaves either the old file or the new one, never half of one; readers never see a mix.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from .errors import CheckpointError, ConfigError


def check_output(path: str | Path, flag: str) -> None:
    """Refuse, before any work is done, an output file `flag` names that could not be written: its folder does not
    exist, or a folder stands in its place. One line, naming the path."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{flag} {str(path)!r} is a folder: give a file name")
    if not path.parent.is_dir():
        raise ConfigError(f"{flag} {str(path)!r} cannot be written: the folder {str(path.parent)!r} does not exist")


def atomic_write(path: str | Path, data: bytes | str) -> None:
    """Write `data` to `path` so that readers see the old content or the new, never a mix. The file gets the mode
    a newly created file gets under the process umask (0644 under the usual 022)."""
    path = Path(path)
    raw = data.encode() if isinstance(data, str) else data
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:          # name the file the caller meant, not the temporary one
        raise OSError(e.errno, e.strerror, str(path)) from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        # mkstemp makes the file 0600, private to its owner; the renamed file would keep that.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise OSError(e.errno, e.strerror, str(path)) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: str | Path, obj: Any) -> None:
    """`obj` as indented JSON with a final newline, written atomically."""
    atomic_write(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def read_json(path: str | Path) -> Any:
    """The JSON in `path`; CheckpointError, naming the file, if it is missing or damaged."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{str(path)!r} does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{str(path)!r} is not valid JSON (truncated or corrupted?): {e}") from None


def _umask() -> int:
    """The process umask (reading it means setting it: it is put straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
