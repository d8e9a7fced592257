"""Idle HTTP/2 streams against the gRPC port, as an outside probe opens them: CONNECTIONS connections, each
opening as many EmbedStream calls as it can (headers sent, no message, never ended), held, then closed.
Prints the server's RSS before, while held, and after closing, and how many streams the server accepted.

    python benches/connections_probe.py --pid PID --port GRPC_PORT [--connections 5] [--streams 10000]
"""

import argparse
import socket
import time

import h2.config
import h2.connection
import h2.events


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def open_streams(port, wanted):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    s.sendall(conn.data_to_send())
    # The server's SETTINGS first: how many streams it takes on one connection.
    while not any(isinstance(e, h2.events.RemoteSettingsChanged) for e in conn.receive_data(s.recv(65536))):
        pass
    s.sendall(conn.data_to_send())
    s.settimeout(0.5)
    opened, refused = 0, 0
    headers = [(":method", "POST"), (":scheme", "http"), (":path", "/ferroserve.v1.Inference/EmbedStream"),
               (":authority", f"127.0.0.1:{port}"), ("content-type", "application/grpc"), ("te", "trailers")]
    for _ in range(wanted):
        if conn.open_outbound_streams >= conn.remote_settings.max_concurrent_streams:
            break
        conn.send_headers(conn.get_next_available_stream_id(), headers)
        opened += 1
        if opened % 100 == 0:
            s.sendall(conn.data_to_send())
            try:
                for event in conn.receive_data(s.recv(1 << 20)):
                    if isinstance(event, h2.events.StreamReset):
                        refused += 1
            except (socket.timeout, TimeoutError):
                pass
    s.sendall(conn.data_to_send())
    return s, opened, refused, conn.remote_settings.max_concurrent_streams


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--pid", type=int, required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--connections", type=int, default=5)
    p.add_argument("--streams", type=int, default=10000)
    a = p.parse_args()
    before = rss_mib(a.pid)
    held = [open_streams(a.port, a.streams) for _ in range(a.connections)]
    time.sleep(2)
    during = rss_mib(a.pid)
    for s, *_ in held:
        s.close()
    time.sleep(5)
    after = rss_mib(a.pid)
    opened = sum(h[1] for h in held)
    print(f"connections {a.connections}, streams opened {opened} (server's limit per connection: {held[0][3]})")
    print(f"RSS MiB: before {before:.0f}, with the streams {during:.0f}, 5 s after closing {after:.0f}")


if __name__ == "__main__":
    main()
