"""export.py: the greedy Q-network as ONNX, and an .onnx file as a policy for evaluate, record and play."""

import json
import re
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from cartpole_dqn import evaluate, export_onnx, record
from cartpole_dqn.cli import main
from cartpole_dqn.core.networks import Network
from tests.conftest import balancer, write_run

pytest.importorskip("jax2onnx")
ort = pytest.importorskip("onnxruntime")

README = Path(__file__).resolve().parent.parent / "README.md"


@pytest.fixture(scope="module", autouse=True)
def _keep_small_programs():
    """jax2onnx compiles some 80 tiny programs when it starts; kept in the compile cache, the next run skips them
    (what `cartpole-dqn export` does too)."""
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    yield
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


@pytest.fixture(scope="module")
def k_run(tmp_path_factory):
    """Two seeds without training: seed 0 balances the pole to the cap, seed 1 topples it within a few dozen
    steps."""
    net, balancing = balancer()
    return write_run(tmp_path_factory.mktemp("export") / "k", net, [balancing, net.init(jax.random.PRNGKey(1))])


@pytest.fixture(scope="module")
def seed_1_onnx(k_run, tmp_path_factory):
    return export_onnx(k_run, tmp_path_factory.mktemp("onnx") / "seed1.onnx", seed=1)


KINDS = {
    "mlp": {},
    "dueling": {"dueling": True},
    "layer_norm": {"layer_norm": True},
    "noisy": {"noisy": True},
    "input_scaling": {"in_center": (0.1, -0.2, 0.05, 0.3), "in_scale": (1 / 4.8, 0.5, 1 / 0.42, 2.0)},
    "all": {"dueling": True, "layer_norm": True, "noisy": True, "in_center": (0.1, -0.2, 0.05, 0.3),
            "in_scale": (1 / 4.8, 0.5, 1 / 0.42, 2.0)},
}


def _q(session, obs):
    return session.run(["q_values"], {"obs": obs})[0]


@pytest.mark.parametrize("kind", KINDS)
def test_onnxruntime_gives_the_jax_networks_q_values_for_every_network_kind(kind, tmp_path):
    net = Network(4, 2, (64, 64), **KINDS[kind])
    params = net.init(jax.random.PRNGKey(3))
    if net.noisy:   # sigmas 3x their initial values: noise in the file could not pass the tolerance below
        params = jax.tree.map(lambda x: x * 3.0, params)
    out = export_onnx(write_run(tmp_path / "run", net, [params]) / "seed-0", tmp_path / "q.onnx")
    obs = (np.random.default_rng(0).normal(size=(1000, 4)) * [2.4, 2.0, 0.25, 2.0]).astype(np.float32)
    q_onnx = _q(ort.InferenceSession(str(out)), obs)
    q_jax = np.asarray(net.apply(params, obs))        # no key: noisy layers at their mean weights
    np.testing.assert_allclose(q_onnx, q_jax, rtol=1e-5, atol=1e-5)


def test_the_metadata_names_the_task_the_actions_the_sizes_and_the_seed(seed_1_onnx):
    import onnx

    props = {p.key: p.value for p in onnx.load(str(seed_1_onnx)).metadata_props}
    assert props["env_id"] == "CartPole-v1" and json.loads(props["action_meanings"]) == ["0", "1"]
    assert (props["input_size"], props["n_actions"], props["seed"]) == ("4", "2", "1")
    session = ort.InferenceSession(str(seed_1_onnx))
    assert session.get_modelmeta().custom_metadata_map["env_id"] == "CartPole-v1"
    assert [i.name for i in session.get_inputs()] == ["obs"] and session.get_inputs()[0].shape[1] == 4
    assert [o.name for o in session.get_outputs()] == ["q_values"]


def test_action_meanings_are_gymnasiums_names_where_it_gives_them(monkeypatch):
    from cartpole_dqn import export

    assert export.action_meanings("Acrobot-v1") == ["0", "1", "2"]
    monkeypatch.setattr(type(__import__("gymnasium").make("CartPole-v1").unwrapped), "get_action_meanings",
                        lambda self: ["LEFT", "RIGHT"], raising=False)
    assert export.action_meanings("CartPole-v1") == ["LEFT", "RIGHT"]


def test_evaluate_on_the_onnx_file_equals_evaluate_on_the_run(k_run, seed_1_onnx, tmp_path, monkeypatch):
    for seed in (None, 5):
        a, b = evaluate(k_run / "seed-1", episodes=20, seed=seed), evaluate(seed_1_onnx, episodes=20, seed=seed)
        assert b.seeds == [1] and b.env == "CartPole-v1"
        np.testing.assert_array_equal(a.returns, b.returns)
    balancing = export_onnx(k_run / "seed-0", tmp_path / "seed0.onnx")     # a seed folder needs no --seed
    assert (evaluate(balancing, episodes=5).returns == 500).all()
    from cartpole_dqn import evaluation

    monkeypatch.setattr(evaluation, "has_twin", lambda env_id: False)     # gymnasium on the host: the same too
    np.testing.assert_array_equal(evaluate(k_run / "seed-1", episodes=6, seed=2, epsilon=0.3).returns,
                                  evaluate(seed_1_onnx, episodes=6, seed=2, epsilon=0.3).returns)


def test_record_films_the_onnx_file_as_it_films_the_run(k_run, seed_1_onnx, tmp_path):
    a = record(k_run / "seed-1", tmp_path / "run.gif", episodes=2)
    b = record(seed_1_onnx, tmp_path / "onnx.gif", episodes=2)
    assert b.returns == a.returns and b.frames == a.frames > 0 and (tmp_path / "onnx.gif").stat().st_size > 0


def test_the_cli_exports_and_evaluates(k_run, tmp_path, capsys):
    out = tmp_path / "p.onnx"
    assert main(["export", str(k_run), "--seed", "1", "--out", str(out)]) == 0
    assert str(out) in capsys.readouterr().out
    assert main(["evaluate", str(out), "--episodes", "20", "--seed", "5"]) == 0     # the same file: compiled
    assert main(["evaluate", str(k_run / "seed-1"), "--episodes", "20", "--seed", "5"]) == 0
    onnx_line, run_line = capsys.readouterr().out.splitlines()
    assert onnx_line == run_line and onnx_line.startswith("seed 1: ")


def test_the_readme_snippet_loads_the_file_and_acts(seed_1_onnx, monkeypatch):
    section = README.read_text().split("## Take the policy anywhere", 1)[1]
    snippet = re.search(r"```python\n(.*?)```", section, re.S)[1]
    assert len(snippet.strip().splitlines()) == 5
    monkeypatch.chdir(seed_1_onnx.parent)
    (seed_1_onnx.parent / "policy.onnx").write_bytes(seed_1_onnx.read_bytes())
    scope: dict = {}
    exec(snippet, scope)
    assert scope["action"] in (0, 1) and scope["env"].spec.id == "CartPole-v1"


@pytest.mark.parametrize("missing,command", [("jax2onnx", "export"), ("onnxruntime", "evaluate")])
def test_a_missing_onnx_extra_is_one_line_naming_it_and_exit_2(k_run, seed_1_onnx, tmp_path, monkeypatch, capsys,
                                                                missing, command):
    monkeypatch.setitem(sys.modules, missing, None)
    argv = ["export", str(k_run / "seed-1"), "--out", str(tmp_path / "x.onnx")] if command == "export" else \
        ["evaluate", str(seed_1_onnx), "--episodes", "1"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "pip install 'cartpole-dqn[onnx]'" in err and err.count("\n") == 1 and not (tmp_path / "x.onnx").exists()


def _stripped(onnx_file: Path, tmp_path: Path) -> Path:
    import onnx

    model = onnx.load(str(onnx_file))
    del model.metadata_props[:]
    onnx.save(model, str(tmp_path / "foreign.onnx"))
    return tmp_path / "foreign.onnx"


@pytest.mark.parametrize("case,needle", [
    ("no model", "holds no model.safetensors"),
    ("k seeds, no --seed", "holds 2 seeds (0, 1): give --seed N"),
    ("a seed the run lacks", "--seed 7 is not in"),
    ("not .onnx", "must end in .onnx"),
    ("export an .onnx", "is an ONNX file already"),
    ("garbage .onnx", "is not a valid ONNX model"),
    ("missing .onnx", "does not exist"),
    ("foreign .onnx", "is not a cartpole-dqn export"),
])
def test_bad_inputs_are_one_line_and_exit_2(k_run, seed_1_onnx, tmp_path, capsys, case, needle):
    out = str(tmp_path / "x.onnx")
    (tmp_path / "empty").mkdir()
    (tmp_path / "garbage.onnx").write_bytes(b"not an onnx model")
    argv = {"no model": ["export", str(tmp_path / "empty"), "--out", out],
            "k seeds, no --seed": ["export", str(k_run), "--out", out],
            "a seed the run lacks": ["export", str(k_run), "--seed", "7", "--out", out],
            "not .onnx": ["export", str(k_run / "seed-1"), "--out", str(tmp_path / "x.pb")],
            "export an .onnx": ["export", str(seed_1_onnx), "--out", out],
            "garbage .onnx": ["evaluate", str(tmp_path / "garbage.onnx")],
            "missing .onnx": ["record", str(tmp_path / "nothing.onnx"), "--out", str(tmp_path / "a.gif")],
            "foreign .onnx": ["evaluate", str(_stripped(seed_1_onnx, tmp_path))]}[case]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "x.onnx").exists() and not (tmp_path / "a.gif").exists()
