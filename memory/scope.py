"""Who a memory belongs to, and the one place that turns it into a filter.

An owner is a user. Organisations (issue 11, docs/organisations.md) leave memory per person: a user is in one
organisation, so their memory is too. Memory shared by an organisation would give ``Owner`` an
``organisation_id`` and these functions a clause: every read and write of memory rows is scoped through them
(services, selectors, context assembly, the API, MCP), so nothing else would have to change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db.models import Q


@dataclass(frozen=True)
class Owner:
    user_id: int

    @property
    def cache_tag(self) -> str:
        return f"u{self.user_id}"


def owner_q(owner: Owner) -> Q:
    """The ORM filter: rows of this owner only."""
    return Q(owner_id=owner.user_id)


def owner_sql(owner: Owner, alias: str = "m") -> tuple[str, list[Any]]:
    """The same filter for raw SQL: ``(clause, params)``, placed inside the query next to the vector search,
    so that pgvector's iterative index scan keeps searching until k rows of this owner are found."""
    return f"{alias}.owner_id = %s", [owner.user_id]


def owner_fields(owner: Owner) -> dict[str, Any]:
    """The columns a new row of this owner gets."""
    return {"owner_id": owner.user_id}
