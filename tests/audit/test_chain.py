"""The pure hash chain: any single edit, deletion or reordering is detected."""

from __future__ import annotations

import dataclasses
import datetime as dt

from hypothesis import given, settings
from hypothesis import strategies as st

from app.audit import chain

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def build(n: int) -> list[chain.StoredEntry]:
    out = []
    prev = chain.GENESIS_HASH
    for i in range(1, n + 1):
        content = chain.EntryContent(
            i,
            T0 + dt.timedelta(seconds=i),
            "hr:x",
            "client.updated",
            "client",
            f"c{i}",
            {"n": i, "名": "王"},
        )
        digest = chain.entry_hash(prev, content)
        out.append(chain.StoredEntry(content, prev, digest))
        prev = digest
    return out


def test_intact_chain_verifies() -> None:
    assert chain.verify(build(20)) == (20, None)
    assert chain.verify([]) == (0, None)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(n=st.integers(2, 12), data=st.data())
def test_any_single_tampering_is_detected(n: int, data: st.DataObject) -> None:
    entries = build(n)
    i = data.draw(st.integers(0, n - 1))
    kind = data.draw(st.sampled_from(["edit", "delete", "swap", "rehash"]))
    if kind == "edit":
        c = dataclasses.replace(entries[i].content, data={"n": -1})
        entries[i] = dataclasses.replace(entries[i], content=c)
    elif kind == "delete":
        if i == n - 1:
            i = 0  # deleting the head is truncation: only an external anchor of head_hash shows it
        del entries[i]
    elif kind == "swap":
        j = (i + 1) % n
        entries[i], entries[j] = entries[j], entries[i]
    else:
        # An attacker edits an entry and recomputes its own hash: the next link breaks.
        if i == n - 1:
            i = n - 2
        c = dataclasses.replace(entries[i].content, actor="admin:attacker")
        entries[i] = chain.StoredEntry(c, entries[i].prev_hash, chain.entry_hash(entries[i].prev_hash, c))
    _, broken = chain.verify(entries)
    assert broken is not None


def test_naive_times_are_refused() -> None:
    try:
        chain.format_time(dt.datetime(2026, 1, 1))
    except ValueError:
        return
    raise AssertionError("naive time accepted")
