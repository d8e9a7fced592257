"""TLS on both ports with a certificate made for the test: the `openai` client over https, HTTP/2 chosen by
ALPN (curl), gRPC over TLS (grpcio), a plain-text client refused, and a new certificate picked up from the
files without a restart."""

import os
import ssl
import subprocess
import time

import grpc
import httpx
import openai
import pytest
from conftest import MODEL, Server


def make_certificate(folder, name):
    """A self-signed certificate for 127.0.0.1 and localhost, written beside its key, then moved into place."""
    cert, key = folder / f"{name}.crt", folder / f"{name}.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", key, "-out", cert, "-days", "2", "-subj", f"/CN={name}",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"], check=True, capture_output=True)
    return cert, key


def trust(folder):
    """A client context that trusts the test's certificate as it is now."""
    return ssl.create_default_context(cafile=str(folder / "server.crt"))


@pytest.fixture(scope="module")
def secure(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tls")
    cert, key = make_certificate(folder, "first")
    os.replace(cert, folder / "server.crt")
    os.replace(key, folder / "server.key")
    config = folder / "tls.toml"
    config.write_text('[tls]\ncert = "server.crt"\nkey = "server.key"\nreload_secs = 1\n')
    s = Server(["--config", str(config)])
    s.https = f"https://127.0.0.1:{s.http_port}"
    s.folder = folder
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{s.https}/ready", verify=trust(folder), timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.2)
    yield s
    s.stop()


def test_openai_client_over_https(secure):
    client = openai.OpenAI(api_key="unused", base_url=f"{secure.https}/v1",
                           http_client=httpx.Client(verify=trust(secure.folder)))
    assert len(client.embeddings.create(model=MODEL, input="over TLS").data[0].embedding) == 384


def test_alpn_offers_http2_and_plain_text_is_refused(secure):
    out = subprocess.run(["curl", "-sS", "--cacert", secure.folder / "server.crt", "-o", "/dev/null", "-w",
                          "%{http_version}", f"{secure.https}/health"], capture_output=True, text=True, check=True)
    assert out.stdout == "2"
    plain = subprocess.run(["curl", "-sS", "-m", "10", f"http://127.0.0.1:{secure.http_port}/health"],
                           capture_output=True, text=True)
    assert plain.returncode != 0


def test_grpc_over_tls(secure):
    credentials = grpc.ssl_channel_credentials(root_certificates=(secure.folder / "server.crt").read_bytes())
    with grpc.secure_channel(f"127.0.0.1:{secure.grpc_port}", credentials) as channel:
        assert channel.unary_unary("/ferroserve.v1.Inference/ListModels")(b"", timeout=30)
    with grpc.insecure_channel(f"127.0.0.1:{secure.grpc_port}") as channel:
        with pytest.raises(grpc.RpcError) as refused:
            channel.unary_unary("/ferroserve.v1.Inference/ListModels")(b"", timeout=10)
    assert refused.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


def served_subject(secure):
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with context.wrap_socket(__import__("socket").create_connection(("127.0.0.1", secure.http_port))) as s:
        der = s.getpeercert(binary_form=True)
    return subprocess.run(["openssl", "x509", "-inform", "DER", "-noout", "-subject"], input=der,
                          capture_output=True, check=True).stdout.decode()


def test_a_new_certificate_is_picked_up_without_a_restart(secure):
    assert "CN = first" in served_subject(secure)
    cert, key = make_certificate(secure.folder, "second")
    os.replace(key, secure.folder / "server.key")
    os.replace(cert, secure.folder / "server.crt")
    deadline = time.monotonic() + 15
    while "CN = second" not in served_subject(secure):
        assert time.monotonic() < deadline, "the new certificate was not served"
        time.sleep(0.3)
    client = openai.OpenAI(api_key="unused", base_url=f"{secure.https}/v1",
                           http_client=httpx.Client(verify=trust(secure.folder)))
    assert client.models.list().data
