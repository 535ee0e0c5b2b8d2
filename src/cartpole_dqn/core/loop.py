"""The compiled training loop: a chunk of env steps for K seeds as one program.

Each seed's whole run is one pytree, `SeedState` (agent, replay memory, environment, random key, the episode in
progress and the recent returns the solve rule averages). A chunk is `jax.lax.scan` over env steps of a step
that is `jax.vmap` over seeds: act, step the environment (a gymnax twin, inside the program), store, learn, close
finished episodes. The clock `t` (env steps per seed) is shared: seeds run in lockstep, so whether an update is
due depends on `t` alone, and `lax.cond` on it really skips the update instead of computing and discarding it.
A seed that solves or spends its budget freezes at that step: its state no longer changes, so what the driver
writes describes the agent at that moment. Each step emits a record per seed; the driver keeps those whose
`ended` flag is set (one per finished episode) and writes them to scores.csv between chunks. A task without a JAX
twin runs the same step with gymnasium's environments called back from inside the program (`make_host_chunk`).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import io_callback

from ..config import Config
from . import agent as agent_lib
from . import replay
from .networks import Network


class SeedState(NamedTuple):
    agent: agent_lib.AgentState
    memory: replay.Memory
    env_state: Any
    obs: jax.Array
    key: jax.Array
    ep_return: jax.Array
    ep_length: jax.Array
    stat_sum: jax.Array       # [3] loss, mean Q, |TD error| summed over this episode's updates
    stat_count: jax.Array
    episodes: jax.Array       # finished episodes
    recent: jax.Array         # [window] ring of the latest returns, for the solve rule
    solved: jax.Array
    active: jax.Array
    stopped_at: jax.Array     # env steps when the seed froze


class Record(NamedTuple):
    """One step of one seed; `ended` marks the step that finished an episode (the row for scores.csv)."""

    ended: jax.Array
    ret: jax.Array
    length: jax.Array
    epsilon: jax.Array
    loss: jax.Array
    q: jax.Array
    td: jax.Array
    solved: jax.Array         # this episode completed the first solving window
    stopped: jax.Array        # the seed froze at this step (solved, or a budget spent)


class Task(NamedTuple):
    """What the loop needs of the environment: a gymnax twin and its parameters (None for a task gymnasium plays
    on the host), and the solve rule."""

    env: Any
    params: Any
    threshold: float | None
    window: int


def init_seed(cfg: Config, net: Network, task: Task, seed: int | jax.Array,
              obs: jax.Array | None = None) -> SeedState:
    """Seed `seed`'s starting state: every random number it will use descends from PRNGKey(seed) alone, so a
    seed's run is the same whatever runs beside it. A task played on the host (`task.env` None) passes the first
    observation its gymnasium environment gave."""
    key = jax.random.PRNGKey(seed)
    key, k_net, k_env = jax.random.split(key, 3)
    if task.env is None:
        env_state = jnp.int32(0)       # the environment lives on the host
    else:
        obs, env_state = task.env.reset(k_env, task.params)
    f = jnp.float32
    return SeedState(agent_lib.init(cfg, net, k_net), replay.init(cfg.buffer_size, net.obs_size, cfg.prioritized),
                     env_state, jnp.asarray(obs, f), key, f(0), jnp.int32(0), jnp.zeros(3), f(0), jnp.int32(0),
                     jnp.zeros(task.window), jnp.bool_(False), jnp.bool_(True), jnp.int32(0))


def updates_due(cfg: Config, t: jax.Array) -> jax.Array:
    """Gradient updates after env step t (1-based, per seed): none before the memory holds learning_starts
    transitions, then train_every x replay_ratio in a burst every train_every steps (SB3's train_freq)."""
    if cfg.buffer_size < cfg.learning_starts:
        return jnp.int32(0)
    learn_steps = t - cfg.learning_starts + 1
    rr = cfg.replay_ratio
    burst = (jnp.floor(learn_steps * rr) - jnp.floor((learn_steps - cfg.train_every) * rr)).astype(jnp.int32)
    return jnp.where((learn_steps > 0) & (learn_steps % cfg.train_every == 0), burst, 0)


def _select(flag: jax.Array, new: Any, old: Any) -> Any:
    return jax.tree.map(lambda a, b: jnp.where(flag, a, b), new, old)


def observe(cfg: Config, s: SeedState, action: jax.Array, reward: jax.Array, terminated: jax.Array,
            truncated: jax.Array, final_obs: jax.Array, next_obs: jax.Array, env_state: Any) -> SeedState:
    """Store one step's transition and move to the next observation (nothing changes for a frozen seed)."""
    reward = reward.astype(jnp.float32)
    done = terminated | truncated
    stored, no_bootstrap = agent_lib.learning_signal(cfg, reward, terminated, truncated)
    memory = replay.add(s.memory, s.obs, action, stored, final_obs.astype(jnp.float32), no_bootstrap, done,
                        gamma=cfg.gamma, n_step=cfg.n_step, alpha=cfg.priority_alpha, write=s.active)
    # The memory has honoured `active` itself; only what the step moves is selected here.
    env_state, obs, ep_return, ep_length = _select(
        s.active, (env_state, next_obs.astype(jnp.float32), s.ep_return + reward, s.ep_length + 1),
        (s.env_state, s.obs, s.ep_return, s.ep_length))
    return s._replace(memory=memory, env_state=env_state, obs=obs, ep_return=ep_return, ep_length=ep_length)


def learn(cfg: Config, net: Network, s: SeedState, due: jax.Array, t: jax.Array, learner: jax.Array) -> SeedState:
    """`due` replays (each a sampled batch and an optimizer step); seeds that are not `learner` stay as they were."""
    lr = agent_lib.learning_rate(cfg, t)
    # PER's beta anneals to 1 over the step budget, so the bias correction is complete at the end.
    beta = cfg.priority_beta + (1.0 - cfg.priority_beta) * jnp.minimum(1.0, t / cfg.max_steps)

    def one(_, carry):
        agent, memory, key, stat_sum, stat_count = carry
        key, k_sample, k_update = jax.random.split(key, 3)
        batch = replay.sample(memory, k_sample, cfg.batch_size, replacement=cfg.replacement, beta=beta)
        new, stats = agent_lib.update(cfg, net, agent, batch, lr, k_update)
        if cfg.prioritized:
            memory = replay.update_priorities(memory, batch.index, stats["td_error"], alpha=cfg.priority_alpha,
                                              eps=cfg.priority_eps, write=learner)
        stat_sum = stat_sum + learner * jnp.stack([stats["loss"], stats["q"], stats["td"]])
        return _select(learner, new, agent), memory, key, stat_sum, stat_count + learner

    agent, memory, key, stat_sum, stat_count = jax.lax.fori_loop(
        0, due, one, (s.agent, s.memory, s.key, s.stat_sum, s.stat_count))
    return s._replace(agent=agent, memory=memory, key=key, stat_sum=stat_sum, stat_count=stat_count)


def close_step(cfg: Config, task: Task, s: SeedState, done: jax.Array, updated: jax.Array,
               t: jax.Array) -> tuple[SeedState, Record]:
    """Epsilon for the next step, then the episode that ended (if any): its record, the solve rule, the budgets."""
    if cfg.epsilon_schedule == "linear":
        eps = cfg.epsilon_start + jnp.minimum(1.0, t / cfg.epsilon_decay_steps) * (cfg.epsilon_end - cfg.epsilon_start)
    else:   # the article: decays once per replay, per seed
        eps = jnp.where(updated, jnp.maximum(s.agent.epsilon * cfg.epsilon_decay_rate, cfg.epsilon_end),
                        s.agent.epsilon)
    eps = jnp.where(s.active, eps, s.agent.epsilon).astype(jnp.float32)
    ended = done & s.active
    episodes = s.episodes + ended
    recent = jnp.where(ended, s.recent.at[s.episodes % task.window].set(s.ep_return), s.recent)
    solved_now = jnp.bool_(False)
    if task.threshold is not None:
        # float32 sums of the window can be off by an ulp; a window exactly at the threshold must count.
        tol = 1e-5 * max(1.0, abs(task.threshold))
        solved_now = ended & ~s.solved & (episodes >= task.window) & (recent.mean() >= task.threshold - tol)
    stop = solved_now | (ended & (episodes >= cfg.max_episodes)) | (s.active & (t >= cfg.max_steps))
    n = jnp.maximum(s.stat_count, 1.0)
    mean = jnp.where(s.stat_count > 0, s.stat_sum / n, jnp.nan)
    record = Record(ended, s.ep_return, s.ep_length, eps, mean[0], mean[1], mean[2], solved_now, stop)
    s = s._replace(agent=s.agent._replace(epsilon=eps), episodes=episodes, recent=recent,
                   solved=s.solved | solved_now, active=s.active & ~stop,
                   stopped_at=jnp.where(stop, t, s.stopped_at),
                   ep_return=jnp.where(ended, 0.0, s.ep_return), ep_length=jnp.where(ended, 0, s.ep_length),
                   stat_sum=jnp.where(ended, 0.0, s.stat_sum), stat_count=jnp.where(ended, 0.0, s.stat_count))
    return s, record


def choose(cfg: Config, net: Network, s: SeedState) -> tuple[SeedState, jax.Array, jax.Array]:
    """The next action (epsilon-greedy, or noisy) and the key the environment's step may use."""
    key, k_act, k_env = jax.random.split(s.key, 3)
    action = agent_lib.act(net, s.agent.params, s.obs, s.agent.epsilon, k_act, cfg.noisy)
    return s._replace(key=key), action, k_env


def _tick(cfg: Config, t: jax.Array) -> jax.Array:
    """The next env step. The clock stops at the step budget, where every seed has frozen: a chunk that runs past
    it changes nothing, so a resumed run with a larger budget continues from the budget's end."""
    return jnp.minimum(t + 1, cfg.max_steps)


def _learn_and_close(cfg: Config, net: Network, task: Task, t: jax.Array, states: SeedState,
                     done: jax.Array) -> tuple[SeedState, Record]:
    """After every seed has observed env step t: the updates due, then epsilon and the episodes that ended."""
    learners = states.active if cfg.update_on_episode_end else states.active & ~done
    due = updates_due(cfg, t)
    states = jax.lax.cond(due > 0, lambda s: jax.vmap(learn, (None, None, 0, None, None, 0))(
        cfg, net, s, due, t, learners), lambda s: s, states)
    return jax.vmap(close_step, (None, None, 0, 0, 0, None))(cfg, task, states, done, learners & (due > 0), t)


def make_chunk(cfg: Config, net: Network, task: Task, length: int) -> Callable:
    """`chunk(t, states) -> ((t, states), records)`: `length` env steps of every seed in `states` (a SeedState
    with a leading seed axis), records [length, K]. Pure; jit it once and call it between the driver's chores."""

    def env_part(s: SeedState) -> tuple[SeedState, jax.Array]:
        s, action, k_env = choose(cfg, net, s)
        obs, env_state, reward, terminated, truncated, info = task.env.step(k_env, s.env_state, action, task.params)
        s = observe(cfg, s, action, reward, terminated, truncated, info["final_observation"], obs, env_state)
        return s, terminated | truncated

    def step(carry, _):
        t, states = carry
        t = _tick(cfg, t)
        states, done = jax.vmap(env_part)(states)
        states, record = _learn_and_close(cfg, net, task, t, states, done)
        return (t, states), record

    def chunk(t: jax.Array, states: SeedState):
        return jax.lax.scan(step, (t, states), None, length=length)

    return chunk


def make_host_chunk(cfg: Config, net: Network, task: Task, length: int,
                    step_envs: Callable) -> tuple[Callable, Callable]:
    """For a task without a JAX twin, played by gymnasium on the host: `first(states) -> (states, actions)`, and
    `chunk(t, states, actions) -> ((t, states, actions), records)`, `length` env steps as one program like
    `make_chunk`'s. Each step calls `step_envs(actions [K])` on the host (an ordered `io_callback`), which returns
    numpy (next_obs [K, obs], final_obs [K, obs], reward [K], terminated [K], truncated [K]); everything else runs
    compiled. The random stream is the in-program chunk's: the same splits in the same order."""

    def first(states: SeedState) -> tuple[SeedState, jax.Array]:
        states, actions, _ = jax.vmap(choose, (None, None, 0))(cfg, net, states)
        return states, actions

    def host(actions):
        next_obs, final_obs, reward, terminated, truncated = step_envs(np.asarray(actions))
        return (next_obs.astype(np.float32), final_obs.astype(np.float32), reward.astype(np.float32),
                terminated.astype(bool), truncated.astype(bool))

    def chunk(t: jax.Array, states: SeedState, actions: jax.Array):
        k, n = states.obs.shape
        shapes = (jax.ShapeDtypeStruct((k, n), jnp.float32), jax.ShapeDtypeStruct((k, n), jnp.float32),
                  jax.ShapeDtypeStruct((k,), jnp.float32), jax.ShapeDtypeStruct((k,), jnp.bool_),
                  jax.ShapeDtypeStruct((k,), jnp.bool_))

        def step(carry, _):
            t, states, actions = carry
            next_obs, final_obs, reward, terminated, truncated = io_callback(host, shapes, actions, ordered=True)
            t = _tick(cfg, t)
            states = jax.vmap(observe, (None, 0, 0, 0, 0, 0, 0, 0, 0))(
                cfg, states, actions, reward, terminated, truncated, final_obs, next_obs, states.env_state)
            states, record = _learn_and_close(cfg, net, task, t, states, terminated | truncated)
            states, actions = first(states)
            return (t, states, actions), record

        return jax.lax.scan(step, (t, states, actions), None, length=length)

    return first, chunk
