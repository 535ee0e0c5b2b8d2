"""`python -m cartpole_dqn` is the `cartpole-dqn` command."""

import sys

try:
    from .cli import run
except KeyboardInterrupt:  # Ctrl-C in the split second of importing the CLI: one line, as everywhere else
    print("cartpole-dqn: interrupted", file=sys.stderr)
    sys.exit(130)

run()
