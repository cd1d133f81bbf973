"""tokensvc.statusfeed.feed: Statuspage documents parsed whole or refused."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from drill.fake_statuspage import FakeStatuspage
from tokensvc.statusfeed.feed import FeedError, describe_components, parse_page


def body(doc: Any) -> bytes:
    return json.dumps(doc).encode()


def test_a_components_document_is_parsed() -> None:
    """Every component of the fixture, with its status."""
    fake = FakeStatuspage()
    fake.set_status("tokyo0000001", "partial_outage")
    page = parse_page(body(fake.components_doc()))
    assert (10, "partial_outage") == (len(page.components), page.components["tokyo0000001"].status)


def test_a_summary_document_is_parsed_the_same_way() -> None:
    """summary.json's extra keys are ignored."""
    fake = FakeStatuspage()
    assert parse_page(body(fake.components_doc())) == parse_page(body(fake.summary_doc()))


def test_a_group_has_the_worst_status_of_its_children() -> None:
    """grpedges0001 is operational itself; one child in major_outage makes it major_outage."""
    fake = FakeStatuspage()
    fake.set_status("dublin000001", "degraded_performance")
    fake.set_status("sydney000001", "major_outage")
    page = parse_page(body(fake.components_doc()))
    assert ("major_outage", "degraded_performance") == (
        page.effective_status("grpedges0001"),
        page.effective_status("dublin000001"),
    )


def broken(change: str) -> Any:
    doc = FakeStatuspage().components_doc()
    if change == "no_page":
        del doc["page"]
    elif change == "unknown_status":
        doc["components"][1]["status"] = "on_fire"
    elif change == "unknown_child":
        doc["components"][0]["components"].append("ghost0000001")
    elif change == "duplicate":
        doc["components"].append(doc["components"][1])
    elif change == "bad_time":
        doc["page"]["updated_at"] = "yesterday"
    elif change == "components_not_a_list":
        doc["components"] = {"a": 1}
    return doc


@pytest.mark.parametrize(
    "change",
    [
        "no_page",
        "unknown_status",
        "unknown_child",
        "duplicate",
        "bad_time",
        "components_not_a_list",
    ],
)
def test_a_malformed_document_is_refused_whole(change: str) -> None:
    """Any defect makes the whole reading malformed, never a partial one."""
    with pytest.raises(FeedError) as caught:
        parse_page(body(broken(change)))
    assert "malformed" == caught.value.reason


@pytest.mark.parametrize("raw", [b"", b"<html>", b"[" * 100000, b"null", b'"x"'])
def test_garbage_is_malformed(raw: bytes) -> None:
    """Non-JSON, deeply nested or non-object bodies: malformed, no traceback."""
    with pytest.raises(FeedError) as caught:
        parse_page(raw)
    assert "malformed" == caught.value.reason


def test_a_document_older_than_one_seen_is_stale() -> None:
    """page.updated_at going backwards is a lagging cache: stale_document."""
    doc = FakeStatuspage().components_doc()
    with pytest.raises(FeedError) as caught:
        parse_page(body(doc), newest_seen=datetime(2027, 1, 1, tzinfo=UTC))
    assert "stale_document" == caught.value.reason


def test_an_old_but_unchanged_document_is_not_stale() -> None:
    """A quiet page's updated_at may be days old: equal to the newest seen is fine."""
    fake = FakeStatuspage()
    page = parse_page(body(fake.components_doc()), newest_seen=fake.updated_at())
    assert fake.updated_at() == page.updated_at


def test_components_are_listed_groups_first_with_their_children() -> None:
    """Discovery rows: (id, group, name, status)."""
    rows = describe_components(parse_page(body(FakeStatuspage().components_doc())))
    assert [
        ("grpedges0001", "(group)", "Voice Edge Locations", "operational"),
        ("ashburn00001", "Voice Edge Locations", "Ashburn (us1)", "operational"),
    ] == rows[:2]
    assert ("console00001", "-", "Console", "operational") == rows[-1]
