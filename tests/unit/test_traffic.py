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


MEDIA_DOCUMENT = {
    "openapi": "3.1.0", "info": {"title": "t", "version": "1"},
    "paths": {
        "/caption": {"post": {"requestBody": {"required": True, "content": {"multipart/form-data": {
            "schema": {"type": "object", "required": ["image"], "properties": {
                "image": {"type": "string", "format": "binary"},
                "style": {"type": "string", "examples": ["long"]}}},
            "encoding": {"image": {"contentType": "image/jpeg"}}}}}, "responses": {"200": {"description": "ok"}}}},
        "/checksum": {"post": {"requestBody": {"required": True, "content": {"multipart/form-data": {
            "schema": {"type": "object", "required": ["document"], "properties": {
                "document": {"type": "string", "format": "binary"}}},
            "encoding": {"document": {"contentType": "application/pdf"}}}}}, "responses": {"200": {"description": "ok"}}}},
        "/describe": {"post": {"requestBody": {"content": {"application/json": {"schema": {"type": "object"}}}},
                               "responses": {"200": {"description": "ok"}}}},
        **{f"/describe/{name}": {"post" if name in ("submit", "retry") else "get": {
            "responses": {"200": {"description": "ok"}}}} for name in ("submit", "status", "get", "retry")},
    },
}


def test_a_file_field_gets_a_built_in_file_of_the_type_it_declares():
    from shipyard.harness.staged.traffic import api_routes, encode, task_routes

    assert task_routes(MEDIA_DOCUMENT) == ["/describe"]
    assert api_routes(MEDIA_DOCUMENT) == ["/caption", "/checksum", "/describe"]  # not /describe/submit, /retry
    bodies = examples_for(MEDIA_DOCUMENT, {})
    assert bodies["/caption"] == [{"image": "@shipyard:sample.jpg", "style": "long"}]
    assert bodies["/checksum"] == [{"document": "@shipyard:sample.pdf"}]
    wire = encode(MEDIA_DOCUMENT, "/checksum", bodies["/checksum"][0])
    assert wire.content_type.startswith("multipart/form-data; boundary=")
    assert b'name="document"; filename="sample.pdf"' in wire.content and b"%PDF-1.4" in wire.content
    caption = encode(MEDIA_DOCUMENT, "/caption", bodies["/caption"][0])
    assert b"\xff\xd8" in caption.content and b'"long"' in caption.content  # JPEG bytes; a form field as JSON


def test_a_samples_file_names_its_files_relative_to_itself_and_a_missing_one_is_named(tmp_path):
    from shipyard.harness.staged.traffic import encode

    (tmp_path / "scan.pdf").write_bytes(b"%PDF-1.7 mine")
    wire = encode(MEDIA_DOCUMENT, "/checksum", {"document": "@scan.pdf"}, tmp_path)
    assert b"%PDF-1.7 mine" in wire.content
    with pytest.raises(TrafficError, match=r"/checksum field 'document': cannot read .*missing.pdf"):
        encode(MEDIA_DOCUMENT, "/checksum", {"document": "@missing.pdf"}, tmp_path)
    with pytest.raises(TrafficError, match=r"field 'document' is a file: give it as \"@path/to/file\""):
        encode(MEDIA_DOCUMENT, "/checksum", {"document": "just text"}, tmp_path)
