"""KServe v2 protocol overhead and tensor batching, measured with the real tritonclient (see benches/kserve.sh):
- squeezenet (the ONNX suite's light model) through KServe REST (JSON and binary tensors) and gRPC, against
  in-process ONNX Runtime (the onnxruntime wheel) on the same input, one request at a time;
- MiniLM through KServe REST (BYTES) and gRPC against the OpenAI route, batches of 8 texts;
- MiniLM's graph as a tensor model with dynamic batching on (max_batch_size 16) and off (1), 16 clients.
Prints one JSON object."""

import json
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import onnxruntime as ort
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

http_port, grpc_port, light = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
rest = httpclient.InferenceServerClient(url=f"127.0.0.1:{http_port}", concurrency=16)
grpc = grpcclient.InferenceServerClient(url=f"127.0.0.1:{grpc_port}")


def rate(fn, n):
    fn()  # warm-up
    started = time.perf_counter()
    for _ in range(n):
        fn()
    return n / (time.perf_counter() - started)


x = (np.arange(3 * 224 * 224, dtype=np.float64) / (3 * 224 * 224)).astype(np.float32).reshape(1, 3, 224, 224)
session = ort.InferenceSession(f"{light}/light_squeezenet.onnx", providers=["CPUExecutionProvider"])
session.set_providers(["CPUExecutionProvider"])


def squeeze_rest(binary):
    def call():
        inp = httpclient.InferInput("data_0", [1, 3, 224, 224], "FP32")
        inp.set_data_from_numpy(x, binary_data=binary)
        rest.infer("squeezenet", inputs=[inp], outputs=[httpclient.InferRequestedOutput("softmaxout_1", binary_data=binary)])
    return call


def squeeze_grpc():
    inp = grpcclient.InferInput("data_0", [1, 3, 224, 224], "FP32")
    inp.set_data_from_numpy(x)
    grpc.infer("squeezenet", inputs=[inp])


texts = np.array([f"sentence number {i} about inference servers and protocols".encode() for i in range(8)], dtype=object)


def minilm_rest():
    inp = httpclient.InferInput("text", [8], "BYTES")
    inp.set_data_from_numpy(texts)
    rest.infer("all-MiniLM-L6-v2:onnx", inputs=[inp])


def minilm_grpc():
    inp = grpcclient.InferInput("text", [8], "BYTES")
    inp.set_data_from_numpy(texts)
    grpc.infer("all-MiniLM-L6-v2:onnx", inputs=[inp])


openai_body = json.dumps({"model": "all-MiniLM-L6-v2:onnx", "input": [t.decode() for t in texts]}).encode()


def minilm_openai():
    req = urllib.request.Request(f"http://127.0.0.1:{http_port}/v1/embeddings", data=openai_body,
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req) as r:
        r.read()


ids = np.random.default_rng(0).integers(1000, 20000, size=(1, 16)).astype(np.int64)


def graph_request(model):
    def call(_):
        client = grpcclient.InferenceServerClient(url=f"127.0.0.1:{grpc_port}")
        inputs = []
        for name, value in [("input_ids", ids), ("attention_mask", np.ones_like(ids)), ("token_type_ids", np.zeros_like(ids))]:
            inp = grpcclient.InferInput(name, [1, 16], "INT64")
            inp.set_data_from_numpy(value)
            inputs.append(inp)
        client.infer(model, inputs=inputs)
    return call


def concurrent_rate(model, n=256, clients=16):
    call = graph_request(model)
    call(0)
    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(call, range(n)))
    return n / (time.perf_counter() - started)


n = 200
result = {
    "squeezenet": {
        "in-process onnxruntime": rate(lambda: session.run(None, {"data_0": x}), n),
        "kserve rest json": rate(squeeze_rest(False), n // 4),
        "kserve rest binary": rate(squeeze_rest(True), n),
        "kserve grpc": rate(squeeze_grpc, n),
    },
    "minilm_8_texts": {
        "openai rest": rate(minilm_openai, n),
        "kserve rest": rate(minilm_rest, n),
        "kserve grpc": rate(minilm_grpc, n),
    },
    "minilm_graph_16_clients": {
        "batching on (max_batch_size 16)": concurrent_rate("minilm-graph"),
        "batching off (max_batch_size 1)": concurrent_rate("minilm-graph-unbatched"),
    },
    "onnxruntime": ort.__version__,
}
print(json.dumps(result))
