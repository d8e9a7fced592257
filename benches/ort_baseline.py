"""In-process ONNX Runtime on an embedding model's ONNX file: the baseline of benches/backends.sh. Tokenizes the
texts with the model folder's tokenizer.json (the `tokenizers` package, as the server does), then runs
`model.onnx` at each batch size with mean pooling over the mask, on the given number of intra-op threads, and
prints one JSON object: texts/s per batch size (best of three passes) and the ONNX Runtime version."""

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


result = {"onnxruntime": ort.__version__, "texts": len(texts), "threads": args.threads, "texts_per_second": {}}
for batch in [int(b) for b in args.batch.split(",")]:
    best = 0.0
    for _ in range(3):
        started = time.perf_counter()
        for i in range(0, len(ids), batch):
            run(ids[i : i + batch])
        best = max(best, len(ids) / (time.perf_counter() - started))
    result["texts_per_second"][str(batch)] = round(best, 1)
print(json.dumps(result))
