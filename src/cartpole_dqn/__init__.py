"""cartpole-dqn: Deep Q-Learning for CartPole and other discrete-action gymnasium tasks, many seeds at once.

The public API is imported on first use (PEP 562), not with the package: `cartpole_dqn.train` loads JAX and the
training loop when it is first touched, so that the CLI's `--help`, its refusals and Ctrl-C during start-up do not
wait seconds for numeric libraries they never use.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

from .version import __version__

# Public name -> the module that defines it.
_API: dict[str, str] = {
    "CheckpointError": "errors", "ConfigError": "errors",
    "Config": "config", "PRESETS": "config", "build": "config", "preset": "config",
    "EvalResult": "evaluate", "Policy": "evaluate", "evaluate": "evaluate", "load": "evaluate", "play": "evaluate",
    "record": "evaluate",
    "plot": "scores",
    "RunResult": "train", "resume": "train", "train": "train",
}

__all__ = ["CheckpointError", "Config", "ConfigError", "EvalResult", "PRESETS", "Policy", "RunResult", "build",
           "evaluate", "load", "play", "plot", "preset", "record", "resume", "train"]

if TYPE_CHECKING:  # what type checkers and IDEs see; at run time `__getattr__` below does the importing
    from .config import PRESETS, Config, build, preset
    from .errors import CheckpointError, ConfigError
    from .evaluate import EvalResult, Policy, evaluate, load, play, record
    from .scores import plot
    from .train import RunResult, resume, train


def __getattr__(name: str) -> Any:
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # cached: the next access is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


class _Package(types.ModuleType):
    """The package module, keeping `cartpole_dqn.train` and `cartpole_dqn.evaluate` the API functions.

    Importing a submodule sets it as an attribute of its package; the submodules `train` and `evaluate` would then
    hide the functions of the same names, and `from cartpole_dqn import train` would hand back a module. The
    submodules stay reachable where imports look for them, in `sys.modules`.
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, types.ModuleType) and _API.get(name) == name:
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
