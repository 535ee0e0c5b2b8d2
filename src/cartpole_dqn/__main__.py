"""`python -m cartpole_dqn` is the `cartpole-dqn` command."""

import sys

from .cli import main

sys.exit(main())
