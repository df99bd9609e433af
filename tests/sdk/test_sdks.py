"""The official `openai` and `anthropic` Python SDKs, unchanged, against the real sidecar, with
every upstream protocol behind it: the sidecar must look exactly like each provider's API."""

import json

import anthropic
import openai
import pytest

from conftest import EMBED_ROUTES, ROUTES

WEATHER_OPENAI = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]},
    },
}
WEATHER_ANTHROPIC = {
    "name": "get_weather",
    "description": "Current weather in a city",
    "input_schema": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]},
}


@pytest.fixture()
def oai(sidecar):
    return openai.OpenAI(base_url=f"{sidecar}/v1", api_key="placeholder", max_retries=0)


@pytest.fixture()
def ant(sidecar):
    return anthropic.Anthropic(base_url=sidecar, api_key="placeholder", max_retries=0)


# === OpenAI SDK ===

@pytest.mark.parametrize("route", ROUTES)
def test_openai_completion(oai, route):
    answer = oai.chat.completions.create(model=route, messages=[{"role": "user", "content": "Say hello"}])
    assert answer.choices[0].message.content
    assert answer.choices[0].finish_reason == "stop"
    assert answer.usage.prompt_tokens > 0 and answer.usage.completion_tokens > 0


@pytest.mark.parametrize("route", ROUTES)
def test_openai_stream_with_usage(oai, route):
    stream = oai.chat.completions.create(
        model=route, stream=True, stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "Say hello"}])
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    assert any(c.choices and c.choices[0].finish_reason == "stop" for c in chunks)


@pytest.mark.parametrize("route", ROUTES)
def test_openai_system_prompt_and_json_mode(oai, route):
    answer = oai.chat.completions.create(
        model=route, response_format={"type": "json_object"},
        messages=[{"role": "system", "content": "Answer in JSON."}, {"role": "user", "content": "Hi"}])
    assert answer.choices[0].message.content


@pytest.mark.parametrize("route", ROUTES)
def test_openai_tool_round_trip(oai, route):
    messages = [{"role": "user", "content": "Weather in Paris?"}]
    first = oai.chat.completions.create(model=route, messages=messages, tools=[WEATHER_OPENAI])
    call = first.choices[0].message.tool_calls[0]
    assert first.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"location": "Paris"}
    messages += [first.choices[0].message.model_dump(exclude_none=True),
                 {"role": "tool", "tool_call_id": call.id, "content": "18C and sunny"}]
    second = oai.chat.completions.create(model=route, messages=messages, tools=[WEATHER_OPENAI])
    assert second.choices[0].message.content
    assert second.choices[0].finish_reason == "stop"


@pytest.mark.parametrize("route", ROUTES)
def test_openai_streamed_tool_call(oai, route):
    stream = oai.chat.completions.create(
        model=route, stream=True, tools=[WEATHER_OPENAI], messages=[{"role": "user", "content": "Weather in Paris?"}])
    arguments, name = "", None
    for chunk in stream:
        for call in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            name = name or call.function.name
            arguments += call.function.arguments or ""
    assert name == "get_weather"
    assert json.loads(arguments) == {"location": "Paris"}


def test_openai_bad_request(oai):
    with pytest.raises(openai.BadRequestError):
        oai.chat.completions.create(model="via-openai", messages=[])
    with pytest.raises(openai.NotFoundError):
        oai.chat.completions.create(model="no-such-route", messages=[{"role": "user", "content": "x"}])


@pytest.mark.parametrize("route", EMBED_ROUTES)
def test_openai_embeddings(oai, route):
    # The SDK asks for base64 by default and decodes it itself: the vectors must survive that.
    texts = ["first text", "second text", "third"]
    answer = oai.embeddings.create(model=route, input=texts, dimensions=4)
    assert [d.index for d in answer.data] == [0, 1, 2]
    assert all(len(d.embedding) == 4 for d in answer.data)
    assert answer.data[0].embedding != answer.data[1].embedding
    floats = oai.embeddings.create(model=route, input=texts, dimensions=4, encoding_format="float")
    for b64, f in zip(answer.data, floats.data):
        assert b64.embedding == pytest.approx(f.embedding, rel=1e-6)
    assert answer.usage.prompt_tokens > 0


def test_openai_embeddings_bad_request(oai):
    with pytest.raises(openai.BadRequestError):
        oai.embeddings.create(model="embed-via-openai", input=[])
    with pytest.raises(openai.BadRequestError, match="serves chat"):
        oai.embeddings.create(model="via-openai", input="x")
    with pytest.raises(openai.BadRequestError, match="text only"):
        oai.embeddings.create(model="embed-via-gemini", input=[[1, 2, 3]])


# === OpenAI SDK: the Responses API ===

WEATHER_RESPONSES = {
    "type": "function",
    "name": "get_weather",
    "description": "Current weather in a city",
    "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]},
}
PLAN_SCHEMA = {
    "type": "object",
    "properties": {"steps": {"type": "array", "items": {"type": "string"}}},
    "required": ["steps"],
    "additionalProperties": False,
}


@pytest.mark.parametrize("route", ROUTES)
def test_openai_responses_create(oai, route):
    response = oai.responses.create(model=route, instructions="Be brief.", input="Say hello", max_output_tokens=100)
    assert response.object == "response" and response.status == "completed"
    assert response.output_text
    assert response.usage.input_tokens > 0 and response.usage.output_tokens > 0
    assert response.usage.total_tokens == response.usage.input_tokens + response.usage.output_tokens


@pytest.mark.parametrize("route", ROUTES)
def test_openai_responses_stream(oai, route):
    with oai.responses.stream(model=route, input=[{"role": "user", "content": "Say hello"}]) as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert deltas and "".join(deltas) == final.output_text
    assert final.status == "completed" and final.usage.output_tokens > 0


@pytest.mark.parametrize("route", ROUTES)
def test_openai_responses_create_stream_events(oai, route):
    events = list(oai.responses.create(model=route, input="Say hello", stream=True))
    kinds = [e.type for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed"
    assert [e.sequence_number for e in events] == list(range(len(events)))


@pytest.mark.parametrize("route", ROUTES)
def test_openai_responses_tool_round_trip(oai, route):
    conversation = [{"role": "user", "content": "Weather in Paris?"}]
    first = oai.responses.create(model=route, input=conversation, tools=[WEATHER_RESPONSES])
    call = next(item for item in first.output if item.type == "function_call")
    assert call.name == "get_weather"
    assert json.loads(call.arguments) == {"location": "Paris"}
    conversation += [call.model_dump(exclude_none=True),
                     {"type": "function_call_output", "call_id": call.call_id, "output": "18C and sunny"}]
    second = oai.responses.create(model=route, input=conversation, tools=[WEATHER_RESPONSES])
    assert second.output_text and second.status == "completed"


@pytest.mark.parametrize("route", ROUTES)
def test_openai_responses_streamed_tool_call(oai, route):
    with oai.responses.stream(model=route, input="Weather in Paris?", tools=[WEATHER_RESPONSES]) as stream:
        final = stream.get_final_response()
    call = next(item for item in final.output if item.type == "function_call")
    assert json.loads(call.arguments) == {"location": "Paris"}


@pytest.mark.parametrize("route", ROUTES)
def test_openai_responses_json_schema(oai, route):
    response = oai.responses.create(
        model=route, input="Plan my afternoon.",
        text={"format": {"type": "json_schema", "name": "plan", "schema": PLAN_SCHEMA, "strict": True}})
    assert response.status == "completed" and response.output_text


def test_openai_responses_passthrough_keeps_state_fields(oai):
    response = oai.responses.create(model="via-responses-api", input="Continue.",
                                    previous_response_id="resp_earlier", store=True)
    assert response.previous_response_id == "resp_earlier"
    assert response.output_text
    with oai.responses.stream(model="via-responses-api", input="Continue.") as stream:
        final = stream.get_final_response()
    assert final.output_text


def test_openai_responses_bad_request(oai):
    with pytest.raises(openai.BadRequestError, match="statelessly"):
        oai.responses.create(model="via-openai", input="x", previous_response_id="resp_1")
    with pytest.raises(openai.BadRequestError, match="web_search"):
        oai.responses.create(model="via-gemini", input="x", tools=[{"type": "web_search"}])
    with pytest.raises(openai.BadRequestError, match="serves embeddings"):
        oai.responses.create(model="embed-via-openai", input="x")
    with pytest.raises(openai.NotFoundError):
        oai.responses.create(model="no-such-route", input="x")


# === Anthropic SDK ===

@pytest.mark.parametrize("route", ROUTES)
def test_anthropic_message(ant, route):
    message = ant.messages.create(model=route, max_tokens=100, system="Be brief.",
                                  messages=[{"role": "user", "content": "Say hello"}])
    assert message.content[0].type == "text" and message.content[0].text
    assert message.stop_reason == "end_turn"
    assert message.usage.output_tokens > 0


@pytest.mark.parametrize("route", ROUTES)
def test_anthropic_stream(ant, route):
    with ant.messages.stream(model=route, max_tokens=100,
                             messages=[{"role": "user", "content": "Say hello"}]) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text and final.content[0].text == text
    assert final.usage.output_tokens > 0
    assert final.stop_reason == "end_turn"


@pytest.mark.parametrize("route", ROUTES)
def test_anthropic_tool_round_trip(ant, route):
    messages = [{"role": "user", "content": "Weather in Paris?"}]
    first = ant.messages.create(model=route, max_tokens=200, tools=[WEATHER_ANTHROPIC], messages=messages)
    assert first.stop_reason == "tool_use"
    use = next(b for b in first.content if b.type == "tool_use")
    assert use.name == "get_weather" and use.input == {"location": "Paris"}
    messages += [{"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
                 {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "18C"}]}]
    second = ant.messages.create(model=route, max_tokens=200, tools=[WEATHER_ANTHROPIC], messages=messages)
    assert second.stop_reason == "end_turn"
    assert second.content[0].text


@pytest.mark.parametrize("route", ROUTES)
def test_anthropic_streamed_tool_use(ant, route):
    with ant.messages.stream(model=route, max_tokens=200, tools=[WEATHER_ANTHROPIC],
                             messages=[{"role": "user", "content": "Weather in Paris?"}]) as stream:
        final = stream.get_final_message()
    use = next(b for b in final.content if b.type == "tool_use")
    assert use.input == {"location": "Paris"}


def test_anthropic_bad_request(ant):
    with pytest.raises(anthropic.BadRequestError):
        ant.messages.create(model="via-anthropic", max_tokens=10, messages=[])
    with pytest.raises(anthropic.NotFoundError):
        ant.messages.create(model="no-such-route", max_tokens=10, messages=[{"role": "user", "content": "x"}])
