"""Writes to organisations and memberships.

A user with no membership joins the default organisation the first time anything asks for their tenancy
(``membership_ensure``); the data migration did the same for the users that existed before organisations.
Both creations are idempotent under races: ``get_or_create`` on a unique column (the default organisation's
slug, the membership's user) retries the read when a concurrent insert wins.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction

from organisations.models import Membership, Organisation, Role

DEFAULT_NAME = "Default organisation"


def default_organisation() -> Organisation:
    """The organisation of users nobody placed in one. It does not share plans between its members."""
    organisation, _ = Organisation.objects.get_or_create(
        slug=settings.DEFAULT_ORGANISATION_SLUG, defaults={"name": DEFAULT_NAME, "shared_plans": False})
    return organisation


def membership_ensure(*, user: User) -> Membership:
    """The user's membership, joining the default organisation if they have none (safe in any transaction:
    the creations run in savepoints)."""
    found = Membership.objects.select_related("organisation").filter(user=user).first()
    if found is not None:
        return found
    membership, _ = Membership.objects.select_related("organisation").get_or_create(
        user=user, defaults={"organisation": default_organisation()})
    return membership


def organisation_create(*, name: str, slug: str, shared_plans: bool = True) -> Organisation:
    return Organisation.objects.create(name=name, slug=slug, shared_plans=shared_plans)


def member_set(*, user: User, organisation: Organisation, role: str = Role.MEMBER) -> Membership:
    """Put ``user`` in ``organisation`` with ``role`` (moving them out of any other: one organisation each).
    Their existing plans stay with the organisation that owns them."""
    with transaction.atomic():
        membership, _ = Membership.objects.update_or_create(
            user=user, defaults={"organisation": organisation, "role": Role(role)})
    user.__dict__.pop("_tenancy", None)
    return membership
