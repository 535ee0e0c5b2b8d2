"""cartpole-dqn: Deep Q-Learning for CartPole and other discrete-action gymnasium tasks, many seeds at once.

The public API is imported on first use (PEP 562), not with the package: `cartpole_dqn.train` loads JAX and the
training loop when it is first touched, so that the CLI's `--help`, its refusals and Ctrl-C during start-up do not
wait seconds for numeric libraries they never use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .version import __version__

# Public name -> the module that defines it.
_API: dict[str, str] = {
    "CheckpointError": "errors", "ConfigError": "errors",
    "Config": "config", "PRESETS": "presets", "build": "config", "preset": "config",
    "EvalResult": "evaluation", "Policy": "evaluation", "evaluate": "evaluation", "load": "evaluation",
    "play": "evaluation", "record": "evaluation",
    "export_onnx": "export",
    "plot": "scores",
    "RunResult": "training", "resume": "training", "train": "training",
}

__all__ = ["CheckpointError", "Config", "ConfigError", "EvalResult", "PRESETS", "Policy", "RunResult", "build",
           "evaluate", "export_onnx", "load", "play", "plot", "preset", "record", "resume", "train"]

if TYPE_CHECKING:  # what type checkers and IDEs see; at run time `__getattr__` below does the importing
    from .config import Config, build, preset
    from .errors import CheckpointError, ConfigError
    from .evaluation import EvalResult, Policy, evaluate, load, play, record
    from .export import export_onnx
    from .presets import PRESETS
    from .scores import plot
    from .training import RunResult, resume, train


def __getattr__(name: str) -> Any:
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # cached: the next access is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))

