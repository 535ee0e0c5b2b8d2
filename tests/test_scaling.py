"""benchmarks/scaling.py runs end to end on the CPU at small K: one JSON entry per (preset, K), every figure there."""

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "scaling.py"
FIGURES = ("solved", "seconds_to_all_solved", "steps_to_all_solved", "wall_seconds", "compile_seconds", "env_steps",
           "env_steps_per_second", "peak_host_bytes", "peak_device_bytes", "checkpoint_seconds", "checkpoints",
           "plot_seconds", "train_call_seconds", "process_seconds")


def test_scaling_smoke_run_reports_every_preset_and_seed_count(tmp_path):
    r = subprocess.run([sys.executable, str(SCRIPT), "--presets", "default", "--seeds-list", "2,1", "--max-steps",
                        "3000", "--device", "cpu", "--compile-cache", "--out", str(tmp_path)],
                       capture_output=True, text=True, timeout=240, cwd=SCRIPT.parents[1])
    assert r.returncode == 0, r.stderr[-2000:]
    report = json.loads((tmp_path / "scaling.json").read_text())
    for key in ("date", "machine", "versions", "settings", "command"):
        assert report[key], key
    assert "jax" in report["versions"] and report["skipped"] == []
    assert [(run["preset"], run["seeds"]) for run in report["runs"]] == [("default", 1), ("default", 2)]
    for run in report["runs"]:
        assert set(FIGURES) <= set(run), set(FIGURES) - set(run)
        assert run["device"].startswith("cpu") and run["rule"]["name"] == "v1" and run["max_steps"] == 3000
        numbers = {k: v for k, v in run.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        assert all(v >= 0 for v in numbers.values()), numbers
        assert 0 <= run["solved"] <= run["seeds"]
        assert run["env_steps"] == 3000 * run["seeds"]      # 3,000 steps cannot solve v1: every seed ran them all
        assert run["seconds_to_all_solved"] is None and run["peak_host_bytes"] > 0
        assert run["compile_seconds"] <= run["wall_seconds"] <= run["train_call_seconds"] <= run["process_seconds"]
        assert run["checkpoints"] >= 1          # train()'s own checkpoint at the end was timed
    printed = r.stdout
    assert "env steps/s" in printed and report["machine"] in printed
