"""What the built-in suites send: the samples file, validated; the document's examples; bodies
generated from the request schema when a route has neither, the same on every run."""

from __future__ import annotations

import json

import pytest

from shipyard.harness.staged.traffic import TrafficError, examples_for, load_samples, weights

DOCUMENT = {
    "openapi": "3.1.0", "info": {"title": "t", "version": "1"},
    "paths": {
        "/count": {"post": {"requestBody": {"required": True, "content": {"application/json": {"schema": {
            "type": "object", "required": ["n", "label"], "additionalProperties": False,
            "properties": {"n": {"type": "integer", "minimum": 1, "maximum": 9},
                           "label": {"type": "string", "enum": ["a", "b"]}}}}}},
            "responses": {"200": {"description": "ok"}}}},
        "/echo": {"post": {"requestBody": {"required": True, "content": {"application/json": {
            "schema": {"type": "object"}, "example": {"hello": "world"}}}},
            "responses": {"200": {"description": "ok"}}}},
        "/readyz": {"get": {"responses": {"200": {"description": "ok"}}}},
    },
}


def test_samples_first_then_the_documents_examples_then_generated_bodies():
    bodies = examples_for(DOCUMENT, {"/echo": [{"mine": 1}]})
    assert bodies["/echo"] == [{"mine": 1}]
    assert examples_for(DOCUMENT, {})["/echo"] == [{"hello": "world"}]
    generated = bodies["/count"]
    assert len(generated) >= 5 and generated == examples_for(DOCUMENT, {})["/count"]  # seeded
    for body in generated:
        assert set(body) == {"n", "label"} and 1 <= body["n"] <= 9 and body["label"] in ("a", "b")
    assert "/readyz" not in bodies


def test_a_bad_samples_file_names_the_route_and_the_rule(tmp_path):
    path = tmp_path / "samples.json"
    path.write_text(json.dumps({"/route": {"a": 1}}))
    with pytest.raises(TrafficError, match=r"/route: Input should be a valid list"):
        load_samples(str(path))
    path.write_text(json.dumps({"route": [{}]}))
    with pytest.raises(TrafficError, match="String should match pattern"):
        load_samples(str(path))


def test_weights_name_unknown_routes(monkeypatch):
    monkeypatch.setenv("SHIPYARD_WEIGHTS", json.dumps({"/scor": 1}))
    with pytest.raises(TrafficError, match="traffic.weights names /scor"):
        weights(["/score"])
    monkeypatch.setenv("SHIPYARD_WEIGHTS", "{}")
    assert weights(["/a", "/b"]) == {"/a": 1.0, "/b": 1.0}


def test_a_body_is_made_from_the_properties_examples_as_bentoml_documents_them():
    """`text: str = Field(examples=[...])` puts the example on the property: one body of every
    property's first example, when each required property has one."""
    schema = {"type": "object", "required": ["text"], "properties": {
        "text": {"type": "string", "examples": ["win a free prize"]},
        "lang": {"type": "string", "examples": ["en", "de"]}}}
    partial = {"type": "object", "required": ["text", "n"], "properties": {
        "text": {"type": "string", "examples": ["x"]}, "n": {"type": "integer"}}}
    document = {**DOCUMENT, "paths": {
        "/classify": {"post": {"requestBody": {"content": {"application/json": {"schema": schema}}},
                               "responses": {"200": {"description": "ok"}}}},
        "/partial": {"post": {"requestBody": {"required": True, "content": {"application/json": {"schema": partial}}},
                              "responses": {"200": {"description": "ok"}}}}}}
    bodies = examples_for(document, {})
    assert bodies["/classify"] == [{"text": "win a free prize", "lang": "en"}]
    assert all(set(body) >= {"text", "n"} for body in bodies["/partial"])  # generated: n had no example
