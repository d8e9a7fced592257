"""What every request crosses on its way in and out: compression negotiated with real clients (curl
`--compressed` for gzip, br and zstd; compressed request bodies; grpcio with gzip both ways), request ids
(kept or generated, in the response and in the log), CORS, and an early 413 for a declared body over the
limit, answered before `Expect: 100-continue` would let the client send it."""

import gzip
import json
import re
import socket
import subprocess
import uuid

import grpc
import pytest
from conftest import MODEL, Server

TEXTS = [f"compressed answers, text number {i}" for i in range(8)]


@pytest.fixture(scope="module")
def web(tmp_path_factory):
    config = tmp_path_factory.mktemp("http") / "http.toml"
    config.write_text('[http]\ncompression = true\ncors_origins = ["https://app.example.com"]\n')
    # tower_http at debug logs every response, inside the request's span.
    s = Server(["--config", str(config), "--max-body-bytes", "100000"],
               env={"RUST_LOG": "info,tower_http=debug"}).wait_ready()
    yield s
    s.stop()


def curl(*args):
    """curl's response headers (lower-cased names) and body."""
    out = subprocess.run(["curl", "-sS", "-D", "-", *args], capture_output=True, check=True, timeout=60)
    head, _, body = out.stdout.partition(b"\r\n\r\n")
    while head.startswith(b"HTTP/1.1 100"):
        head, _, body = body.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


@pytest.mark.parametrize("encoding", ["gzip", "br", "zstd"])
def test_responses_are_compressed_as_the_client_accepts(web, encoding):
    body = json.dumps({"model": MODEL, "input": TEXTS})
    status, headers, raw = curl("--compressed", "-H", f"accept-encoding: {encoding}", "-H",
                                "content-type: application/json", "-d", body, f"{web.http}/v1/embeddings")
    assert status == 200 and headers["content-encoding"] == encoding
    assert len(json.loads(raw)["data"]) == len(TEXTS)  # curl decoded it


def test_small_and_unaccepted_answers_are_sent_as_they_are(web):
    status, headers, raw = curl("-H", "accept-encoding: gzip", f"{web.http}/health")
    assert status == 200 and "content-encoding" not in headers and json.loads(raw) == {"status": "ok"}
    body = json.dumps({"model": MODEL, "input": TEXTS})
    _, headers, raw = curl("-H", "content-type: application/json", "-d", body, f"{web.http}/v1/embeddings")
    assert "content-encoding" not in headers and len(json.loads(raw)["data"]) == len(TEXTS)


def test_request_bodies_may_be_compressed(web):
    body = gzip.compress(json.dumps({"model": MODEL, "input": TEXTS}).encode())
    proc = subprocess.run(["curl", "-sS", "-w", "\n%{http_code}", "-H", "content-type: application/json",
                           "-H", "content-encoding: gzip", "--data-binary", "@-", f"{web.http}/v1/embeddings"],
                          input=body, capture_output=True, check=True, timeout=60)
    raw, _, status = proc.stdout.rpartition(b"\n")
    assert status == b"200" and len(json.loads(raw)["data"]) == len(TEXTS)
    proc = subprocess.run(["curl", "-sS", "-w", "\n%{http_code}", "-H", "content-type: application/json",
                           "-H", "content-encoding: snappy", "-d", "{}", f"{web.http}/v1/embeddings"],
                          capture_output=True, check=True, timeout=60)
    assert proc.stdout.rpartition(b"\n")[2] == b"415"


def test_event_streams_are_not_compressed(web):
    body = json.dumps({"model": "SmolLM2-135M-Instruct", "stream": True, "max_tokens": 4,
                       "messages": [{"role": "user", "content": "Say hi"}]})
    status, headers, raw = curl("-H", "accept-encoding: gzip", "-H", "content-type: application/json", "-d", body,
                                f"{web.http}/v1/chat/completions")
    assert status == 200 and headers["content-type"].startswith("text/event-stream")
    assert "content-encoding" not in headers and raw.rstrip().endswith(b"data: [DONE]")


def test_request_ids_are_kept_or_made_and_logged(web):
    _, headers, _ = curl(f"{web.http}/v1/models")
    assert uuid.UUID(headers["x-request-id"])
    _, headers, _ = curl("-H", "x-request-id: trace-me-42", f"{web.http}/nowhere")
    assert headers["x-request-id"] == "trace-me-42"
    assert re.search(r"request_id=trace-me-42.*path=/nowhere", web.log_path.read_text())
    with grpc.insecure_channel(f"127.0.0.1:{web.grpc_port}") as channel:
        call = channel.unary_unary("/ferroserve.v1.Inference/ListModels")
        _, info = call.with_call(b"", metadata=[("x-request-id", "grpc-call-9")], timeout=30)
        assert ("x-request-id", "grpc-call-9") in info.initial_metadata()
        _, info = call.with_call(b"", timeout=30)
        assert uuid.UUID(dict(info.initial_metadata())["x-request-id"])


def test_cors_lets_configured_origins_in(web):
    preflight = ["-X", "OPTIONS", "-H", "access-control-request-method: POST", "-H",
                 "access-control-request-headers: authorization, content-type"]
    _, headers, _ = curl(*preflight, "-H", "origin: https://app.example.com", f"{web.http}/v1/embeddings")
    assert headers["access-control-allow-origin"] == "https://app.example.com"
    assert "POST" in headers["access-control-allow-methods"]
    _, headers, _ = curl(*preflight, "-H", "origin: https://evil.example.net", f"{web.http}/v1/embeddings")
    assert "access-control-allow-origin" not in headers


def test_a_declared_oversized_body_gets_413_before_100_continue(web):
    with socket.create_connection(("127.0.0.1", web.http_port), timeout=10) as s:
        s.sendall(b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Expect: 100-continue\r\nContent-Length: 10000000000\r\n\r\n")
        answer = s.recv(4096).decode()
    status_line = answer.split("\r\n")[0]
    assert status_line.startswith("HTTP/1.1 413"), answer
    assert "max_body_bytes" in answer and "100 Continue" not in answer


def embed_message(texts):
    """A ferroserve.v1.EmbedRequest, encoded by hand: field 1 `model`, field 2 `inputs`."""
    model = MODEL.encode()
    return bytes([0x0A, len(model)]) + model + b"".join(bytes([0x12, len(t)]) + t.encode() for t in texts)


def test_grpc_requests_may_be_gzip_compressed(web):
    # grpcio compresses what it sends; the server refuses encodings it does not know with UNIMPLEMENTED.
    with grpc.insecure_channel(f"127.0.0.1:{web.grpc_port}", compression=grpc.Compression.Gzip) as channel:
        answer = channel.unary_unary("/ferroserve.v1.Inference/Embed")(embed_message(TEXTS), timeout=60)
    assert len(answer) > len(TEXTS) * 384 * 4


@pytest.mark.parametrize("encoding", ["gzip", "zstd"])
def test_grpc_answers_are_compressed_for_clients_that_accept_it(web, encoding):
    # curl over HTTP/2 shows what grpcio hides: the grpc-encoding header and the compressed-flag byte.
    message = embed_message(TEXTS)
    frame = b"\x00" + len(message).to_bytes(4, "big") + message
    out = subprocess.run(
        ["curl", "-sS", "--http2-prior-knowledge", "-D", "-", "-o", "-", "-H", "content-type: application/grpc",
         "-H", "te: trailers", "-H", f"grpc-accept-encoding: {encoding}", "--data-binary", "@-",
         f"http://127.0.0.1:{web.grpc_port}/ferroserve.v1.Inference/Embed"],
        input=frame, capture_output=True, check=True, timeout=60)
    head, _, body = out.stdout.partition(b"\r\n\r\n")
    assert f"grpc-encoding: {encoding}".encode() in head.lower(), head
    assert body[0] == 1, "the message is flagged as compressed"
    assert int.from_bytes(body[1:5], "big") < len(TEXTS) * 384 * 4, "and smaller than the raw floats"
