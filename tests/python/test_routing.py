"""A/B routing of model aliases through the real clients: the split follows the weights and is sticky per
caller key, the served variant is named in a response header, routes change at run time through the admin API,
and a shadow candidate's drift, recorded as metrics, equals the same comparison computed here."""

import math
import re
import time

import httpx
import openai
import pytest
from conftest import ROOT, Server

PRIMARY, INT8, FP16 = "all-MiniLM-L6-v2:onnx", "all-MiniLM-L6-v2:onnx-int8", "all-MiniLM-L6-v2:onnx-fp16"
LLM = "SmolLM2-135M-Instruct"


@pytest.fixture(scope="module")
def routed(tmp_path_factory):
    config = tmp_path_factory.mktemp("routes") / "ferroserve.toml"
    config.write_text(
        f'[[routes]]\nalias = "minilm"\n'
        f'variants = [{{ model = "{PRIMARY}", weight = 70 }}, {{ model = "{INT8}", weight = 30 }}]\n'
    )
    s = Server(["--config", str(config)]).wait_ready(timeout=300)
    s.client = openai.OpenAI(base_url=f"{s.http}/v1", api_key="unused")
    yield s
    s.stop()


def served_by(server, key, text="which variant am I on?"):
    r = server.client.embeddings.with_raw_response.create(
        model="minilm", input=text, extra_headers={"x-ferroserve-route-key": key})
    return r.headers["x-ferroserve-model"], r.parse()


def test_split_follows_the_weights_and_sticks_to_the_caller(routed):
    first = {}
    for i in range(300):
        variant, body = served_by(routed, f"caller-{i}")
        assert body.model == variant and variant in (PRIMARY, INT8)
        first[i] = variant
    share = sum(v == INT8 for v in first.values()) / len(first)
    # 30% by weight; the binomial standard deviation at n = 300 is 2.6 points.
    assert abs(share - 0.30) < 0.09, share
    for i in range(0, 300, 30):
        assert all(served_by(routed, f"caller-{i}")[0] == first[i] for _ in range(3)), "sticky per key"
    assert "minilm" in {m.id for m in routed.client.models.list()}


def test_routes_change_at_run_time(routed):
    admin = httpx.Client(base_url=routed.http)
    assert [r["alias"] for r in admin.get("/admin/routes").json()["routes"]] == ["minilm"]
    r = admin.put("/admin/routes/minilm", json={"variants": [{"model": INT8, "weight": 1}]})
    assert r.status_code == 200 and r.json()["variants"] == [{"model": INT8, "weight": 1.0}]
    assert {served_by(routed, f"k{i}")[0] for i in range(20)} == {INT8}
    # Refused with the reason: a variant that is not a model, weights that add up to nothing, a mixed task.
    for body, reason in [
        ({"variants": [{"model": "nope", "weight": 1}]}, "not a model"),
        ({"variants": [{"model": INT8, "weight": 0}]}, "add up to 0"),
        ({"variants": [{"model": INT8, "weight": 1}, {"model": LLM, "weight": 1}]}, "same task"),
        ({"variants": [{"model": INT8, "weight": 1}], "shadow": {"model": FP16, "share": 2}}, "between 0 and 1"),
    ]:
        r = admin.put("/admin/routes/minilm", json=body)
        assert r.status_code == 400 and reason in r.json()["error"]["message"], (body, r.text)
    assert admin.put(f"/admin/routes/{PRIMARY}", json={"variants": [{"model": INT8, "weight": 1}]}).status_code == 400
    admin.put("/admin/routes/minilm",
              json={"variants": [{"model": PRIMARY, "weight": 70}, {"model": INT8, "weight": 30}]})
    assert admin.delete("/admin/routes/gone").status_code == 404


def metric(server, name, labels):
    text = httpx.get(f"{server.http}/metrics").text
    selector = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        m = re.match(rf"{name}\{{(.*)\}} (\S+)$", line)
        if m and ",".join(sorted(m[1].split(","))) == selector:
            return float(m[2])
    return 0.0


def cosine(a, b):
    return sum(x * y for x, y in zip(a, b)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


def test_shadow_drift_equals_the_offline_comparison(routed):
    admin = httpx.Client(base_url=routed.http)
    route = {"variants": [{"model": PRIMARY, "weight": 1}], "shadow": {"model": FP16, "share": 1.0}}
    assert admin.put("/admin/routes/minilm-shadow", json=route).status_code == 200
    texts = ["the shadow sees this text", "and this one", "a third, longer text for the fp16 candidate"]
    r = routed.client.embeddings.with_raw_response.create(model="minilm-shadow", input=texts)
    assert r.headers["x-ferroserve-model"] == PRIMARY
    labels = {"alias": "minilm-shadow", "primary": PRIMARY, "candidate": FP16}
    deadline = time.monotonic() + 30
    while metric(routed, "ferroserve_shadow_cosine_count", labels) < len(texts) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert metric(routed, "ferroserve_shadow_cosine_count", labels) == len(texts)
    assert metric(routed, "ferroserve_shadow_requests_total", {**labels, "outcome": "ok"}) == 1
    # The same comparison here: each variant asked directly.
    primary = [d.embedding for d in routed.client.embeddings.create(model=PRIMARY, input=texts).data]
    candidate = [d.embedding for d in routed.client.embeddings.create(model=FP16, input=texts).data]
    offline = sum(cosine(a, b) for a, b in zip(primary, candidate))
    recorded = metric(routed, "ferroserve_shadow_cosine_sum", labels)
    assert abs(recorded - offline) < 1e-4, (recorded, offline)
    assert 0.99 < recorded / len(texts) <= 1.0 + 1e-6, "FP16 stays close to FP32"
    assert metric(routed, "ferroserve_shadow_seconds_count", labels) == 1


def test_generation_shadow_records_token_agreement(routed):
    admin = httpx.Client(base_url=routed.http)
    # The candidate is the model itself: greedy decoding agrees on every token.
    route = {"variants": [{"model": LLM, "weight": 1}], "shadow": {"model": LLM, "share": 1.0}}
    assert admin.put("/admin/routes/chat", json=route).status_code == 200
    answer = routed.client.chat.completions.create(
        model="chat", messages=[{"role": "user", "content": "Name three colours."}], max_tokens=12, temperature=0,
        extra_body={"cache": "skip"})
    assert answer.model == LLM and answer.usage.completion_tokens > 0
    labels = {"alias": "chat", "primary": LLM, "candidate": LLM}
    deadline = time.monotonic() + 60
    while metric(routed, "ferroserve_shadow_token_agreement_count", labels) < 1 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert metric(routed, "ferroserve_shadow_token_agreement_count", labels) == 1
    assert metric(routed, "ferroserve_shadow_token_agreement_sum", labels) == 1.0
    # Streaming through the relay loses nothing.
    stream = routed.client.chat.completions.create(
        model="chat", messages=[{"role": "user", "content": "Name three colours."}], max_tokens=12, temperature=0,
        stream=True, extra_body={"cache": "skip"})
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == answer.choices[0].message.content
