"""What other apps may call: a user's tenancy (their organisation and role), as a frozen dataclass.

Every scoped query in the project asks ``tenancy_of(user)`` once per request: the answer is kept on the user
instance. A request authenticated by token pays nothing more for it: ``TenancyTokenAuthentication`` reads the
membership with the token and the user, in one query. Otherwise it costs one query (two on a user's very first
request, which joins the default organisation).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import cast

from django.contrib.auth.models import User
from django.db import connection
from django.db.models import Model, QuerySet
from django.utils.translation import gettext_lazy as _
from rest_framework import authentication, exceptions
from rest_framework.authtoken.models import Token

from common import prepared
from organisations import services
from organisations.models import Membership, Organisation, Role

__all__ = ["Tenancy", "TenancyTokenAuthentication", "member_ids", "tenancy_of"]


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
    # loaded with the user by TenancyTokenAuthentication's query, else read (or created) now
    loaded = cast(Membership | None, User.membership.related.get_cached_value(user, None))
    membership = loaded or services.membership_ensure(user=user)
    tenancy = Tenancy(organisation_id=membership.organisation_id, organisation=membership.organisation.slug,
                      role=membership.role, shared_plans=membership.organisation.shared_plans)
    user.__dict__["_tenancy"] = tenancy
    return tenancy


def member_ids(*, organisation_id: int) -> QuerySet[Membership, int]:
    """The user ids of an organisation's members, as a subquery."""
    return Membership.objects.filter(organisation_id=organisation_id).values_list("user_id", flat=True)


class TenancyTokenAuthentication(authentication.TokenAuthentication):
    """DRF's token authentication, with the user's membership and organisation read by the same query. It is
    the API's hottest query (every request runs it), so its SQL is written once here instead of compiled by the
    ORM per request (that compilation cost more than the query)."""

    def authenticate_credentials(self, key: str) -> tuple[User, Token]:
        token = _token_with_tenancy(key)
        if token is None:
            raise exceptions.AuthenticationFailed(_("Invalid token."))
        if not token.user.is_active:
            raise exceptions.AuthenticationFailed(_("User inactive or deleted."))
        return token.user, token


_PARTS: list[tuple[type[Model], str]] = [(Token, "t"), (User, "u"), (Membership, "m"), (Organisation, "o")]


@cache
def _lookup() -> tuple[str, list[list[str]]]:
    """The statement and each model's field names in its row: built once, the models' fields never change."""
    names = [[f.attname for f in model._meta.concrete_fields] for model, _ in _PARTS]
    columns = ", ".join(f'{alias}."{f.column}"' for model, alias in _PARTS for f in model._meta.concrete_fields)
    sql = (f"SELECT {columns} FROM {Token._meta.db_table} t "
           f"JOIN {User._meta.db_table} u ON u.id = t.user_id "
           f"LEFT JOIN {Membership._meta.db_table} m ON m.user_id = u.id "
           f"LEFT JOIN {Organisation._meta.db_table} o ON o.id = m.organisation_id WHERE t.key = %s")
    return sql, names


def _token_with_tenancy(key: str) -> Token | None:
    """The token, its user and the user's membership with its organisation (None if they have none yet),
    built as the ORM's ``select_related("user__membership__organisation")`` would, from one statement."""
    sql, names = _lookup()
    with prepared.cursor() as cursor:
        cursor.execute(sql, [key])
        row = cursor.fetchone()
    if row is None:
        return None
    built: list[Model | None] = []
    start = 0
    for (model, _alias), fields in zip(_PARTS, names, strict=True):
        values = row[start:start + len(fields)]
        start += len(fields)
        built.append(model.from_db(connection.alias, fields, values) if values[0] is not None else None)
    token, user = cast(Token, built[0]), cast(User, built[1])
    membership, organisation = cast(Membership | None, built[2]), cast(Organisation | None, built[3])
    token.user = user
    if membership is not None:
        membership.organisation = cast(Organisation, organisation)
    User.membership.related.set_cached_value(user, membership)
    return token
