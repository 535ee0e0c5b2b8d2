"""Evaluation, recording, play, plots, live metrics and the Python API after training."""

import csv
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cartpole_dqn import evaluate, load, play, plot, preset, record
from cartpole_dqn.cli import main
from cartpole_dqn.config import ConfigError
from cartpole_dqn.evaluation import greedy_returns
from tests.conftest import balancer, run_cli, tiny, write_run

from cartpole_dqn import evaluation as module



@pytest.fixture(scope="module")
def k_run(tmp_path_factory):
    """Two seeds without training: seed 0 balances the pole to the cap, seed 1 is a fresh network that topples it
    within a few dozen steps."""
    net, balancing = balancer()
    return write_run(tmp_path_factory.mktemp("eval") / "k", net, [balancing, net.init(jax.random.PRNGKey(1))])


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    from cartpole_dqn import train

    out = tmp_path_factory.mktemp("eval") / "trained"
    train(tiny(seeds=2, max_steps=300, final_eval_episodes=4), out, verbose=False)
    return out


def test_evaluate_of_a_solved_cartpole_agent_scores_above_the_threshold(tmp_path, capsys):
    """Train a small default-preset agent, extending the budget (resume) until greedy play solves the rule."""
    from cartpole_dqn import resume, train

    out = tmp_path / "solve"
    # Measured for these settings: greedy means of 173 after 4,000 steps, 474 after 5,000 (one resume).
    cfg = preset("sample-efficient", hidden=(64, 64), rule="article", max_steps=4000, eval_every=0,
                 final_eval_episodes=0,
                 plot_every=0)
    train(cfg, out, verbose=False)
    threshold = cfg.solve_score or 195.0
    for extra in range(6):
        result = evaluate(out, episodes=20, seed=123)
        if result.mean > threshold:
            break
        resume(out, max_steps=4000 + 1000 * (extra + 1), verbose=False)
    assert result.mean > threshold
    assert main(["evaluate", str(out), "--episodes", "20", "--seed", "123"]) == 0
    assert f"{result.mean:.1f} +-" in capsys.readouterr().out


def test_evaluate_of_a_balancing_agent_scores_above_the_threshold_in_the_api_and_the_cli(k_run):
    result = evaluate(k_run / "seed-0", episodes=20, seed=123)
    assert result.mean > 475.0 and result.returns.shape == (1, 20)
    r = run_cli("evaluate", str(k_run / "seed-0"), "--episodes", "20", "--seed", "123")
    assert r.returncode == 0 and f"{result.mean:.1f} +-" in r.stdout, r.stderr


def test_evaluate_reproduces_the_final_greedy_score(trained_run):
    result = evaluate(trained_run, episodes=4)
    summary = json.loads((trained_run / "summary.json").read_text())
    assert [round(float(np.mean(r)), 3) for r in result.returns] == [s["final_greedy_score"]
                                                                      for s in summary["per_seed"]]


def test_an_evaluation_compiled_as_a_brief_program_plays_the_episodes_of_the_default_compilation():
    """`core.jit_brief` compiles evaluations with fewer optimisations: the same returns, to the last bit, for a
    network that balances to the cap and one that topples the pole, greedy and epsilon-greedy."""
    net, balancing = balancer()
    params = jax.tree.map(lambda a, b: jnp.stack([a, b]), balancing, net.init(jax.random.PRNGKey(1)))
    keys = jax.random.split(jax.random.PRNGKey(7), 2)
    for epsilon in (0.0, 0.1):
        brief = module._twin_returns(module.net_act(net), 2, "CartPole-v1", 20, epsilon)
        returns = np.asarray(brief(params, keys))
        assert returns[0].max() == 500 and returns[1].max() < 100
        np.testing.assert_array_equal(returns, np.asarray(jax.jit(brief.__wrapped__)(params, keys)))


def test_evaluate_prints_a_line_per_seed_and_writes_every_return(k_run, tmp_path, capsys):
    assert main(["evaluate", str(k_run), "--episodes", "3", "--json", str(tmp_path / "e.json")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("seed 0: ") and lines[1].startswith("seed 1: ") and lines[2].startswith("all 2 seeds")
    assert all("+-" in line and "min" in line and "max" in line for line in lines)
    data = json.loads((tmp_path / "e.json").read_text())
    assert [len(s["returns"]) for s in data["per_seed"]] == [3, 3] and "aggregate" in data


def test_epsilon_and_seed_change_the_episodes_reproducibly(k_run):
    a, b = evaluate(k_run / "seed-0", episodes=5, seed=7, epsilon=0.5), evaluate(k_run / "seed-0", episodes=5,
                                                                                  seed=7, epsilon=0.5)
    assert np.array_equal(a.returns, b.returns)
    assert not np.array_equal(a.returns, evaluate(k_run / "seed-0", episodes=5, seed=8, epsilon=0.5).returns)
    with pytest.raises(ConfigError, match="--epsilon"):
        evaluate(k_run, epsilon=2.0)


def _seed_1(policy):
    return jax.tree.map(lambda x: x[1:], policy.params)


def test_an_evaluation_is_a_function_of_its_base_and_number_and_compiles_once(k_run):
    policy = load(k_run)
    play = lambda seeds=policy.seeds, params=policy.params, **at: greedy_returns(
        policy.net, params, policy.env, seeds, 6, epsilon=0.5, **at)
    a = play(base=7, number=1)
    assert a.shape == (2, 6)
    assert np.array_equal(a, play(base=7, number=1))
    assert not np.array_equal(a, play(base=7, number=2)) and not np.array_equal(a, play(base=8, number=1))
    twin = module._twin_returns(module.net_act(policy.net), 2, policy.env, 6, 0.5)
    assert twin._cache_size() == 1     # one program for all four
    assert np.array_equal(a[1:], play([1], _seed_1(policy), base=7, number=1))   # whatever plays beside it


def test_a_task_without_a_twin_plays_reproducibly_on_the_host(k_run, monkeypatch):
    policy = load(k_run)
    monkeypatch.setattr(module, "has_twin", lambda env_id: False)
    play = lambda seeds=policy.seeds, params=policy.params, epsilon=0.5, number=1: greedy_returns(
        policy.net, params, policy.env, seeds, 5, base=7, number=number, epsilon=epsilon)
    a = play()
    assert a.shape == (2, 5) and np.array_equal(a, play()) and not np.array_equal(a, play(number=2))
    assert np.array_equal(a[1:], play([1], _seed_1(policy)))
    greedy = play(epsilon=0.0)
    assert (greedy[0] == 500).all() and (greedy[1] < 100).all()


def test_a_recorded_gif_has_one_frame_per_step(k_run, tmp_path):
    import imageio.v3 as iio

    rec = record(k_run / "seed-1" / "model.safetensors", tmp_path / "agent.gif", episodes=2, fps=25)
    frames = iio.imread(tmp_path / "agent.gif", index=None)
    assert len(rec.returns) == 2 and rec.frames == sum(rec.returns) == len(frames)   # CartPole: +1 per step
    assert frames.shape[1:3] == (400, 600)


def test_record_on_a_headless_machine_prints_no_error(k_run, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "SDL_VIDEODRIVER")}
    r = run_cli("record", str(k_run / "seed-1"), "--out", str(tmp_path / "a.gif"), env=env)
    assert r.returncode == 0 and "error" not in r.stderr.lower(), r.stderr
    assert "Recorded" in r.stdout


def test_record_writes_an_mp4_and_refuses_unknown_extensions(k_run, tmp_path, capsys):
    rec = record(k_run, tmp_path / "agent.mp4")          # seed 0, the balancer: a whole 500-step episode
    assert (tmp_path / "agent.mp4").stat().st_size > 1000 and rec.frames == rec.returns[0] == 500
    assert main(["record", str(k_run), "--out", str(tmp_path / "agent.avi")]) == 2
    err = capsys.readouterr().err
    assert "unknown extension '.avi'" in err and err.count("\n") == 1
    assert not (tmp_path / "agent.avi").exists()


@pytest.mark.parametrize("missing,name", [("imageio_ffmpeg", "agent.mp4"), ("imageio", "agent.gif")])
def test_record_without_its_extra_refuses_before_playing_a_frame(k_run, tmp_path, monkeypatch, capsys, missing,
                                                                  name):
    import sys

    played = []
    monkeypatch.setattr(module, "_episodes", lambda *a, **k: played.append(1) or iter(()))
    monkeypatch.setitem(sys.modules, missing, None)
    assert main(["record", str(k_run), "--out", str(tmp_path / name)]) == 2
    err = capsys.readouterr().err
    assert "pip install 'cartpole-dqn[record]'" in err and missing in err and err.count("\n") == 1
    assert played == [] and not (tmp_path / name).exists()


def test_play_without_a_display_says_so(k_run, monkeypatch, capsys):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with pytest.raises(ConfigError, match="needs a display"):
        play(k_run)
    assert main(["play", str(k_run)]) == 2
    assert "needs a display" in capsys.readouterr().err


def test_another_runs_model_in_a_run_folder_is_one_line_naming_both_environments(tmp_path, monkeypatch, capsys):
    """Acrobot's model copied into a CartPole run: evaluate, record and play refuse it instead of playing Acrobot."""
    from cartpole_dqn.checkpoint import save_model
    from cartpole_dqn.config import to_dict
    from cartpole_dqn.core.networks import Network

    net = Network(6, 3, (16, 16))
    save_model(tmp_path / "model.safetensors", net, net.init(jax.random.PRNGKey(0)), {"env": "Acrobot-v1", "seed": 0})
    (tmp_path / "config.json").write_text(json.dumps(to_dict(tiny())))
    monkeypatch.setenv("DISPLAY", ":99")             # play gets as far as loading the model
    says = (f"is not this run's: it has env='Acrobot-v1'; {str(tmp_path / 'config.json')!r} records "
            "env='CartPole-v1'")
    for cmd in (["evaluate", str(tmp_path), "--episodes", "1"], ["evaluate", str(tmp_path / "model.safetensors")],
                ["record", str(tmp_path), "--out", str(tmp_path / "a.gif")], ["play", str(tmp_path)]):
        assert main(cmd) == 2, cmd
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and says in err, (cmd, err)
    assert not (tmp_path / "a.gif").exists()
    (tmp_path / "config.json").write_text(json.dumps(to_dict(tiny(env="Acrobot-v1"))))
    assert load(tmp_path).env == "Acrobot-v1"           # in its own run it loads


def test_plot_redraws_a_run_and_overlays_seeds_and_runs(trained_run, tmp_path):
    single = trained_run / "seed-0"
    (single / "scores.png").unlink()
    assert plot([single]) == single / "scores.png" and (single / "scores.png").read_bytes()[:4] == b"\x89PNG"
    assert plot([trained_run], tmp_path / "k.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["plot", str(trained_run / "seed-0"), str(trained_run / "seed-1"), "--out",
                 str(tmp_path / "two.png")]) == 0
    assert (tmp_path / "two.png").exists()


def test_tensorboard_writes_the_live_scalars(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from cartpole_dqn import train

    train(tiny(max_steps=300), tmp_path / "tb", verbose=False, tensorboard=True)
    acc = EventAccumulator(str(tmp_path / "tb" / "tb"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    for tag in ("episode/return", "episode/rolling_mean_100", "train/epsilon", "train/loss", "train/mean_q",
                "train/td_error", "speed/env_steps_per_s"):
        assert tag in tags, tag


def test_tensorboard_missing_is_one_clear_error(tmp_path, monkeypatch):
    import builtins

    from cartpole_dqn import train

    real = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name.startswith("tensorboardX"):
            raise ImportError("no tensorboard")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    with pytest.raises(ConfigError, match=r"cartpole-dqn\[tensorboard\]"):
        train(tiny(max_steps=50), tmp_path / "n", verbose=False, tensorboard=True)


def test_tensorboard_not_installed_is_refused_before_the_run_folder_exists(tmp_path, monkeypatch):
    import sys

    from cartpole_dqn import train

    monkeypatch.setitem(sys.modules, "tensorboardX", None)
    with pytest.raises(ConfigError, match=r"pip install 'cartpole-dqn\[tensorboard\]'"):
        train(tiny(max_steps=50), tmp_path / "n", verbose=False, tensorboard=True)
    assert not (tmp_path / "n").exists()


def test_the_api_and_the_cli_give_the_same_results_for_one_seed(tmp_path):
    from cartpole_dqn import train

    api = train(tiny(max_steps=500, seed=3, final_eval_episodes=5), tmp_path / "api", verbose=False)
    assert main(["train", "--preset", "sample-efficient", "--out", str(tmp_path / "cli"), "--max-steps", "500",
                 "--seed", "3", "--eval-every", "0",
                 "--set", "hidden=16,16", "--set", "learning_starts=32", "--set", "batch_size=8",
                 "--set", "final_eval_episodes=5", "--set", "plot_every=0", "--quiet"]) == 0
    rows = lambda d: [{k: v for k, v in row.items() if k != "wall_seconds"}
                      for row in csv.DictReader(open(d / "scores.csv"))]
    assert rows(tmp_path / "api") == rows(tmp_path / "cli")
    cli_summary = json.loads((tmp_path / "cli" / "summary.json").read_text())
    assert cli_summary["final_greedy_score"] == api.summaries[0]["final_greedy_score"]
    a = evaluate(tmp_path / "api", episodes=5)
    assert main(["evaluate", str(tmp_path / "cli"), "--episodes", "5", "--json", str(tmp_path / "e.json")]) == 0
    assert json.loads((tmp_path / "e.json").read_text())["per_seed"][0]["returns"] == a.returns[0].tolist()
    assert load(tmp_path / "api").seeds == [3]


def test_the_quickstart_notebook_is_valid_and_uses_only_the_public_api():
    import ast
    from pathlib import Path

    import cartpole_dqn

    nb = json.loads((Path(__file__).parents[1] / "examples" / "quickstart.ipynb").read_text())
    assert nb["nbformat"] == 4
    source = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module == "cartpole_dqn":
            assert all(hasattr(cartpole_dqn, a.name) for a in node.names)


def test_the_quickstart_notebook_runs_top_to_bottom_and_is_committed_with_its_outputs(tmp_path):
    """Executed as a reader would run it (nbclient, a fresh kernel), on a small budget: every cell runs, the plots
    and the GIF it displays are made. The committed copy carries its outputs, so they show where people read it."""
    from pathlib import Path

    import nbclient
    import nbformat

    path = Path(__file__).parents[1] / "examples" / "quickstart.ipynb"
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]

    def images(cells):
        return [o for c in cells for o in c.get("outputs", []) if any(k.startswith("image/") for k in o.get("data", {}))]

    committed = "".join(o.get("text", "") for c in code for o in c.get("outputs", []))
    assert len(images(code)) == 3 and "Solved" in committed, "commit the notebook executed, with its outputs"
    budget = "max_steps=60_000"
    assert sum(budget in c.source for c in code) == 1
    for c in code:
        c.source = c.source.replace(budget, "max_steps=2_000")
        c.outputs = []
    nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    assert len(images(code)) == 3              # scores.png, the overlay, the GIF
    assert (tmp_path / "agent.gif").exists() and (tmp_path / "runs" / "quickstart" / "seed-2" / "scores.csv").exists()


@pytest.mark.parametrize("command", ["evaluate", "record", "play"])
@pytest.mark.parametrize("seed", [-1, 2**31])
def test_an_episode_seed_out_of_range_is_one_line_naming_it_and_the_range(k_run, tmp_path, capsys, monkeypatch,
                                                                          command, seed):
    monkeypatch.setenv("DISPLAY", ":0")           # play reaches the seed check, not the display check
    out = ["--out", str(tmp_path / "a.gif")] if command == "record" else []
    assert main([command, str(k_run), "--seed", str(seed), *out]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"--seed {seed} is out of range: integer in [0, 2147483647]" in err
    assert not (tmp_path / "a.gif").exists()
