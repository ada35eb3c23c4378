"""scripts/gpu_check.py in its --dry-run mode (the GPU code path on the CPU, tiny nets and times), and
benchmark.throughput_table on the JSON it writes."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from gwf_tutorial import benchmark, cifar10

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def dry(tmp_path_factory):
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "scripts" / "gpu_check.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = tmp_path_factory.mktemp("gpu") / "gpu_check.json"
    mod.main(["--dry-run", "--out", str(out), "--seconds", "0.2", "--profile-steps", "1"])
    return json.loads(out.read_text())


def test_dry_run_measures_every_method_and_checks_resume_and_torchrun(dry):
    assert dry["schema"] == benchmark.GPU_CHECK_SCHEMA and dry["dry_run"] is True
    measured = [(r["method"], r["precision"]) for r in dry["throughput"]]
    assert measured == [(m, "bf16") for m in cifar10.METHODS] + [("jko-kldv", "fp32")]
    for r in dry["throughput"]:
        assert r["steady_iters"] >= 2 and r["steady_it_per_s"] == pytest.approx(
            r["steady_iters"] / r["steady_s"], rel=1e-2
        )
        assert r["startup_s"] > 0 and r["autocast_active"] is False  # no bf16 autocast on a CPU
    res = dry["resume"]
    assert 0 < res["killed_at_step"] < res["total_iters"] == res["resumed_to_step"]  # resumed to the end
    assert res["bit_exact"] is True and res["expected_bit_exact"] is True  # on a CPU: bit for bit
    assert dry["torchrun"]["returncode"] == 0 and dry["torchrun"]["status"] == "done"
    objectives_present = (ROOT / "benchmarks" / "objectives.py").exists()
    assert dry["objectives"]["present"] is objectives_present
    for m in cifar10.METHODS:
        prof = dry["profile"][m]
        assert prof["top"] and sum(t["percent"] for t in prof["top"]) <= 100.0 + 1e-6
        assert set(prof["syncs_per_step"]) >= {"cudaStreamSynchronize", "aten::_local_scalar_dense"}
    # S-JKO's train_step reads nothing back to the host (no synchronisation); the census does count reads
    assert dry["host_reads"]["sjko"]["per_step"] == 0
    assert dry["host_reads"]["jko-mmd"]["per_step"] > 0


def test_throughput_table_gives_recipe_hours(dry):
    rows = benchmark.throughput_table(dry)
    assert [r["method"] for r in rows] == list(cifar10.METHODS)
    speed = {r["method"]: r["steady_it_per_s"] for r in dry["throughput"] if r["precision"] == "bf16"}
    for r in rows:
        iters = cifar10.make_config(r["method"], "small").total_iters
        assert r["recipe_iters"] == iters
        assert r["hours"] == pytest.approx(iters / speed[r["method"]] / 3600)
        assert r["dry_run"] is True
    assert [r["method"] for r in benchmark.throughput_table(dry, precision="fp32")] == ["jko-kldv"]
    with pytest.raises(ValueError, match="schema"):
        benchmark.throughput_table({"schema": "other"})
    with pytest.raises(ValueError, match="precision"):
        benchmark.throughput_table(dry, precision="fp16")
