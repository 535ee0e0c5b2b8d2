import csv

import numpy as np
import pytest

from cartpole_dqn.rules import Rule
from cartpole_dqn.scores import CSV_COLUMNS, ScoreLog, episodes_before_solve, rolling_mean

RULE = Rule("test", "CartPole-v1", 195.0, 100)


def test_ebs_is_the_start_of_the_first_solving_window():
    assert episodes_before_solve([200.0] * 100, 195, 100) == 0
    assert episodes_before_solve([200.0] * 99, 195, 100) is None          # not yet 100 episodes
    returns = [10.0] * 60 + [300.0] * 100
    # mean(returns[k:k+100]) >= 195 first when (60 - k) * 10 + (40 + k) * 300 >= 19500, i.e. k >= 23.8
    assert episodes_before_solve(returns, 195, 100) == 24
    assert episodes_before_solve([195.0] * 100, 195, 100) == 0            # the threshold itself counts
    assert episodes_before_solve([100.0] * 500, 195, 100) is None
    assert episodes_before_solve([5.0, 1.0, 9.0], 5.0, 2) == 1


def test_rolling_mean_uses_what_there_is_at_the_start():
    assert np.allclose(rolling_mean([2, 4, 6, 8], 2), [2, 3, 5, 7])


def test_score_log_detects_the_solve_like_the_ebs_arithmetic(tmp_path):
    returns = [10.0] * 60 + [300.0] * 100
    log = ScoreLog(tmp_path, RULE)
    solved_at = [i for i, r in enumerate(returns) if log.add_episode(r, int(r), 0.1, 0.5, 10 * (i + 1), i / 10)]
    assert solved_at == [24 + 99]
    f = log.figures()
    assert f["solved"] and f["episodes_before_solve"] == 24 and f["steps_to_solve"] == 1240
    assert f["seconds_to_solve"] == pytest.approx(12.3) and f["episodes"] == 160


def test_scores_csv_has_one_complete_row_per_episode(tmp_path):
    log = ScoreLog(tmp_path, RULE)
    log.add_episode(12.0, 12, 1.0, float("nan"), 12, 0.1)
    log.add_episode(30.0, 30, 0.9, 0.25, 42, 0.2)
    rows = list(csv.DictReader(open(tmp_path / "scores.csv")))     # readable before close: flushed per row
    assert list(rows[0]) == list(CSV_COLUMNS)
    assert [r["episode"] for r in rows] == ["0", "1"]
    assert rows[0]["mean_loss"] == "" and float(rows[1]["mean_loss"]) == 0.25
    assert float(rows[1]["rolling_mean"]) == 21.0 and rows[1]["env_steps"] == "42"
    log.close()


def test_eval_rows_and_the_first_evaluation_reaching_the_threshold(tmp_path):
    log = ScoreLog(tmp_path, RULE)
    log.add_eval(2000, 1.5, np.array([100.0, 120.0]))
    log.add_eval(4000, 3.0, np.array([200.0, 190.0]))
    log.add_eval(6000, 4.5, np.array([500.0, 500.0]))
    f = log.figures()
    assert f["eval_steps_to_solve"] == 4000 and f["eval_seconds_to_solve"] == 3.0
    rows = list(csv.DictReader(open(tmp_path / "eval.csv")))
    assert len(rows) == 3 and float(rows[1]["mean"]) == 195.0 and float(rows[0]["std"]) == 10.0
    log.close()


def test_plot_is_a_png(tmp_path):
    log = ScoreLog(tmp_path, RULE)
    for i in range(150):
        log.add_episode(min(10.0 + 3 * i, 500.0), 10, 0.1, 0.1, 100 * i, i)
    log.add_eval(5000, 1.0, np.array([300.0]))
    log.plot("CartPole-v1 - preset default - seed 0")
    data = (tmp_path / "scores.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    assert not list(tmp_path.glob(".*tmp"))      # the atomic write left no temporary file
    log.close()


def _run_folder(tmp_path):
    """A one-seed run folder as `plot` reads it: config.json and a few episodes in scores.csv and eval.csv."""
    from cartpole_dqn.config import build, to_dict
    from cartpole_dqn.files import write_json

    tmp_path.mkdir()
    write_json(tmp_path / "config.json", to_dict(build()))
    log = ScoreLog(tmp_path, RULE)
    for i in range(5):
        log.add_episode(10.0 + i, 10, 0.1, 0.1, 10 * (i + 1), i)
    log.close()
    return tmp_path


def _refused_in_one_line(capsys, argv, *expected):
    from cartpole_dqn.cli import main

    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and all(e in err for e in expected), err


def test_plot_to_a_missing_folder_or_onto_a_folder_is_one_line(tmp_path, capsys):
    run = _run_folder(tmp_path / "r")
    before = (run / "scores.png").exists()
    _refused_in_one_line(capsys, ["plot", str(run), "--out", str(tmp_path / "nodir" / "x.png")],
                         "nodir", "does not exist")
    _refused_in_one_line(capsys, ["plot", str(run), "--out", str(tmp_path)], str(tmp_path), "is a folder")
    assert not (tmp_path / "nodir").exists() and (run / "scores.png").exists() == before


def test_plot_names_the_unreadable_scores_or_eval_file(tmp_path, capsys):
    run = _run_folder(tmp_path / "r")
    (run / "scores.csv").write_bytes(b"episode,return\n\xff\xfe1,2\n")
    _refused_in_one_line(capsys, ["plot", str(run)], str(run / "scores.csv"), "UTF-8")
    run = _run_folder(tmp_path / "e")
    (run / "eval.csv").write_bytes(b"\xff\xfe")
    _refused_in_one_line(capsys, ["plot", str(run)], str(run / "eval.csv"), "UTF-8")
    run = _run_folder(tmp_path / "d")
    (run / "eval.csv").unlink()
    (run / "eval.csv").mkdir()
    _refused_in_one_line(capsys, ["plot", str(run)], str(run / "eval.csv"))
    run = _run_folder(tmp_path / "s")
    (run / "scores.csv").unlink()
    (run / "scores.csv").mkdir()
    _refused_in_one_line(capsys, ["plot", str(run)], "holds no scores.csv")
