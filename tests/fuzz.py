"""Fuzzing a parser with a real document: hypothesis strategies for mutated bytes.

Every source parser must read a document or refuse it with its own error and a reason — never
crash. The tests feed it the real file with random edits::

    @given(mutated(REAL_DOCUMENT))
    def test_a_mutated_document_is_read_or_refused(body: bytes) -> None:
        try:
            parse(body)
        except SourceFormatError as exc:
            assert exc.reason and str(exc)
"""

from __future__ import annotations

from typing import Final

from hypothesis import strategies as st

__all__ = ["NESTING", "Edit", "apply_edits", "edits", "mutated"]

Edit = tuple[str, int, int]

# bytes that make a mutation interesting to a JSON, XML or CSV reader, and bytes that break UTF-8
_BYTES = b'0123456789-.,:;"{}[]<>/=eE \n\xc3\xff'


NESTING: Final = (b"[", b'{"a":', b"\x91")
"""What ``nest`` repeats: JSON arrays, JSON objects, msgpack arrays of one item."""


def apply_edits(document: bytes, edits: list[Edit]) -> bytes:
    """``document`` with each edit applied: ``("flip", at, byte)`` xors the byte at ``at``,
    ``("insert", at, byte)`` inserts one, ``("delete", at, _)`` deletes one; ``("nest", at, n)``
    inserts one of :data:`NESTING` 100 000 times (``n`` picks which), past any parser's recursion
    limit; positions wrap."""
    body = bytearray(document)
    for kind, position, byte in edits:
        at = position % (len(body) + 1)
        if kind == "nest":
            body[at:at] = NESTING[byte % len(NESTING)] * 100_000
        elif kind == "insert":
            body.insert(at, byte)
        elif at < len(body):
            if kind == "flip":
                body[at] ^= byte or 1
            else:
                del body[at]
    return bytes(body)


def edits(*, max_edits: int = 6) -> st.SearchStrategy[list[Edit]]:
    """One to ``max_edits`` random edits, for :func:`apply_edits` (when the document is made lazily)."""
    edit = st.tuples(
        st.sampled_from(("flip", "insert", "delete")),
        st.integers(0, 2**24),
        st.integers(0, 255) | st.sampled_from(list(_BYTES)),
    ) | st.tuples(st.just("nest"), st.integers(0, 2**24), st.integers(0, len(NESTING) - 1))
    return st.lists(edit, min_size=1, max_size=max_edits)


def mutated(document: bytes, *, max_edits: int = 6) -> st.SearchStrategy[bytes]:
    """``document`` with one to ``max_edits`` random byte flips, insertions and deletions."""
    return edits(max_edits=max_edits).map(lambda chosen: apply_edits(document, chosen))
