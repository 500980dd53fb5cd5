"""Fact extraction and summaries, offline and deterministic (the guide's ``extract_facts``).

``extract_facts`` keeps the declarative sentences of a step's text: 20 to 300 characters, with a copula
or a verb of possession / use ("is", "are", "has", "uses", ...). The same text always gives the same facts.
An agent can also hand facts over explicitly (``memory.facts`` in its output), which is the way to get
LLM-quality extraction: an extraction step whose output lists them.
"""

from __future__ import annotations

import re

_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
_DECLARATIVE = re.compile(r"\b(is|are|was|were|has|have|uses|use|means|contains|requires|costs)\b", re.I)
MAX_FACTS = 5


def sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE.split(text) if s.strip()]


def extract_facts(text: str) -> list[str]:
    facts: list[str] = []
    for sentence in sentences(text):
        if 20 <= len(sentence) <= 300 and _DECLARATIVE.search(sentence) and sentence not in facts:
            facts.append(sentence)
        if len(facts) == MAX_FACTS:
            break
    return facts


def summarise(text: str, limit: int = 280) -> str:
    """The leading sentences that fit in ``limit`` characters (at least the start of the first)."""
    out = ""
    for sentence in sentences(text):
        if len(out) + len(sentence) + 1 > limit:
            break
        out = f"{out} {sentence}".strip()
    return out or text[:limit]
