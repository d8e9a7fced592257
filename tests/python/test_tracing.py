"""OpenTelemetry traces over OTLP/gRPC to a real OTLP receiver (the OpenTelemetry project's own protobuf
definitions, served with grpcio): a request's span continues the caller's `traceparent`, and below it come the
wait in the queue, the lane's batch (linked to every request it carries) with its model call, and for
generation the sequence's span and the scheduler's steps linked to it."""

import secrets
import threading
import time
from concurrent import futures

import grpc
import httpx
import pytest
from conftest import MODEL, Server, free_port
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.trace.v1 import trace_pb2

LLM = "SmolLM2-135M-Instruct"


class Collector(trace_service_pb2_grpc.TraceServiceServicer):
    """Keeps every exported span with its resource's service name."""

    def __init__(self):
        self.spans, self.lock = [], threading.Lock()

    def Export(self, request, context):
        with self.lock:
            for resource_spans in request.resource_spans:
                service = {a.key: a.value.string_value for a in resource_spans.resource.attributes}["service.name"]
                for scope in resource_spans.scope_spans:
                    self.spans.extend((service, span) for span in scope.spans)
        return trace_service_pb2.ExportTraceServiceResponse()

    def named(self, name):
        with self.lock:
            return [span for _, span in self.spans if span.name == name]


@pytest.fixture(scope="module")
def traced(tmp_path_factory):
    collector = Collector()
    receiver = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(collector, receiver)
    port = free_port()
    receiver.add_insecure_port(f"127.0.0.1:{port}")
    receiver.start()
    config = tmp_path_factory.mktemp("tracing") / "ferroserve.toml"
    config.write_text(f'[tracing]\notlp_endpoint = "http://127.0.0.1:{port}"\nservice_name = "ferroserve-test"\n'
                      'compression = "gzip"\n')
    # Export every 200 ms instead of every 5 s.
    s = Server(["--config", str(config)], env={"OTEL_BSP_SCHEDULE_DELAY": "200"}).wait_ready(timeout=300)
    s.collector = collector
    yield s
    s.stop()
    receiver.stop(0)


def wait_for(collector, name, predicate, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [s for s in collector.named(name) if predicate(s)]
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"no {name!r} span arrived; got {sorted({s.name for _, s in collector.spans})}")


def traceparent():
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    return trace_id, span_id, f"00-{trace_id}-{span_id}-01"


def test_embedding_request_queue_batch_and_forward(traced):
    trace_id, parent_id, header = traceparent()
    r = httpx.post(f"{traced.http}/v1/embeddings", headers={"traceparent": header},
                   json={"model": MODEL, "input": ["tracing one", "tracing two"], "cache": "skip"})
    assert r.status_code == 200
    in_trace = lambda s: s.trace_id.hex() == trace_id  # noqa: E731
    [request] = wait_for(traced.collector, "POST /v1/embeddings", in_trace)
    assert request.parent_span_id.hex() == parent_id, "the request continues the caller's trace"
    assert request.kind == trace_pb2.Span.SPAN_KIND_SERVER
    attributes = {a.key: a.value for a in request.attributes}
    assert attributes["http.response.status_code"].int_value == 200
    [queue] = wait_for(traced.collector, "queue", lambda s: s.parent_span_id == request.span_id)
    assert queue.end_time_unix_nano >= queue.start_time_unix_nano
    # The lane's batch is its own span (it serves several requests), linked to each request it carries.
    carried = lambda s: any(link.span_id == request.span_id for link in s.links)  # noqa: E731
    [batch] = wait_for(traced.collector, "batch", carried)
    batch_attributes = {a.key: a.value for a in batch.attributes}
    assert batch_attributes["model"].string_value == MODEL and batch_attributes["size"].int_value >= 2
    [forward] = wait_for(traced.collector, "forward", lambda s: s.parent_span_id == batch.span_id)
    assert batch.start_time_unix_nano <= forward.start_time_unix_nano <= forward.end_time_unix_nano
    assert {service for service, _ in traced.collector.spans} == {"ferroserve-test"}


def test_generation_sequence_and_steps(traced):
    trace_id, _, header = traceparent()
    r = httpx.post(f"{traced.http}/v1/chat/completions", headers={"traceparent": header}, timeout=60,
                   json={"model": LLM, "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 4,
                         "cache": "skip"})
    assert r.status_code == 200
    [request] = wait_for(traced.collector, "POST /v1/chat/completions", lambda s: s.trace_id.hex() == trace_id)
    [generate] = wait_for(traced.collector, "generate", lambda s: s.parent_span_id == request.span_id)
    attributes = {a.key: a.value for a in generate.attributes}
    assert attributes["completion_tokens"].int_value == r.json()["usage"]["completion_tokens"]
    wait_for(traced.collector, "queue", lambda s: s.parent_span_id == request.span_id)
    steps = wait_for(traced.collector, "step", lambda s: any(link.span_id == generate.span_id for link in s.links))
    # One prefill step and a decode step per further token, at least.
    assert len(steps) >= 2


def test_grpc_calls_are_server_spans(traced):
    import tritonclient.grpc as triton

    client = triton.InferenceServerClient(f"127.0.0.1:{traced.grpc_port}")
    assert client.is_server_live()
    wait_for(traced.collector, "inference.GRPCInferenceService/ServerLive",
             lambda s: s.kind == trace_pb2.Span.SPAN_KIND_SERVER)
