"""Smoke test of ``benchmarks/objectives.py --quick``: the script runs, every objective's library
result agrees with its dense plain-torch reference, and the results are written (into tmp_path)."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.mark.filterwarnings("ignore:Sinkhorn did not converge")
def test_objectives_benchmark_quick(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    bench = importlib.import_module("objectives")
    try:
        res = bench.main(["--quick", "--no-baseline", "--out", str(tmp_path)])
    finally:
        sys.modules.pop("objectives", None)
    written = json.loads((tmp_path / "objectives_quick.json").read_text())
    assert (tmp_path / "objectives_quick.md").exists()
    assert written["rows"] == json.loads(json.dumps(res["rows"]))
    names = {r["objective"] for r in res["rows"]}
    assert {"mmd_gaussian", "mmd_energy", "kl_blob", "sliced_wasserstein", "sliced_energy"} <= names
    assert {"sinkhorn_dense", "sinkhorn_lazy"} <= names
    assert {r["n"] for r in res["rows"]} == {100, 200}
    for r in res["rows"]:
        assert r["reference_s"] is not None and r["agree"], r
        assert r["library_s"] > 0
