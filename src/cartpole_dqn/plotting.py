"""Figures written to files: matplotlib on its Agg backend (no window, no display needed), imported on first use.

matplotlib takes a second to import, so only what draws imports it, through `pyplot`; `save_png` writes a figure
atomically (files.py), so a reader never sees half a PNG.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from .files import atomic_write


def pyplot() -> Any:
    """matplotlib.pyplot, set to draw into files (the Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_png(fig: Any, path: str | Path) -> None:
    """Lay out `fig`, write it to `path` as PNG (atomically) and close it."""
    plt = pyplot()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    atomic_write(path, buf.getvalue())
