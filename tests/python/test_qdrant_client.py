"""The official `qdrant-client` works unchanged against ferroserve's Qdrant-compatible collections API,
over REST and over gRPC (`prefer_grpc=True`): collections, upserts, filtered queries, scroll, count, payload
updates and deletes, and server-side embedding of `Document`s (`cloud_inference=True`) with the server's
own MiniLM."""

import contextlib
import math
import uuid

import grpc
import pytest
from conftest import MODEL
from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import UnexpectedResponse

CITIES = ["Oslo", "Lima", "Pune"]


@pytest.fixture(params=["rest", "grpc"])
def transport(request):
    return request.param


def connect(server, transport, **options):
    if transport == "grpc":
        return QdrantClient(host="127.0.0.1", port=server.http_port, grpc_port=server.grpc_port,
                            prefer_grpc=True, timeout=60, **options)
    return QdrantClient(url=server.http, timeout=60, **options)


@contextlib.contextmanager
def refused(http_status, grpc_code, *fragments):
    """The call fails with this HTTP status (REST) or gRPC code, and a message naming each fragment."""
    try:
        yield
    except UnexpectedResponse as e:
        assert e.status_code == http_status, e
        message = str(e)
    except grpc.RpcError as e:
        assert e.code() == grpc_code, e
        message = e.details()
    else:
        raise AssertionError("the call succeeded")
    for fragment in fragments:
        assert fragment in message, message


@pytest.fixture
def client(server, transport):
    return connect(server, transport)


def vector(i):
    return [math.sin(i + k) for k in range(4)]


def dot(a, b):
    return sum(x * y for x, y in zip(a, b))


def test_collections_points_filters_and_deletes(client, transport):
    name = "plain-" + uuid.uuid4().hex[:8]
    client.create_collection(name, vectors_config=models.VectorParams(size=4, distance=models.Distance.DOT))
    assert client.collection_exists(name)
    assert name in [c.name for c in client.get_collections().collections]
    the_uuid = str(uuid.uuid4())
    points = [models.PointStruct(id=i, vector=vector(i), payload={"city": CITIES[i % 3], "n": i}) for i in range(30)]
    points.append(models.PointStruct(id=the_uuid, vector=vector(99), payload={"city": "Oslo", "n": 99}))
    client.upsert(name, points=points, wait=True)
    info = client.get_collection(name)
    assert info.points_count == 31
    assert info.config.params.vectors.size == 4

    # Filtered query: exactly the brute-force answer.
    query = [0.3, -0.2, 0.9, 0.1]
    oslo = models.Filter(must=[models.FieldCondition(key="city", match=models.MatchValue(value="Oslo"))])
    hits = client.query_points(name, query=query, query_filter=oslo, limit=5, with_payload=True).points
    expected = sorted(
        [(dot(query, p.vector), p.id) for p in points if p.payload["city"] == "Oslo"], key=lambda t: -t[0]
    )[:5]
    assert [h.id for h in hits] == [i for _, i in expected]
    assert all(h.payload["city"] == "Oslo" for h in hits)
    assert hits[0].score == pytest.approx(expected[0][0], rel=1e-5)

    cheap = models.Filter(must=[models.FieldCondition(key="n", range=models.Range(gte=5, lt=15))])
    assert client.count(name, count_filter=cheap).count == 10
    page, next_offset = client.scroll(name, scroll_filter=cheap, limit=4, with_payload=True)
    assert [p.id for p in page] == [5, 6, 7, 8] and next_offset == 9
    page, next_offset = client.scroll(name, scroll_filter=cheap, limit=10, offset=next_offset)
    assert [p.id for p in page] == list(range(9, 15)) and next_offset is None

    # Payload: merge, then overwrite; retrieve with vectors.
    client.set_payload(name, payload={"seen": True}, points=[1, 2], wait=True)
    client.overwrite_payload(name, payload={"only": 1}, points=[3], wait=True)
    got = {p.id: p for p in client.retrieve(name, ids=[1, 3, the_uuid], with_vectors=True)}
    assert got[1].payload == {"city": "Lima", "n": 1, "seen": True}
    assert got[3].payload == {"only": 1}
    assert got[the_uuid].vector == pytest.approx(vector(99), rel=1e-6)

    # A batch of queries.
    batch = client.query_batch_points(
        name, requests=[models.QueryRequest(query=query, limit=2), models.QueryRequest(query=vector(7), limit=1)]
    )
    best = max(points, key=lambda p: dot(vector(7), p.vector))
    assert len(batch) == 2 and [h.id for h in batch[0].points] == [i for _, i in sorted(
        [(dot(query, p.vector), p.id) for p in points], key=lambda t: -t[0])[:2]]
    assert batch[1].points[0].id == best.id

    # A point's neighbours (by its id): itself left out.
    near = client.query_points(name, query=7, limit=3).points
    want = sorted([(dot(vector(7), p.vector), p.id) for p in points if p.id != 7], key=lambda t: -t[0])[:3]
    assert [h.id for h in near] == [i for _, i in want]

    # Deletes by id and by filter.
    client.delete(name, points_selector=models.PointIdsList(points=[0, the_uuid]), wait=True)
    client.delete(name, points_selector=models.FilterSelector(filter=oslo), wait=True)
    assert client.count(name).count == 31 - 2 - 8  # point 3 lost its city when its payload was overwritten
    assert client.count(name, count_filter=oslo).count == 0

    # Bad input: a clear 4xx naming what is wrong; the batch is all or nothing.
    with refused(400, grpc.StatusCode.INVALID_ARGUMENT, "point 501", "dimensions"):
        client.upsert(name, points=[models.PointStruct(id=500, vector=[1.0, 2.0, 3.0, 4.0]),
                                    models.PointStruct(id=501, vector=[1.0, 2.0])])
    assert client.retrieve(name, ids=[500]) == []
    # JSON has no NaN: the REST client sends null in its place.
    nan_named = ["point 502", "not a finite number"] if transport == "grpc" else ["points[0].vector[1]", "null"]
    with refused(400, grpc.StatusCode.INVALID_ARGUMENT, *nan_named):
        client.upsert(name, points=[models.PointStruct(id=502, vector=[1.0, float("nan"), 3.0, 4.0])])
    with refused(404, grpc.StatusCode.NOT_FOUND, "no-such-collection"):
        client.query_points("no-such-collection", query=query)
    client.delete_collection(name)
    assert not client.collection_exists(name)


def test_documents_are_embedded_by_the_server(server, transport):
    client = connect(server, transport, cloud_inference=True)
    name = "docs-" + uuid.uuid4().hex[:8]
    # The collection's own model (in its metadata) embeds documents that name none.
    client.create_collection(name, vectors_config=models.VectorParams(size=384, distance=models.Distance.COSINE),
                             metadata={"embedding_model": MODEL})
    assert client.get_collection(name).config.metadata == {"embedding_model": MODEL}
    texts = [
        "a fast and small web server for static files",
        "an image editor for raster graphics",
        "a compiler for the C programming language",
        "a command line tool to download files over HTTP",
    ]
    client.upsert(
        name,
        points=[
            models.PointStruct(id=i, vector=models.Document(text=t, model=MODEL), payload={"text": t})
            for i, t in enumerate(texts)
        ],
        wait=True,
    )
    hits = client.query_points(
        name, query=models.Document(text="program that edits photos", model=MODEL), limit=2, with_payload=True
    ).points
    assert hits[0].id == 1, hits
    # No model named: the collection's.
    hits = client.query_points(
        name, query=models.Document(text="fetch a URL from the terminal", model=""), limit=1
    ).points
    assert hits[0].id == 3, hits
    with refused(404, grpc.StatusCode.NOT_FOUND, "no-such-model"):
        client.query_points(name, query=models.Document(text="x", model="no-such-model"))
    client.delete_collection(name)


def test_quantized_collection_with_vectors_on_disk(client):
    """INT8 codes in the graph, full-precision vectors on disk: re-scored answers carry exact scores."""
    name = "int8-" + uuid.uuid4().hex[:8]
    client.create_collection(
        name,
        vectors_config=models.VectorParams(size=8, distance=models.Distance.COSINE, on_disk=True),
        hnsw_config=models.HnswConfigDiff(full_scan_threshold=10),
        quantization_config=models.ScalarQuantization(
            scalar=models.ScalarQuantizationConfig(type=models.ScalarType.INT8, quantile=0.99, always_ram=True)
        ),
    )
    info = client.get_collection(name)
    assert info.config.quantization_config.scalar.type == models.ScalarType.INT8
    assert info.config.params.vectors.on_disk is True
    points = [models.PointStruct(id=i, vector=[math.sin(i * (k + 1) + k) for k in range(8)]) for i in range(400)]
    client.upsert(name, points=points, wait=True)

    def cosine(a, b):
        return dot(a, b) / math.sqrt(dot(a, a) * dot(b, b))

    query = [0.5, -0.1, 0.3, 0.8, -0.4, 0.2, 0.1, -0.6]
    exact = sorted(((cosine(query, p.vector), p.id) for p in points), key=lambda t: -t[0])[:5]
    params = models.SearchParams(hnsw_ef=64, quantization=models.QuantizationSearchParams(rescore=True, oversampling=2.0))
    hits = client.query_points(name, query=query, limit=5, search_params=params, with_vectors=True).points
    assert hits[0].id == exact[0][1]
    assert len({h.id for h in hits} & {i for _, i in exact}) >= 4
    for h in hits:
        assert h.score == pytest.approx(cosine(query, points[h.id].vector), abs=1e-5)
        assert h.vector == pytest.approx([x / math.sqrt(dot(points[h.id].vector, points[h.id].vector))
                                          for x in points[h.id].vector], abs=1e-6)
    rough = models.SearchParams(quantization=models.QuantizationSearchParams(rescore=False))
    for h in client.query_points(name, query=query, limit=5, search_params=rough).points:
        assert h.score == pytest.approx(cosine(query, points[h.id].vector), abs=0.05)
    with refused(400, grpc.StatusCode.INVALID_ARGUMENT, "oversampling"):
        client.query_points(name, query=query, search_params=models.SearchParams(
            quantization=models.QuantizationSearchParams(oversampling=0.5)))
    client.delete_collection(name)
