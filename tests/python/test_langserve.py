"""Chains through LangChain's own `RemoteRunnable` (langserve[client]) and LCEL: invoke, batch, stream,
schemas, errors, registration through the API, and the RAG example over the seeded `debian-packages`
collection, whose sources must hold the right package for each labelled question in tests/data."""

import asyncio
import functools
import json
import shutil
import time

import httpx
import pytest
from conftest import ROOT, Server
from langchain_core.documents import Document
from langchain_core.messages import AIMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.runnables import RunnableLambda
from langchain_core.tracers.log_stream import RunLog, RunLogPatch
from langserve import RemoteRunnable

ASK = {
    "description": "answers a question in one sentence",
    "configurable": ["max_tokens"],
    "steps": [
        {"name": "prompt", "type": "prompt", "messages": [{"role": "user", "content": "{{ input.question }} Answer in one sentence."}]},
        {"name": "answer", "type": "generate", "model": "SmolLM2-135M-Instruct", "prompt": "prompt", "max_tokens": 24},
    ],
}


@pytest.fixture(scope="module")
def rag(tmp_path_factory):
    """A server with the example config: the debian-packages collection seeded, chains from a copy of deploy/chains."""
    chains = tmp_path_factory.mktemp("chains")
    shutil.copy(ROOT / "deploy" / "chains" / "rag.toml", chains / "rag.toml")
    s = Server(["--config", str(ROOT / "deploy" / "ferroserve.toml"), "--chains-path", str(chains)])
    s.chains = chains
    s.wait_ready(timeout=300)
    yield s
    s.stop()


def test_rag_example_cites_the_right_package(rag):
    chain = RemoteRunnable(f"{rag.http}/chains/rag")
    labelled = json.loads((ROOT / "tests" / "data" / "rag_questions.json").read_text())
    outputs = chain.batch([{"question": q["question"]} for q in labelled])
    assert len(outputs) == len(labelled)
    for q, out in zip(labelled, outputs):
        assert isinstance(out["answer"], AIMessage) and out["answer"].content
        assert all(isinstance(d, Document) for d in out["sources"])
        packages = [d.metadata["package"] for d in out["sources"]]
        assert q["package"] in packages, (q, packages)
    # config.configurable: fewer sources.
    out = chain.invoke({"question": labelled[0]["question"]}, config={"configurable": {"k": 2}})
    assert len(out["sources"]) == 2
    usage = out["answer"].usage_metadata
    assert usage["input_tokens"] > 0 and usage["output_tokens"] > 0


def test_stream_sends_tokens_as_they_come(rag):
    chain = RemoteRunnable(f"{rag.http}/chains/rag")
    arrivals, final = [], None
    for chunk in chain.stream({"question": "Which terminal multiplexer keeps shell sessions running?"}):
        arrivals.append(time.monotonic())
        final = chunk if final is None else final + chunk
    assert len(arrivals) > 3
    assert arrivals[0] < arrivals[-1], "the first chunk came before the last"
    assert final["answer"].content and "tmux" in [d.metadata["package"] for d in final["sources"]]


def test_stream_log_gives_the_run_log_with_each_step(rag):
    """RemoteRunnable.astream_log: patches that build LangChain's run log — streamed chunks as they come, each
    step as a sub-run with its output and times, the final output — and an error event the client raises."""
    chain = RemoteRunnable(f"{rag.http}/chains/rag")
    question = {"question": "Which terminal multiplexer keeps shell sessions running?"}

    async def run_log(**kwargs):
        patches = [p async for p in chain.astream_log(question, **kwargs)]
        return patches

    patches = asyncio.run(run_log())
    assert len(patches) > 4 and all(isinstance(p, RunLogPatch) for p in patches)
    log = functools.reduce(lambda a, b: a + b, patches)
    assert isinstance(log, RunLog)
    state = log.state
    assert state["id"] and state["name"] == "rag"
    assert len(state["streamed_output"]) > 3, "the answer's tokens were streamed"
    final = state["final_output"]
    assert isinstance(final["answer"], AIMessage) and final["answer"].content
    assert "tmux" in [d.metadata["package"] for d in final["sources"]]
    assert list(state["logs"]) == ["sources", "prompt", "answer"]
    sources = state["logs"]["sources"]
    assert sources["type"] == "retriever" and sources["start_time"] <= sources["end_time"]
    assert sources["tags"] == ["seq:step:1"] and state["logs"]["answer"]["type"] == "llm"
    assert [d.metadata["package"] for d in sources["final_output"]] == [d.metadata["package"] for d in final["sources"]]

    # LangChain's filters choose the sub-runs; the root run's output is there either way.
    def logged(**filters):
        state = functools.reduce(lambda a, b: a + b, asyncio.run(run_log(**filters))).state
        assert state["final_output"]["answer"].content
        return list(state["logs"])

    assert logged(include_types=["retriever"]) == ["sources"]
    assert logged(include_names=["answer"], include_tags=["seq:step:2"]) == ["prompt", "answer"]
    assert logged(include_types=["retriever", "llm"], exclude_names=["answer"]) == ["sources"]
    assert logged(exclude_tags=["seq:step:1"]) == ["prompt", "answer"]
    bad = httpx.post(f"{rag.http}/chains/rag/stream_log", json={"input": question, "include_names": "answer"})
    assert bad.status_code == 400 and "include_names" in bad.json()["detail"]

    with pytest.raises(httpx.HTTPStatusError) as e:
        asyncio.run(run_log(config={"configurable": {"max_tokens": 0}}))
    assert "answer" in str(e.value)


def test_a_deadline_stops_the_run(rag):
    """x-ferroserve-timeout-ms: the run stops at the deadline, in the middle of its generation (which is
    cancelled), with a 504 (invoke) or an error event the client raises (stream)."""
    def cancelled():
        lines = httpx.get(f"{rag.http}/metrics").text.splitlines()
        return sum(float(l.split()[-1]) for l in lines if l.startswith("ferroserve_generation_cancelled_total{"))

    def questions():
        # Long answers, asked afresh each time (no cached response). The small model sometimes ends its answer
        # before the deadline; a run that completes is not what is tested here, so up to three questions are asked.
        for _ in range(3):
            yield {"question": f"List twenty Debian packages that edit raster images, one per line. ({time.time_ns()})"}

    long = {"configurable": {"max_tokens": 400}}
    before = cancelled()
    for question in questions():
        started = time.monotonic()
        r = httpx.post(f"{rag.http}/chains/rag/invoke", json={"input": question, "config": long},
                       headers={"x-ferroserve-timeout-ms": "1500"}, timeout=60)
        if r.status_code != 200:
            break
    assert r.status_code == 504 and "deadline" in r.json()["detail"], r.text
    assert time.monotonic() - started < 5
    hurried = RemoteRunnable(f"{rag.http}/chains/rag", headers={"x-ferroserve-timeout-ms": "1500"})
    error = None
    for question in questions():
        try:
            list(hurried.stream(question, config=long))
        except httpx.HTTPStatusError as e:
            error = e
            break
    assert error is not None and "deadline" in str(error), "the stream did not stop at its deadline"
    deadline = time.monotonic() + 10
    while cancelled() < before + 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert cancelled() == before + 2, "both generations were stopped"
    r = httpx.post(f"{rag.http}/chains/rag/invoke", json={"input": next(questions())}, headers={"x-ferroserve-timeout-ms": "soon"})
    assert r.status_code == 400 and "x-ferroserve-timeout-ms" in r.json()["detail"]


def test_registered_chain_in_an_lcel_pipeline_with_schemas_and_errors(rag):
    r = httpx.put(f"{rag.http}/chains/ask", json=ASK, timeout=30)
    assert r.status_code == 200, r.text
    assert (rag.chains / "ask.toml").exists(), "registered chains persist as files"
    pipeline = RemoteRunnable(f"{rag.http}/chains/ask") | StrOutputParser() | RunnableLambda(str.strip)
    answer = pipeline.invoke({"question": "What is the capital of France?"})
    assert isinstance(answer, str) and answer
    pieces = list((RemoteRunnable(f"{rag.http}/chains/ask") | StrOutputParser()).stream({"question": "Name a colour."}))
    assert len(pieces) > 1 and "".join(pieces).strip()

    schema = httpx.get(f"{rag.http}/chains/ask/input_schema").json()
    assert schema["required"] == ["question"]
    assert httpx.get(f"{rag.http}/chains/ask/output_schema").json()["title"] == "AIMessage"
    assert "max_tokens" in httpx.get(f"{rag.http}/chains/ask/config_schema").json()["properties"]["configurable"]["properties"]

    # A bad input is a 400 the client raises; a failing step is an error event the client raises.
    with pytest.raises(httpx.HTTPStatusError) as e:
        RemoteRunnable(f"{rag.http}/chains/ask").invoke({"query": "wrong field"})
    assert e.value.response.status_code == 400 and "input.question" in str(e.value)
    with pytest.raises(httpx.HTTPStatusError) as e:
        list(RemoteRunnable(f"{rag.http}/chains/ask").stream({"question": "x"}, config={"configurable": {"max_tokens": 0}}))
    assert "answer" in str(e.value)
    with pytest.raises(httpx.HTTPStatusError) as e:
        RemoteRunnable(f"{rag.http}/chains/nope").invoke({"question": "x"})
    assert e.value.response.status_code == 404

    # Bad definitions are refused with the reason.
    bad = dict(ASK, steps=[ASK["steps"][0], dict(ASK["steps"][1], model="no-such-model")])
    r = httpx.put(f"{rag.http}/chains/broken", json=bad)
    assert r.status_code == 400 and "no-such-model" in r.json()["detail"]
    bad = dict(ASK, steps=[dict(ASK["steps"][0], type="teleport")])
    assert httpx.put(f"{rag.http}/chains/broken", json=bad).status_code == 400
    assert httpx.delete(f"{rag.http}/chains/ask").status_code == 200
    assert not (rag.chains / "ask.toml").exists()


def test_chain_files_are_reloaded_when_they_change(rag):
    (rag.chains / "echo.toml").write_text(
        '[[steps]]\nname = "out"\ntype = "assign"\nvalues = { said = "{{ input.text }}!" }\n'
    )
    (rag.chains / "bad.toml").write_text('[[steps]]\nname = "x"\ntype = "generate"\nmodel = "m"\nprompt = "later"\n')
    deadline = time.monotonic() + 30
    while "echo" not in [c["name"] for c in httpx.get(f"{rag.http}/chains").json()["chains"]]:
        assert time.monotonic() < deadline, "the new file was not loaded"
        time.sleep(0.2)
    assert RemoteRunnable(f"{rag.http}/chains/echo").invoke({"text": "hi"}) == {"said": "hi!"}
    # map (a chain over each item, two at a time) and parallel (named chains on one input).
    fan = {"steps": [{"name": "each", "type": "map", "over": "input", "chain": "echo", "concurrency": 2}]}
    assert httpx.put(f"{rag.http}/chains/fan", json=fan).status_code == 200
    items = [{"text": str(i)} for i in range(5)]
    assert RemoteRunnable(f"{rag.http}/chains/fan").invoke(items) == [{"said": f"{i}!"} for i in range(5)]
    both = {"steps": [{"name": "b", "type": "parallel", "branches": {"x": "echo", "y": "echo"}}]}
    assert httpx.put(f"{rag.http}/chains/both", json=both).status_code == 200
    assert RemoteRunnable(f"{rag.http}/chains/both").invoke({"text": "a"}) == {"x": {"said": "a!"}, "y": {"said": "a!"}}
    loop = {"steps": [{"name": "b", "type": "parallel", "branches": {"x": "loop"}}]}
    r = httpx.put(f"{rag.http}/chains/loop", json=loop)
    assert r.status_code == 400 and "cycle" in r.json()["detail"]
    names = [c["name"] for c in httpx.get(f"{rag.http}/chains").json()["chains"]]
    assert "bad" not in names and "rag" in names, "a bad file is refused; the others still serve"
    log = rag.log_path.read_text()
    assert "bad.toml" in log and "not an earlier step" in log


def test_a_runaway_template_fails_fast(rag):
    # A registered chain whose template would loop ten billion times runs out of fuel instead.
    spin = "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}"
    chain = {"steps": [{"name": "out", "type": "assign", "values": {"said": spin}}]}
    r = httpx.put(f"{rag.http}/chains/spin", json=chain)
    assert r.status_code == 200, r.text
    started = time.monotonic()
    r = httpx.post(f"{rag.http}/chains/spin/invoke", json={"input": {"text": "x"}}, timeout=60)
    assert r.status_code == 400 and "fuel" in r.text, r.text
    assert time.monotonic() - started < 20
    assert httpx.delete(f"{rag.http}/chains/spin").status_code == 200


class FlakyProxy:
    """Fault injection in front of a real server: answers 429 (with Retry-After: 0) to the first `failures`
    requests, then forwards each request to `target` and relays the answer."""

    def __init__(self, target, failures):
        import http.server
        import threading
        import urllib.request

        proxy = self
        self.failures, self.seen = failures, 0

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["content-length"]))
                proxy.seen += 1
                if proxy.seen <= proxy.failures:
                    self.send_response(429)
                    self.send_header("retry-after", "0")
                    self.end_headers()
                    return
                request = urllib.request.Request(target + self.path, data=body, headers={"content-type": "application/json"})
                with urllib.request.urlopen(request, timeout=60) as r:
                    answer = r.read()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def test_remote_qdrant_and_openai_endpoint_with_retries_and_breaker(rag, tmp_path):
    """A second ferroserve runs the chain; the first stands in for Qdrant (its Qdrant API) and for an
    OpenAI-compatible endpoint (its /v1), behind a proxy that answers 429 twice first."""
    from conftest import free_port

    flaky = FlakyProxy(rag.http, failures=2)
    down = f"http://127.0.0.1:{free_port()}"
    host = Server(["--chains-path", str(tmp_path)]).wait_ready()
    try:
        remote_rag = {
            "steps": [
                {"name": "sources", "type": "retrieve", "collection": "debian-packages", "query": "{{ input.question }}",
                 "k": 3, "qdrant": {"url": rag.http}, "embedding_model": "all-MiniLM-L6-v2"},
                {"name": "prompt", "type": "prompt", "template": "{% for d in sources %}{{ d.page_content }}\n{% endfor %}Q: {{ input.question }}\nA:"},
                {"name": "answer", "type": "generate", "model": "SmolLM2-135M-Instruct", "prompt": "prompt",
                 "max_tokens": 12, "endpoint": {"url": flaky.url + "/v1", "retries": 3}},
            ],
            "output": {"answer": "answer", "sources": "sources"},
        }
        assert httpx.put(f"{host.http}/chains/remote", json=remote_rag).status_code == 200
        out = RemoteRunnable(f"{host.http}/chains/remote").invoke({"question": "Which terminal multiplexer keeps sessions?"})
        assert "tmux" in [d.metadata["package"] for d in out["sources"]]
        assert out["answer"].content and out["answer"].usage_metadata["output_tokens"] > 0
        assert flaky.seen == 3, "two 429s retried, then the answer"

        # The endpoint is down: retries, then the breaker opens and the chain fails fast, saying why.
        dead = dict(remote_rag)
        dead["steps"] = remote_rag["steps"][:2] + [dict(remote_rag["steps"][2], endpoint={
            "url": down + "/v1", "retries": 1, "breaker_failures": 2, "breaker_cooldown_ms": 60000})]
        assert httpx.put(f"{host.http}/chains/dead", json=dead).status_code == 200
        chain = RemoteRunnable(f"{host.http}/chains/dead")
        with pytest.raises(httpx.HTTPStatusError) as e:
            chain.invoke({"question": "x"})
        assert e.value.response.status_code == 503 and "failed after 2 attempts" in str(e.value)
        assert 'step \\"answer\\"' in str(e.value) or 'step "answer"' in str(e.value)
        with pytest.raises(httpx.HTTPStatusError) as e:
            chain.invoke({"question": "x"})
        assert e.value.response.status_code == 503 and "circuit breaker" in str(e.value)
    finally:
        host.stop()


def test_remote_qdrant_over_grpc_finds_what_rest_finds(rag, tmp_path):
    """The retrieve step reaches another server's Qdrant gRPC API (qdrant.Points/Query, `grpc = true`), its
    filter sent as Qdrant's protobuf filter: the sources equal the REST path's, with and without a filter; a
    filter gRPC cannot carry and a dead gRPC endpoint fail the step clearly."""
    from conftest import free_port

    host = Server(["--chains-path", str(tmp_path)]).wait_ready()
    grpc = {"url": f"http://127.0.0.1:{rag.grpc_port}", "grpc": True}
    rest = {"url": rag.http}
    not_these = {"must_not": [{"key": "package", "match": {"any": ["tmux", "screen"]}}],
                 "should": [{"key": "package", "match": {"text": "{{ input.hint }}"}}, {"is_empty": {"key": "package"}},
                            {"key": "package", "match": {"except": ["x"]}}]}

    def register(name, qdrant, filter=None):
        step = {"name": "sources", "type": "retrieve", "collection": "debian-packages",
                "query": "{{ input.question }}", "k": 5, "qdrant": qdrant, "embedding_model": "all-MiniLM-L6-v2"}
        if filter is not None:
            step["filter"] = filter
        r = httpx.put(f"{host.http}/chains/{name}", json={"steps": [step], "output": {"sources": "sources"}})
        assert r.status_code == 200, r.text

    def sources(name):
        out = RemoteRunnable(f"{host.http}/chains/{name}").invoke(
            {"question": "Which terminal multiplexer keeps sessions?", "hint": "u"})
        return [(d.metadata["package"], d.metadata["id"], round(d.metadata["score"], 4)) for d in out["sources"]]

    try:
        for name, qdrant, f in [("rest", rest, None), ("grpc", grpc, None), ("rest-f", rest, not_these),
                                ("grpc-f", grpc, not_these)]:
            register(name, qdrant, f)
        plain, filtered = sources("grpc"), sources("grpc-f")
        assert plain == sources("rest") and len(plain) == 5
        assert "tmux" in [p for p, _, _ in plain]
        assert filtered == sources("rest-f") and len(filtered) == 5
        assert not {"tmux", "screen"} & {p for p, _, _ in filtered}

        register("mixed", grpc, {"must": [{"key": "package", "match": {"any": ["tmux", 3]}}]})
        with pytest.raises(httpx.HTTPStatusError) as e:
            sources("mixed")
        assert "only all strings or all integers go over gRPC" in str(e.value) and "sources" in str(e.value)

        register("dead", {"url": f"http://127.0.0.1:{free_port()}", "grpc": True, "retries": 1, "timeout_ms": 2000})
        with pytest.raises(httpx.HTTPStatusError) as e:
            sources("dead")
        assert e.value.response.status_code == 503 and "failed after 2 attempts" in str(e.value)
    finally:
        host.stop()
