"""API keys with the real clients: `openai`, `qdrant-client` (REST and gRPC), `tritonclient` (HTTP and
gRPC) and plain HTTP. A key restricted to one model gets 403 / PERMISSION_DENIED for others; only an admin
key may change collections, the repository or the caches; health, readiness and metrics stay open."""

import hashlib
import json
import subprocess
import urllib.error
import urllib.request

import grpc
import numpy as np
import openai
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from conftest import BINARY, MODEL, Server
from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import UnexpectedResponse
from tritonclient.utils import InferenceServerException

APP_KEY = "fs-test-app-key-0f9e"      # models: MiniLM only; no admin
OPS_KEY = "fs-test-ops-key-77c1"      # every model, admin (given as a digest in the file)
ROOT_KEY = "fs-test-root-key-31aa"    # FERROSERVE_API_KEY: every scope
OTHER = "all-MiniLM-L6-v2:onnx"

# qdrant-client warns about keys over plain HTTP; TLS is tested on its own.
pytestmark = pytest.mark.filterwarnings("ignore:Api key is used with an insecure connection")


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    config = tmp_path_factory.mktemp("auth") / "auth.toml"
    config.write_text(f"""
[auth]
open_metrics = true

[[auth.keys]]
name = "app"
env = "FS_TEST_APP_KEY"
models = ["{MODEL}"]

[[auth.keys]]
name = "ops"
sha256 = "{hashlib.sha256(OPS_KEY.encode()).hexdigest()}"
admin = true
""")
    env = {"FS_TEST_APP_KEY": APP_KEY, "FERROSERVE_API_KEY": ROOT_KEY}
    s = Server(["--config", str(config)], env=env).wait_ready()
    yield s
    s.stop()


def call(server, path, key=None, body=None, method=None):
    headers = {"content-type": "application/json"}
    if key:
        headers["authorization"] = f"Bearer {key}"
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"{server.http}{path}", data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.headers, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, e.headers, json.loads(e.read() or b"null")


def test_health_readiness_and_metrics_need_no_key(secured):
    for path in ["/health", "/ready", "/v2/health/ready", "/v2/health/live"]:
        assert call(secured, path)[0] == 200, path
    with urllib.request.urlopen(f"{secured.http}/metrics", timeout=10) as r:
        assert r.status == 200


def test_missing_or_wrong_keys_get_401_with_a_clear_message(secured):
    status, headers, body = call(secured, "/v1/embeddings", body={"model": MODEL, "input": "x"})
    assert status == 401 and headers["www-authenticate"] == "Bearer"
    assert body["error"]["code"] == "missing_api_key" and "Authorization: Bearer" in body["error"]["message"]
    status, _, body = call(secured, "/v1/embeddings", key="nope", body={"model": MODEL, "input": "x"})
    assert status == 401 and body["error"]["code"] == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(api_key="nope", base_url=f"{secured.http}/v1").embeddings.create(model=MODEL, input="x")


def test_openai_client_keys_are_scoped_to_models(secured):
    app = openai.OpenAI(api_key=APP_KEY, base_url=f"{secured.http}/v1")
    assert len(app.embeddings.create(model=MODEL, input="hello").data[0].embedding) == 384
    with pytest.raises(openai.PermissionDeniedError, match=f"may not use model '{OTHER}'"):
        app.embeddings.create(model=OTHER, input="hello")
    # The listing shows what the key may call; the root key sees every model.
    assert [m.id for m in app.models.list()] == [MODEL]
    root = openai.OpenAI(api_key=ROOT_KEY, base_url=f"{secured.http}/v1")
    assert OTHER in [m.id for m in root.models.list()]
    assert len(root.embeddings.create(model=OTHER, input="hello").data) == 1
    # TEI's /embed without a model is for the default embedding model, which the app key may use.
    assert call(secured, "/embed", key=APP_KEY, body={"inputs": "hi"})[0] == 200
    assert call(secured, "/embed", key=APP_KEY, body={"inputs": "hi", "model": OTHER})[0] == 403


def test_admin_routes_need_the_admin_scope(secured):
    status, _, body = call(secured, "/admin/cache/invalidate", key=APP_KEY, body={})
    assert status == 403 and "admin scope" in body["error"]["message"]
    assert call(secured, "/admin/cache/invalidate", key=OPS_KEY, body={})[0] == 200
    assert call(secured, "/chains/x", key=APP_KEY, method="DELETE")[0] == 403


@pytest.mark.parametrize("transport", ["rest", "grpc"])
def test_qdrant_client_writes_need_admin_and_reads_any_key(secured, transport):
    def connect(key):
        if transport == "grpc":
            return QdrantClient(host="127.0.0.1", port=secured.http_port, grpc_port=secured.grpc_port,
                                prefer_grpc=True, api_key=key, https=False, timeout=60)
        return QdrantClient(url=secured.http, api_key=key, https=False, timeout=60)

    name = f"auth-{transport}"
    app, ops = connect(APP_KEY), connect(OPS_KEY)
    config = models.VectorParams(size=4, distance=models.Distance.COSINE)
    with pytest.raises((UnexpectedResponse, grpc.RpcError)) as refused:
        app.create_collection(name, vectors_config=config)
    if transport == "grpc":
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    else:
        assert refused.value.status_code == 403
    ops.create_collection(name, vectors_config=config)
    ops.upsert(name, [models.PointStruct(id=1, vector=[1, 0, 0, 0], payload={"k": "v"})], wait=True)
    hits = app.query_points(name, query=[1, 0, 0, 0], limit=1).points
    assert [h.id for h in hits] == [1]
    with pytest.raises((UnexpectedResponse, grpc.RpcError)):
        connect("nope").get_collections()
    ops.delete_collection(name)


def test_triton_clients_send_keys_as_headers(secured):
    auth = {"authorization": f"Bearer {APP_KEY}"}
    g = grpcclient.InferenceServerClient(f"127.0.0.1:{secured.grpc_port}")
    assert g.is_server_live() and g.is_server_ready()
    with pytest.raises(InferenceServerException, match="API key is required"):
        g.get_model_metadata(MODEL)
    assert g.get_model_metadata(MODEL, headers=auth).name == MODEL
    with pytest.raises(InferenceServerException, match="may not use model"):
        g.get_model_metadata(OTHER, headers=auth)
    with pytest.raises(InferenceServerException, match="admin scope"):
        g.unload_model(OTHER, headers=auth)

    texts = np.array([b"a key per app"], dtype=np.object_)
    h = httpclient.InferenceServerClient(f"127.0.0.1:{secured.http_port}")
    text = httpclient.InferInput("text", [1], "BYTES")
    text.set_data_from_numpy(texts)
    result = h.infer(MODEL, [text], headers=auth)
    assert result.as_numpy("embedding").shape == (1, 384)
    with pytest.raises(InferenceServerException):
        h.infer(OTHER, [text], headers=auth)


def embed_request(model, text):
    """A ferroserve.v1.EmbedRequest, encoded by hand: field 1 `model`, field 2 `inputs`."""
    def field(number, value):
        data = value.encode()
        return bytes([number << 3 | 2, len(data)]) + data
    return field(1, model) + field(2, text)


def test_native_grpc_checks_the_model_of_each_call(secured):
    with grpc.insecure_channel(f"127.0.0.1:{secured.grpc_port}") as channel:
        embed = channel.unary_unary("/ferroserve.v1.Inference/Embed")
        auth = [("authorization", f"Bearer {APP_KEY}")]
        assert len(embed(embed_request(MODEL, "hi"), metadata=auth, timeout=60)) > 384
        with pytest.raises(grpc.RpcError) as denied:
            embed(embed_request(OTHER, "hi"), metadata=auth, timeout=60)
        assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
        with pytest.raises(grpc.RpcError) as missing:
            embed(embed_request(MODEL, "hi"), timeout=60)
        assert missing.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_hash_key_prints_the_digest_the_config_takes():
    out = subprocess.run([str(BINARY), "hash-key"], input="s3cret\n", capture_output=True, text=True, check=True)
    assert out.stdout.strip() == hashlib.sha256(b"s3cret").hexdigest()


def test_a_restricted_key_still_gets_413_for_a_chunked_body_over_the_limit(secured):
    # A raw socket: the server answers 413 as soon as the body passes the limit and may close the connection
    # while the client is still sending, which http.client reports as a broken pipe before reading the answer.
    import socket

    big = json.dumps({"model": MODEL, "input": "x" * 3_000_000}).encode()
    head = (f"POST /v1/embeddings HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
            f"authorization: Bearer {APP_KEY}\r\ntransfer-encoding: chunked\r\n\r\n").encode()
    answer = b""
    with socket.create_connection(("127.0.0.1", secured.http_port), timeout=30) as sock:
        try:
            sock.sendall(head)
            for i in range(0, len(big), 65536):
                chunk = big[i:i + 65536]
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            sock.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server stopped reading: its answer is already on the way
        try:
            while b"\r\n\r\n" not in answer or len(answer.split(b"\r\n\r\n", 1)[1]) < 10:
                data = sock.recv(65536)
                if not data:
                    break
                answer += data
        except ConnectionResetError:
            pass
    status, _, rest = answer.partition(b"\r\n")
    assert status.startswith(b"HTTP/1.1 413"), answer[:200]
    body = rest.split(b"\r\n\r\n", 1)[1]
    assert b"body_too_large" in body, answer[:400]
