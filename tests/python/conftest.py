"""Starts the real ferroserve binary on free loopback ports for the Python client tests."""

import os
import pathlib
import socket
import subprocess
import time
import urllib.request

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
BINARY = pathlib.Path(os.environ.get("FERROSERVE_BIN", ROOT / "target" / "debug" / "ferroserve"))
MODEL = "all-MiniLM-L6-v2"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, extra_args=(), env=None):
        assert BINARY.exists(), f"{BINARY} is missing: run `cargo build --bin ferroserve` (make test does)"
        self.http_port, self.grpc_port = free_port(), free_port()
        self.http = f"http://127.0.0.1:{self.http_port}"
        logs = ROOT / "target" / "e2e-logs"
        logs.mkdir(parents=True, exist_ok=True)
        self.log_path = logs / f"python-server-{self.http_port}.log"
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [str(BINARY), "serve",
             "--http-addr", f"127.0.0.1:{self.http_port}",
             "--grpc-addr", f"127.0.0.1:{self.grpc_port}",
             *([] if "--model-repository" in extra_args else
               ["--model-repository", str(ROOT / "deploy" / "model-repository")]),
             "--vectors-path", str(logs / f"python-collections-{self.http_port}"), *extra_args],
            stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
        )

    def wait_ready(self, timeout=120.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"server exited early; log: {self.log_path}"
            try:
                with urllib.request.urlopen(f"{self.http}/ready", timeout=1) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"server not ready in {timeout}s; log: {self.log_path}")

    def stop(self):
        self.proc.kill()
        self.proc.wait()
        self.log.close()


@pytest.fixture(scope="session")
def server():
    s = Server().wait_ready()
    yield s
    s.stop()
