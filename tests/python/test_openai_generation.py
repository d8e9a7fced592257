"""The official `openai` Python client and LangChain's ChatOpenAI work unchanged against ferroserve's
/v1/chat/completions and /v1/completions, streaming included."""

import re
import time
import urllib.request

import openai
import pytest

LLM = "SmolLM2-135M-Instruct"
QUESTION = [{"role": "user", "content": "What is the capital of France? Answer in one sentence."}]
# Run the model every time: the response cache would replay repeated requests (it has its own tests).
NO_CACHE = {"cache": "skip"}


@pytest.fixture
def client(server):
    return openai.OpenAI(base_url=f"{server.http}/v1", api_key="unused", max_retries=0)


def metric(server, name):
    text = urllib.request.urlopen(f"{server.http}/metrics").read().decode()
    for line in text.splitlines():
        if line.startswith(name):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_chat_non_streaming(client):
    resp = client.chat.completions.create(model=LLM, messages=QUESTION, temperature=0, max_tokens=20)
    choice = resp.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content.startswith("The capital of France is Paris.")
    assert choice.finish_reason == "stop"
    assert resp.usage.prompt_tokens == 42  # the reference prompt's ids (llama.cpp)
    assert resp.usage.completion_tokens == 7
    assert resp.usage.total_tokens == 49
    # Asked again (past the response cache), the whole prompt but its last token comes from the prefix cache.
    again = client.chat.completions.create(
        model=LLM, messages=QUESTION, temperature=0, max_tokens=20, extra_body={"cache": "skip"}
    )
    assert again.usage.prompt_tokens_details.cached_tokens == resp.usage.prompt_tokens - 1
    assert again.choices[0].message.content == choice.message.content


def test_chat_streaming_matches_non_streaming(client):
    whole = client.chat.completions.create(model=LLM, messages=QUESTION, temperature=0, max_tokens=20,
                                           extra_body=NO_CACHE)
    stream = client.chat.completions.create(
        model=LLM, messages=QUESTION, temperature=0, max_tokens=20, stream=True,
        stream_options={"include_usage": True}, extra_body=NO_CACHE,
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    finals = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finals == ["stop"]
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    # The second identical prompt found its prefix cached.
    assert chunks[-1].usage.prompt_tokens_details.cached_tokens == whole.usage.prompt_tokens - 1


def test_completions_and_stop_strings(client):
    resp = client.completions.create(model=LLM, prompt="1, 2, 3, 4, 5, 6,", temperature=0, max_tokens=30)
    assert resp.choices[0].text.startswith(" 7, 8, 9")
    assert resp.choices[0].finish_reason == "length"
    stopped = client.completions.create(
        model=LLM, prompt="1, 2, 3, 4, 5, 6,", temperature=0, max_tokens=30, stop=[", 9"]
    )
    assert stopped.choices[0].text == " 7, 8"
    assert stopped.choices[0].finish_reason == "stop"
    streamed = client.completions.create(
        model=LLM, prompt="1, 2, 3, 4, 5, 6,", temperature=0, max_tokens=30, stop=[", 9"], stream=True
    )
    assert "".join(c.choices[0].text for c in streamed) == " 7, 8"


def test_same_seed_same_text(client):
    def sample(seed):
        r = client.chat.completions.create(
            model=LLM, messages=[{"role": "user", "content": "Tell me a story."}], temperature=0.8, seed=seed,
            max_tokens=16, extra_body=NO_CACHE,
        )
        return r.choices[0].message.content

    assert sample(42) == sample(42)


def test_response_cache_replays(client):
    raw = client.chat.completions.with_raw_response.create(model=LLM, messages=QUESTION, temperature=0,
                                                           max_tokens=20, extra_body={"cache": "refresh"})
    assert raw.headers["x-cache"] == "MISS"
    again = client.chat.completions.with_raw_response.create(model=LLM, messages=QUESTION, temperature=0,
                                                             max_tokens=20)
    assert again.headers["x-cache"] == "HIT"
    assert again.parse().choices[0].message.content == raw.parse().choices[0].message.content


def test_bad_requests_are_4xx(client):
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="missing", messages=QUESTION)
    with pytest.raises(openai.BadRequestError, match="messages is empty"):
        client.chat.completions.create(model=LLM, messages=[])
    with pytest.raises(openai.BadRequestError, match="max_tokens"):
        client.chat.completions.create(model=LLM, messages=QUESTION, max_tokens=10**6)
    with pytest.raises(openai.BadRequestError, match="temperature"):
        client.chat.completions.create(model=LLM, messages=QUESTION, temperature=5)


def test_disconnect_mid_stream_stops_generation(server, client):
    before = metric(server, "ferroserve_generation_cancelled_total")
    stream = client.completions.create(model=LLM, prompt="Count: 1, 2, 3,", temperature=0, max_tokens=2000,
                                       stream=True)
    for i, _ in enumerate(stream):
        if i == 3:
            break
    stream.close()
    deadline = time.monotonic() + 30
    while metric(server, "ferroserve_generation_cancelled_total") <= before:
        assert time.monotonic() < deadline, "the generation was not stopped after the client left"
        time.sleep(0.1)
    while metric(server, "ferroserve_generation_running") != 0:
        assert time.monotonic() < deadline, "the slot was not freed"
        time.sleep(0.1)


def test_langchain_chat_openai(server):
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(model=LLM, base_url=f"{server.http}/v1", api_key="unused", temperature=0, max_tokens=20,
                     max_retries=0)
    question = "What is the capital of France? Answer in one sentence."
    answer = llm.invoke(question)
    assert answer.content.startswith("The capital of France is Paris.")
    streamed = "".join(chunk.content for chunk in llm.stream(question))
    assert streamed == answer.content
    assert re.search(r"Paris", streamed)
