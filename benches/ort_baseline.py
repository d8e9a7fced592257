"""In-process ONNX Runtime on an embedding model's ONNX file: the baseline of benches/backends.sh. Tokenizes the
texts with the model folder's tokenizer.json (the `tokenizers` package, as the server does), then runs
`model.onnx` at each batch size with mean pooling over the mask, on the given number of intra-op threads, and
prints one JSON object: texts/s per batch size (best of --passes passes, three by default) and the ONNX Runtime
version. With
--by-length COST, each batch size is also run the way the server runs a batch (models/src/embedder.rs): sorted and
cut into passes of similar length that minimize Σ (COST + longest × count), under the key "<batch>-by-length"."""

import argparse
import json
import time

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

parser = argparse.ArgumentParser()
parser.add_argument("--model-dir", required=True)
parser.add_argument("--texts", required=True)
parser.add_argument("--limit", type=int, default=800)
parser.add_argument("--threads", type=int, default=2)
parser.add_argument("--batch", default="1,32")
parser.add_argument("--by-length", type=int, default=None, metavar="COST")
parser.add_argument("--passes", type=int, default=3)
args = parser.parse_args()

texts = [l.strip() for l in open(args.texts) if l.strip()][: args.limit]
tokenizer = Tokenizer.from_file(f"{args.model_dir}/tokenizer.json")
tokenizer.no_padding()
tokenizer.no_truncation()
ids = [e.ids for e in tokenizer.encode_batch(texts)]
options = ort.SessionOptions()
options.intra_op_num_threads = args.threads
options.inter_op_num_threads = 1
session = ort.InferenceSession(f"{args.model_dir}/model.onnx", options, providers=["CPUExecutionProvider"])
names = {i.name for i in session.get_inputs()}


def run(chunk):
    longest = max(len(x) for x in chunk)
    input_ids = np.zeros((len(chunk), longest), dtype=np.int64)
    mask = np.zeros_like(input_ids)
    for row, x in enumerate(chunk):
        input_ids[row, : len(x)] = x
        mask[row, : len(x)] = 1
    feed = {"input_ids": input_ids, "attention_mask": mask}
    if "token_type_ids" in names:
        feed["token_type_ids"] = np.zeros_like(input_ids)
    hidden = session.run(["last_hidden_state"], feed)[0]
    m = mask[..., None].astype(np.float32)
    return (hidden * m).sum(axis=1) / m.sum(axis=1)


def by_length(chunk, cost):
    """The server's cut: ascending lengths into consecutive passes of least total cost (dynamic programming)."""
    chunk = sorted(chunk, key=len)
    best, start = [0] + [float("inf")] * len(chunk), [0] * (len(chunk) + 1)
    for j in range(1, len(chunk) + 1):
        for i in range(j):
            c = best[i] + cost + len(chunk[j - 1]) * (j - i)
            if c < best[j]:
                best[j], start[j] = c, i
    passes, end = [], len(chunk)
    while end > 0:
        passes.append(chunk[start[end] : end])
        end = start[end]
    return passes


def passes(batch, cost):
    for i in range(0, len(ids), batch):
        yield from ([ids[i : i + batch]] if cost is None else by_length(ids[i : i + batch], cost))


result = {"onnxruntime": ort.__version__, "texts": len(texts), "threads": args.threads, "texts_per_second": {}}
for batch in [int(b) for b in args.batch.split(",")]:
    for cost in [None] if args.by_length is None or batch == 1 else [None, args.by_length]:
        best = 0.0
        for _ in range(args.passes):
            started = time.perf_counter()
            for chunk in passes(batch, cost):
                run(chunk)
            best = max(best, len(ids) / (time.perf_counter() - started))
        result["texts_per_second"][str(batch) if cost is None else f"{batch}-by-length"] = round(best, 1)
print(json.dumps(result))
