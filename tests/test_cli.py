import json
import os
import signal
import subprocess
import sys
import time

import pytest

from cartpole_dqn.cli import main
from tests.conftest import run_cli


def test_help_explains_every_subcommand_and_setting(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0 and "train" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    for flag in ("--env", "--rule", "--solve-score", "--solve-window", "--preset", "--seed", "--seeds",
                 "--max-episodes", "--max-steps", "--out", "--set", "--config", "--quiet", "--eval-every",
                 "--eval-episodes", "replay_ratio", "epsilon_decay_steps"):
        assert flag in text, flag


@pytest.mark.parametrize("args,expected", [
    (["--env", "NoSuchEnv-v0"], "NoSuchEnv-v0"),
    (["--env", "Pendulum-v1"], "Discrete"),
    (["--preset", "fastest"], "fastest"),
    (["--rule", "v2"], "v2"),
    (["--set", "bogus=1"], "bogus"),
    (["--set", "lr=0"], "lr=0.0"),
    (["--set", "gamma=1.01"], "gamma"),
    (["--set", "batch_size=500", "--set", "buffer_size=100"], "batch_size=500"),
    (["--set", "lr=fast"], "lr='fast'"),
    (["--set", "lr"], "key=value"),
    (["--seeds", "-2"], "seeds=-2"),
    (["--max-steps", "-1"], "max_steps=-1"),
    (["--max-episodes", "ten"], "--max-episodes"),
    (["--seed", "2147483648", "--max-steps", "3000"], "seed=2147483648 is out of range: integer in [0, 2147483647]"),
    (["--seed", "2147483640", "--seeds", "10"], "reach 2147483649"),
    (["--preset", "sample-efficient", "--set", "learning_starts=1e9", "--max-steps", "3000"],
     "learning_starts=1000000000 is above buffer_size=100000"),
    (["--preset", "sample-efficient", "--max-steps", "300"], "learning_starts=500 is not below max_steps=300"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, args, expected):
    out = tmp_path / "never"
    try:
        code = main(["train", "--out", str(out), *args])
    except SystemExit as e:           # argparse's own errors (a flag of the wrong type) exit from inside
        code = e.code
    assert code == 2
    err = capsys.readouterr().err
    assert expected in err and err.count("\n") == 1 and "Traceback" not in err
    assert not out.exists()                    # nothing half-written


def test_evaluate_refuses_a_json_file_in_a_missing_folder_before_playing(tmp_path, capsys):
    from tests.conftest import balancer, write_run

    net, params = balancer()
    run = write_run(tmp_path / "r", net, [params])
    assert main(["evaluate", str(run), "--episodes", "1", "--json", str(tmp_path / "nodir" / "x.json")]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1
    assert f"--json {str(tmp_path / 'nodir' / 'x.json')!r} cannot be written" in captured.err
    assert "does not exist" in captured.err and not (tmp_path / "nodir").exists()


def test_argparse_errors_are_one_line_too():
    r = run_cli("train", "--seeds", "many")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--seeds" in r.stderr


def test_out_that_is_a_file_and_malformed_config(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    r = run_cli("train", "--out", str(f), "--max-steps", "10")
    assert r.returncode == 2 and "is a file" in r.stderr and r.stderr.count("\n") == 1
    bad = tmp_path / "bad.toml"
    bad.write_text("lr = = 3")
    r = run_cli("train", "--config", str(bad), "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and "not valid TOML" in r.stderr and r.stderr.count("\n") == 1
    assert not (tmp_path / "o").exists()


def test_train_command_end_to_end(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("hidden = [16, 16]\nlearning_starts = 32\nbatch_size = 8\n")   # the suite's tiny program
    r = run_cli("train", "--config", str(cfg), "--max-steps", "600", "--seed", "3", "--eval-every", "0",
                "--set", "final_eval_episodes=0", "--out", str(tmp_path / "run"))
    assert r.returncode == 0, r.stderr
    s = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert s["seed"] == 3 and s["config"]["hidden"] == [16, 16] and s["config"]["learning_starts"] == 32
    assert "finished" in r.stdout


def test_a_full_disk_mid_run_is_one_line_exit_2_and_the_checkpoint_resumes(tmp_path, capsys, monkeypatch):
    """A write error once ended in a 30-line traceback, exit 1, and no summary or model."""
    import errno

    from cartpole_dqn import parts

    real, calls = parts.Scores.on_chunk, []

    def on_chunk(self, run, chunk):
        calls.append(run.t)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(run.out / "scores.csv"))
        return real(self, run, chunk)

    monkeypatch.setattr(parts.Scores, "on_chunk", on_chunk)
    out = tmp_path / "r"
    args = ["--max-steps", "3000", "--set", "hidden=16,16", "--eval-every", "0", "--quiet"]
    assert main(["train", *args, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "scores.csv' (No space left on device)" in err and "resume" in err, err
    monkeypatch.undo()
    assert main(["resume", str(out), "--quiet"]) == 0
    assert json.loads((out / "summary.json").read_text())["env_steps"] == 3000


def test_device_cuda_without_cuda_is_one_line_and_exit_2(tmp_path, capsys):
    import jax

    if jax.default_backend() != "cpu":
        pytest.skip("this machine has a GPU")
    assert main(["train", "--device", "cuda", "--out", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err
    assert "CUDA is not available" in err and err.count("\n") == 1
    assert not (tmp_path / "d").exists()


HEAVY = ("torch", "jax", "numpy", "gymnasium", "matplotlib")


def _heavy_after(code: str) -> list[str]:
    """The numeric libraries loaded once `code` has run in a fresh interpreter."""
    probe = f"import sys\n{code}\nprint([m for m in {HEAVY!r} if m in sys.modules])"
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.splitlines()[-1].replace("'", '"'))


def test_importing_the_cli_loads_no_numeric_library():
    assert _heavy_after("import cartpole_dqn.cli") == []
    assert _heavy_after("import cartpole_dqn; cartpole_dqn.__version__, cartpole_dqn.ConfigError") == []


@pytest.mark.parametrize("argv", [["--help"], ["train", "--help"], ["train", "--seeds", "many"],
                                  ["train", "--set", "bogus=1"], ["train", "--set", "lr=0"],
                                  ["bench", "--procs", "0"], ["train", "--preset", "fastest"]])
def test_help_and_refused_flags_answer_without_the_numeric_libraries(argv):
    """What made `--help` take 3 s was importing the numeric libraries first; none of these may import them."""
    code = ("from cartpole_dqn.cli import main\ntry:\n    code = main(%r)\nexcept SystemExit as e:\n"
            "    code = e.code\nassert code in (0, 2), code" % (argv,))
    assert _heavy_after(code) == []


def test_the_package_api_loads_on_first_use():
    import cartpole_dqn
    from cartpole_dqn import train

    assert callable(train) and callable(cartpole_dqn.evaluate) and set(cartpole_dqn.__all__) <= set(dir(cartpole_dqn))
    import cartpole_dqn.training  # noqa: F401 - the modules have names of their own: no function is hidden
    assert cartpole_dqn.train is train and cartpole_dqn.training.train is train
    with pytest.raises(AttributeError):
        cartpole_dqn.no_such_name


@pytest.mark.parametrize("signum,delay", [(signal.SIGINT, 0.3), (signal.SIGTERM, 1.0)])
def test_ctrl_c_or_sigterm_during_start_up_is_one_line_and_exit_130(tmp_path, signum, delay):
    """A real SIGINT or SIGTERM while the command is still importing its libraries or setting up: no traceback,
    exit code 130, and either nothing left or a run with a checkpoint (SIGTERM once killed the process with 143
    and left an empty --out)."""
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    p = subprocess.Popen([sys.executable, "-m", "cartpole_dqn", "train", "--out", str(out), "--max-steps", "5000"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 10
    while not os.path.exists(f"/proc/{p.pid}/status") and time.monotonic() < deadline:  # the process exists
        time.sleep(0.01)
    time.sleep(delay)
    assert p.poll() is None, p.communicate()
    p.send_signal(signum)
    stdout, stderr = p.communicate(timeout=120)
    assert p.returncode == 130, stderr
    assert "Traceback" not in stderr
    if not out.exists():                          # still starting when the signal came (the usual case)
        assert stderr == "cartpole-dqn: interrupted\n"
    else:
        assert (out / "checkpoint" / "meta.json").exists()


def test_a_second_run_into_a_folder_in_use_is_refused_and_the_first_is_untouched(tmp_path):
    """Two runs into one folder once both exited 0, leaving one run's scores beside the other's summary."""
    out = tmp_path / "o"
    first = subprocess.Popen([sys.executable, "-m", "cartpole_dqn", "train", "--out", str(out), "--max-steps",
                              "100000000", "--max-episodes", "100000000", "--solve-score", "1000000",
                              "--set", "hidden=16,16", "--eval-every", "0", "--quiet"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (out / "config.json").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    second = run_cli("train", "--out", str(out), "--seeds", "2", "--max-steps", "3000")
    assert second.returncode == 2 and second.stderr.count("\n") == 1, second.stderr
    assert "is in use by another cartpole-dqn run" in second.stderr
    while len((out / "scores.csv").read_text().splitlines()) < 5 and time.monotonic() < deadline:
        time.sleep(0.05)                          # training has begun: an interrupt now keeps the run
    first.send_signal(signal.SIGTERM)
    _, err = first.communicate(timeout=120)
    assert first.returncode == 130, err
    assert json.loads((out / "config.json").read_text())["seeds"] == 1 and not (out / "seed-0").exists()


@pytest.mark.parametrize("missing,argv,extra", [
    ("tensorboard", ["train", "--tensorboard", "--max-steps", "50"], "tensorboard"),
    ("tensorboard", ["resume", "--tensorboard"], "tensorboard"),
    ("wandb", ["train", "--wandb", "--max-steps", "50"], "wandb"),
    ("wandb", ["resume", "--wandb"], "wandb"),
    ("wandb", ["bench", "--wandb-project", "p", "--seeds", "2"], "wandb"),
    ("wandb", ["tune", "--trials", "1", "--wandb"], "wandb"),
    ("optuna", ["tune", "--trials", "1"], "tune"),
    ("Box2D", ["train", "--env", "LunarLander-v3"], "box2d"),
])
def test_a_missing_extra_is_one_line_naming_it_and_exit_2(tmp_path, monkeypatch, capsys, missing, argv, extra):
    """The package made unimportable, as on a plain install; nothing is created or trained."""
    import cartpole_dqn

    monkeypatch.setitem(sys.modules, missing, None)
    for name in [m for m in sys.modules if m.startswith(("gymnasium.envs.box2d", "cartpole_dqn.tune", "cartpole_dqn.studies"))]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.delattr(cartpole_dqn, "tune", raising=False)
    monkeypatch.delattr(cartpole_dqn, "studies", raising=False)
    out = tmp_path / "never"
    place = [str(out)] if argv[0] == "resume" else ["--out", str(out)]
    assert main([argv[0], *place, *argv[1:]]) == 2
    err = capsys.readouterr().err
    assert f"pip install 'cartpole-dqn[{extra}]'" in err and err.count("\n") == 1 and "Traceback" not in err
    assert not out.exists()


def test_noisy_alone_explores_by_its_noise_with_epsilon_zero_and_epsilon_beside_it_is_refused(tmp_path, capsys):
    """(Noisy networks train in tests/test_core_loop.py::test_every_switch_trains.)"""
    from cartpole_dqn.cli import build_parser, config_from_args

    cfg = config_from_args(build_parser().parse_args(["train", "--preset", "sample-efficient", "--set", "noisy=true"]))
    assert cfg.noisy is True and cfg.epsilon_start == 0.0 and cfg.epsilon_end == 0.0
    assert main(["train", "--set", "noisy=true", "--set", "epsilon_start=0.5", "--out", str(tmp_path / "no")]) == 2
    err = capsys.readouterr().err
    assert "noisy=true explores by itself" in err and err.count("\n") == 1 and not (tmp_path / "no").exists()


def test_a_sigterm_as_the_command_exits_is_exit_130_not_a_kill():
    """Once the work is done Python puts the default handlers back while it and XLA tear down, and a SIGTERM
    there killed the process (143) after every file was written; `run` counts it instead. With another thread
    alive, as XLA's are, a signal blocked in the main thread still reached Python's handler: a traceback."""
    code = ("import os, signal, sys, threading, time\nfrom cartpole_dqn import cli\n"
            "threading.Thread(target=time.sleep, args=(30,), daemon=True).start()\n"
            "cli.main = lambda: signal.signal(signal.SIGTERM, signal.default_int_handler) and 0\n"
            "flush = sys.stdout.flush\n"
            "def term_then_flush():\n"
            "    os.kill(os.getpid(), signal.SIGTERM)\n    time.sleep(0.2)\n    flush()\n"
            "sys.stdout.flush = term_then_flush\ncli.run()\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 130 and r.stderr == "", r.stderr
    ok = subprocess.run([sys.executable, "-c", "from cartpole_dqn import cli\ncli.main = lambda: 0\ncli.run()"],
                        capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0 and ok.stderr == ""
