"""The official `openai` Python client works unchanged against ferroserve's /v1/embeddings."""

import json
import math
import pathlib

import openai
import pytest
from conftest import MODEL

REFERENCE = json.loads((pathlib.Path(__file__).parents[1] / "data" / "minilm_reference.json").read_text())


def cosine(a, b):
    dot = sum(x * y for x, y in zip(a, b))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


@pytest.fixture
def client(server):
    return openai.OpenAI(base_url=f"{server.http}/v1", api_key="unused", max_retries=0)


def test_embeddings_match_reference(client):
    items = REFERENCE["items"]
    # The client asks for base64 by default and decodes it itself.
    resp = client.embeddings.create(model=MODEL, input=[i["text"] for i in items])
    assert resp.model == MODEL
    assert len(resp.data) == len(items)
    for i, (item, data) in enumerate(zip(items, resp.data)):
        assert data.index == i
        assert len(data.embedding) == 384
        assert cosine(data.embedding, item["embedding"]) >= 0.9999, item["text"]
    assert resp.usage.prompt_tokens > 0
    assert resp.usage.total_tokens == resp.usage.prompt_tokens


def test_float_format_single_string_and_dimensions(client):
    text = REFERENCE["items"][0]["text"]
    floats = client.embeddings.create(model=MODEL, input=text, encoding_format="float").data[0].embedding
    assert floats[:5] == pytest.approx([0.0439335, 0.0589344, 0.0481784, 0.0775481, 0.0267444], abs=1e-5)
    short = client.embeddings.create(model=MODEL, input=text, dimensions=128).data[0].embedding
    assert len(short) == 128
    assert math.isclose(math.sqrt(sum(x * x for x in short)), 1.0, abs_tol=1e-5)


def test_models_list(client):
    assert [m.id for m in client.models.list().data] == [
        "SmolLM2-135M-Instruct", MODEL, f"{MODEL}:onnx", f"{MODEL}:onnx-fp16", f"{MODEL}:onnx-int8"
    ]


def test_errors_surface_as_client_exceptions(client):
    with pytest.raises(openai.NotFoundError) as e:
        client.embeddings.create(model="no-such-model", input="x")
    assert "no-such-model" in str(e.value)
    with pytest.raises(openai.BadRequestError) as e:
        client.embeddings.create(model=MODEL, input="word " * 400, extra_body={"truncate": False})
    assert "256" in str(e.value)


LONG = "word " * 600  # about 600 tokens: more than MiniLM's 256


def test_long_texts_are_cut_at_the_model_limit(client):
    # What the cut keeps: [CLS], the first 254 words, [SEP].
    head = client.embeddings.create(model=MODEL, input="word " * 254, extra_body={"truncate": False})
    # The default repository's MiniLM says truncate = true: the long text is cut, not refused.
    cut = client.embeddings.create(model=MODEL, input=LONG, encoding_format="float")
    assert cut.usage.prompt_tokens == 256
    assert cosine(cut.data[0].embedding, head.data[0].embedding) > 0.9999
    vllm = client.embeddings.create(model=MODEL, input=LONG, extra_body={"truncate_prompt_tokens": -1})
    assert cosine(vllm.data[0].embedding, head.data[0].embedding) > 0.9999


def test_langchain_embeddings_of_a_long_chunk(server, client):
    from langchain_openai import OpenAIEmbeddings

    embeddings = OpenAIEmbeddings(
        model=MODEL, base_url=f"{server.http}/v1", api_key="unused", check_embedding_ctx_length=False
    )
    [vector] = embeddings.embed_documents([LONG])
    head = client.embeddings.create(model=MODEL, input="word " * 254, encoding_format="float").data[0].embedding
    assert len(vector) == 384
    assert cosine(vector, head) > 0.9999
