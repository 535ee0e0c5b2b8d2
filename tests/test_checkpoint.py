"""Checkpoints and model files: atomic, checksummed, never unpickled, and refused cleanly when damaged."""

import json

import jax
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from cartpole_dqn.checkpoint import CHECKSUM, CheckpointError, checksum, load_checkpoint, load_model, save_checkpoint
from cartpole_dqn.cli import main
from cartpole_dqn.core.networks import Network, input_bounds
from cartpole_dqn.evaluation import load
from tests.conftest import balancer, tiny, write_run

@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from cartpole_dqn import train

    out = tmp_path_factory.mktemp("ckpt") / "run"
    train(tiny(max_steps=400, buffer_size=300), out, verbose=False)
    return out


@pytest.fixture(scope="module")
def model_run(tmp_path_factory):
    """A one-seed run folder holding only a model file, written from hand-set weights."""
    net, params = balancer()
    return write_run(tmp_path_factory.mktemp("ckpt") / "model", net, [params]) / "seed-0"


def _one_line_exit_2(capsys, argv, says):
    assert main(argv) == 2, argv
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and says in err, err


def test_a_run_leaves_a_full_checkpoint(run):
    arrays, meta = load_checkpoint(run / "checkpoint")
    for key in ("state.agent.params['layer0']['weight']", "state.agent.target['head']['bias']",
                "state.agent.opt_state[1].mu['layer0']['weight']", "state.agent.opt_state[1].nu['head']['bias']",
                "state.agent.epsilon", "state.key", "state.env_state.theta", "state.memory.obs", "state.recent",
                "scores.0.returns"):
        assert key in arrays, key
    assert meta["steps"] == 400 and meta["format_version"] == 4
    assert arrays["state.memory.pos"].tolist() == [100] and arrays["state.memory.size"].tolist() == [300]
    assert arrays["state.memory.obs"].shape == (1, 300, 4)
    assert meta["envs"] is None                  # CartPole runs inside the program: its state is an array above
    assert [p.name for p in (run / "checkpoint").iterdir() if p.suffix == ".safetensors"] == [meta["tensors"]]


def test_a_new_checkpoint_replaces_the_old_only_when_complete(tmp_path):
    save_checkpoint(tmp_path, {"x": np.ones(3)}, {"n": 1})
    save_checkpoint(tmp_path, {"x": np.zeros(3)}, {"n": 2})
    tensors, meta = load_checkpoint(tmp_path)
    assert meta["n"] == 2 and tensors["x"].sum() == 0
    assert len(list(tmp_path.glob("state-*.safetensors"))) == 1


def test_a_checkpoint_cut_short_at_any_byte_is_refused(run, tmp_path):
    src = run / "checkpoint"
    meta = json.loads((src / "meta.json").read_text())
    raw_meta, raw_state = (src / "meta.json").read_bytes(), (src / meta["tensors"]).read_bytes()
    dst = tmp_path / "c"
    dst.mkdir()
    (dst / meta["tensors"]).write_bytes(raw_state)
    end = len(raw_meta.rstrip())                  # a missing final newline leaves complete JSON
    for n in list(range(0, end, max(1, end // 300))) + [end - 1]:
        (dst / "meta.json").write_bytes(raw_meta[:n])
        with pytest.raises(CheckpointError):
            load_checkpoint(dst)
    (dst / "meta.json").write_bytes(raw_meta)
    step = max(1, len(raw_state) // 300)
    for n in list(range(0, len(raw_state), step)) + [len(raw_state) - 1]:
        (dst / meta["tensors"]).write_bytes(raw_state[:n])
        with pytest.raises(CheckpointError, match="checksum"):
            load_checkpoint(dst)


def test_a_model_file_cut_short_at_any_byte_is_refused(model_run, tmp_path):
    raw = (model_run / "model.safetensors").read_bytes()
    f = tmp_path / "m.safetensors"
    header = 8 + int.from_bytes(raw[:8], "little")
    for n in list(range(header + 8)) + list(range(header + 8, len(raw), 7)):   # every byte of the header
        f.write_bytes(raw[:n])
        with pytest.raises(CheckpointError):
            load_model(f)


def test_another_format_version_is_named(run, tmp_path):
    (tmp_path / "checkpoint").mkdir()
    meta = json.loads((run / "checkpoint" / "meta.json").read_text())
    (tmp_path / "checkpoint" / "meta.json").write_text(json.dumps({**meta, "format_version": 99}))
    with pytest.raises(CheckpointError, match="format version 99; this cartpole-dqn reads version 4"):
        load_checkpoint(tmp_path / "checkpoint")
    (tmp_path / "checkpoint" / "meta.json").write_text(json.dumps({**meta, "format_version": 1}))
    with pytest.raises(CheckpointError, match="format version 1 .the PyTorch trainer's"):
        load_checkpoint(tmp_path / "checkpoint")


def _rewrite(src, dst, seal=True, **changes):
    """A copy of model file `src` with metadata entries replaced (values JSON-encoded, as the files hold them) and,
    if `seal`, its checksum made to match: a file written so, not one damaged after."""
    tensors = load_file(src)
    meta = {**{key: json.loads(value) for key, value in _header(src).items()}, **changes}
    if seal:
        meta[CHECKSUM] = checksum(meta, tensors)
    save_file(tensors, dst, metadata={key: json.dumps(value) for key, value in meta.items() if value is not None})
    return dst


def test_another_model_format_version_is_named(model_run, tmp_path):
    f = _rewrite(model_run / "model.safetensors", tmp_path / "m.safetensors", format_version=99)
    with pytest.raises(CheckpointError, match="model format version 99; this cartpole-dqn reads version 3"):
        load_model(f)


def _flip(path, offset, value):
    raw = bytearray(path.read_bytes())
    raw[offset] = value
    path.write_bytes(bytes(raw))


def test_a_model_with_one_byte_changed_is_refused_as_damaged(model_run, tmp_path, capsys):
    import shutil

    target = tmp_path / "x"
    shutil.copytree(model_run, target)
    f = target / "model.safetensors"
    raw = f.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    start = 8 + n + json.loads(raw[8:8 + n])["head.bias"]["data_offsets"][0]
    _flip(f, start + 3, 0x7D)                       # the first bias's exponent: 0.0 becomes about 2e37
    assert load_file(f)["head.bias"][0] > 1e37
    with pytest.raises(CheckpointError, match="is damaged: its checksum does not match"):
        load_model(f)
    for cmd in (["evaluate", str(target), "--episodes", "1"], ["record", str(target), "--out", str(tmp_path / "a.gif")],
                ["evaluate", str(f)]):
        _one_line_exit_2(capsys, cmd, "model.safetensors' is damaged")
    shutil.copy(model_run / "model.safetensors", f)
    _flip(f, raw.index(b'"seed":"0"') + len(b'"seed":"'), ord("7"))    # the metadata is vouched for too
    with pytest.raises(CheckpointError, match="is damaged"):
        load_model(f)


def test_a_model_without_a_checksum_loads_only_if_its_format_predates_checksums(model_run, tmp_path):
    src = model_run / "model.safetensors"
    net, params, _ = load_model(src)
    old, _, meta = load_model(_rewrite(src, tmp_path / "v2.safetensors", seal=False, format_version=2, checksum=None))
    assert old == net and CHECKSUM not in meta          # a user's format 2 model still loads
    with pytest.raises(CheckpointError, match="is damaged"):
        load_model(_rewrite(src, tmp_path / "v3.safetensors", seal=False, checksum=None))
    with pytest.raises(CheckpointError, match="is damaged"):     # a checksum, once there, is always checked
        load_model(_rewrite(src, tmp_path / "v2-edited.safetensors", seal=False, format_version=2))


def test_a_model_for_another_environment_is_refused(model_run, tmp_path):
    # Acrobot-v1: 6 observations, 3 actions: not what this 4 x 2 network takes
    f = _rewrite(model_run / "model.safetensors", tmp_path / "m.safetensors", env="Acrobot-v1")
    with pytest.raises(CheckpointError, match="made for 4 observations and 2 actions; Acrobot-v1 has 6 and 3"):
        load(f)


def test_a_model_whose_layers_do_not_match_its_architecture_is_refused(model_run, tmp_path):
    f = _rewrite(model_run / "model.safetensors", tmp_path / "m.safetensors", hidden=[3])
    with pytest.raises(CheckpointError, match="does not describe a cartpole-dqn network: layer0.weight is"):
        load_model(f)
    save_file({"x": np.zeros(2, np.float32)}, f, metadata={"format_version": "2"})
    with pytest.raises(CheckpointError, match="does not describe a cartpole-dqn network"):
        load_model(f)
    with pytest.raises(CheckpointError, match="is a folder, not a model file"):
        load_model(tmp_path)


def _header(path):
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    return json.loads(raw[8:8 + n])["__metadata__"]


def _edit_meta(run, dst, seal=True, drop=(), **changes):
    """A copy of run folder `run` whose checkpoint's meta.json has entries replaced, those in `drop` removed and,
    if `seal`, its checksum made to match (a checkpoint written so, not one edited after)."""
    import shutil

    shutil.copytree(run, dst)
    path = dst / "checkpoint" / "meta.json"
    meta = {key: value for key, value in {**json.loads(path.read_text()), **changes}.items() if key not in drop}
    if seal:
        meta[CHECKSUM] = checksum(meta, {})
    path.write_text(json.dumps(meta, indent=2))
    return dst


def test_resume_of_a_checkpoint_for_another_environment_is_one_line_exit_2(run, tmp_path, capsys):
    other = _edit_meta(run, tmp_path / "other", obs_size=6, n_actions=3)
    _one_line_exit_2(capsys, ["resume", str(other)], "made for 6 observations and 3 actions")


def test_an_edited_meta_json_is_refused_even_where_every_shape_still_fits(run, tmp_path, capsys):
    meta = json.loads((run / "checkpoint" / "meta.json").read_text())
    edited = _edit_meta(run, tmp_path / "e", seal=False, config={**meta["config"], "n_step": 3})
    with pytest.raises(CheckpointError, match="is damaged or was edited: meta.json does not match its checksum"):
        load_checkpoint(edited / "checkpoint")
    _one_line_exit_2(capsys, ["resume", str(edited), "--max-steps", "500"], "damaged or was edited")
    # Format 3 predates meta.json's checksum: an untouched one still resumes, one that carries a checksum is held
    # to it.
    _, old = load_checkpoint(_edit_meta(run, tmp_path / "v3", False, [CHECKSUM], format_version=3) / "checkpoint")
    assert old["format_version"] == 3
    with pytest.raises(CheckpointError, match="damaged or was edited"):
        load_checkpoint(_edit_meta(run, tmp_path / "v3e", seal=False, format_version=3, steps=7) / "checkpoint")


@pytest.mark.parametrize("name", ["..", ".", "../checkpoint/state-000001.safetensors", "/etc/hostname",
                                  "state-000001.safetensors.bak", "model.safetensors", 7])
def test_a_tensor_file_name_that_is_not_a_state_file_is_one_line_exit_2(run, tmp_path, capsys, name):
    bad = _edit_meta(run, tmp_path / "b", tensors=name)
    _one_line_exit_2(capsys, ["resume", str(bad)], "names no tensor file")


def test_a_checkpoint_whose_network_is_not_its_configurations_is_one_line_exit_2(run, tmp_path, capsys):
    """A meta.json written so (its checksum matches) whose configuration asks for another network than the
    tensors hold: the arrays are checked against the program the configuration builds, before any step."""
    meta = json.loads((run / "checkpoint" / "meta.json").read_text())
    other = _edit_meta(run, tmp_path / "n", config={**meta["config"], "hidden": [32, 32]})
    (other / "config.json").write_text(json.dumps(meta["config"] | {"hidden": [32, 32]}))
    _one_line_exit_2(capsys, ["resume", str(other), "--max-steps", "500"],
                     "is not usable: checkpoint array \"agent.params")


def test_resume_of_another_runs_checkpoint_is_one_line_exit_2(run, tmp_path, capsys):
    import shutil

    other = tmp_path / "o"
    shutil.copytree(run, other)
    config = json.loads((run / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**config, "env": "Acrobot-v1", "hidden": [32, 32]}))
    _one_line_exit_2(capsys, ["resume", str(other), "--max-steps", "500"], "is not this run's: it has "
                     "env='CartPole-v1', hidden=[16, 16]; " f"{str(other / 'config.json')!r} records "
                     "env='Acrobot-v1', hidden=[32, 32]")


@pytest.mark.parametrize("damage", ["missing", "empty-folder", "truncated-model", "bad-json", "version"])
def test_bad_input_to_every_command_is_one_line_and_exit_2(run, tmp_path, capsys, damage):
    import shutil

    target = tmp_path / "x"
    if damage != "missing":
        shutil.copytree(run, target)
    if damage == "empty-folder":
        for p in target.iterdir():
            shutil.rmtree(p) if p.is_dir() else p.unlink()
    elif damage == "truncated-model":
        raw = (target / "model.safetensors").read_bytes()
        (target / "model.safetensors").write_bytes(raw[:len(raw) // 2])
        (target / "checkpoint" / "meta.json").write_text('{"format_version": 2, "tens')
    elif damage == "bad-json":
        (target / "config.json").write_text("{not json")
        (target / "checkpoint" / "meta.json").write_text("{not json")
        (target / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}")
    elif damage == "version":
        meta = json.loads((target / "checkpoint" / "meta.json").read_text())
        (target / "checkpoint" / "meta.json").write_text(json.dumps({**meta, "format_version": 7}))
    commands = [["resume", str(target)], ["evaluate", str(target), "--episodes", "1"],
                ["record", str(target), "--out", str(tmp_path / "a.gif")], ["plot", str(target)]]
    if damage == "version":
        commands = commands[:1]
    if damage == "truncated-model":       # plot reads only the CSV files, which are intact
        commands = commands[:3]
    for cmd in commands:
        assert main(cmd) == 2, cmd
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err and err.startswith("cartpole-dqn: error:"), (cmd, err)


@pytest.mark.parametrize("damage", ["missing", "empty-folder", "truncated-model", "bad-json", "version"])
def test_a_bad_model_is_one_line_and_exit_2_for_evaluate_and_record(model_run, tmp_path, capsys, damage):
    import shutil

    target = tmp_path / "x"
    if damage != "missing":
        shutil.copytree(model_run, target)
    model = target / "model.safetensors"
    if damage == "empty-folder":
        model.unlink()
    elif damage == "truncated-model":
        raw = model.read_bytes()
        model.write_bytes(raw[:len(raw) // 2])
    elif damage == "bad-json":
        model.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}")
    elif damage == "version":
        _rewrite(model_run / "model.safetensors", model, format_version=7)
    commands = [["evaluate", str(target), "--episodes", "1"], ["record", str(target), "--out", str(tmp_path / "a.gif")]]
    for cmd in commands:
        assert main(cmd) == 2, cmd
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err and err.startswith("cartpole-dqn: error:"), (cmd, err)


BOUNDS = input_bounds([-4.8, -3.0, -0.42, -3.5], [4.8, 3.0, 0.42, 3.5])


@pytest.mark.parametrize("kind", [dict(layer_norm=True), dict(noisy=True), dict(dueling=True),
                                  dict(in_center=BOUNDS[0], in_scale=BOUNDS[1]),
                                  dict(layer_norm=True, noisy=True, dueling=True, in_center=BOUNDS[0],
                                       in_scale=BOUNDS[1])], ids=["layer-norm", "noisy", "dueling", "input-scaling",
                                                                 "all"])
def test_a_model_loads_as_the_network_that_was_saved(tmp_path, kind):
    net = Network(4, 2, (8, 8), **kind)
    params = [net.init(jax.random.PRNGKey(seed)) for seed in (0, 1)]
    write_run(tmp_path, net, params)
    policy = load(tmp_path)
    assert {key: getattr(policy.net, key) for key in ("layer_norm", "noisy", "dueling")} == \
           {key: getattr(net, key) for key in ("layer_norm", "noisy", "dueling")}
    x = jax.random.normal(jax.random.PRNGKey(9), (5, 4)) * 3
    for k, p in enumerate(params):
        loaded = jax.tree.map(lambda a: a[k], policy.params)
        np.testing.assert_allclose(policy.net.apply(loaded, x), net.apply(p, x), atol=1e-6)
    np.testing.assert_array_equal(policy.act(np.stack([x[0], x[0]])), [net.apply(p, x[0]).argmax() for p in params])


def test_a_format_1_model_file_of_the_pytorch_trainer_loads_as_the_network_it_held(tmp_path):
    """Format 1 has format 2's names and [in, out] weights, but each bias [1, out] (QNetwork.named_tensors)."""
    net = Network(4, 2, (8, 6), dueling=True)
    params = net.init(jax.random.PRNGKey(3))
    tensors = {f"{layer}.{kind}": np.asarray(t).reshape((1, -1) if kind == "bias" else t.shape)
               for layer, arrays in params.items() for kind, t in arrays.items()}
    meta = {"env": "CartPole-v1", "seed": 4, "obs_size": 4, "n_actions": 2, "hidden": [8, 6], "dueling": True,
            "noisy": False, "layer_norm": False, "format_version": 1}
    save_file(tensors, tmp_path / "v1.safetensors", metadata={k: json.dumps(v) for k, v in meta.items()})
    loaded_net, loaded, loaded_meta = load_model(tmp_path / "v1.safetensors")
    assert loaded_net == net and loaded_meta["seed"] == 4 and loaded["layer0"]["bias"].shape == (8,)
    x = jax.random.normal(jax.random.PRNGKey(9), (5, 4))
    np.testing.assert_allclose(loaded_net.apply(loaded, x), net.apply(params, x), atol=1e-6)
    assert load(tmp_path / "v1.safetensors").seeds == [4]
