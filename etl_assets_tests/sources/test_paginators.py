"""Each paginator's requests and stopping rules, page by page, the selectors they read with,
and the loop guard."""

import httpx
import pytest

from etl_assets.sources.paginators import (
    CursorPaginator,
    HeaderLinkPaginator,
    JSONLinkPaginator,
    LoopGuard,
    OffsetPaginator,
    OffsetState,
    PageNumberPaginator,
    PageRequest,
    Position,
    parse_link_header,
)
from etl_assets.sources.selectors import MISSING, parse_selector, select
from etl_assets.sources.spec import PaginatorSpec

SPEC = PaginatorSpec(type="offset", limit=10, offset_param="skip", limit_param="limit")


def walk(pages, total=None, start=None):
    """Feed page sizes; return the skips requested."""
    paginator = OffsetPaginator(SPEC, start)
    requested = []
    for count in pages:
        if not paginator.has_next:
            break
        requested.append(paginator.request_params()["skip"])
        paginator.advance(count, total)
    return requested, paginator


def test_total_reached_exactly_needs_no_extra_request():
    requested, paginator = walk([10, 10, 10, 10], total=30)
    assert requested == [0, 10, 20] and paginator.state() == OffsetState(skip=30, page_index=3)


def test_capped_page_size_reads_on_while_below_total():
    requested, paginator = walk([4, 4, 4, 4, 4, 4], total=20)
    assert requested == [0, 4, 8, 12, 16] and paginator.skip == 20


def test_total_that_is_only_an_estimate_falls_back_to_short_page():
    requested, paginator = walk([10, 10, 5], total=12)
    assert requested == [0, 10, 20] and paginator.total_exceeded and paginator.skip == 25


def test_no_total_stops_on_short_or_empty_page():
    assert walk([10, 10, 3])[0] == [0, 10, 20]
    assert walk([10, 10, 0])[0] == [0, 10, 20]


def test_resume_continues_page_index():
    requested, paginator = walk([10, 10], total=50, start=OffsetState(skip=30, page_index=3))
    assert requested == [30, 40] and paginator.state() == OffsetState(skip=50, page_index=5)
    assert paginator.request_params() == {"skip": 50, "limit": 10}


# -- the other styles ----------------------------------------------------------------------



def test_page_number_counts_pages_or_records_from_either_base():
    spec = PaginatorSpec(type="page_number", limit=10, limit_param="per_page", page_param="page", base_page=0,
                         total_is="pages")
    paginator = PageNumberPaginator(spec)
    asked = []
    while paginator.has_next:
        asked.append(paginator.next_request().params)
        paginator.advance(10, 3)
    assert asked == [{"page": 0, "per_page": 10}, {"page": 1, "per_page": 10}, {"page": 2, "per_page": 10}]
    assert paginator.state() == Position(skip=30, page_index=3)

    records = PageNumberPaginator(PaginatorSpec(type="page_number", limit=10, limit_param=None, total_is="records"),
                                  Position(skip=20, page_index=2))
    assert records.next_request() == PageRequest(20, {"page": 3})
    records.advance(5, 25)
    assert not records.has_next and records.state() == Position(skip=25, page_index=3)


def test_page_number_without_total_reads_past_a_short_page_until_an_empty_one():
    # A short page may be an API capping the page size: only an empty page (or the loop guard)
    # ends a run without a total, as in dlt.
    paginator = PageNumberPaginator(PaginatorSpec(type="page_number", limit=10, limit_param="size"))
    paginator.advance(9, None)
    assert paginator.has_next and paginator.next_request() == PageRequest(9, {"page": 2, "size": 10})
    paginator.advance(0, None)
    assert not paginator.has_next


def test_cursor_tokens_resume_and_stop_on_a_repeat_or_an_end():
    spec = PaginatorSpec(type="cursor", cursor_path="meta.next", cursor_param="after", limit=5, limit_param="n")
    paginator = CursorPaginator(spec, Position(skip=10, page_index=2, cursor="t2"))
    assert paginator.next_request() == PageRequest(10, {"n": 5, "after": "t2"})
    assert paginator.read({"meta": {"next": 42}}, httpx.Headers(), "http://h/x", []) == "42"
    assert paginator.read({"meta": {"next": ""}}, httpx.Headers(), "http://h/x", []) is None
    assert paginator.read({"meta": {"next": True}}, httpx.Headers(), "http://h/x", []) is None
    paginator.advance(5, None, "t3")
    assert paginator.state() == Position(skip=15, page_index=3, cursor="t3")
    paginator.advance(5, None, "t2")  # the token the run resumed from: a cycle
    assert not paginator.has_next and "already followed" in paginator.stopped_because
    ended = CursorPaginator(spec)
    ended.advance(5, None, None)
    assert not ended.has_next and ended.stopped_because is None


def test_links_resolve_against_the_page_and_header_links_follow_rfc_8288():
    body = {"link": [{"relation": "self", "url": "a"}, {"relation": "next", "url": "/api/x?page=2"}]}
    json_link = JSONLinkPaginator(PaginatorSpec(type="json_link", next_url_path="link[relation=next].url"))
    assert json_link.read(body, httpx.Headers(), "http://h:8/api/x?page=1", []) == "http://h:8/api/x?page=2"
    assert json_link.read({"link": []}, httpx.Headers(), "http://h/x", []) is None

    header = '<http://h/x?page=1>; rel="first", <x?page=3>; rel="next last"; title="n, m", <http://h/y>; rel=prev'
    assert parse_link_header(header) == {"first": "http://h/x?page=1", "next": "x?page=3", "last": "x?page=3",
                                         "prev": "http://h/y"}
    links = HeaderLinkPaginator(PaginatorSpec(type="header_link", limit_param=None))
    assert links.read(None, httpx.Headers({"Link": header}), "http://h/api/x", []) == "http://h/api/x?page=3"
    assert links.read(None, httpx.Headers(), "http://h/api/x", []) is None
    assert links.next_request() == PageRequest(0, {})


@pytest.mark.parametrize(
    ("path", "body", "expected"),
    [
        ("entry[*].resource", {"entry": [{"resource": {"id": 1}}, {"search": {}}, {"resource": {"id": 2}}]},
         [{"id": 1}, {"id": 2}]),
        ("link[relation=next].url", {"link": [{"relation": "next", "url": "u"}]}, "u"),
        ("link[relation=next].url", {"link": [{"relation": "self", "url": "u"}]}, MISSING),
        ("pages[n=2].v", {"pages": [{"n": 2, "v": "two"}, {"n": 2, "v": "again"}]}, "two"),
        ("link[relation=next].url", {"link": {"relation": "next"}}, MISSING),
    ],
)
def test_selectors_map_lists_and_filter_by_a_field(path, body, expected):
    assert select(body, parse_selector(path)) == expected


@pytest.mark.parametrize("path", ["link[relation].url", "a[*", "a..b", "a[x=y"])
def test_malformed_selectors_are_refused(path):
    with pytest.raises(ValueError, match="is not a dotted path"):
        parse_selector(path)


def test_loop_guard_remembers_a_window_of_keys_and_counts_pages_without_progress():
    guard = LoopGuard(stop_on_repeat=True, max_pages=3, window=4)
    assert guard.check(["1", "2"], total_says_more=False) is None
    assert guard.check(["3", "4"], total_says_more=False) is None
    assert guard.check(["5", "6"], total_says_more=False) is None  # window 4: keys 1 and 2 forgotten
    assert guard.check(["1", "2"], total_says_more=False) is None
    assert guard.check(["5", "1"], total_says_more=False) == "it brought no record not already read in this run"

    patient = LoopGuard(stop_on_repeat=True, max_pages=2)
    assert patient.check(["a"], total_says_more=True) is None
    assert patient.check(["a"], total_says_more=True) is None  # a total says more: read on
    assert patient.check(["a"], total_says_more=True) == (
        "2 pages in a row brought no record not already read in this run (max_pages_without_progress=2)"
    )
    assert patient.check([], total_says_more=False) is None
