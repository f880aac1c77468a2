"""Hostile configuration: names, paths and values that try SQL or path injection.

Resource, group and schema names become SQL identifiers and Dagster names, and endpoint paths
become URLs on the host that receives the credentials, so a bad one is refused when the
definitions load, with the file, the resource, the key and the reason. Parameter values are
data: an API may well be asked for ``name=O'Brien; --``, so they are sent as they are and reach
SQL only as bound values.
"""

import base64
import logging
from pathlib import Path
from urllib.parse import parse_qs, quote

import pytest
import sqlalchemy as sa
import yaml

from etl_assets.defs.resources import CheckpointStoreResource
from etl_assets.definitions import build_definitions
from etl_assets.demo import DemoSource, Fault, ListCollection, create_app
from etl_assets.errors import SettingsError, SourceHTTPError, SpecError
from etl_assets.settings import Settings
from etl_assets.sources.spec import ExtractSpec, load_extracts
from etl_assets_tests.support import AppServer, RequestCapture, extract, simple_records

NAME_RULE = (
    "must be a lower-case identifier (letters, digits, underscore, not starting with a digit, "
    "at most 59 characters), got "
)
SCHEMA_RULE = (
    "must be a lower-case identifier (letters, digits, underscore, at most 63 characters, "
    "not starting with a digit), got "
)
SYSTEM_SCHEMA = "must not be a PostgreSQL system schema (names starting with pg_ or information_schema are reserved), got "
PATH_RULE = "must be a plain path starting with '/'"


def document(*, group: object = "crm", base_url: str = "http://127.0.0.1:9", **resource: object) -> dict:
    resource.setdefault("name", "patients")
    resource.setdefault("primary_key", "id")
    resource.setdefault("endpoint", {"path": "/patients", "data_selector": "items"})
    return {
        "name": group,
        "client": {
            "base_url": base_url,
            "paginator": {"type": "offset", "limit": 10, "offset_param": "skip", "limit_param": "limit",
                          "total_path": "total"},
        },
        "resources": [resource],
    }


def write(tmp_path: Path, doc: dict) -> Path:
    """The document as a real extracts file, so messages name a real path."""
    file = tmp_path / "extracts.yaml"
    file.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    return file


def load_error(tmp_path: Path, doc: dict) -> str:
    file = write(tmp_path, doc)
    with pytest.raises(SpecError) as raised:
        load_extracts(file)
    return str(raised.value).removeprefix(f"{file}: ")


@pytest.mark.parametrize(
    "name",
    [
        "patients'; DROP TABLE dw_etl_runs; --",
        'pat"ients',
        "patients;",
        "patients--",
        "pat ients",
        "patients\n",
        "p\u0430tients",  # Cyrillic a
        "pat\u0131ents",  # dotless i
        "\uff50atients",  # fullwidth p
        "a" * 60,
        "Patients",
        "1patients",
        "",
    ],
    ids=["quote-drop", "double-quote", "semicolon", "comment", "space", "trailing-newline", "cyrillic-a",
         "dotless-i", "fullwidth", "60-characters", "upper-case", "leading-digit", "empty"],
)
def test_resource_names_that_are_not_plain_identifiers_are_refused(tmp_path, name):
    assert load_error(tmp_path, document(name=name)) == f"resource {name!r}: key 'name': {NAME_RULE}{name!r}"


def test_a_resource_name_that_is_not_a_string_is_named_by_position(tmp_path):
    assert load_error(tmp_path, document(name=7)) == f"resource '#1': key 'name': {NAME_RULE}7"


def test_the_longest_resource_name_makes_a_63_character_table_name(tmp_path):
    (spec,) = load_extracts(write(tmp_path, document(name="n" * 59)))
    assert spec.table_name == "stg_" + "n" * 59 and len(spec.table_name) == 63


@pytest.mark.parametrize(
    "group",
    ["demo; DROP SCHEMA public", 'demo"', "demo\n", "d\u0435mo", "g" * 64, "Demo", "", None, 5],
    ids=["semicolon", "double-quote", "trailing-newline", "cyrillic-e", "64-characters", "upper-case", "empty",
         "null", "number"],
)
def test_group_names_that_are_not_plain_identifiers_are_refused(tmp_path, group):
    assert load_error(tmp_path, document(group=group)) == f"key 'name': must be a lower-case identifier, got {group!r}"


@pytest.mark.parametrize(
    ("path", "why"),
    [
        ("/../etc/passwd", "no '..' and no '.' segment"),
        ("/items/..", "no '..' and no '.' segment"),
        ("/items/./admin", "no '..' and no '.' segment"),
        ("/items..;/admin", "no '..' and no '.' segment"),
        ("//evil.example/items", "no '//': the host comes from client.base_url"),
        ("/items//evil.example", "no '//': the host comes from client.base_url"),
        ("http://evil.example/items", "the host comes from client.base_url"),
        ("https://evil.example", "the host comes from client.base_url"),
        ("items", "the host comes from client.base_url"),
        ("/items/%2e%2e/admin", "no percent-encoded '.', '/', backslash or control character, found %2e"),
        ("/items/%2E%2E/admin", "no percent-encoded '.', '/', backslash or control character, found %2E"),
        ("/items%2f..%2fadmin", "no '..' and no '.' segment"),
        ("/items%2fadmin", "no percent-encoded '.', '/', backslash or control character, found %2f"),
        ("/items%5cadmin", "no percent-encoded '.', '/', backslash or control character, found %5c"),
        ("/items%0d%0aX-Injected:%201", "no percent-encoded '.', '/', backslash or control character, found %0d"),
        ("/items\\..\\admin", "no backslash: some servers read it as '/'"),
        ("/items?admin=true", "no '?' or '#': query parameters go in endpoint.params"),
        ("/items?skip=0&limit=1000000", "no '?' or '#': query parameters go in endpoint.params"),
        ("/items#fragment", "no '?' or '#': query parameters go in endpoint.params"),
        ("/items'; DROP TABLE dw_etl_runs; --", "' ' is not allowed in a URL path; percent-encode it"),
        ('/items"', "'\"' is not allowed in a URL path; percent-encode it"),
        ("/it\u0435ms", "'\u0435' is not allowed in a URL path; percent-encode it"),
        ("/items\u2025/admin", "'\u2025' is not allowed in a URL path; percent-encode it"),
        ("/items\uff0fadmin", "'\uff0f' is not allowed in a URL path; percent-encode it"),
        ("/items{id}", "'{' is not allowed in a URL path; percent-encode it"),
        ("/items%", "a '%' must start a percent-escape of two hex digits"),
        ("/items%zz", "a '%' must start a percent-escape of two hex digits"),
    ],
)
def test_endpoint_paths_that_leave_the_api_are_refused(tmp_path, path, why):
    doc = document(endpoint={"path": path, "data_selector": "items"})
    assert load_error(tmp_path, doc) == f"resource 'patients': key 'endpoint.path': {PATH_RULE} ({why}), got {path!r}"


@pytest.mark.parametrize(
    "path", ["/items", "/v2/Patient", "/odata/Items('a;b')", "/things:batchGet", "/items%20list", "/~u/items.json",
             "/.well-known/items", "/@me/items"],
)
def test_plain_paths_rfc_3986_allows_are_kept_exactly(tmp_path, path):
    (spec,) = load_extracts(write(tmp_path, document(endpoint={"path": path})))
    assert spec.path == path


@pytest.mark.parametrize(
    ("key", "params"),
    [
        ("endpoint.params.q;DROP", {"q;DROP": 1}),
        ("endpoint.params.q' OR '1'='1", {"q' OR '1'='1": 1}),
        ("endpoint.params.a b", {"a b": 1}),
    ],
)
def test_parameter_names_that_are_not_plain_are_refused(tmp_path, key, params):
    doc = document(endpoint={"path": "/patients", "params": params})
    name = key.removeprefix("endpoint.params.")
    assert load_error(tmp_path, doc) == (
        f"resource 'patients': key {key!r}: must be a plain query parameter name, got {name!r}"
    )


def test_a_header_name_that_smuggles_a_header_is_refused(tmp_path):
    doc = document()
    doc["client"]["headers"] = {"X-Api-Key\r\nX-Injected": "1"}
    assert load_error(tmp_path, doc) == "key 'client.headers.X-Api-Key\\r\\nX-Injected': is not a valid header name"


@pytest.mark.parametrize(
    ("base_url", "message"),
    [
        ("ftp://etl:s3cret-pw@files.example", "must start with http:// or https://, got 'ftp://***@files.example'"),
        ("javascript:alert(1)", "must start with http:// or https://, got 'javascript:alert(1)'"),
        ("http://etl:s3cret-pw@api.example/v2?admin=1",
         "must not have a query string or fragment: query parameters go in endpoint.params, "
         "got 'http://***@api.example/v2?admin=1'"),
        ("http://api.example/v2#x",
         "must not have a query string or fragment: query parameters go in endpoint.params, got 'http://api.example/v2#x'"),
        ("http://api example/v2", "must be a URL with a host and no spaces, got 'http://api example/v2'"),
        ("http:///v2", "must be a URL with a host and no spaces, got 'http:///v2'"),
        ("http://api.example:80ab", "is not a URL (Port could not be cast to integer value as '80ab'), "
         "got 'http://api.example:80ab'"),
    ],
)
def test_bad_base_urls_are_refused_without_showing_a_password(tmp_path, base_url, message):
    assert load_error(tmp_path, document(base_url=base_url)) == f"key 'client.base_url': {message}"


def test_other_spec_values_are_checked_too(tmp_path):
    assert load_error(tmp_path, document(primary_key=["id", "k\x00"])) == (
        "resource 'patients': key 'primary_key': must not contain control characters (found '\\x00' at position 1)"
    )
    assert load_error(tmp_path, document(description={"html": "<script>"})) == (
        "resource 'patients': key 'description': must be a string, got dict"
    )


def test_the_definitions_do_not_load_with_a_hostile_name(tmp_path):
    file = write(tmp_path, document(name="patients; DROP TABLE dw_etl_runs"))
    with pytest.raises(SpecError) as raised:
        build_definitions(Settings(extracts_file=file))
    assert str(raised.value) == (
        f"{file}: resource 'patients; DROP TABLE dw_etl_runs': key 'name': {NAME_RULE}'patients; DROP TABLE dw_etl_runs'"
    )


@pytest.mark.parametrize(
    ("schema", "rule"),
    [
        ('staging"; DROP SCHEMA public CASCADE; --', SCHEMA_RULE),
        ("staging\n", SCHEMA_RULE),
        ("st\u0430ging", SCHEMA_RULE),
        ("s" * 64, SCHEMA_RULE),
        ("Staging", SCHEMA_RULE),
        ("staging-area", SCHEMA_RULE),
        ("pg_temp", SYSTEM_SCHEMA),
        ("pg_catalog", SYSTEM_SCHEMA),
        ("pg_toast", SYSTEM_SCHEMA),
        ("information_schema", SYSTEM_SCHEMA),
    ],
)
def test_hostile_schema_names_are_refused_from_the_environment_and_the_resource(monkeypatch, schema, rule):
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({"ETL_WAREHOUSE_SCHEMA": schema})
    assert str(raised.value) == f"ETL_WAREHOUSE_SCHEMA {rule}{schema!r}"
    monkeypatch.delenv("ETL_WAREHOUSE_SCHEMA", raising=False)
    resource = CheckpointStoreResource(database_url="sqlite:///unused.db", warehouse_schema=schema)
    with pytest.raises(SettingsError) as raised:
        resource.setup_for_execution(None)  # type: ignore[arg-type]
    assert str(raised.value) == f"warehouse_schema {rule}{schema!r}"


@pytest.mark.parametrize("schema", ["s" * 63, "_staging", "pgstaging", "information", "staging_2"])
def test_plain_schema_names_are_kept(schema):
    assert Settings.from_env({"ETL_WAREHOUSE_SCHEMA": schema}).warehouse_schema == schema


SQL_VALUES = {
    "q": "1'; DROP TABLE dw_etl_runs; --",
    "name": "Robert'); DROP TABLE students;--",
    "like": "%' OR '1'='1",
    "quoted": '"stg_items"; DELETE FROM dw_etl_runs',
}
LONGEST = "n" * 59


@pytest.fixture
def capture():
    source = DemoSource(collections={"it'ems;--": ListCollection(simple_records(25))})
    app = RequestCapture(create_app(source))
    with AppServer(app) as server:
        yield server.url, source, app


def test_sql_in_parameter_values_and_the_path_is_sent_as_data_and_stored_bound(tmp_path, capture, warehouse):
    url, source, app = capture
    doc = document(base_url=url, name=LONGEST, endpoint={"path": "/it'ems;--", "params": SQL_VALUES,
                                                         "data_selector": "items"})
    (spec,) = load_extracts(write(tmp_path, doc))
    result = extract(spec, warehouse)
    assert (result.records_fetched, result.inserted) == (25, 25)
    assert sorted(int(k) for k in warehouse.records(LONGEST)) == list(range(1, 26))
    seen = sorted(app.seen, key=lambda r: int(parse_qs(r.query)["skip"][0]))  # pages are asked ahead
    assert [parse_qs(r.query, keep_blank_values=True) for r in seen] == [
        {**{k: [v] for k, v in SQL_VALUES.items()}, "skip": [str(skip)], "limit": ["10"]} for skip in (0, 10, 20)
    ]
    assert [r.path for r in app.seen] == ["/it'ems;--"] * 3
    (run,) = warehouse.runs(LONGEST)
    assert run.parameters["params"] == SQL_VALUES and run.parameters["path"] == "/it'ems;--"
    with warehouse.engine.connect() as conn:
        tables = set(sa.inspect(conn).get_table_names(schema=warehouse.schema))
        stored = conn.execute(sa.text(f"SELECT count(*) FROM {warehouse.table('dw_etl_runs')}")).scalar_one()
    assert tables == {"dw_etl_runs", "stg_" + LONGEST} and stored == 1


PASSWORD = "pa55w0rd-3f9a%21"  # percent-encoded in the URL; the server gets "pa55w0rd-3f9a!"


def password_forms() -> list[str]:
    decoded = "pa55w0rd-3f9a!"
    return [PASSWORD, decoded, quote(decoded, safe=""), base64.b64encode(f"etl:{decoded}".encode()).decode()]


@pytest.mark.parametrize("from_env", [False, True], ids=["in-file", "from-env"])
def test_credentials_in_base_url_reach_the_source_and_nothing_else(tmp_path, capture, warehouse, caplog, from_env):
    url, source, app = capture
    credentialed = url.replace("http://", f"http://etl:{PASSWORD}@")
    doc = document(base_url="${SOURCE_URL}" if from_env else credentialed,
                   endpoint={"path": "/it'ems;--", "data_selector": "items"})
    doc["client"]["max_in_flight"] = 1  # no page asked ahead: exactly two requests
    (spec,) = load_extracts(write(tmp_path, doc))
    source.add_fault(Fault(path="/it'ems;--", skip=10, status=404, times=None))
    with caplog.at_level(logging.DEBUG), pytest.raises(SourceHTTPError) as raised:
        extract(spec, warehouse, environ={"SOURCE_URL": credentialed}, log=logging.getLogger("credentials"))
    shown = url.replace("http://", "http://***@")
    assert str(raised.value) == (
        f"extract 'patients': {shown}/it'ems;--?skip=10&limit=10 answered HTTP 404 Not Found; "
        "this status is not retried (check the URL, parameters and credentials)"
    )
    basic = "Basic " + base64.b64encode(b"etl:pa55w0rd-3f9a!").decode()
    assert [r.headers["authorization"] for r in app.seen] == [basic, basic]
    (run,) = warehouse.runs("patients")
    assert run.parameters["base_url"] == shown
    with warehouse.engine.connect() as conn:
        rows = conn.execute(sa.text(f"SELECT * FROM {warehouse.table('dw_etl_runs')}")).all()
    said = "\n".join([caplog.text, str(raised.value), repr(rows)])
    assert "HTTP Request: GET" in caplog.text  # httpx logged the request URLs, masked
    assert [form for form in password_forms() if form in said] == []


@pytest.mark.parametrize("schema", ['a"; DROP TABLE x; --', "pg_temp", "Upper", ""])
def test_a_checkpoint_store_refuses_a_schema_that_is_not_a_plain_identifier(schema):
    import sqlalchemy as sa

    from etl_assets.checkpoints import CheckpointStore
    from etl_assets.errors import SettingsError

    with pytest.raises(SettingsError, match="^schema must "):
        CheckpointStore(sa.create_engine("sqlite://"), schema)
