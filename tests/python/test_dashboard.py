"""The Grafana dashboard in deploy/grafana/ asks only for metrics the server exports: every metric name in
its queries is one the server's code records, and the core ones appear on /metrics of a server that has
served an embedding and a chat completion."""

import json
import re
import urllib.request

from conftest import MODEL, ROOT

DASHBOARD = ROOT / "deploy" / "grafana" / "ferroserve.json"
SUFFIXES = ("_bucket", "_sum", "_count")


def metric_names():
    panels = json.loads(DASHBOARD.read_text())["panels"]
    exprs = [t["expr"] for p in panels for t in p["targets"]]
    names = {re.sub(r"(_bucket|_sum|_count)$", "", n) for e in exprs for n in re.findall(r"ferroserve_[a-z_]+", e)}
    return names


def test_every_queried_metric_is_recorded_by_the_server():
    source = "\n".join(p.read_text() for p in (ROOT / "serve" / "src").rglob("*.rs"))
    missing = sorted(n for n in metric_names() if f'"{n}"' not in source)
    assert not missing, f"the dashboard asks for metrics the server never records: {missing}"


def test_core_metrics_are_exported_after_traffic(server):
    body = json.dumps({"model": MODEL, "input": ["dashboard check"]}).encode()
    req = urllib.request.Request(f"{server.http}/v1/embeddings", data=body, headers={"content-type": "application/json"})
    urllib.request.urlopen(req, timeout=60).read()
    chat = json.dumps({"model": "SmolLM2-135M-Instruct", "max_tokens": 3,
                       "messages": [{"role": "user", "content": "hi"}]}).encode()
    req = urllib.request.Request(f"{server.http}/v1/chat/completions", data=chat,
                                 headers={"content-type": "application/json"})
    urllib.request.urlopen(req, timeout=120).read()
    exported = urllib.request.urlopen(f"{server.http}/metrics", timeout=10).read().decode()
    core = {"ferroserve_http_requests_total", "ferroserve_http_request_duration_seconds", "ferroserve_queue_depth",
            "ferroserve_batch_size", "ferroserve_lane_busy_microseconds_total", "ferroserve_generation_tokens_total",
            "ferroserve_open_connections", "ferroserve_cache_misses_total"}
    assert core <= metric_names()
    absent = sorted(n for n in core if not re.search(rf"^{n}(_bucket|_sum|_count)?[{{ ]", exported, re.M))
    assert not absent, absent
