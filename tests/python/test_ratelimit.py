"""Rate limits per API key with the real `openai` client and a real Redis: requests per second with a burst,
tokens per minute (estimated before the request, as OpenAI does), 429 with `Retry-After` and OpenAI's
`x-ratelimit-*` headers, RESOURCE_EXHAUSTED on gRPC, buckets shared by two replicas through Redis, and local
limits when Redis goes away."""

import json
import shutil
import subprocess
import time
import urllib.error
import urllib.request

import grpc
import openai
import pytest
from conftest import MODEL, Server, free_port

SLOW, TOKENS, SHARED = "fs-rl-slow-key", "fs-rl-token-key", "fs-rl-shared-key"


def config_file(tmp_path, redis_url=None):
    path = tmp_path / f"limits-{free_port()}.toml"
    cache = f'[cache]\nredis_url = "{redis_url}"\nredis_timeout_ms = 200\nredis_retry_secs = 60\n' if redis_url else ""
    path.write_text(cache + f"""
[[auth.keys]]
name = "slow"
sha256 = "{sha(SLOW)}"
requests_per_second = 0.2
burst = 2

[[auth.keys]]
name = "tokens"
sha256 = "{sha(TOKENS)}"
tokens_per_minute = 60

[[auth.keys]]
name = "shared"
sha256 = "{sha(SHARED)}"
requests_per_second = 0.1
burst = 3
""")
    return path


def sha(key):
    import hashlib
    return hashlib.sha256(key.encode()).hexdigest()


def embed(server, key, text="hello"):
    body = json.dumps({"model": MODEL, "input": text}).encode()
    req = urllib.request.Request(f"{server.http}/v1/embeddings", data=body,
                                 headers={"content-type": "application/json", "authorization": f"Bearer {key}"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.headers
    except urllib.error.HTTPError as e:
        return e.code, e.headers


@pytest.fixture(scope="module")
def limited(tmp_path_factory):
    s = Server(["--config", str(config_file(tmp_path_factory.mktemp("rl")))]).wait_ready()
    yield s
    s.stop()


def test_requests_per_second_with_a_burst(limited):
    for remaining in ["1", "0"]:
        status, headers = embed(limited, SLOW)
        assert status == 200 and headers["x-ratelimit-remaining-requests"] == remaining
        assert headers["x-ratelimit-limit-requests"] == "2" and headers["x-ratelimit-reset-requests"].endswith("s")
    status, headers = embed(limited, SLOW)
    assert status == 429 and 1 <= int(headers["retry-after"]) <= 5
    client = openai.OpenAI(api_key=SLOW, base_url=f"{limited.http}/v1", max_retries=0)
    with pytest.raises(openai.RateLimitError, match="over its requests limit"):
        client.embeddings.create(model=MODEL, input="x")
    # Open routes are never limited.
    for _ in range(5):
        with urllib.request.urlopen(f"{limited.http}/health", timeout=5) as r:
            assert r.status == 200


def test_tokens_per_minute_count_the_estimate(limited):
    # 60 tokens a minute; a 200-character input costs over 50 of them.
    status, headers = embed(limited, TOKENS, "x" * 200)
    assert status == 200 and int(headers["x-ratelimit-remaining-tokens"]) < 10
    status, headers = embed(limited, TOKENS, "x" * 200)
    assert status == 429 and int(headers["retry-after"]) >= 40
    assert headers["x-ratelimit-limit-tokens"] == "60"


def test_grpc_calls_are_limited_too(tmp_path):
    s = Server(["--config", str(config_file(tmp_path))]).wait_ready()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{s.grpc_port}") as channel:
            call = channel.unary_unary("/ferroserve.v1.Inference/ListModels")
            auth = [("authorization", f"Bearer {SLOW}")]
            call(b"", metadata=auth, timeout=10)
            call(b"", metadata=auth, timeout=10)
            with pytest.raises(grpc.RpcError) as refused:
                call(b"", metadata=auth, timeout=10)
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "over its requests limit" in refused.value.details()
        assert int(dict(refused.value.trailing_metadata())["retry-after-ms"]) > 1000
    finally:
        s.stop()


@pytest.fixture
def redis_server(tmp_path):
    redis = shutil.which("redis-server")
    assert redis, "redis-server is missing: run tests/setup-packages.sh (make test does)"
    port = free_port()
    proc = subprocess.Popen([redis, "--port", str(port), "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            __import__("socket").create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    yield proc, f"redis://127.0.0.1:{port}/0"
    proc.kill()
    proc.wait()


def test_replicas_share_buckets_through_redis_and_fall_back_without_it(tmp_path, redis_server):
    proc, url = redis_server
    config = config_file(tmp_path, url)
    a = Server(["--config", str(config)]).wait_ready()
    b = Server(["--config", str(config)]).wait_ready()
    try:
        # A burst of 3 for the key, wherever its requests land.
        assert embed(a, SHARED)[0] == 200
        assert embed(b, SHARED)[0] == 200
        assert embed(a, SHARED)[0] == 200
        status, headers = embed(b, SHARED)
        assert status == 429, "b saw a's requests in the shared bucket"
        # Redis goes away: each replica keeps serving under its own buckets.
        proc.kill()
        proc.wait()
        statuses = [embed(b, SHARED)[0] for _ in range(4)]
        assert statuses[:3] == [200, 200, 200] and statuses[3] == 429, statuses
    finally:
        a.stop()
        b.stop()
