"""Mixed traffic against a running ferroserve for a while, its resident memory sampled every second:
embeddings of new texts (misses), of a fixed set (cache hits), chat streams, and every minute an overload
burst of concurrent requests. Counts answers by status; anything but 200 and 429 is an error.

    python benches/soak.py --url http://127.0.0.1:18080 --pid PID --seconds 1800 --out rss.csv
"""

import argparse
import collections
import concurrent.futures
import json
import threading
import time
import urllib.error
import urllib.request

MODEL, LLM = "all-MiniLM-L6-v2", "SmolLM2-135M-Instruct"


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        return next(int(l.split()[1]) / 1024 for l in f if l.startswith("VmRSS:"))


class Soak:
    def __init__(self, url, seconds):
        self.url, self.deadline = url, time.monotonic() + seconds
        self.counts = collections.Counter()
        self.lock = threading.Lock()

    def post(self, path, body, kind):
        req = urllib.request.Request(f"{self.url}{path}", data=json.dumps(body).encode(),
                                     headers={"content-type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=120) as r:
                r.read()
                status = r.status
        except urllib.error.HTTPError as e:
            status = e.code
        except OSError:
            status = "connection"
        with self.lock:
            self.counts[(kind, status)] += 1

    def running(self):
        return time.monotonic() < self.deadline

    def misses(self):
        n = 0
        while self.running():
            n += 1
            self.post("/v1/embeddings", {"model": MODEL, "input": [f"soak text number {n} {time.time()}"]}, "miss")

    def hits(self):
        while self.running():
            for i in range(50):
                self.post("/v1/embeddings", {"model": MODEL, "input": [f"the same sentence {i}"]}, "hit")

    def streams(self):
        while self.running():
            body = {"model": LLM, "stream": True, "max_tokens": 32, "messages": [{"role": "user", "content": "Tell a fact."}]}
            self.post("/v1/chat/completions", body, "chat-stream")

    def bursts(self):
        while self.running():
            with concurrent.futures.ThreadPoolExecutor(64) as pool:
                for i in range(256):
                    texts = [f"burst {time.time()} {i} {j}" for j in range(8)]
                    pool.submit(self.post, "/v1/embeddings", {"model": MODEL, "input": texts}, "burst")
            time.sleep(60)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--pid", type=int, required=True)
    p.add_argument("--seconds", type=float, default=1800)
    p.add_argument("--out", default="soak-rss.csv")
    a = p.parse_args()
    soak = Soak(a.url, a.seconds)
    workers = [threading.Thread(target=f, daemon=True) for f in (soak.misses, soak.hits, soak.streams, soak.bursts)]
    for w in workers:
        w.start()
    started, samples = time.monotonic(), []
    with open(a.out, "w") as out:
        out.write("seconds,rss_mib\n")
        while soak.running():
            samples.append(rss_mib(a.pid))
            out.write(f"{time.monotonic() - started:.0f},{samples[-1]:.1f}\n")
            time.sleep(1)
    for w in workers:
        w.join(timeout=150)
    errors = {k: v for k, v in soak.counts.items() if k[1] not in (200, 429)}
    tenth = max(1, len(samples) // 10)
    print(f"duration {a.seconds:.0f} s; RSS MiB: first minute max {max(samples[:60]):.0f}, "
          f"overall max {max(samples):.0f}, last 10% mean {sum(samples[-tenth:]) / tenth:.0f}")
    for (kind, status), n in sorted(soak.counts.items(), key=str):
        print(f"  {kind:12} {status}: {n}")
    print(f"errors (not 200 or 429): {sum(errors.values())}")


if __name__ == "__main__":
    main()
