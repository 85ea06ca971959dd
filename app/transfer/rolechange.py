"""Not every change of role is an exit (issue 15, point 7).

A role change (`reason: role_change`) moves the person's clients like an exit (plan, approve, execute), but the
person stays: their directory status is never set to leaving or departed by it, their token keeps working, and
they can own clients in the new role. Only their access to the clients that move ends, at the effective time
(the grants on those clients are cut as a leaver's are, restorable on cancel and undo), not all of it.

A leave (`reason: leave`) is no move at all: a delegation, in `app.transfer.leave`.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select

from app.core.db import AnySelect
from app.transfer.models import Handover, HandoverItem

# Reasons after which the person is still with the company (never `leaving` or `departed` because of them).
STAYS = frozenset({"role_change", "leave"})
# Item statuses whose client is (or will be) moved away by the handover.
MOVING = ("approved", "transferred", "confirmed", "closed")


def stays(reason: str) -> bool:
    return reason in STAYS


def exits(handover_ids: Sequence[int]) -> AnySelect:
    """The ids among these of handovers whose person leaves the company (their whole access is cut)."""
    return select(Handover.id).where(Handover.id.in_(list(handover_ids)), Handover.reason.not_in(STAYS))


def moved_clients(handover_ids: Sequence[int]) -> AnySelect:
    """(handover_id, employee_id, effective_at, client_id) of the clients these role changes move: the person's
    grants on exactly these end at the effective time (`access.cut_clients`)."""
    i = HandoverItem
    return (
        select(
            Handover.id.label("handover_id"),
            Handover.leaver_id.label("employee_id"),
            Handover.effective_at.label("effective_at"),
            i.client_id.label("client_id"),
        )
        .join(i, i.handover_id == Handover.id)
        .where(Handover.id.in_(list(handover_ids)), Handover.reason == "role_change", i.status.in_(MOVING))
    )
