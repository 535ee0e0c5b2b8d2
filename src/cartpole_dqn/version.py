"""The package version, in a module of its own so that what records it (checkpoints, the CLI) imports it
without importing the package's API."""

__version__ = "0.1.0"
