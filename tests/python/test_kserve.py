"""KServe v2 / Open Inference Protocol over REST and gRPC with the real `tritonclient[http]` and
`tritonclient[grpc]`: health, metadata, inference on every kind of model — the ONNX project's light test
models by their tensors (JSON and binary tensors, and gRPC; each output checked against the project's
expected output), MiniLM with BYTES texts in and FP32 vectors out (equal to /v1/embeddings), SmolLM2 with a
BYTES prompt (streamed over gRPC) —, the repository (index, load, unload under traffic), statistics, dynamic
batching, and clear errors."""

import json
import pathlib
import time
import urllib.request

import queue

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from conftest import ROOT, Server
from tritonclient.utils import InferenceServerException

LIGHT = ROOT / "assets" / "onnx-light"


# The ONNX project's light test models (fetched by deploy/fetch-assets.sh) and the suite's tolerances.
LIGHT_MODELS = {"bvlc_alexnet": 1e-3, "densenet121": 2e-3, "inception_v1": 1e-3, "inception_v2": 1e-3,
                "resnet50": 1e-3, "squeezenet": 1e-3, "vgg19": 1e-3, "zfnet512": 1e-3}


# KServe datatypes and their ONNX element types (onnx.proto's TensorProto.DataType).
ONNX_TYPES = {"BOOL": 9, "UINT8": 2, "UINT16": 4, "UINT32": 12, "UINT64": 13, "INT8": 3, "INT16": 5, "INT32": 6,
              "INT64": 7, "FP16": 10, "FP32": 1, "FP64": 11}


def pb_field(number, value):
    """One protobuf field: an int (varint) or a string or bytes (length-delimited)."""
    def varint(n):
        out = bytearray()
        while True:
            out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
            n >>= 7
            if not n:
                return bytes(out)
    if isinstance(value, int):
        return varint(number << 3) + varint(value)
    value = value.encode() if isinstance(value, str) else value
    return varint(number << 3 | 2) + varint(len(value)) + value


def identities_model(path):
    """An ONNX model written field by field (onnx.proto): for each datatype an input `in_<T>` of shape
    [batch, 3] and an Identity to the output `out_<T>`."""
    def value_info(name, elem):
        shape = pb_field(1, pb_field(2, "batch")) + pb_field(1, pb_field(1, 3))
        return pb_field(1, name) + pb_field(2, pb_field(1, pb_field(1, elem) + pb_field(2, shape)))
    graph = b"".join(pb_field(1, pb_field(1, f"in_{t}") + pb_field(2, f"out_{t}") + pb_field(4, "Identity"))
                     for t in ONNX_TYPES)
    graph += pb_field(2, "identities")
    graph += b"".join(pb_field(11, value_info(f"in_{t}", e)) for t, e in ONNX_TYPES.items())
    graph += b"".join(pb_field(12, value_info(f"out_{t}", e)) for t, e in ONNX_TYPES.items())
    path.write_bytes(pb_field(1, 8) + pb_field(7, graph) + pb_field(8, pb_field(2, 13)))


def repository(tmp):
    """The light ONNX models (tensor), a model of Identity per datatype (tensor), MiniLM on ONNX Runtime
    (embedding) and SmolLM2 (generation)."""
    identities_model(tmp / "identities.onnx")
    (tmp / "identities.toml").write_text(
        f'name = "identities"\ntask = "tensor"\nbackend = "onnx"\npath = "{tmp}"\nweights = "identities.onnx"\n'
    )
    for name in LIGHT_MODELS:
        (tmp / f"{name}.toml").write_text(
            f'name = "{name}"\ntask = "tensor"\nbackend = "onnx"\npath = "{LIGHT}"\nweights = "light_{name}.onnx"\n'
        )
    # MiniLM's graph as a tensor model: its batch dimension is dynamic, so requests stack.
    (tmp / "minilm-graph.toml").write_text(
        f'name = "minilm-graph"\ntask = "tensor"\nbackend = "onnx"\npath = "{ROOT}/assets/all-MiniLM-L6-v2-onnx"\n'
        "[batching]\nmax_batch_size = 16\nmax_queue_delay_ms = 100\npreferred_batch_sizes = [4, 8]\n"
    )
    for src in ["all-MiniLM-L6-v2-onnx.toml", "SmolLM2-135M-Instruct.toml"]:
        text = (ROOT / "deploy" / "model-repository" / src).read_text()
        (tmp / src).write_text(text.replace('path = "../../assets/', f'path = "{ROOT}/assets/'))
    return tmp


@pytest.fixture(scope="module")
def kserve(tmp_path_factory):
    repo = repository(tmp_path_factory.mktemp("repo"))
    s = Server(["--model-repository", str(repo), "--max-body-bytes", str(64 << 20)]).wait_ready()
    s.repo = repo
    s.client = httpclient.InferenceServerClient(url=f"127.0.0.1:{s.http_port}")
    yield s
    s.stop()


@pytest.fixture(scope="module")
def grpc_client(kserve):
    return grpcclient.InferenceServerClient(url=f"127.0.0.1:{kserve.grpc_port}")


def varint(buf, i):
    """A protobuf varint at buf[i]: its value and the index after it."""
    shift = value = 0
    while True:
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            return value, i


def expected_output(name):
    """dims and float values of the ONNX test suite's output_0.pb (a TensorProto), read without onnx."""
    data, dims, floats, raw = (LIGHT / f"light_{name}_output_0.pb").read_bytes(), [], [], b""
    i = 0
    while i < len(data):
        key, i = varint(data, i)
        field, wire = key >> 3, key & 7
        if wire == 0:
            v, i = varint(data, i)
            if field == 1:
                dims.append(v)
        elif wire == 2:
            n, i = varint(data, i)
            chunk, i = data[i:i + n], i + n
            if field == 1:  # packed dims
                j = 0
                while j < len(chunk):
                    v, j = varint(chunk, j)
                    dims.append(v)
            elif field == 4:
                floats = np.frombuffer(chunk, dtype="<f4")
            elif field == 9:
                raw = chunk
        elif wire == 5:
            i += 4
        elif wire == 1:
            i += 8
    values = np.frombuffer(raw, dtype="<f4") if raw else np.asarray(floats, dtype=np.float32)
    return dims, values.reshape(dims)


def test_health_and_metadata(kserve):
    c = kserve.client
    assert c.is_server_live() and c.is_server_ready()
    assert c.is_model_ready("squeezenet") and c.is_model_ready("all-MiniLM-L6-v2:onnx")
    assert not c.is_model_ready("no-such-model")
    assert c.get_server_metadata()["name"] == "ferroserve"
    meta = c.get_model_metadata("squeezenet")
    assert meta["platform"] == "onnxruntime_onnx" and meta["inputs"][0]["datatype"] == "FP32"
    assert len(meta["inputs"][0]["shape"]) == 4
    meta = c.get_model_metadata("all-MiniLM-L6-v2:onnx")
    assert meta["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
    assert meta["outputs"][0]["shape"] == [-1, 384]


def suite_input(spec):
    """The ONNX test suite's input: arange(n) / n, float32, dynamic dimensions taken as 1."""
    shape = [int(d) if int(d) > 0 else 1 for d in spec["shape"]]
    n = int(np.prod(shape))
    return shape, (np.arange(n, dtype=np.float64) / n).astype(np.float32).reshape(shape)


@pytest.mark.parametrize("name", sorted(LIGHT_MODELS))
def test_light_onnx_models_reproduce_their_expected_outputs_over_rest_and_grpc(kserve, grpc_client, name):
    meta = kserve.client.get_model_metadata(name)
    spec, out_name = meta["inputs"][0], meta["outputs"][0]["name"]
    shape, x = suite_input(spec)
    dims, want = expected_output(name)
    answers = []
    for binary in [False, True]:
        inp = httpclient.InferInput(spec["name"], shape, "FP32")
        inp.set_data_from_numpy(x, binary_data=binary)
        out = httpclient.InferRequestedOutput(out_name, binary_data=binary)
        answers.append(kserve.client.infer(name, inputs=[inp], outputs=[out]).as_numpy(out_name))
    inp = grpcclient.InferInput(spec["name"], shape, "FP32")
    inp.set_data_from_numpy(x)
    answers.append(grpc_client.infer(name, inputs=[inp]).as_numpy(out_name))
    for got in answers:
        assert list(got.shape) == dims
        np.testing.assert_allclose(got, want, rtol=LIGHT_MODELS[name], atol=1e-7)


def test_every_datatype_round_trips_as_json_binary_and_grpc(kserve, grpc_client):
    """Each of KServe's numeric and boolean datatypes, at its extremes, in and out unchanged through an
    Identity: REST JSON, REST binary, gRPC raw contents; requested outputs limit the answer."""
    rng = np.random.default_rng(7)

    def data(t):
        dtype = np.dtype({"BOOL": "bool", "FP16": "float16", "FP32": "float32", "FP64": "float64"}.get(t, t.lower()))
        if dtype == np.bool_:
            return np.array([[True, False, True], [False, False, True]])
        if dtype.kind == "f":
            info = np.finfo(dtype)
            return np.array([[info.max, info.min, info.tiny], rng.standard_normal(3) * 1e3]).astype(dtype)
        info = np.iinfo(dtype)
        return np.array([[info.min, info.max, 0], rng.integers(info.min, info.max, 3, dtype=dtype, endpoint=True)], dtype=dtype)

    arrays = {t: data(t) for t in ONNX_TYPES}
    meta = kserve.client.get_model_metadata("identities")
    assert {i["name"]: i["datatype"] for i in meta["inputs"]} == {f"in_{t}": t for t in ONNX_TYPES}
    for binary in [False, True]:
        inputs = []
        for t, a in arrays.items():
            inputs.append(httpclient.InferInput(f"in_{t}", list(a.shape), t))
            inputs[-1].set_data_from_numpy(a, binary_data=binary)
        outputs = [httpclient.InferRequestedOutput(f"out_{t}", binary_data=binary) for t in arrays]
        result = kserve.client.infer("identities", inputs=inputs, outputs=outputs)
        for t, a in arrays.items():
            got = result.as_numpy(f"out_{t}")
            assert got.dtype == a.dtype and np.array_equal(got, a), (t, binary, got, a)
    inputs = []
    for t, a in arrays.items():
        inputs.append(grpcclient.InferInput(f"in_{t}", list(a.shape), t))
        inputs[-1].set_data_from_numpy(a)
    wanted = ["out_FP16", "out_BOOL", "out_UINT64"]
    result = grpc_client.infer("identities", inputs=inputs, outputs=[grpcclient.InferRequestedOutput(n) for n in wanted])
    assert sorted(o.name for o in result.get_response().outputs) == sorted(wanted)
    for name in wanted:
        a = arrays[name[4:]]
        got = result.as_numpy(name)
        assert got.dtype == a.dtype and np.array_equal(got, a), name


def test_embeddings_with_bytes_equal_the_openai_route(kserve):
    texts = np.array([b"The quick brown fox", "caf\u00e9 au lait".encode()], dtype=object)
    for binary in [False, True]:
        inp = httpclient.InferInput("text", [2], "BYTES")
        inp.set_data_from_numpy(texts, binary_data=binary)
        result = kserve.client.infer("all-MiniLM-L6-v2:onnx", inputs=[inp],
                                     outputs=[httpclient.InferRequestedOutput("embedding", binary_data=binary)])
        vectors = result.as_numpy("embedding")
        assert vectors.shape == (2, 384)
        body = json.dumps({"model": "all-MiniLM-L6-v2:onnx", "input": [t.decode() for t in texts]}).encode()
        req = urllib.request.Request(f"{kserve.http}/v1/embeddings", data=body, headers={"content-type": "application/json"})
        with urllib.request.urlopen(req) as r:
            openai = np.array([d["embedding"] for d in json.load(r)["data"]], dtype=np.float32)
        np.testing.assert_allclose(vectors, openai, atol=1e-6)


def test_generation_with_a_bytes_prompt(kserve):
    inp = httpclient.InferInput("text_input", [1], "BYTES")
    inp.set_data_from_numpy(np.array([b"The capital of France is"], dtype=object))
    result = kserve.client.infer("SmolLM2-135M-Instruct", inputs=[inp], parameters={"max_tokens": 8})
    text = result.as_numpy("text_output")[0]
    assert isinstance(text, (bytes, np.bytes_)) and len(text) > 0


def test_bad_requests_are_refused_clearly(kserve):
    c = kserve.client
    wrong = httpclient.InferInput("data_0", [1, 3, 224, 224], "INT64")
    wrong.set_data_from_numpy(np.zeros([1, 3, 224, 224], dtype=np.int64))
    with pytest.raises(InferenceServerException) as e:
        c.infer("squeezenet", inputs=[wrong])
    assert "must be" in str(e.value) and "400" in str(e.value.status())
    with pytest.raises(InferenceServerException) as e:
        c.infer("no-such-model", inputs=[wrong])
    assert "no-such-model" in str(e.value) and "404" in str(e.value.status())
    # Triton's priority (1: first level) and timeout (microseconds) are the model's scheduling.
    good = httpclient.InferInput("data_0", [1, 3, 224, 224], "FP32")
    good.set_data_from_numpy(np.zeros([1, 3, 224, 224], dtype=np.float32))
    c.infer("squeezenet", inputs=[good], priority=1, timeout=5_000_000)
    with pytest.raises(InferenceServerException) as e:
        c.infer("squeezenet", inputs=[good], priority=10)
    assert "priority" in str(e.value) and "400" in str(e.value.status())
    texts = httpclient.InferInput("prompt", [1], "BYTES")
    texts.set_data_from_numpy(np.array([b"x"], dtype=object))
    with pytest.raises(InferenceServerException) as e:
        c.infer("all-MiniLM-L6-v2:onnx", inputs=[texts])
    assert "text" in str(e.value)


def test_grpc_health_metadata_and_repository_index(grpc_client):
    c = grpc_client
    assert c.is_server_live() and c.is_server_ready() and c.is_model_ready("squeezenet")
    assert c.get_server_metadata(as_json=True)["name"] == "ferroserve"
    meta = c.get_model_metadata("all-MiniLM-L6-v2:onnx", as_json=True)
    assert meta["inputs"][0] == {"name": "text", "datatype": "BYTES", "shape": ["-1"]}
    index = {m["name"]: m for m in c.get_model_repository_index(as_json=True)["models"]}
    assert index["squeezenet"]["state"] == "READY" and "SmolLM2-135M-Instruct" in index


def test_grpc_embeddings_equal_rest(grpc_client, kserve):
    texts = np.array([b"The quick brown fox", b"over the lazy dog"], dtype=object)
    inp = grpcclient.InferInput("text", [2], "BYTES")
    inp.set_data_from_numpy(texts)
    over_grpc = grpc_client.infer("all-MiniLM-L6-v2:onnx", inputs=[inp]).as_numpy("embedding")
    rest_inp = httpclient.InferInput("text", [2], "BYTES")
    rest_inp.set_data_from_numpy(texts)
    over_rest = kserve.client.infer("all-MiniLM-L6-v2:onnx", inputs=[rest_inp]).as_numpy("embedding")
    np.testing.assert_allclose(over_grpc, over_rest, atol=1e-6)


def test_grpc_streaming_generation(grpc_client):
    pieces = queue.Queue()
    grpc_client.start_stream(callback=lambda result, error: pieces.put((result, error)))
    inp = grpcclient.InferInput("text_input", [1], "BYTES")
    inp.set_data_from_numpy(np.array([b"Once upon a time"], dtype=object))
    grpc_client.async_stream_infer("SmolLM2-135M-Instruct", inputs=[inp], parameters={"max_tokens": 10})
    texts = []
    while len(texts) < 3:
        result, error = pieces.get(timeout=60)
        assert error is None, error
        texts.append(result.as_numpy("text_output")[0])
    grpc_client.stop_stream()
    assert all(len(t) > 0 for t in texts), "several pieces of text, one per response"


def test_grpc_errors(grpc_client):
    wrong = grpcclient.InferInput("data_0", [1, 3, 224, 224], "INT64")
    wrong.set_data_from_numpy(np.zeros([1, 3, 224, 224], dtype=np.int64))
    with pytest.raises(InferenceServerException) as e:
        grpc_client.infer("squeezenet", inputs=[wrong])
    assert "INVALID_ARGUMENT" in str(e.value.status()) and "must be" in e.value.message()
    with pytest.raises(InferenceServerException) as e:
        grpc_client.infer("no-such-model", inputs=[wrong])
    assert "NOT_FOUND" in str(e.value.status())


def test_models_load_and_unload_at_run_time_under_traffic(kserve, grpc_client):
    import threading

    repo = pathlib.Path(kserve.repo)
    (repo / "shufflenet.toml").write_text(
        f'name = "shufflenet"\ntask = "tensor"\nbackend = "onnx"\npath = "{LIGHT}"\nweights = "light_shufflenet.onnx"\n'
    )
    (repo / "broken.toml").write_text(
        f'name = "broken"\ntask = "tensor"\nbackend = "onnx"\npath = "{LIGHT}"\nweights = "missing.onnx"\n'
    )
    failures, done = [], threading.Event()

    def traffic():
        client = httpclient.InferenceServerClient(url=f"127.0.0.1:{kserve.http_port}")
        while not done.is_set():
            inp = httpclient.InferInput("text", [1], "BYTES")
            inp.set_data_from_numpy(np.array([b"load and unload"], dtype=object))
            try:
                client.infer("all-MiniLM-L6-v2:onnx", inputs=[inp])
            except Exception as e:  # noqa: BLE001 - any failure fails the test below
                failures.append(e)

    worker = threading.Thread(target=traffic)
    worker.start()
    try:
        index = {m["name"]: m for m in kserve.client.get_model_repository_index()}
        assert index["shufflenet"]["state"] == "UNAVAILABLE" and index["shufflenet"]["reason"] == "not loaded"
        kserve.client.load_model("shufflenet")
        assert kserve.client.is_model_ready("shufflenet")
        meta = kserve.client.get_model_metadata("shufflenet")
        shape = [d if d > 0 else 1 for d in meta["inputs"][0]["shape"]]
        x = np.full(shape, 0.5, dtype=np.float32)
        inp = grpcclient.InferInput(meta["inputs"][0]["name"], shape, "FP32")
        inp.set_data_from_numpy(x)
        first = grpc_client.infer("shufflenet", inputs=[inp]).as_numpy(meta["outputs"][0]["name"])
        # Unloading drains: the requests it meets in flight finish; later ones are refused as unloaded.
        outcomes, unloaded_at = [], []

        def one():
            try:
                got = grpcclient.InferenceServerClient(url=f"127.0.0.1:{kserve.grpc_port}").infer(
                    "shufflenet", inputs=[inp]).as_numpy(meta["outputs"][0]["name"])
                outcomes.append(("ok", time.monotonic(), np.array_equal(got, first)))
            except InferenceServerException as e:
                outcomes.append((e.message(), time.monotonic(), None))

        callers = [threading.Thread(target=one) for _ in range(64)]
        for c in callers:
            c.start()
        time.sleep(0.02)
        grpc_client.unload_model("shufflenet")
        unloaded_at.append(time.monotonic())
        for c in callers:
            c.join()
        assert all(o[0] == "ok" and o[2] or "unloaded" in o[0] for o in outcomes), outcomes
        assert any(o[0] == "ok" and o[1] > unloaded_at[0] for o in outcomes), "requests in flight finished after the unload"
        assert not kserve.client.is_model_ready("shufflenet")
        with pytest.raises(InferenceServerException) as e:
            grpc_client.infer("shufflenet", inputs=[inp])
        assert "unloaded" in e.value.message()
        grpc_client.load_model("shufflenet")
        again = grpc_client.infer("shufflenet", inputs=[inp]).as_numpy(meta["outputs"][0]["name"])
        np.testing.assert_array_equal(first, again)
        with pytest.raises(InferenceServerException) as e:
            kserve.client.load_model("broken")
        assert "missing.onnx" in str(e.value)
        # The answer names the file, not where the server keeps it (the log has the full path).
        assert str(repo) not in str(e.value) and "/missing.onnx" not in str(e.value), str(e.value)
        assert kserve.client.is_server_ready() and kserve.client.is_model_ready("squeezenet")
    finally:
        done.set()
        worker.join()
        (repo / "broken.toml").unlink()
    assert failures == [], failures[:3]


def test_statistics_count_requests(kserve, grpc_client):
    before = kserve.client.get_inference_statistics("squeezenet")["model_stats"][0]
    meta = kserve.client.get_model_metadata("squeezenet")
    shape = [d if d > 0 else 1 for d in meta["inputs"][0]["shape"]]
    inp = httpclient.InferInput(meta["inputs"][0]["name"], shape, "FP32")
    inp.set_data_from_numpy(np.zeros(shape, dtype=np.float32))
    kserve.client.infer("squeezenet", inputs=[inp])
    wrong = httpclient.InferInput(meta["inputs"][0]["name"], [1, 2], "FP32")
    wrong.set_data_from_numpy(np.zeros([1, 2], dtype=np.float32))
    with pytest.raises(InferenceServerException):
        kserve.client.infer("squeezenet", inputs=[wrong])
    after = kserve.client.get_inference_statistics("squeezenet")["model_stats"][0]
    assert after["inference_stats"]["success"]["count"] == before["inference_stats"]["success"]["count"] + 1
    assert after["inference_stats"]["fail"]["count"] == before["inference_stats"]["fail"]["count"] + 1
    assert after["inference_stats"]["compute_infer"]["ns"] > before["inference_stats"]["compute_infer"]["ns"]
    over_grpc = grpc_client.get_inference_statistics("squeezenet", as_json=True)["model_stats"][0]
    assert int(over_grpc["inference_stats"]["success"]["count"]) == after["inference_stats"]["success"]["count"]
    names = [m["name"] for m in kserve.client.get_inference_statistics()["model_stats"]]
    assert "all-MiniLM-L6-v2:onnx" in names


def test_concurrent_tensor_requests_are_batched_and_answer_as_alone(kserve):
    from concurrent.futures import ThreadPoolExecutor

    meta = kserve.client.get_model_metadata("minilm-graph")
    names = [i["name"] for i in meta["inputs"]]
    out_name = meta["outputs"][0]["name"]

    def request(seed):
        rng = np.random.default_rng(seed)
        ids = rng.integers(1000, 20000, size=(1, 8)).astype(np.int64)
        ids[0, 0], ids[0, -1] = 101, 102
        feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
        client = httpclient.InferenceServerClient(url=f"127.0.0.1:{kserve.http_port}")
        inputs = []
        for name in names:
            inp = httpclient.InferInput(name, [1, 8], "INT64")
            inp.set_data_from_numpy(feeds[name])
            inputs.append(inp)
        return client.infer("minilm-graph", inputs=inputs).as_numpy(out_name)

    alone = [request(seed) for seed in range(8)]

    def batches_seen():
        with urllib.request.urlopen(f"{kserve.http}/metrics") as r:
            text = r.read().decode()
        line = lambda key: float(next(l.split()[-1] for l in text.splitlines()
                                      if l.startswith(key) and 'model="minilm-graph"' in l))
        return line("ferroserve_tensor_batch_size_sum"), line("ferroserve_tensor_batch_size_count")

    rows_before, calls_before = batches_seen()
    with ThreadPoolExecutor(8) as pool:
        together = list(pool.map(request, range(8)))
    rows, calls = batches_seen()
    assert rows - rows_before == 8
    assert calls - calls_before < 8, "some requests shared a call"
    for a, b in zip(alone, together):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_memory_budget_unloads_the_least_recently_used_and_changed_files_reload(tmp_path):
    """--max-loaded-mb 160: MiniLM's graph in INT8 (56 MiB) and FP32 (86 MiB) fit; FP16 (43 MiB) makes room by
    unloading the least recently used. --repository-poll-secs 1: a changed model file is reloaded."""
    def graph(name, variant):
        (tmp_path / f"{name}.toml").write_text(
            f'name = "{name}"\ntask = "tensor"\nbackend = "onnx"\npath = "{ROOT}/assets/all-MiniLM-L6-v2-onnx{variant}"\n'
        )

    graph("int8", "-int8")
    s = Server(["--model-repository", str(tmp_path), "--max-loaded-mb", "160", "--repository-poll-secs", "1"]).wait_ready()
    try:
        client = httpclient.InferenceServerClient(url=f"127.0.0.1:{s.http_port}")
        ids = np.array([[101, 2023, 2003, 102]], dtype=np.int64)

        def infer(model):
            inputs = []
            for name, value in [("input_ids", ids), ("attention_mask", np.ones_like(ids)), ("token_type_ids", np.zeros_like(ids))]:
                inp = httpclient.InferInput(name, [1, 4], "INT64")
                inp.set_data_from_numpy(value)
                inputs.append(inp)
            return client.infer(model, inputs=inputs).as_numpy("last_hidden_state")

        graph("fp32", "")
        graph("fp16", "-fp16")
        client.load_model("fp32")
        infer("fp32")
        infer("int8")  # int8 is now the most recently used
        client.load_model("fp16")
        state = {m["name"]: (m["state"], m.get("reason", "")) for m in client.get_model_repository_index()}
        assert state["fp32"] == ("UNAVAILABLE", "unloaded"), state
        assert state["int8"][0] == "READY" and state["fp16"][0] == "READY"
        assert infer("fp16").shape == (1, 4, 384)

        def loads():
            with urllib.request.urlopen(f"{s.http}/metrics") as r:
                return sum(float(l.split()[-1]) for l in r.read().decode().splitlines()
                           if l.startswith("ferroserve_model_loads_total") and 'outcome="ok"' in l)

        before = loads()
        (tmp_path / "int8.toml").write_text((tmp_path / "int8.toml").read_text() + "[batching]\nmax_batch_size = 4\n")
        deadline = time.monotonic() + 30
        while loads() == before:
            assert time.monotonic() < deadline, "the changed file was not reloaded"
            time.sleep(0.2)
        assert client.is_model_ready("int8") and infer("int8").shape == (1, 4, 384)
    finally:
        s.stop()


def test_model_config_as_triton_writes_it(kserve, grpc_client):
    config = kserve.client.get_model_config("minilm-graph")
    assert config["max_batch_size"] == 16 and config["platform"] == "onnxruntime_onnx"
    ids = next(i for i in config["input"] if i["name"] == "input_ids")
    assert ids["data_type"] == "TYPE_INT64" and ids["dims"] == [-1], "the batch dimension is left out"
    fixed = kserve.client.get_model_config("squeezenet")
    assert fixed["max_batch_size"] == 0 and fixed["input"][0]["dims"] == [1, 3, 224, 224]
    over_grpc = grpc_client.get_model_config("all-MiniLM-L6-v2:onnx", as_json=True)["config"]
    assert over_grpc["input"][0] == {"name": "text", "data_type": "TYPE_STRING", "dims": ["-1"]}


@pytest.mark.parametrize("policy", ["all", "latest"])
def test_model_versions_from_numbered_folders(tmp_path, policy):
    """A model whose folder holds 1/ (squeezenet) and 2/ (alexnet): `all` serves both, the plain name the
    newest; `latest` (one version) serves only 2."""
    versions = tmp_path / "vision"
    for v, light in [(1, "squeezenet"), (2, "bvlc_alexnet")]:
        (versions / str(v)).mkdir(parents=True)
        (versions / str(v) / "model.onnx").symlink_to(LIGHT / f"light_{light}.onnx")
    table = "[version_policy.all]\n" if policy == "all" else "[version_policy.latest]\nnum_versions = 1\n"
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "vision.toml").write_text(f'name = "vision"\ntask = "tensor"\nbackend = "onnx"\npath = "{versions}"\n{table}')
    s = Server(["--model-repository", str(repo)]).wait_ready()
    try:
        client = httpclient.InferenceServerClient(url=f"127.0.0.1:{s.http_port}")
        grpc = grpcclient.InferenceServerClient(url=f"127.0.0.1:{s.grpc_port}")
        meta = client.get_model_metadata("vision")
        assert meta["versions"] == (["1", "2"] if policy == "all" else ["2"])
        assert meta["outputs"][0]["name"] == "prob_1", "the plain name is the newest version (alexnet)"
        assert client.get_model_metadata("vision", model_version="2")["outputs"][0]["name"] == "prob_1"
        if policy == "all":
            assert client.get_model_metadata("vision", model_version="1")["outputs"][0]["name"] == "softmaxout_1"
            assert grpc.get_model_metadata("vision", model_version="1", as_json=True)["outputs"][0]["name"] == "softmaxout_1"
            assert client.is_model_ready("vision", model_version="1")
        else:
            assert not client.is_model_ready("vision", model_version="1")
            with pytest.raises(InferenceServerException):
                client.get_model_metadata("vision", model_version="1")
        x = np.zeros([1, 3, 224, 224], dtype=np.float32)
        inp = grpcclient.InferInput("data_0", [1, 3, 224, 224], "FP32")
        inp.set_data_from_numpy(x)
        assert grpc.infer("vision", inputs=[inp], model_version="2").as_numpy("prob_1").shape == (1, 1000)
        grpc.unload_model("vision")
        assert not client.is_model_ready("vision")
        client.load_model("vision")
        assert client.is_model_ready("vision")
    finally:
        s.stop()
