"""schema/record.schema.json, the JSON Schema of ``meta.json``: it names exactly the fields
of :class:`storage.record.Record` with their types and nullability, the records the archive
really writes validate against it, and malformed ones do not."""

from __future__ import annotations

import copy
import dataclasses
import json
import types
import typing
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from storage import RECORD_FIELDS, Archive, LocalBackend, Record
from storage.record import Extractor, Version
from tests.test_dedup import article_text, store_text
from tests.test_storage import CONTRACT_FIELDS, make_record, sha256

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "schema" / "record.schema.json"


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    return schema


@pytest.fixture(scope="module")
def validator(schema) -> Draft202012Validator:
    return Draft202012Validator(schema)


def _resolve(schema: dict, prop: dict) -> dict:
    ref = prop.get("$ref")
    if ref:
        assert ref.startswith("#/$defs/"), ref
        return {**schema["$defs"][ref.removeprefix("#/$defs/")], **prop}
    return prop


def _json_types(hint: Any) -> set[str]:
    """JSON types a value of this annotation is written as by ``Record.to_dict``."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return set().union(*(_json_types(a) for a in args))
    if hint is type(None):
        return {"null"}
    if hint in (str, datetime):
        return {"string"}
    if hint is bool:
        return {"boolean"}
    if hint is int:
        return {"integer"}
    if origin in (tuple, list):
        return {"array"}
    if origin is dict or dataclasses.is_dataclass(hint):
        return {"object"}
    raise AssertionError(f"no JSON type known for {hint!r}: extend this test and the schema")


def _assert_describes(schema: dict, object_schema: dict, cls: type, skip=("extra",)) -> None:
    names = [f.name for f in dataclasses.fields(cls) if f.name not in skip]
    properties = object_schema["properties"]
    assert set(properties) == set(names), (
        f"{cls.__name__}: missing from the schema {set(names) - set(properties)}, "
        f"not in the dataclass {set(properties) - set(names)}")
    hints = typing.get_type_hints(cls)
    for name in names:
        prop = _resolve(schema, properties[name])
        assert prop.get("description"), f"{cls.__name__}.{name} has no description"
        declared = prop.get("type")
        declared = {declared} if isinstance(declared, str) else set(declared or ())
        if "const" in prop:
            declared = {"integer"} if isinstance(prop["const"], int) else declared
        assert declared == _json_types(hints[name]), f"{cls.__name__}.{name}: {declared}"
    # Whatever from_dict cannot do without is required; required names exist.
    required = set(object_schema.get("required", ()))
    no_default = {f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING
                  and f.default_factory is dataclasses.MISSING}
    assert no_default <= required <= set(names)
    assert object_schema.get("additionalProperties", True) is not False


# -- (1) the schema names exactly the record's fields ----------------------------------------


def test_schema_describes_every_record_field(schema):
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert set(schema["properties"]) == set(RECORD_FIELDS)
    _assert_describes(schema, schema, Record)
    _assert_describes(schema, schema["$defs"]["version"], Version)
    _assert_describes(schema, schema["$defs"]["extractor"], Extractor)
    assert schema["properties"]["versions"]["items"] == {"$ref": "#/$defs/version"}
    assert schema["properties"]["schema_version"]["const"] == 1
    # Every record has the fields of the architecture's contract; later ones may be absent
    # from records written before them.
    assert set(schema["required"]) == set(CONTRACT_FIELDS)


# -- (2) what the archive writes validates -------------------------------------------------


def test_stored_meta_json_validates(tmp_path, validator):
    backend = LocalBackend(tmp_path / "archive")
    archive = Archive(backend)

    first = store_text(archive, "https://example.com/news/story", article_text(1))
    meta = json.loads(backend.get(first.record.meta_key))
    assert not list(validator.iter_errors(meta)), list(validator.iter_errors(meta))

    # A second capture with changed text: the record now lists two versions.
    later = store_text(archive, "https://example.com/news/story", article_text(2),
                       fetched_at=first.record.fetched_at + timedelta(hours=3))
    meta = json.loads(backend.get(later.record.meta_key))
    assert len(meta["versions"]) == 2
    validator.validate(meta)

    # Every optional field filled in, with a publisher's offset.
    text = article_text(3)
    published = datetime(2024, 5, 17, 23, 5, tzinfo=timezone(timedelta(hours=-4)))
    record = replace(
        make_record(archive, "https://example.com/news/full", published=published, text=text),
        modified=published + timedelta(minutes=30), description="Summary.", section="World",
        tags=("a", "b"), image_url="https://example.com/lead.jpg", warc_key="warc/x.warc.gz",
        warc_offset=0, metadata_sources={"title": "json-ld", "language": "declared+detected"},
        content_sha256=sha256(text))
    stored = archive.store(record, raw_body=text.encode(), charset="utf-8", text=text,
                           run_id="run-1")
    meta = json.loads(backend.get(stored.record.meta_key))
    assert meta["published"] == "2024-05-17T23:05:00-04:00"
    validator.validate(meta)
    # A future field is allowed (forward compatibility), and so is a record written before
    # the optional fields existed.
    validator.validate({**meta, "a_field_from_the_future": {"x": 1}})
    validator.validate({k: v for k, v in meta.items() if k in CONTRACT_FIELDS})
    validator.validate(Record.from_json(json.dumps(meta).encode()).to_dict())


# -- (3) malformed records fail ----------------------------------------------------------------


def _valid_meta() -> dict[str, Any]:
    fetched = datetime(2024, 5, 17, 9, 30, 15, 123456, tzinfo=timezone.utc)
    record = Record(
        id="0" * 24, site="example", url="https://example.com/a",
        canonical_url="https://example.com/a",
        title=None, authors=("Ann",), published=None, modified=None, language="en",
        fetched_at=fetched, http_status=200, content_sha256="a" * 64,
        extractor=Extractor("newsarchive", "1"), raw_key="articles/x/raw.html.gz",
        text_key="articles/x/text.txt", meta_key="articles/x/meta.json",
        versions=(Version(fetched, "a" * 64, "r", "t", "https://example.com/a"),),
    )
    return record.to_dict()


def _set(meta: dict, path: str, value: Any) -> None:
    """Set (or with ``KeyError``, delete) the value at a dotted path of ``meta``."""
    *parents, last = path.split(".")
    target = meta
    for part in parents:
        target = target[int(part)] if isinstance(target, list) else target[part]
    if value is KeyError:
        del target[last]
    else:
        target[last] = value


MALFORMED = [
    ("authors", "Ann Author"),
    ("authors", [1]),
    ("title", 3),
    ("http_status", "200"),
    ("schema_version", 2),
    ("id", "not-an-id"),
    ("site", "Bad Site"),
    ("fetched_at", "yesterday"),
    ("published", "2024-05-17"),
    ("content_sha256", "xyz"),
    ("extractor", "newsarchive/1"),
    ("extractor.version", KeyError),
    ("metadata_sources", {"title": 1}),
    ("versions", {}),
    ("versions.0.fetched_at", KeyError),
    ("versions.0.warc_offset", -1),
    ("meta_key", KeyError),
    ("near_duplicate_of", "0"),
]


@pytest.mark.parametrize(("path", "value"), MALFORMED,
                         ids=[f"{p}={'missing' if v is KeyError else v!r}" for p, v in MALFORMED])
def test_malformed_meta_fails(validator, path, value):
    meta = _valid_meta()
    validator.validate(meta)
    broken = copy.deepcopy(meta)
    _set(broken, path, value)
    assert list(validator.iter_errors(broken))
