"""POST /v1/embeddings bodies, table-driven: what is accepted and counted, what is refused."""

import orjson
import pytest
from openai.types import embedding_create_params
from pydantic import TypeAdapter

from tokens_forge.embeddings.request import parse_embeddings_request, usage_of
from tokens_forge.errors import InvalidRequest

EMBEDDINGS_REQUEST = TypeAdapter(embedding_create_params.EmbeddingCreateParams)


@pytest.mark.parametrize("inp,inputs,chars", [
    ("hello", 1, 5), (["ab", "cde"], 2, 5), ([1, 2, 3], 1, None), ([[1, 2], [3]], 2, None),
])
def test_accepted(inp, inputs, chars):
    body = {"model": "e", "input": inp, "encoding_format": "base64", "dimensions": 4, "user": "u"}
    EMBEDDINGS_REQUEST.validate_python(body)
    raw = orjson.dumps(body)
    req = parse_embeddings_request(raw)
    assert (req.model, req.shape.messages, req.shape.size_bytes) == ("e", inputs, len(raw))
    assert (req.shape.text.chars if req.shape.text else None) == chars  # token inputs: bounded by their bytes


@pytest.mark.parametrize("body,param", [
    ({"input": "x"}, "model"), ({"model": "e"}, "input"), ({"model": "e", "input": []}, "input"),
    ({"model": "e", "input": [""]}, "input"), ({"model": "e", "input": ["a", 1]}, "input"),
    ({"model": "e", "input": [[1], ["a"]]}, "input"), ({"model": "e", "input": [True]}, "input"),
    ({"model": "e", "input": ["a"] * 2049}, "input"),
    ({"model": "e", "input": "a", "encoding_format": "int8"}, "encoding_format"),
    ({"model": "e", "input": "a", "dimensions": 0}, "dimensions"),
])
def test_refused(body, param):
    with pytest.raises(InvalidRequest) as e:
        parse_embeddings_request(orjson.dumps(body))
    assert e.value.param == param


def test_usage():
    assert usage_of({"usage": {"prompt_tokens": 7, "total_tokens": 7}}) == 7
    assert usage_of({"usage": {"prompt_tokens": -1}}) is None and usage_of({}) is None


def test_surface_payload_and_answer():
    import dataclasses

    from tokens_forge.embeddings.surface import EmbeddingsSurface
    from tokens_forge.guard.money import Price
    from tokens_forge.routing.cache import RouteInfo
    from tokens_forge.upstream.client import Completion

    route = RouteInfo(id="route_e", model="e", kind="official", base_url="http://up/v1", upstream_model="up-e",
                      api_key=None, price=Price(1, 0), price_snapshot_id="p", failed_charge_mode="none",
                      failed_charge_flat_micros=0, timeout_s=5, priority=1)
    route = dataclasses.replace(route, apis=("embeddings",))
    s = EmbeddingsSurface(parse_embeddings_request(orjson.dumps({"model": "e", "input": ["a"], "dimensions": 3})))
    assert s.payload(route, None) == ("embeddings", orjson.dumps({"model": "up-e", "input": ["a"], "dimensions": 3}))
    data = {"object": "list", "data": [], "usage": {"prompt_tokens": 2, "total_tokens": 2}}
    raw = orjson.dumps(data)
    a = s.answer(route, Completion(200, raw, data, 1))
    assert (a.body, a.usage) == (raw, (2, 0))
