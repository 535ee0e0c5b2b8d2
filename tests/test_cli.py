import json

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
    cfg.write_text("hidden = [16, 16]\nlearning_starts = 50\n")
    r = run_cli("train", "--config", str(cfg), "--max-steps", "600", "--seed", "3", "--eval-every", "0",
                "--set", "final_eval_episodes=0", "--out", str(tmp_path / "run"))
    assert r.returncode == 0, r.stderr
    s = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert s["seed"] == 3 and s["config"]["hidden"] == [16, 16] and s["config"]["learning_starts"] == 50
    assert "finished" in r.stdout


def test_device_cuda_without_cuda_is_one_line_and_exit_2(tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert main(["train", "--device", "cuda", "--out", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err
    assert "CUDA is not available" in err and err.count("\n") == 1
    assert not (tmp_path / "d").exists()
