"""Starts the real ferroserve binary on free loopback ports for the Python client tests."""

import os
import pathlib
import re
import socket
import subprocess
import tempfile
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


# The server's "listening" line, as text (`http=127.0.0.1:1234`) or JSON (`"http":"127.0.0.1:1234"`).
LISTENING = re.compile(r'"?(http|grpc)"?[=:]"?127\.0\.0\.1:(\d+)')


class Server:
    """The ferroserve binary on ports the kernel picks (port 0): the ports are read back from its "listening"
    line, so no other process can take them between choosing and binding."""

    def __init__(self, extra_args=(), env=None):
        assert BINARY.exists(), f"{BINARY} is missing: run `cargo build --bin ferroserve` (make test does)"
        logs = ROOT / "target" / "e2e-logs"
        logs.mkdir(parents=True, exist_ok=True)
        fd, log_path = tempfile.mkstemp(prefix="python-server-", suffix=".log", dir=logs)
        self.log_path = pathlib.Path(log_path)
        self.log = os.fdopen(fd, "w")
        self.proc = subprocess.Popen(
            [str(BINARY), "serve", "--http-addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0",
             *([] if "--model-repository" in extra_args else
               ["--model-repository", str(ROOT / "deploy" / "model-repository")]),
             "--vectors-path", tempfile.mkdtemp(prefix="python-collections-", dir=logs), *extra_args],
            stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
        )
        self.http_port, self.grpc_port = self._bound_ports()
        self.http = f"http://127.0.0.1:{self.http_port}"

    def _until(self, probe, timeout, what):
        """Polls `probe` until it returns something true (returned), the server exits, or `timeout` passes."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"server exited early; log: {self.log_path}"
            found = probe()
            if found:
                return found
            time.sleep(0.05)
        raise AssertionError(f"server {what} in {timeout}s; log: {self.log_path}")

    def _bound_ports(self):
        def listening():
            for line in self.log_path.read_text(errors="replace").splitlines():
                ports = dict(LISTENING.findall(line)) if "listening" in line else {}
                if "http" in ports and "grpc" in ports:
                    return int(ports["http"]), int(ports["grpc"])
            return None

        return self._until(listening, 120.0, "did not listen")

    def wait_ready(self, timeout=120.0):
        def ready():
            try:
                with urllib.request.urlopen(f"{self.http}/ready", timeout=1) as r:
                    return r.status == 200
            except OSError:
                return False

        self._until(ready, timeout, "not ready")
        return self

    def stop(self):
        self.proc.kill()
        self.proc.wait()
        self.log.close()


@pytest.fixture(scope="session")
def server():
    s = Server().wait_ready()
    yield s
    s.stop()
