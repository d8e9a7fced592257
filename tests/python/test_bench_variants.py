"""`ferroserve bench variants` on the default repository's MiniLM variants: the files it writes hold every
field, the reference agrees with itself, the ONNX export agrees with Candle, INT8 drifts measurably, and the
recommendation honours the bound."""

import csv
import json
import subprocess

from conftest import BINARY, ROOT


def test_variant_benchmark_writes_table_json_and_csv(tmp_path):
    run = subprocess.run(
        [str(BINARY), "bench", "variants", "--model", "all-MiniLM-L6-v2", "--limit", "60", "--batch", "1,4",
         "--min-cosine", "0.999", "--out", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    assert "| all-MiniLM-L6-v2 (reference) |" in run.stdout
    report = json.loads((tmp_path / "variants.json").read_text())
    assert report["reference"] == "all-MiniLM-L6-v2" and report["inputs"] == 60
    assert report["task"] == "embedding" and report["unit"] == "texts" and report["bound"] == ["cosine_p1", 0.999]
    assert report["machine"] and len(report["date"]) == 10
    variants = {v["name"]: v for v in report["variants"]}
    assert set(variants) == {"all-MiniLM-L6-v2", "all-MiniLM-L6-v2:onnx", "all-MiniLM-L6-v2:onnx-int8",
                             "all-MiniLM-L6-v2:onnx-fp16"}
    for v in variants.values():
        assert v["file_bytes"] > 10_000_000 and v["load_seconds"] > 0 and v["rss_peak_mib"] > 0
        assert [s["batch"] for s in v["speed"]] == [1, 4]
        for s in v["speed"]:
            assert s["throughput"] > 0 and 0 < s["latency_ms_p50"] <= s["latency_ms_p90"] <= s["latency_ms_p99"]
    assert variants["all-MiniLM-L6-v2"]["drift"] is None
    onnx, int8 = variants["all-MiniLM-L6-v2:onnx"]["drift"], variants["all-MiniLM-L6-v2:onnx-int8"]["drift"]
    assert onnx["cosine_min"] > 0.9999 and onnx["neighbour_overlap"] > 0.99
    assert 0.95 < int8["cosine_min"] <= int8["cosine_p1"] <= int8["cosine_mean"] < 0.9999
    # Recommended: the fastest at the largest batch among those within the bound (INT8 is not).
    within = [v for v in variants.values() if v["drift"] is None or v["drift"]["cosine_p1"] >= 0.999]
    fastest = max(within, key=lambda v: v["speed"][-1]["throughput"])
    assert report["recommendation"] == fastest["name"] != "all-MiniLM-L6-v2:onnx-int8"
    rows = list(csv.DictReader((tmp_path / "variants.csv").open()))
    assert len(rows) == 8 and {r["batch"] for r in rows} == {"1", "4"}
    assert float(next(r for r in rows if r["variant"].endswith("onnx-int8"))["cosine_mean"]) == \
        round(int8["cosine_mean"], 6)
    for chart in ("throughput", "pareto", "latency"):
        assert (tmp_path / f"{chart}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (tmp_path / f"{chart}.svg").read_text().startswith("<svg")
    assert len(report["plots"]) == 6
