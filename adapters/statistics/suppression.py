"""Which cells of a k-anonymous table are withheld: too few persons, and their complements.

A table with margins has *lines*: the cells that differ in one dimension only, and the margin
that totals them (``("bragernes", "all")`` totals the ``("bragernes", a)`` cells over every
activity ``a``). A sum over a line is public, so a line with exactly one withheld entry gives it
away: total minus the rest. :func:`suppress` withholds the cells of fewer than ``k`` persons
(``too-few``) and then, while some line has exactly one withheld entry, a second one in that line
(``complementary``) — until every line has none or at least two.

Decisions, and why:

* **An absent cell is known.** A cell nobody contributed to is not a row: a reader knows it is 0,
  so it counts as released, never as a second unknown, and is never chosen as the complement.
* **The complement is the line's smallest released cell** (fewest persons, then by group, so the
  choice is deterministic): it loses the least information. The margin itself is chosen only
  when the line has no other released cell.
* **One line at a time, repeated to a fixed point.** Withholding a complement can leave another
  line with one unknown; the loop ends because each pass withholds at least one more entry.
* **What it does not promise.** It defeats recovery from one line (one equation, one unknown),
  which is the classic differencing of a published table. Unknowns shared by several lines can
  still be bounded by solving the lines together, and two releases of the same period can be
  subtracted from each other: k-anonymity has no answer to that; differential privacy does (the
  attack test shows both).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from typing import Final, Literal

__all__ = ["Reason", "lines", "suppress"]

ALL: Final = "all"
Reason = Literal["too-few", "complementary"]
Group = tuple[str, ...]


def lines(groups: Mapping[Group, int] | set[Group]) -> dict[tuple[Group, int], list[Group]]:
    """The lines of a table: (margin, the dimension it totals) → the present cells it totals."""
    present = set(groups)
    found: dict[tuple[Group, int], list[Group]] = defaultdict(list)
    for group in sorted(present):
        for i, value in enumerate(group):
            if value != ALL:
                total = (*group[:i], ALL, *group[i + 1 :])
                if total in present:
                    found[(total, i)].append(group)
    return dict(found)


def suppress(persons: Mapping[Group, int], k: int) -> dict[Group, Reason]:
    """Which present groups (cells and margins, with their persons) are withheld, and why."""
    reasons: dict[Group, Reason] = {group: "too-few" for group, n in persons.items() if 0 < n < k}
    table = lines(persons)
    changed = bool(reasons)
    while changed:
        changed = False
        for (total, _), members in sorted(table.items()):
            entries = [*members, total]
            if sum(entry in reasons for entry in entries) != 1:
                continue
            candidates = [entry for entry in entries if entry not in reasons]
            pick = min(candidates, key=lambda entry: (entry == total, persons[entry], entry))
            reasons[pick] = "complementary"
            changed = True
    return reasons
