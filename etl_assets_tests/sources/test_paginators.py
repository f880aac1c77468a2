"""The offset paginator's stopping rules, page by page."""

from etl_assets.sources.paginators import OffsetPaginator, OffsetState
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
