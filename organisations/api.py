"""What other apps may call: a user's tenancy (their organisation and role), as a frozen dataclass.

Every scoped query in the project asks ``tenancy_of(user)`` once per request: the answer is kept on the user
instance, so a request pays one query for it (two on a user's very first request, which joins the default
organisation).
"""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth.models import User
from django.db.models import QuerySet

from organisations import services
from organisations.models import Membership, Role

__all__ = ["Tenancy", "member_ids", "tenancy_of"]


@dataclass(frozen=True)
class Tenancy:
    organisation_id: int
    organisation: str  # its slug
    role: str
    shared_plans: bool  # the organisation lets members read each other's plans

    @property
    def is_admin(self) -> bool:
        return self.role == Role.ADMIN


def tenancy_of(user: User) -> Tenancy:
    """The organisation ``user`` belongs to (the default one if nobody placed them). Cached on the instance."""
    cached = user.__dict__.get("_tenancy")
    if isinstance(cached, Tenancy):
        return cached
    membership = services.membership_ensure(user=user)
    tenancy = Tenancy(organisation_id=membership.organisation_id, organisation=membership.organisation.slug,
                      role=membership.role, shared_plans=membership.organisation.shared_plans)
    user.__dict__["_tenancy"] = tenancy
    return tenancy


def member_ids(*, organisation_id: int) -> QuerySet[Membership, int]:
    """The user ids of an organisation's members, as a subquery."""
    return Membership.objects.filter(organisation_id=organisation_id).values_list("user_id", flat=True)
