"""hnswlib on the vectors `vectors-bench` wrote (same points, queries, M, ef_construction, exact top-k), single
threaded like ferroserve's build and search in that run. Prints one JSON object.

Usage: python benches/hnswlib_bench.py DIR M EF_CONSTRUCT EF,EF,...
"""

import json
import struct
import sys
import time

import hnswlib
import numpy as np


def main():
    out, m, ef_construct, efs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), [int(e) for e in sys.argv[4].split(",")]
    with open(f"{out}/vectors.f32", "rb") as f:
        n, dim = struct.unpack("<II", f.read(8))
        data = np.frombuffer(f.read(n * dim * 4), dtype="<f4").reshape(n, dim)
    with open(f"{out}/truth.json") as f:
        truth = json.load(f)
    k, exact = truth["k"], truth["ids"]
    points, queries = data[: n - len(exact)], data[n - len(exact):]
    index = hnswlib.Index(space="cosine", dim=dim)
    index.init_index(max_elements=len(points), M=m, ef_construction=ef_construct, random_seed=100)
    index.set_num_threads(1)
    started = time.perf_counter()
    index.add_items(points, np.arange(len(points)), num_threads=1)
    build_secs = time.perf_counter() - started
    sweep = []
    for ef in efs:
        index.set_ef(max(ef, k))
        qps = 0.0
        for _ in range(3):  # best of three passes, as vectors-bench does
            started = time.perf_counter()
            found = [index.knn_query(q, k=k, num_threads=1)[0][0] for q in queries]
            qps = max(qps, len(queries) / (time.perf_counter() - started))
        hits = sum(len(set(f.tolist()) & set(t)) for f, t in zip(found, exact))
        sweep.append({"ef": ef, "recall": hits / sum(len(t) for t in exact), "qps": qps})
    print(json.dumps({"build_secs": build_secs, "sweep": sweep, "version": getattr(hnswlib, "__version__", "0.8.0")}))


if __name__ == "__main__":
    main()
