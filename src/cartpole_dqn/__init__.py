"""cartpole-dqn: Deep Q-Learning for CartPole and other discrete-action gymnasium tasks, many seeds at once."""

__version__ = "0.1.0"  # first: the modules below record it in what they write

from .config import Config, ConfigError, PRESETS, build, preset
from .checkpoint import CheckpointError
from .evaluate import EvalResult, Policy, evaluate, load, play, record
from .scores import plot
from .train import RunResult, resume, train

__all__ = ["CheckpointError", "Config", "ConfigError", "EvalResult", "PRESETS", "Policy", "RunResult", "build",
           "evaluate", "load", "play", "plot", "preset", "record", "resume", "train"]
