"""The OpenAPI document and the docs page, and schemathesis against the real server: every operation fuzzed
(positive and negative data) with zero 5xx answers and every response matching the document."""

import os
import re
import subprocess
import urllib.request

import httpx
import pytest
from conftest import ROOT, Server

ST = ROOT / "tests" / ".venv" / "bin" / "st"


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    """MiniLM and SmolLM2 with a 96-token context (so fuzzed generations stay short), one collection that
    embeds texts and one chain."""
    repo = tmp_path_factory.mktemp("repo")
    for name in ["all-MiniLM-L6-v2", "SmolLM2-135M-Instruct"]:
        text = (ROOT / "deploy" / "model-repository" / f"{name}.toml").read_text()
        text = text.replace('path = "../../', f'path = "{ROOT}/')
        text = text.replace("max_context_tokens = 4096", "max_context_tokens = 96")
        text = text.replace("kv_cache_mb = 1024", "kv_cache_mb = 64")
        (repo / f"{name}.toml").write_text(text)
    chains = tmp_path_factory.mktemp("chains")
    (chains / "ask.toml").write_text(
        'description = "answers briefly"\n'
        '[[steps]]\nname = "prompt"\ntype = "prompt"\n'
        'messages = [{ role = "user", content = "{{ input.question }}" }]\n'
        '[[steps]]\nname = "answer"\ntype = "generate"\nmodel = "SmolLM2-135M-Instruct"\nprompt = "prompt"\nmax_tokens = 8\n'
    )
    s = Server(["--model-repository", str(repo), "--chains-path", str(chains)]).wait_ready(timeout=300)
    create = {"vectors": {"size": 384, "distance": "Cosine"}, "embedding_model": "all-MiniLM-L6-v2"}
    assert httpx.put(f"{s.http}/collections/docs", json=create).status_code == 200
    points = [{"id": i, "vector": {"text": t}, "payload": {"n": i}} for i, t in enumerate(["a cat", "a dog", "tea"])]
    assert httpx.put(f"{s.http}/collections/docs/points", json={"points": points}).status_code == 200
    yield s
    s.stop()


def test_document_describes_every_route(api):
    doc = httpx.get(f"{api.http}/openapi.json").json()
    assert doc["openapi"].startswith("3.1")
    paths = doc["paths"]
    for path, method in [
        ("/v1/embeddings", "post"), ("/v1/chat/completions", "post"), ("/v1/completions", "post"),
        ("/v1/models", "get"), ("/embed", "post"), ("/collections/{name}", "put"),
        ("/collections/{name}/points/query", "post"), ("/v2/models/{model}/infer", "post"),
        ("/v2/repository/index", "post"), ("/chains/{name}/invoke", "post"), ("/chains/{name}", "delete"),
        ("/admin/cache/invalidate", "post"), ("/health", "get"), ("/ready", "get"), ("/metrics", "get"),
        ("/openapi.json", "get"), ("/docs", "get"),
    ]:
        assert method in paths.get(path, {}), f"{method.upper()} {path} is not in the document"
    operations = sum(len(v) for v in paths.values())
    assert operations >= 52, operations
    schemas = doc["components"]["schemas"]
    assert {"ChatCompletionRequest", "EmbeddingsRequest", "Filter", "Condition", "InferRequest"} <= schemas.keys()
    # Every operation says what its errors look like, in its protocol's shape.
    embed_errors = paths["/embed"]["post"]["responses"]["4XX"]["content"]["application/json"]["schema"]
    assert embed_errors["$ref"].endswith("/TeiErrorBody")
    assert {"bearer", "api-key"} <= doc["components"]["securitySchemes"].keys()


def test_docs_page_is_served_from_the_binary(api):
    page = httpx.get(f"{api.http}/docs")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    # Nothing from elsewhere: every script and stylesheet is relative to the server.
    assert "http://" not in page.text and "https://" not in page.text
    assert 'src="docs/swagger-ui-bundle.js"' in page.text
    bundle = httpx.get(f"{api.http}/docs/swagger-ui-bundle.js")
    assert bundle.status_code == 200 and "javascript" in bundle.headers["content-type"]
    assert len(bundle.content) > 1_000_000, "the build did not find Swagger UI (deploy/fetch-assets.sh fetches it)"
    assert httpx.get(f"{api.http}/docs/swagger-ui.css").status_code == 200
    assert httpx.get(f"{api.http}/docs/nothing.js").status_code == 404


def test_schemathesis_finds_no_server_error_and_no_schema_violation(api, tmp_path):
    report = tmp_path / "report.json"
    cmd = [str(ST), "--config-file", str(ROOT / "tests" / "schemathesis" / "schemathesis.toml"), "run",
           f"{api.http}/openapi.json", "--max-examples", os.environ.get("FERROSERVE_ST_EXAMPLES", "25"),
           "--report", "ndjson", "--report-ndjson-path", str(report), "--no-color"]
    hooks = ROOT / "tests" / "schemathesis" / "hooks.py"
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, cwd=tmp_path,
                         env={**os.environ, "SCHEMATHESIS_HOOKS": str(hooks)})
    print(run.stdout[-6000:])
    assert run.returncode == 0, f"schemathesis failed:\n{run.stdout[-12000:]}\n{run.stderr[-2000:]}"
    generated = re.search(r"(\d+) generated, (\d+) passed", run.stdout)
    assert generated and int(generated[1]) > 1000 and generated[1] == generated[2], run.stdout[-3000:]
    # The run reached the models, the collection and the chain, not only 404s.
    with urllib.request.urlopen(f"{api.http}/metrics") as r:
        answered = [line for line in r.read().decode().splitlines()
                    if line.startswith("ferroserve_http_requests_total") and 'status="200"' in line]
    for route in ["/v1/embeddings", "/v1/chat/completions", "/embed", "/collections/{name}/points/query",
                  "/v2/models/{model}/infer", "/chains/{name}/invoke"]:
        assert any(f'route="{route}"' in line for line in answered), f"no 200 from {route}"
