"""The Optuna study: search space, objective, storage, pruning, faults, report and export, and a PostgreSQL server
shared by two workers."""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from glob import glob
from pathlib import Path

import pytest

optuna = pytest.importorskip("optuna", reason="the tune extra is not installed: pip install 'cartpole-dqn[tune]'")

from optuna.trial import TrialState  # noqa: E402

import cartpole_dqn  # noqa: E402
from cartpole_dqn import cli  # noqa: E402
from cartpole_dqn.config import ConfigError, build, validate  # noqa: E402
from cartpole_dqn.stats import objective_value  # noqa: E402
from cartpole_dqn.studies import open_storage  # noqa: E402
from cartpole_dqn.tune import (ONLY, SEARCH_SPACE, export, report, search_space, shapes_program, tune)  # noqa: E402
from tests.conftest import run_cli, tiny  # noqa: E402

# Tiny trials: a 16-16 network, 8-sample batches, learning from step 32; a few hundred env steps. Every setting that
# shapes the compiled program is held, so the trials of every test share one program with the rest of the suite's
# tiny runs (compiling, not training, is what tiny trials cost); the batch test searches n_step (1 to 5), so that a
# batch has a program setting to share.
TINY_SET = ["--preset", "sample-efficient", "--set", "hidden=16,16", "--set", "batch_size=8",
            "--set", "learning_starts=32", "--set", "replay_ratio=1", "--set", "tau=0.005",
            "--set", "prioritized=false", "--set", "n_step=5"]
TINY_FIXED = ("hidden", "batch_size", "learning_starts", "replay_ratio", "tau", "prioritized", "n_step")
BATCH_FIXED = tuple(name for name in TINY_FIXED if name != "n_step")


def _trials(url: str, name: str):
    return optuna.load_study(study_name=name, storage=open_storage(url)).get_trials(deepcopy=False)


# ----------------------------------------------------------------------------------------- search space ---
@pytest.mark.parametrize("name, other", [("sample-efficient", "pqn"), ("pqn", "dqn")])
def test_every_sampled_trial_is_a_valid_config_and_fixed_settings_are_not_searched(name, other):
    """Each algorithm searches its own settings (and the shared ones), never the other's."""
    base = tiny(name, max_steps=10_000)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(40):
        trial = study.ask()
        params = search_space(trial, base, frozenset({"hidden", "lr"}))
        validate(dataclasses.replace(base, **params))
        assert "width" not in trial.params and "depth" not in trial.params and "lr" not in trial.params
        assert 200 <= params["epsilon_decay_steps"] <= 5000
        study.tell(trial, 0.0)
    searched = {name for t in study.trials for name in t.params}
    assert searched == set(SEARCH_SPACE) - {"width", "depth", "lr"} - set(ONLY[other])


# -------------------------------------------------------------------------------------------- the study ---
def test_a_study_in_sqlite_by_default_keeps_every_trial_and_a_second_run_adds_to_it(tmp_path):
    base = tiny(seeds=2)
    first = tune(base, trials=2, out=tmp_path, budget=300, fixed=TINY_FIXED)
    assert (tmp_path / "study.db").exists() and first.counts["complete"] == 2
    second = tune(base, trials=1, out=tmp_path, budget=300, fixed=TINY_FIXED)
    assert second.counts["complete"] == 3 and second.study == "CartPole-v1-sample-efficient"
    trials = _trials(f"sqlite:///{tmp_path / 'study.db'}", "CartPole-v1-sample-efficient")
    assert [t.number for t in trials] == [0, 1, 2]
    for t in trials:
        assert t.value == objective_value(t.user_attrs["steps_to_solve"], 300)
        assert len(t.user_attrs["steps_to_solve"]) == 2
        assert t.user_attrs["config"]["hidden"] == [16, 16] and t.user_attrs["config"]["max_steps"] == 300
        assert (tmp_path / "trials" / "CartPole-v1-sample-efficient" / f"trial-{t.number}" / "seed-0" / "scores.csv").exists()


def test_the_pruner_hears_the_rolling_mean_and_stops_a_poor_trial_early(tmp_path):
    # Reported values are minus the rolling mean (about -20 here): a threshold of -1e6 prunes at the first report.
    result = tune(tiny(), trials=1, out=tmp_path, budget=600, fixed=TINY_FIXED,
                  pruner=optuna.pruners.ThresholdPruner(upper=-1e6))
    assert result.counts["pruned"] == 1
    (t,) = _trials(f"sqlite:///{tmp_path / 'study.db'}", "CartPole-v1-sample-efficient")
    (step,) = t.intermediate_values
    assert step == 100 and -500 <= t.intermediate_values[step] < 0


def test_a_batch_trains_trials_that_share_a_program_side_by_side(tmp_path):
    """--batch 3: a batch's trials share the first one's program settings (n-step, replay ratio, ... searched
    once per batch), each samples its own numeric hyperparameters and trains seeds of its own, and one run
    folder holds them all; each trial's value is its own seeds' median."""
    result = tune(tiny(seeds=2), trials=4, batch=3, out=tmp_path, budget=300, fixed=BATCH_FIXED)
    assert result.counts["complete"] == 4
    trials = _trials(f"sqlite:///{tmp_path / 'study.db'}", "CartPole-v1-sample-efficient")
    runs = [t.user_attrs["run"] for t in trials]
    assert runs[0] == runs[1] == runs[2] != runs[3]
    static = [name for name in trials[0].params if shapes_program(name)]
    assert static and all(t.params[name] == trials[0].params[name] for t in trials[:3] for name in static)
    assert len({t.params["lr"] for t in trials[:3]}) == 3
    assert [t.user_attrs["config"]["seed"] for t in trials] == [0, 2, 4, 0]
    for t in trials:
        assert len(t.user_attrs["steps_to_solve"]) == 2
        assert t.value == objective_value(t.user_attrs["steps_to_solve"], 300)
        assert t.user_attrs["config"]["lr"] == pytest.approx(t.params["lr"])
    for seed in range(6):
        assert (Path(runs[0]) / f"seed-{seed}" / "scores.csv").exists()


class _PruneOdd(optuna.pruners.BasePruner):
    def prune(self, study, trial):
        return trial.number % 2 == 1


def test_a_pruned_trial_in_a_batch_stops_its_seeds_and_the_others_train_on(tmp_path):
    result = tune(tiny(seeds=2), trials=2, batch=2, out=tmp_path, budget=300, fixed=TINY_FIXED, pruner=_PruneOdd())
    assert result.counts["complete"] == 1 and result.counts["pruned"] == 1
    kept, pruned = _trials(f"sqlite:///{tmp_path / 'study.db'}", "CartPole-v1-sample-efficient")
    assert list(pruned.intermediate_values) == [100] and len(kept.intermediate_values) == 3
    run = Path(kept.user_attrs["run"])
    steps = [json.loads((run / f"seed-{s}" / "summary.json").read_text())["env_steps"] for s in range(4)]
    assert steps == [300, 300, 100, 100]
def test_a_trial_trains_with_the_threads_the_config_asks_for(tmp_path):
    result = tune(tiny(threads=2), trials=1, out=tmp_path, budget=200, fixed=TINY_FIXED)
    assert result.best.user_attrs["config"]["threads"] == 2


def test_jobs_run_trials_in_parallel_worker_processes(tmp_path):
    result = tune(tiny(), trials=2, jobs=2, out=tmp_path, budget=300, fixed=TINY_FIXED)
    assert result.counts["complete"] == 2
    trials = _trials(f"sqlite:///{tmp_path / 'study.db'}", "CartPole-v1-sample-efficient")
    assert len({t.user_attrs["worker"]["pid"] for t in trials}) == 2


def test_a_journal_file_works_as_storage(tmp_path):
    url = f"journal:{tmp_path / 'journal.log'}"
    result = tune(tiny(), trials=1, out=tmp_path, budget=200, storage=url, study="j", fixed=TINY_FIXED)
    assert result.counts["complete"] == 1 and not (tmp_path / "study.db").exists()


# ----------------------------------------------------------------------------------------------- faults ---
@pytest.mark.parametrize("name", ["../../../x", "a/b", "..", ".hidden", "a\\b", ""])
def test_a_study_name_that_is_not_a_plain_folder_name_is_refused_before_anything_is_made(tmp_path, capsys, name):
    """The name is the folder of the trial runs (OUT/trials/<study>/): `..` or a separator would put them
    outside --out."""
    out = tmp_path / "a" / "b" / "o"
    assert cli.main(["tune", "--trials", "1", "--budget-steps", "200", "--study", name, "--out", str(out),
                     *TINY_SET]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"--study {name!r} is not allowed" in err
    assert list(tmp_path.iterdir()) == []


def test_a_study_name_of_letters_digits_dashes_and_dots_names_its_trials_folder(tmp_path):
    result = tune(tiny(), trials=1, out=tmp_path, budget=200, study="v1.2_try-3", fixed=TINY_FIXED)
    assert result.study == "v1.2_try-3" and (tmp_path / "trials" / "v1.2_try-3" / "trial-0").is_dir()


def test_a_study_name_made_for_another_environment_is_refused_in_one_line(tmp_path):
    tune(tiny(), trials=1, out=tmp_path, budget=200, study="s", fixed=TINY_FIXED)
    with pytest.raises(ConfigError, match="exists for CartPole-v1; this run asks CartPole-v0"):
        tune(tiny(env="CartPole-v0"), trials=1, out=tmp_path, budget=200, study="s")
    r = run_cli("tune", "--env", "CartPole-v0", "--trials", "1", "--study", "s", "--budget-steps", "200",
                "--out", str(tmp_path))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "exists for CartPole-v1" in r.stderr
    with pytest.raises(ConfigError, match="budget_steps=200; this run asks 300"):
        tune(tiny(), trials=1, out=tmp_path, budget=300, study="s")


@pytest.mark.parametrize("url, says", [
    ("nonsense-url", "cannot open storage 'nonsense-url'"),
    ("postgresql://user:secret@127.0.0.1:1/db", "cannot open storage 'postgresql://user:***@127.0.0.1:1/db'"),
])
def test_a_malformed_or_unreachable_storage_is_one_line_and_exit_2(tmp_path, url, says):
    r = run_cli("tune", "--trials", "1", "--storage", url, "--out", str(tmp_path), timeout=120)
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1 and says in r.stderr and "secret" not in r.stderr


def _open_and_report(url: str) -> str:
    try:
        open_storage(url)
        return "ok"
    except ConfigError as e:
        return str(e)


def test_workers_opening_one_new_database_together_all_get_the_study(tmp_path):
    """Six workers starting at once on an empty database race to create Optuna's tables (measured: plain
    RDBStorage failed some of six in each of 5 rounds); each must end up with the storage, none with an error."""
    # forkserver: the workers still start together (forked from a clean server), but not from this process,
    # whose JAX threads make a plain fork unsafe.
    ctx = multiprocessing.get_context("forkserver")
    for round_ in range(3):
        url = f"sqlite:///{tmp_path / f'race{round_}.db'}"
        with ctx.Pool(6) as pool:
            assert pool.map(_open_and_report, [url] * 6) == ["ok"] * 6


def test_without_optuna_tune_names_the_extra_to_install(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "optuna", None)
    for module in ("tune", "studies"):
        monkeypatch.delitem(sys.modules, f"cartpole_dqn.{module}", raising=False)
        monkeypatch.delattr(cartpole_dqn, module, raising=False)
    assert cli.main(["tune", "--trials", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cartpole-dqn[tune]" in err


def test_a_worker_killed_mid_trial_leaves_a_failed_trial_and_the_study_usable(tmp_path):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    common = ["tune", "--trials", "1", "--seeds", "1", "--budget-steps", "400", "--out", str(tmp_path)]
    slow = ["--preset", "sample-efficient", "--set", "hidden=256,256,256", "--set", "batch_size=256", "--set", "replay_ratio=64",
            "--set", "learning_starts=32"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    worker = subprocess.Popen([sys.executable, "-m", "cartpole_dqn", *common, *slow], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if (tmp_path / "study.db").exists() and worker.poll() is None:
                try:
                    if any(t.state == TrialState.RUNNING and "config" in t.user_attrs
                           for t in _trials(url, "CartPole-v1-sample-efficient")):
                        break
                except Exception:  # the study is still being created
                    pass
            assert worker.poll() is None, "the slow trial ended before it could be killed"
            time.sleep(0.5)
        else:
            pytest.fail("no trial started within 120 s")
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait()
    r = run_cli(*common, *TINY_SET)
    assert r.returncode == 0, r.stderr
    states = [t.state for t in _trials(url, "CartPole-v1-sample-efficient")]
    assert states[0] == TrialState.FAIL and states[1] in (TrialState.COMPLETE, TrialState.PRUNED)
    assert len(states) == 2


# ----------------------------------------------------------------------------------- report and export ---
def test_report_prints_the_best_trials_and_saves_figures_and_export_feeds_train(tmp_path, capsys):
    assert cli.main(["tune", "--trials", "2", "--seeds", "1", "--budget-steps", "300", "--out", str(tmp_path),
                 *TINY_SET]) == 0
    assert "complete 2" in capsys.readouterr().out
    assert cli.main(["tune", "--report", "--out", str(tmp_path), "--export", str(tmp_path / "best.toml")]) == 0
    out = capsys.readouterr().out
    assert "best trials" in out and "#" in out
    assert (tmp_path / "history.png").stat().st_size > 0 and (tmp_path / "importance.png").stat().st_size > 0
    cfg = build(file=tmp_path / "best.toml")
    best = min(_trials(f"sqlite:///{tmp_path / 'study.db'}", "CartPole-v1-sample-efficient"), key=lambda t: t.value)
    assert cfg.hidden == (16, 16) and cfg.lr == pytest.approx(best.params["lr"])
    assert cli.main(["train", "--config", str(tmp_path / "best.toml"), "--max-steps", "60", "--eval-every", "0",
                 "--set", "final_eval_episodes=0", "--quiet", "--out", str(tmp_path / "run")]) == 0


def test_report_without_a_study_says_so(tmp_path):
    r = run_cli("tune", "--report", "--out", str(tmp_path / "none"))
    assert r.returncode == 2 and "no study" in r.stderr and r.stderr.count("\n") == 1


def test_export_module_function_refuses_a_study_with_no_finished_trial(tmp_path):
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    optuna.create_study(storage=url, study_name="e")
    with pytest.raises(ConfigError, match="no finished trial"):
        export(url, "e", tmp_path / "best.toml")
    assert report(url, "e", tmp_path)[0].startswith("study e")


def test_export_is_written_with_the_mode_the_umask_gives(tmp_path):
    """Like every output (files.atomic_write): 0640 under umask 027, not the 0600 of a temporary file."""
    from cartpole_dqn.config import to_dict

    url = f"sqlite:///{tmp_path / 'one.db'}"
    study = optuna.create_study(storage=url, study_name="one")
    cfg = to_dict(build("sample-efficient", overrides={"lr": 2e-3}))
    study.add_trial(optuna.trial.create_trial(value=1000.0, params={}, distributions={}, user_attrs={"config": cfg}))
    previous = os.umask(0o027)
    try:
        path = export(url, "one", tmp_path / "best.toml")
    finally:
        os.umask(previous)
    assert (path.stat().st_mode & 0o777) == 0o640 and build(file=path).lr == 2e-3
    assert not list(tmp_path.glob(".*.tmp"))


# ------------------------------------------------------------------------------------------- PostgreSQL ---
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def postgres_url():
    """CARTPOLE_DQN_TEST_POSTGRES (CI starts a server), else a throw-away server of our own, else skip."""
    url = os.environ.get("CARTPOLE_DQN_TEST_POSTGRES")
    pytest.importorskip("psycopg2", reason="psycopg2 is not installed: pip install 'cartpole-dqn[tune]'")
    if url:
        yield url
        return
    bins = sorted(glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if not bins and shutil.which("pg_ctl"):
        bins = [shutil.which("pg_ctl")]
    if not bins:
        pytest.skip("PostgreSQL is not installed (no pg_ctl; apt-get install postgresql) and "
                    "CARTPOLE_DQN_TEST_POSTGRES is not set")
    bindir = Path(bins[-1]).parent
    prefix: list[str] = []
    root = tempfile.mkdtemp(prefix="cartpole-dqn-pg-")
    if os.geteuid() == 0:  # initdb refuses to run as root
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to run the test server")
        os.chown(root, user.pw_uid, user.pw_gid)
        prefix = ["runuser", "-u", "postgres", "--"]
    port = _free_port()
    data = f"{root}/data"
    subprocess.run([*prefix, str(bindir / "initdb"), "-D", data, "-U", "postgres", "--auth=trust", "--no-sync"],
                   check=True, capture_output=True)
    opts = f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c fsync=off"
    subprocess.run([*prefix, str(bindir / "pg_ctl"), "-D", data, "-o", opts, "-l", f"{root}/log", "-w", "start"],
                   check=True, capture_output=True)
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*prefix, str(bindir / "pg_ctl"), "-D", data, "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def test_two_workers_share_one_postgresql_study_and_no_trial_is_lost_or_counted_twice(tmp_path, postgres_url):
    name = f"pg-{uuid.uuid4().hex[:8]}"
    cmd = [sys.executable, "-m", "cartpole_dqn", "tune", "--storage", postgres_url, "--study", name, "--trials", "2",
           "--seeds", "2", "--budget-steps", "300", "--out", str(tmp_path), *TINY_SET]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    workers = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for _ in range(2)]
    outputs = [w.communicate(timeout=300) for w in workers]
    assert [w.returncode for w in workers] == [0, 0], [err for _, err in outputs]
    trials = _trials(postgres_url, name)
    assert sorted(t.number for t in trials) == list(range(4))
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    pids = [t.user_attrs["worker"]["pid"] for t in trials]
    assert sorted(pids.count(p) for p in set(pids)) == [2, 2] and {w.pid for w in workers} == set(pids)
