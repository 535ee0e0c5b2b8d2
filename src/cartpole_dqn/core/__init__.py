"""The compiled core: networks, replay memory, the agent's update and the training loop as pure JAX functions.

Everything one agent owns is one pytree; training is `jax.lax.scan` over env steps and `jax.vmap` over seeds, so
a chunk of training is one compiled program with no Python on the per-step path.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

# Programs that run briefly (a run's init, a greedy evaluation) are compiled on the CPU with fewer of XLA's backend
# optimisations (level 1 of 0-3): in about half the time (init: 1.3 s against 2.9 s for PQN; an evaluation: 0.8 s
# against 1.4 s, 2026-12-06), giving the same results bit for bit (tests/test_program.py) and running about as
# fast. Level 0 compiles faster still but rounds differently (no fused multiply-adds), which would change every
# run. Training's chunk keeps the default: at level 1 it ran up to 37% slower (PQN), at level 0 3 times slower.
BRIEF = {"xla_backend_optimization_level": 1}


def jit_brief(fun: Callable, **kwargs: Any) -> Callable:
    """`jax.jit(fun)` for a program that runs briefly: compiled with `BRIEF` on the CPU."""
    import jax

    return jax.jit(fun, compiler_options=BRIEF if jax.default_backend() == "cpu" else None, **kwargs)


def enable_compile_cache(folder: str | Path | None = None, min_compile_seconds: float = 0.5) -> Path:
    """Keep compiled programs on disk (default `$XDG_CACHE_HOME/cartpole-dqn/jax`, else `~/.cache/...`), so a
    second run with the same shapes starts without compiling: compile time is the user's time. Programs that
    compiled in under `min_compile_seconds` are not kept."""
    import jax

    if folder is None:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        folder = base / "cartpole-dqn" / "jax"
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", min_compile_seconds)
    return folder


def use_threads(n: int) -> None:
    """Run this process's compiled programs on `n` CPU threads (1: XLA's single-threaded Eigen, measured fastest
    for these small networks on a 2-core machine). XLA reads its flags when the first computation starts, so
    this acts only before that (training calls it first thing); thread flags already in XLA_FLAGS win."""
    flags = os.environ.get("XLA_FLAGS", "")
    if "intra_op_parallelism_threads" in flags:
        return
    pinned = f"--xla_cpu_multi_thread_eigen={'true' if n > 1 else 'false'} intra_op_parallelism_threads={n}"
    os.environ["XLA_FLAGS"] = f"{flags} {pinned}".strip()
