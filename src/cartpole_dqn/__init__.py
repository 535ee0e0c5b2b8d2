"""cartpole-dqn: Deep Q-Learning for CartPole and other discrete-action gymnasium tasks, many seeds at once."""

from .config import Config, ConfigError, PRESETS, build, preset
from .train import RunResult, train

__all__ = ["Config", "ConfigError", "PRESETS", "RunResult", "build", "preset", "train"]
__version__ = "0.1.0"
