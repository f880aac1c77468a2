"""Extract specs: the packaged file, dlt's vocabulary, and load-time errors that name the
file, the resource and the key."""

import pytest

from etl_assets.errors import SpecError
from etl_assets.settings import DEFAULT_EXTRACTS_FILE
from etl_assets.sources.spec import PaginatorSpec, load_extracts, parse_extracts


def doc(**resource):
    resource.setdefault("name", "patients")
    resource.setdefault("primary_key", "id")
    resource.setdefault("endpoint", {"path": "/patients", "data_selector": "items"})
    return {
        "client": {
            "base_url": "http://127.0.0.1:9",
            "paginator": {"type": "offset", "limit": 50, "offset_param": "skip", "limit_param": "limit"},
        },
        "resources": [resource],
    }


def test_packaged_extracts_load():
    specs = load_extracts(DEFAULT_EXTRACTS_FILE)
    assert [s.name for s in specs] == ["patients", "encounters", "observations"]
    assert {s.group for s in specs} == {"demo_source"}
    assert specs[0].paginator == PaginatorSpec(
        type="offset", limit=1000, offset_param="skip", limit_param="limit", total_path="total"
    )
    assert specs[0].base_url == "${ETL_DEMO_SOURCE_URL:-http://127.0.0.1:8765}"
    assert specs[0].table_name == "stg_patients"


def test_json_server_style_spec_with_header_total_and_root_selector():
    document = {
        "client": {
            "base_url": "http://127.0.0.1:3000",
            "headers": {"Authorization": "Bearer ${API_TOKEN}"},
            "paginator": {
                "type": "offset",
                "limit": 100,
                "offset_param": "_start",
                "limit_param": "_limit",
                "total_header": "X-Total-Count",
            },
        },
        "resources": [
            {"name": "patients", "primary_key": ["id"], "endpoint": {"path": "/Patient", "data_selector": "$"}},
            {"name": "observations", "primary_key": ["id", "status"], "endpoint": "/Observation"},
        ],
    }
    patients, observations = parse_extracts(document, source_file="x.yaml")
    assert patients.paginator.total_header == "X-Total-Count" and patients.paginator.total_path is None
    assert patients.data_selector == "$" and patients.headers == {"Authorization": "Bearer ${API_TOKEN}"}
    assert observations.primary_key == ("id", "status") and observations.path == "/Observation"


def test_resource_paginator_overrides_client_paginator():
    spec = parse_extracts(
        doc(endpoint={"path": "/p", "paginator": {"limit": 7}}), source_file="x.yaml"
    )[0]
    assert spec.paginator.limit == 7 and spec.paginator.offset_param == "skip"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"name": "patients; DROP TABLE dw_etl_runs"}, "resource 'patients; DROP TABLE dw_etl_runs': key 'name'"),
        ({"name": "Patients"}, "resource 'Patients': key 'name': must be a lower-case identifier"),
        ({"primary_key": None}, "resource 'patients': key 'primary_key': must be a field name"),
        ({"endpoint": {"path": "/../etc/passwd"}}, "resource 'patients': key 'endpoint.path'"),
        ({"endpoint": {"path": "http://evil.example/x"}}, "resource 'patients': key 'endpoint.path'"),
        ({"endpoint": {"path": "/p", "data_selector": "items[0]"}}, "key 'endpoint.data_selector'"),
        ({"endpoint": {"path": "/p", "params": {"q": {"nested": 1}}}}, "key 'endpoint.params.q'"),
        ({"endpoint": {"path": "/p", "params": {"q": "${BROKEN"}}}, "key 'endpoint.params.q'"),
        ({"endpoint": {"path": "/p", "paginator": {"type": "graphql"}}},
         "key 'endpoint.paginator.type': must be one of offset, page_number, json_link, header_link, cursor, keyset, got 'graphql'"),
        ({"endpoint": {"path": "/p", "paginator": {"limit": 0}}}, "key 'endpoint.paginator.limit'"),
        ({"endpoint": {"path": "/p", "paginator": {"limit": "ten"}}}, "key 'endpoint.paginator.limit'"),
        ({"endpoint": {"path": "/p", "pagesize": 3}}, "key 'endpoint.pagesize': is not a known key"),
        ({"primary_kye": "id"}, "resource 'patients': key 'primary_kye': is not a known key"),
        ({"endpoint": {"path": "/p\x00"}},
         "resource 'patients': key 'endpoint.path': must not contain control characters (found '\\x00' at position 2)"),
        ({"endpoint": {"path": "/p", "params": {"q": "a\x00b"}}},
         "key 'endpoint.params.q': must not contain control characters (found '\\x00' at position 1)"),
    ],
)
def test_bad_resource_names_file_resource_and_key(change, message):
    with pytest.raises(SpecError) as raised:
        parse_extracts(doc(**change), source_file="/etc/etl/extracts.yaml")
    assert str(raised.value).startswith("/etc/etl/extracts.yaml: ")
    assert message in str(raised.value)


def test_bad_client_and_duplicate_names():
    document = doc()
    document["client"]["base_url"] = "ftp://x"
    with pytest.raises(SpecError, match=r"^f.yaml: key 'client.base_url': must start with http"):
        parse_extracts(document, source_file="f.yaml")
    document = doc()
    document["resources"].append(dict(document["resources"][0]))
    with pytest.raises(SpecError, match=r"resource 'patients': key 'name': is used by two resources"):
        parse_extracts(document, source_file="f.yaml")
    document = doc()
    document["client"]["headers"] = {"X-Evil": "a\r\nInjected: 1"}
    with pytest.raises(SpecError, match=r"key 'client.headers.X-Evil': must not contain a line break"):
        parse_extracts(document, source_file="f.yaml")
    with pytest.raises(SpecError, match=r"^f.yaml: key 'resources': must be a non-empty list"):
        parse_extracts({"client": {"base_url": "http://x"}}, source_file="f.yaml")


def test_unreadable_and_invalid_yaml_files(tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(SpecError, match=rf"^{missing}: cannot read the extracts file"):
        load_extracts(missing)
    broken = tmp_path / "broken.yaml"
    broken.write_text("client: [unclosed\n")
    with pytest.raises(SpecError, match=rf"^{broken}: not valid YAML"):
        load_extracts(broken)


def paginated(paginator: dict) -> dict:
    return doc(endpoint={"path": "/p", "data_selector": "items", "paginator": paginator})


@pytest.mark.parametrize(
    ("paginator", "expected"),
    [
        ({"type": "page_number", "page_param": "_page", "base_page": 0, "total_path": "meta.pages"},
         PaginatorSpec(type="page_number", limit=100, limit_param=None, page_param="_page", base_page=0,
                       total_path="meta.pages")),
        ({"type": "page_number", "limit": 25, "limit_param": "per_page", "total_header": "X-Total",
          "total_is": "records"},
         PaginatorSpec(type="page_number", limit=25, limit_param="per_page", total_header="X-Total",
                       total_is="records")),
        ({"type": "json_link", "next_url_path": "link[relation=next].url", "limit": 50, "limit_param": "_count"},
         PaginatorSpec(type="json_link", limit=50, limit_param="_count", next_url_path="link[relation=next].url")),
        ({"type": "header_link", "links_next_key": "next", "stop_on_repeat": False,
          "max_pages_without_progress": 5},
         PaginatorSpec(type="header_link", limit_param=None, stop_on_repeat=False, max_pages_without_progress=5)),
        ({"type": "cursor", "cursor_path": "paging.next", "cursor_param": "after"},
         PaginatorSpec(type="cursor", limit_param=None, cursor_path="paging.next", cursor_param="after")),
    ],
    ids=["page-number-pages", "page-number-records", "json-link", "header-link", "cursor"],
)
def test_every_paging_style_in_dlt_vocabulary(paginator, expected):
    (spec,) = parse_extracts(paginated(paginator))
    assert spec.paginator == expected


@pytest.mark.parametrize(
    ("paginator", "message"),
    [
        ({"type": "json_link"}, "key 'endpoint.paginator.next_url_path': is required for a json_link paginator"),
        ({"type": "cursor"}, "key 'endpoint.paginator.cursor_path': is required for a cursor paginator"),
        ({"type": "cursor", "cursor_path": "next", "offset_param": "skip"},
         "key 'endpoint.paginator.offset_param': is not a known key"),
        ({"type": "json_link", "next_url_path": "a[b"}, "key 'endpoint.paginator.next_url_path': 'a[b' is not a dotted"),
        ({"type": "page_number", "total_is": "rows"}, "key 'endpoint.paginator.total_is': must be pages or records"),
        ({"type": "page_number", "base_page": 2}, "key 'endpoint.paginator.base_page': must be a whole number from 0 to 1"),
        ({"type": "page_number", "limit_param": "page"}, "key 'endpoint.paginator.limit_param': must differ from page_param"),
        ({"type": "cursor", "cursor_path": "n", "cursor_param": "c;drop"},
         "key 'endpoint.paginator.cursor_param': must be a plain query parameter name"),
        ({"type": "header_link", "stop_on_repeat": "no"}, "key 'endpoint.paginator.stop_on_repeat': must be true or false"),
        ({"type": "header_link", "max_pages_without_progress": 0},
         "key 'endpoint.paginator.max_pages_without_progress': must be a whole number from 1 to 10000"),
        ({"type": "offset", "limit_param": None}, "key 'endpoint.paginator.limit_param': must be a non-empty string"),
    ],
)
def test_paging_style_mistakes_are_named(paginator, message):
    with pytest.raises(SpecError) as raised:
        parse_extracts(paginated(paginator), source_file="x.yaml")
    assert str(raised.value).startswith("x.yaml: resource 'patients': " + message)
