"""The compiled training loop: a chunk of vector steps for K seeds as one program.

Each seed's whole run is one pytree, `SeedState` (agent, replay memory or rollout, its E environments, random key,
the episodes in progress and the recent returns the solve rule averages). A chunk is `jax.lax.scan` over vector
steps of a step that is `jax.vmap` over seeds: act in E environments at once, step them (gymnax twins, inside the
program), store, learn, close finished episodes. The clock `t` (env steps per seed, E per vector step) is shared:
seeds run in lockstep, so whether learning is due depends on `t` (DQN) or on the rollout being full (PQN) alike
for every seed, and `lax.cond` really skips it instead of computing and discarding it. Episodes of the E
environments are the seed's episodes in the order they finish (environment order within a step). A seed that
solves or spends its budget freezes at that episode: its state no longer changes, so what the driver writes
describes the agent at that moment. Each step emits a record per seed; the driver keeps the episodes marked
`ended` and writes them to scores.csv between chunks. A task without a JAX twin runs the same step with
gymnasium's environments called back from inside the program.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import io_callback

from ..config import Config
from ..rules import reached
from . import agent as agent_lib
from . import hyper as hyper_lib
from . import pqn, replay
from .hyper import Hyper
from .networks import Network


class SeedState(NamedTuple):
    agent: agent_lib.AgentState
    memory: Any               # replay.Memory (dqn) or pqn.Rollout (pqn)
    env_state: Any            # the E environments' states
    obs: jax.Array            # [E, obs]
    key: jax.Array
    ep_return: jax.Array      # [E]
    ep_length: jax.Array      # [E]
    stat_sum: jax.Array       # [E, 3] loss, mean Q, |TD error| summed over the updates of each env's episode
    stat_count: jax.Array     # [E]
    episodes: jax.Array       # finished episodes
    recent: jax.Array         # [window] ring of the latest returns, for the solve rule
    solved: jax.Array
    active: jax.Array
    stopped_at: jax.Array     # env steps when the seed froze
    action: jax.Array         # [E] the actions chosen for the next step (a host task's environments wait on them)
    env_key: jax.Array        # [E] the keys the next step's environments use
    # The budgets are data, not constants of the program, so a run with another budget, or a resume that raises
    # it, finds its program in the compile cache. They come from the configuration, never from a checkpoint.
    max_steps: jax.Array
    max_episodes: jax.Array


BUDGETS = ("max_steps", "max_episodes")
_INT32_MAX = 2**31 - 1


class Record(NamedTuple):
    """One vector step of one seed: `ended` [E] marks the environments whose episode this step finished and
    counted (the rows for scores.csv, in environment order)."""

    ended: jax.Array          # [E]
    ret: jax.Array            # [E]
    length: jax.Array         # [E]
    epsilon: jax.Array
    loss: jax.Array           # [E]
    q: jax.Array              # [E]
    td: jax.Array             # [E]
    solved: jax.Array         # [E] this episode completed the first solving window
    stopped: jax.Array        # the seed froze at this step (solved, or a budget spent)


class Task(NamedTuple):
    """What the loop needs of the environment: a gymnax twin and its parameters (None for a task gymnasium plays
    on the host), and the solve rule."""

    env: Any
    params: Any
    threshold: float | None
    window: int


def budgets(cfg: Config) -> tuple[jax.Array, ...]:
    """`cfg`'s budgets (`BUDGETS`) as int32 scalars, the largest standing for none."""
    return tuple(jnp.int32(min(getattr(cfg, name), _INT32_MAX)) for name in BUDGETS)


def init_seed(cfg: Config, net: Network, task: Task, seed: int | jax.Array, obs: jax.Array | None = None,
              h: Hyper | None = None, budget: tuple[jax.Array, ...] | None = None) -> SeedState:
    """Seed `seed`'s starting state, its first actions chosen: every random number it will use descends from
    PRNGKey(seed) alone, so a seed's run is the same whatever runs beside it. A task played on the host
    (`task.env` None) passes the first observations [E, obs] its gymnasium environments gave; `h` replaces the
    hyperparameters `cfg` sets, and `budget` its budgets (passed in, they leave the program as it is)."""
    key = jax.random.PRNGKey(seed)
    key, k_net, k_env = jax.random.split(key, 3)
    e = cfg.num_envs
    if task.env is None:
        env_state = jnp.zeros(e, jnp.int32)       # the environments live on the host
    else:
        obs, env_state = jax.vmap(task.env.reset, (0, None))(env_keys(k_env, e), task.params)
    if cfg.algo == "pqn":
        memory = pqn.init(cfg.rollout_steps, e, net.obs_size)
    else:
        memory = replay.init(cfg.buffer_size, net.obs_size, e, cfg.prioritized)
    f = jnp.float32
    s = SeedState(agent_lib.init(cfg, net, k_net, h), memory, env_state, jnp.asarray(obs, f), key, jnp.zeros(e),
                  jnp.zeros(e, jnp.int32), jnp.zeros((e, 3)), jnp.zeros(e), jnp.int32(0), jnp.zeros(task.window),
                  jnp.bool_(False), jnp.bool_(True), jnp.int32(0), jnp.zeros(e, jnp.int32), env_keys(k_env, e),
                  *(budgets(cfg) if budget is None else budget))
    return choose(cfg, net, s)


def env_keys(key: jax.Array, num_envs: int) -> jax.Array:
    """Keys [E] for E environments' resets or steps. One environment takes the key itself, so a one-environment
    run draws exactly the random numbers it drew before environments came in batches."""
    return key[None] if num_envs == 1 else jax.random.split(key, num_envs)


def _updates_by(cfg: Config, t: jax.Array) -> jax.Array:
    """DQN's gradient updates made by the end of env step t: train_every x replay_ratio in a burst every
    train_every steps once the memory holds learning_starts transitions (SB3's train_freq)."""
    bursts = jnp.maximum(t - cfg.learning_starts + 1, 0) // cfg.train_every
    return jnp.floor(bursts * cfg.train_every * cfg.replay_ratio).astype(jnp.int32)


def updates_due(cfg: Config, t_prev: jax.Array, t: jax.Array) -> jax.Array:
    """DQN's gradient updates due for the env steps after t_prev up to t (one vector step of E environments)."""
    if replay.capacity(cfg.buffer_size, cfg.num_envs) < cfg.learning_starts:
        return jnp.int32(0)
    return _updates_by(cfg, t) - _updates_by(cfg, t_prev)


def _select(flag: jax.Array, new: Any, old: Any) -> Any:
    return jax.tree.map(lambda a, b: jnp.where(flag, a, b), new, old)


def observe(cfg: Config, s: SeedState, action: jax.Array, reward: jax.Array, terminated: jax.Array,
            truncated: jax.Array, final_obs: jax.Array, next_obs: jax.Array, env_state: Any) -> SeedState:
    """Store one vector step's transitions [E] and move to the next observations (nothing changes for a frozen
    seed)."""
    reward = reward.astype(jnp.float32)
    done = terminated | truncated
    h = s.agent.hyper
    stored, no_bootstrap = agent_lib.learning_signal(cfg, h, reward, terminated, truncated)
    final_obs = final_obs.astype(jnp.float32)
    if cfg.algo == "pqn":
        memory = pqn.store(s.memory, s.obs, action, stored, final_obs, no_bootstrap, done, write=s.active)
    else:
        memory = replay.add(s.memory, s.obs, action, stored, final_obs, no_bootstrap, done, gamma=h.gamma,
                            n_step=cfg.n_step, alpha=h.priority_alpha, write=s.active)
    # The memory has honoured `active` itself; only what the step moves is selected here.
    env_state, obs, ep_return, ep_length = _select(
        s.active, (env_state, next_obs.astype(jnp.float32), s.ep_return + reward, s.ep_length + 1),
        (s.env_state, s.obs, s.ep_return, s.ep_length))
    return s._replace(memory=memory, env_state=env_state, obs=obs, ep_return=ep_return, ep_length=ep_length)


def learn(cfg: Config, net: Network, s: SeedState, due: jax.Array, t: jax.Array, learner: jax.Array) -> SeedState:
    """DQN: `due` replays (each a sampled batch and an optimizer step); seeds that are not `learner` stay as they
    were."""
    h = s.agent.hyper
    lr = agent_lib.learning_rate(h, t)
    # PER's beta anneals to 1 over the step budget, so the bias correction is complete at the end.
    beta = hyper_lib.linear(h.priority_beta, 1.0, s.max_steps, t)

    def one(_, carry):
        agent, memory, key, stat_sum, stat_count = carry
        key, k_sample, k_update = jax.random.split(key, 3)
        batch = replay.sample(memory, k_sample, cfg.batch_size, replacement=cfg.replacement, beta=beta)
        new, stats = agent_lib.update(cfg, net, agent, batch, lr, k_update)
        if cfg.prioritized:
            memory = replay.update_priorities(memory, batch.index, stats["td_error"], alpha=h.priority_alpha,
                                              eps=h.priority_eps, write=learner)
        stat_sum = stat_sum + learner * jnp.stack([stats["loss"], stats["q"], stats["td"]])
        return _select(learner, new, agent), memory, key, stat_sum, stat_count + learner

    agent, memory, key, stat_sum, stat_count = jax.lax.fori_loop(
        0, due, one, (s.agent, s.memory, s.key, s.stat_sum, s.stat_count))
    return s._replace(agent=agent, memory=memory, key=key, stat_sum=stat_sum, stat_count=stat_count)


def learn_rollout(cfg: Config, net: Network, s: SeedState, t: jax.Array, learner: jax.Array) -> SeedState:
    """PQN: learn from the full rollout and start the next one; seeds that are not `learner` stay as they were."""
    key, k_update = jax.random.split(s.key)
    agent, stats = pqn.update(cfg, net, s.agent, s.memory, agent_lib.learning_rate(s.agent.hyper, t), k_update)
    learned = s._replace(agent=agent, memory=s.memory._replace(filled=jnp.int32(0)), key=key,
                         stat_sum=s.stat_sum + jnp.stack([stats["loss"], stats["q"], stats["td"]]),
                         stat_count=s.stat_count + 1)
    return _select(learner, learned, s)


def close_step(cfg: Config, task: Task, s: SeedState, done: jax.Array, updated: jax.Array,
               t: jax.Array) -> tuple[SeedState, Record]:
    """Epsilon for the next step, then the episodes that ended (if any), in environment order: their records,
    the solve rule, the budgets. A seed that stops at one of them does not count the episodes after it."""
    h = s.agent.hyper
    if cfg.epsilon_schedule == "linear":
        eps = hyper_lib.linear(h.epsilon_start, h.epsilon_end, h.epsilon_decay_steps, t)
    else:   # the article: decays once per replay, per seed
        eps = jnp.where(updated, jnp.maximum(s.agent.epsilon * h.epsilon_decay_rate, h.epsilon_end),
                        s.agent.epsilon)
    eps = jnp.where(s.active, eps, s.agent.epsilon).astype(jnp.float32)

    def close(carry, env):
        episodes, recent, open_, solved = carry
        ended = done[env] & open_
        recent = jnp.where(ended, recent.at[episodes % task.window].set(s.ep_return[env]), recent)
        episodes = episodes + ended
        solved_now = jnp.bool_(False)
        if task.threshold is not None:
            solved_now = ended & ~solved & (episodes >= task.window) & reached(recent.mean(), task.threshold)
        stop = solved_now | (ended & (episodes >= s.max_episodes))
        return (episodes, recent, open_ & ~stop, solved | solved_now), (ended, solved_now)

    (episodes, recent, open_, solved), (ended, solved_now) = jax.lax.scan(
        close, (s.episodes, s.recent, s.active, s.solved), jnp.arange(done.shape[0]))
    stop = s.active & (~open_ | (t >= s.max_steps))
    n = jnp.maximum(s.stat_count, 1.0)[:, None]
    mean = jnp.where(s.stat_count[:, None] > 0, s.stat_sum / n, jnp.nan)
    record = Record(ended, s.ep_return, s.ep_length, eps, mean[:, 0], mean[:, 1], mean[:, 2], solved_now, stop)
    reset = done & s.active
    s = s._replace(agent=s.agent._replace(epsilon=eps), episodes=episodes, recent=recent, solved=solved,
                   active=s.active & ~stop, stopped_at=jnp.where(stop, t, s.stopped_at),
                   ep_return=jnp.where(reset, 0.0, s.ep_return), ep_length=jnp.where(reset, 0, s.ep_length),
                   stat_sum=jnp.where(reset[:, None], 0.0, s.stat_sum),
                   stat_count=jnp.where(reset, 0.0, s.stat_count))
    return s, record


def choose(cfg: Config, net: Network, s: SeedState) -> SeedState:
    """Choose the next actions [E] (epsilon-greedy, or noisy) and the keys [E] the environments' steps may use.
    They are chosen at the end of a step, not the start of the next, so that a host task's next actions are part
    of the state (and of a checkpoint)."""
    key, k_act, k_env = jax.random.split(s.key, 3)
    action = agent_lib.act(net, s.agent.params, s.obs, s.agent.epsilon, k_act, cfg.noisy)
    return s._replace(key=key, action=action.astype(jnp.int32), env_key=env_keys(k_env, cfg.num_envs))


def _tick(cfg: Config, t: jax.Array, states: SeedState) -> jax.Array:
    """The clock after the next vector step of E env steps. It stops at the step budget, where every seed has
    frozen: a chunk that runs past it changes nothing, so a resumed run with a larger budget continues from the
    budget's end."""
    return jnp.minimum(t + cfg.num_envs, states.max_steps.max())


def _learn_and_close(cfg: Config, net: Network, task: Task, t_prev: jax.Array, t: jax.Array, states: SeedState,
                     done: jax.Array) -> tuple[SeedState, Record]:
    """After every seed has observed the vector step to env step t: the updates due, then epsilon and the
    episodes that ended. `lax.cond` really skips the learning when none is due."""
    if cfg.algo == "pqn":
        learners = states.active & pqn.is_full(states.memory)
        states = jax.lax.cond(learners.any(), lambda s: jax.vmap(learn_rollout, (None, None, 0, None, 0))(
            cfg, net, s, t, learners), lambda s: s, states)
        updated = learners
    else:
        learners = states.active if cfg.update_on_episode_end else states.active & ~done.any(axis=-1)
        due = updates_due(cfg, t_prev, t)
        states = jax.lax.cond(due > 0, lambda s: jax.vmap(learn, (None, None, 0, None, None, 0))(
            cfg, net, s, due, t, learners), lambda s: s, states)
        updated = learners & (due > 0)
    return jax.vmap(close_step, (None, None, 0, 0, 0, None))(cfg, task, states, done, updated, t)


def vector_steps(cfg: Config, env_steps: int) -> int:
    """Vector steps (E env steps each) that make up a chunk of `env_steps` env steps per seed, at least one."""
    return max(1, -(-env_steps // cfg.num_envs))


def _first_n(step: Callable, length: int) -> Callable:
    """`run(carry, n) -> (carry, records [length, ...])`: `step` n <= `length` times, each step's record written
    into a buffer of `length` (the rest zeros: nothing ended), so one compiled chunk runs any shorter stretch (to
    the next evaluation, say) without another program. A while loop, not a scan of masked steps: a branch per step
    would copy the whole state (replay memory included) every step."""

    def run(carry, n):
        shape = jax.eval_shape(lambda c: step(c, None)[1], carry)
        records = jax.tree.map(lambda a: jnp.zeros((length, *a.shape), a.dtype), shape)

        def body(c):
            j, carry, records = c
            carry, record = step(carry, None)
            return j + 1, carry, jax.tree.map(lambda buffer, r: buffer.at[j].set(r), records, record)

        _, carry, records = jax.lax.while_loop(lambda c: c[0] < n, body, (jnp.int32(0), carry, records))
        return carry, records

    return run


HostStep = Callable[[np.ndarray], tuple[np.ndarray, ...]]


def make_chunk(cfg: Config, net: Network, task: Task, length: int, host_step: HostStep | None = None) -> Callable:
    """`chunk(t, states, n) -> ((t, states), records)`: n <= `length` vector steps (E env steps each) of every
    seed in `states` (a SeedState with a leading seed axis), records [length, K, ...] (the first n filled). Pure;
    jit it once and call it between the driver's chores.

    A task without a JAX twin (`task.env` None) is played by gymnasium on the host: each step calls
    `host_step(actions [K * E])` (an ordered `io_callback`; seed k's environments are k * E ... k * E + E - 1),
    which returns numpy (next_obs, final_obs [K * E, obs], reward, terminated, truncated [K * E]). Everything else
    runs compiled, and the random stream is the twin's: the same splits in the same order."""

    def twin_step(states: SeedState):
        step = jax.vmap(jax.vmap(task.env.step, (0, 0, 0, None)), (0, 0, 0, None))
        obs, env_state, reward, terminated, truncated, info = step(states.env_key, states.env_state, states.action,
                                                                   task.params)
        return obs, info["final_observation"], reward, terminated, truncated, env_state

    def host(actions):
        k, e = actions.shape
        out = host_step(np.asarray(actions).reshape(-1))
        return tuple(np.asarray(a, dtype).reshape(k, e, *np.shape(a)[1:])
                     for a, dtype in zip(out, (np.float32, np.float32, np.float32, bool, bool)))

    def host_env_step(states: SeedState):
        k, e, n = states.obs.shape
        f, b = jnp.float32, jnp.bool_
        shapes = tuple(jax.ShapeDtypeStruct(shape, dtype) for shape, dtype in
                       (((k, e, n), f), ((k, e, n), f), ((k, e), f), ((k, e), b), ((k, e), b)))
        return (*io_callback(host, shapes, states.action, ordered=True), states.env_state)

    env_step = host_env_step if task.env is None else twin_step

    def step(carry, _):
        t_prev, states = carry
        t = _tick(cfg, t_prev, states)
        obs, final_obs, reward, terminated, truncated, env_state = env_step(states)
        states = jax.vmap(observe, (None, 0, 0, 0, 0, 0, 0, 0, 0))(
            cfg, states, states.action, reward, terminated, truncated, final_obs, obs, env_state)
        states, record = _learn_and_close(cfg, net, task, t_prev, t, states, terminated | truncated)
        return (t, jax.vmap(choose, (None, None, 0))(cfg, net, states)), record

    def chunk(t: jax.Array, states: SeedState, n: jax.Array):
        return _first_n(step, length)((t, states), n)

    return chunk
