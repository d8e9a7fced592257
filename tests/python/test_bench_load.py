"""`ferroserve bench load` against a real server in every API it speaks: the requests it reports as answered
were answered (a wrong model name shows up as errors with the server's message), streams report time to
first token, inter-token latency and exactly the tokens asked for, `--compare` measures two servers in one
run, and the table, JSON, CSV and plots are written."""

import csv
import json
import subprocess
import urllib.request

import pytest

from conftest import BINARY, ROOT


def bench_load(out, *args):
    run = subprocess.run([str(BINARY), "bench", "load", "--out", str(out), "--warmup", "2", *args],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    return json.loads((out / "load.json").read_text()), run.stdout


def embedding_cache_hits(server):
    text = urllib.request.urlopen(f"{server.http}/metrics").read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("ferroserve_cache_hits_total") and 'cache="embedding"' in line)


def check_plots(out, report, charts):
    assert report["plots"] == [f"{c}.{ext}" for c in charts for ext in ("png", "svg")]
    for chart in charts:
        assert (out / f"{chart}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (out / f"{chart}.svg").read_text().startswith("<svg")


@pytest.mark.parametrize("api", ["openai-embeddings", "tei", "kserve", "grpc"])
def test_embedding_apis_closed_loop(server, tmp_path, api):
    url = f"http://127.0.0.1:{server.grpc_port}" if api == "grpc" else server.http
    hits = embedding_cache_hits(server)
    report, stdout = bench_load(tmp_path, "--url", url, "--api", api, "--concurrency", "1,4", "--requests", "24",
                                "--batch", "2", "--unique")
    assert embedding_cache_hits(server) == hits, "--unique: no text of any level was seen before"
    assert report["api"] == api and report["unit"] == "texts" and report["machine"] and len(report["date"]) == 10
    [target] = report["targets"]
    assert [l["level"] for l in target["levels"]] == ["c=1", "c=4"]
    for level in target["levels"]:
        assert (level["ok"], level["errors"], level["rejected"]) == (24, 0, 0), level["first_error"]
        assert level["throughput"] == pytest.approx(2 * level["requests_per_second"])
        lat = level["latency_ms"]
        assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"] and len(level["latencies"]) == 24
    assert f"| {url} | c=4 | 24 | 0 | 0 |" in stdout
    rows = list(csv.DictReader((tmp_path / "load.csv").open()))
    assert [r["concurrency"] for r in rows] == ["1", "4"]
    check_plots(tmp_path, report, ["throughput", "latency"])


def test_errors_carry_the_servers_message(server, tmp_path):
    report, stdout = bench_load(tmp_path, "--url", server.http, "--model", "no-such-model", "--concurrency", "2",
                                "--requests", "6")
    level = report["targets"][0]["levels"][0]
    assert (level["ok"], level["errors"]) == (0, 6)
    assert "404" in level["first_error"] and "no-such-model" in level["first_error"]
    assert "first error from" in stdout


def test_compare_measures_two_servers_in_one_run(server, tmp_path):
    report, _ = bench_load(tmp_path, "--url", server.http, "--compare", server.http + "/", "--concurrency", "2,4",
                           "--requests", "16")
    assert [t["url"] for t in report["targets"]] == [server.http, server.http + "/"]
    assert all(l["ok"] == 16 for t in report["targets"] for l in t["levels"])
    assert len(list(csv.DictReader((tmp_path / "load.csv").open()))) == 4


def test_streamed_chat_reports_ttft_and_inter_token_latency(server, tmp_path):
    report, stdout = bench_load(tmp_path, "--url", server.http, "--api", "openai-chat", "--model",
                                "SmolLM2-135M-Instruct", "--concurrency", "2", "--requests", "4", "--max-tokens", "8",
                                "--ignore-eos", "--system", "You answer briefly.", "--unique")
    assert report["unit"] == "tokens"
    level = report["targets"][0]["levels"][0]
    assert (level["ok"], level["errors"]) == (4, 0), level["first_error"]
    # Exactly 8 tokens per answer: the throughput is 32 tokens over the level's time.
    assert level["throughput"] * level["seconds"] == pytest.approx(32, rel=1e-6)
    assert 0 < level["ttft_ms"]["p50"] <= level["latency_ms"]["p50"] and level["itl_ms"]["p50"] > 0
    assert len(level["ttfts"]) == 4 and "TTFT p50 ms" in stdout
    check_plots(tmp_path, report, ["throughput", "latency", "ttft"])


def test_open_loop_sends_at_the_rate(server, tmp_path):
    report, _ = bench_load(tmp_path, "--url", server.http, "--rate", "20", "--duration", "1")
    level = report["targets"][0]["levels"][0]
    assert level["level"] == "r=20/s" and level["rate"] == 20
    assert 18 <= level["ok"] + level["rejected"] + level["errors"] <= 22 and level["errors"] == 0
