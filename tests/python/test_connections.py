"""Connection hygiene, probed from outside as an attacker or a broken client would: a client that never
finishes its headers, an idle keep-alive connection, a body that stops half-way, more connections than the
cap on either port, and the HTTP/2 stream limit the server announces. Each gets a clear answer or a closed
connection within the configured time, never a connection held open for ever."""

import json
import socket
import time

import grpc
import h2.config
import h2.connection
import h2.events
import h2.settings
import pytest
from conftest import Server

CAP = 6


@pytest.fixture(scope="module")
def strict(tmp_path_factory):
    config = tmp_path_factory.mktemp("connections") / "connections.toml"
    config.write_text(f"""
[connections]
max_connections = {CAP}
header_read_timeout_secs = 2
body_read_timeout_secs = 2
max_streams_per_connection = 16
""")
    s = Server(["--config", str(config)]).wait_ready()
    yield s
    s.stop()


def closed_within(sock, seconds):
    """Reads until the server closes the connection; returns what it sent and how long that took."""
    sock.settimeout(seconds)
    started, received = time.monotonic(), b""
    try:
        while chunk := sock.recv(4096):
            received += chunk
    except (ConnectionResetError, TimeoutError, socket.timeout):
        pass
    return received, time.monotonic() - started


def test_unfinished_headers_are_cut_off(strict):
    with socket.create_connection(("127.0.0.1", strict.http_port)) as s:
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        received, took = closed_within(s, 15)
    assert took < 10, f"held for {took:.1f} s"


def test_idle_keep_alive_connections_are_closed(strict):
    with socket.create_connection(("127.0.0.1", strict.http_port)) as s:
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.3)
        first = s.recv(4096)
        assert first.startswith(b"HTTP/1.1 200")
        _, took = closed_within(s, 15)
    assert took < 10, f"idle connection held for {took:.1f} s"


def test_a_body_that_stops_half_way_is_given_up(strict):
    with socket.create_connection(("127.0.0.1", strict.http_port)) as s:
        s.sendall(b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 400\r\n\r\n{\"model\": \"all-")
        received, took = closed_within(s, 15)
    assert took < 10, f"held for {took:.1f} s"
    assert received.startswith(b"HTTP/1.1 408"), received[:200]
    assert b"body_read_timeout_secs" in received


def test_connections_over_the_cap_get_an_answer(strict):
    held = [socket.create_connection(("127.0.0.1", strict.http_port)) for _ in range(CAP)]
    try:
        time.sleep(0.2)
        with socket.create_connection(("127.0.0.1", strict.http_port)) as extra:
            extra.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            received, took = closed_within(extra, 5)
        assert received.startswith(b"HTTP/1.1 429"), received[:200]
        assert b"retry-after: 1" in received and b"max_connections" in received
    finally:
        for s in held:
            s.close()
    time.sleep(0.3)
    with socket.create_connection(("127.0.0.1", strict.http_port), timeout=5) as again:
        again.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert closed_within(again, 5)[0].startswith(b"HTTP/1.1 200"), "slots are freed when connections close"


def test_grpc_connections_over_the_cap_are_refused_at_once(strict):
    held = [socket.create_connection(("127.0.0.1", strict.grpc_port)) for _ in range(CAP)]
    try:
        time.sleep(0.2)
        started = time.monotonic()
        with grpc.insecure_channel(f"127.0.0.1:{strict.grpc_port}") as channel:
            with pytest.raises(grpc.RpcError) as refused:
                channel.unary_unary("/ferroserve.v1.Inference/ListModels")(b"", timeout=20)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        assert time.monotonic() - started < 10
    finally:
        for s in held:
            s.close()
    time.sleep(0.3)
    with grpc.insecure_channel(f"127.0.0.1:{strict.grpc_port}") as channel:
        assert channel.unary_unary("/ferroserve.v1.Inference/ListModels")(b"", timeout=20) is not None


@pytest.mark.parametrize("port", ["http", "grpc"])
def test_http2_streams_per_connection_are_limited(strict, port):
    number = strict.http_port if port == "http" else strict.grpc_port
    with socket.create_connection(("127.0.0.1", number), timeout=10) as s:
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        conn.initiate_connection()
        s.sendall(conn.data_to_send())
        settings = None
        while settings is None:
            for event in conn.receive_data(s.recv(65536)):
                if isinstance(event, h2.events.RemoteSettingsChanged):
                    settings = event.changed_settings
            s.sendall(conn.data_to_send())
    assert settings[h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS].new_value == 16


def test_shutdown_lets_streams_in_flight_finish():
    import http.client
    import signal

    server = Server().wait_ready()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=60)
        body = json.dumps({"model": "SmolLM2-135M-Instruct", "stream": True, "max_tokens": 48,
                           "temperature": 0, "messages": [{"role": "user", "content": "Count from one to twenty."}]})
        conn.request("POST", "/v1/chat/completions", body, {"content-type": "application/json"})
        response = conn.getresponse()
        assert response.status == 200
        first = response.readline()
        assert first.startswith(b"data: ")
        server.proc.send_signal(signal.SIGTERM)
        rest = response.read()
        assert rest.rstrip().endswith(b"data: [DONE]"), rest[-200:]
        chunks = [line for line in (first + rest).split(b"\n") if line.startswith(b"data: {")]
        assert len(chunks) > 5, "the stream went on after SIGTERM"
        assert server.proc.wait(timeout=30) == 0
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", server.http_port), timeout=2)
    finally:
        server.stop()
