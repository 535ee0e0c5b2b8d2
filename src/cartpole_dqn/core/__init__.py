"""The compiled core: networks, replay memory, the agent's update and the training loop as pure JAX functions.

Everything one agent owns is one pytree; training is `jax.lax.scan` over env steps and `jax.vmap` over seeds, so
a chunk of training is one compiled program with no Python on the per-step path.
"""
