"""Context assembly: what an LLM step sees, within a token budget, and a record of what was cut and why.

Tokens are estimated as ceil(characters of the JSON / 4), the usual average for English with BPE
tokenizers (tiktoken would need a network download at run time). It is an estimate, not a bound.

Order of priority, each part whole or not at all unless said otherwise:
1. the step's input (never cut: it is the task);
2. its dependencies' outputs, by key, up to 75 % of the budget left; an output that does not fit is
   truncated to what is left of that share (cut: ``budget``, with the tokens dropped);
3. the plan's working memory (entries newest first);
4. recalled memories (episodes of earlier plans and facts, hybrid search on the step's prompt), best first;
   those under MEMORY_MIN_RELEVANCE cosine similarity are cut as ``relevance``, those that do not fit as
   ``budget``.
The context handed to the agent is the dependencies by key plus ``_working`` and ``_memory`` when non-empty.
"""

from __future__ import annotations

import json
import math
import uuid
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from memory import cache, services
from memory.models import Kind
from memory.scope import Owner
from memory.selectors import Filters, memory_search, working_read

DEPENDENCY_SHARE = 0.75


def tokens(value: Any) -> int:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return math.ceil(len(text) / 4)


@dataclass(frozen=True)
class Part:
    part: str  # "input", "dependency:<key>", "working:<name>", "memory:<id>"
    tokens: int
    reason: str = ""  # for a cut: "budget" or "relevance"
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in {"part": self.part, "tokens": self.tokens, "reason": self.reason,
                                  "detail": self.detail}.items() if v != ""}


@dataclass(frozen=True)
class AssembledContext:
    context: dict[str, Any]
    tokens: int
    budget: int
    included: tuple[Part, ...]
    cut: tuple[Part, ...]
    recalled: tuple[dict[str, Any], ...]  # id, kind, plan_id, similarity of each recalled memory used

    def report(self) -> dict[str, Any]:
        """For the step's ``step.context`` event: sizes, ids and reasons; never memory content (events are
        not encrypted)."""
        return {"tokens": self.tokens, "budget": self.budget, "included": [p.as_dict() for p in self.included],
                "cut": [p.as_dict() for p in self.cut], "recalled": list(self.recalled)}


def _query_of(step_input: dict[str, Any], step_key: str) -> str:
    prompt = step_input.get("prompt")
    return prompt if isinstance(prompt, str) and prompt.strip() else f"{step_key} {json.dumps(step_input)[:500]}"


def _recall(owner: Owner, query: str, agent: str, plan_id: uuid.UUID | None) -> list[dict[str, Any]]:
    parts = ("recall", agent, query, str(plan_id), settings.MEMORY_RECALL_K)
    cached = cache.get(owner, parts)
    if cached is not None:
        return list(cached)
    hits = memory_search(owner=owner, query=query, k=settings.MEMORY_RECALL_K * 2,
                         filters=Filters(kinds=(Kind.EPISODE, Kind.FACT, Kind.NOTE), exclude_plan=plan_id))
    found = [{"id": str(h.memory.id), "kind": h.memory.kind, "text": h.memory.text, "similarity": h.similarity,
              "plan_id": str(h.memory.plan_id) if h.memory.plan_id else None, "source": h.memory.source}
             for h in hits]
    cache.put(owner, parts, found)
    return found


def context_assemble(*, owner: Owner, plan_id: uuid.UUID | None, step_key: str, agent: str,
                     step_input: dict[str, Any], dependencies: dict[str, Any], budget_tokens: int) -> AssembledContext:
    """Build a step's context within ``budget_tokens`` (see the module docstring). Counts a recall on every
    memory used (which promotes a cold one). Must not run inside a transaction (it may embed remotely)."""
    included: list[Part] = []
    cut: list[Part] = []
    used = tokens(step_input)
    included.append(Part("input", used))
    context: dict[str, Any] = {}
    share = used + int(max(budget_tokens - used, 0) * DEPENDENCY_SHARE)
    for key in sorted(dependencies):
        value = dependencies[key]
        size = tokens(value)
        if used + size <= share:
            context[key] = value
            used += size
            included.append(Part(f"dependency:{key}", size))
            continue
        room = max(share - used, 0)
        text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
        kept = text[: room * 4]
        if kept:
            context[key] = {"truncated": True, "text": kept}
            used += tokens(kept)
            included.append(Part(f"dependency:{key}", tokens(kept), detail="truncated"))
        cut.append(Part(f"dependency:{key}", size - tokens(kept), "budget",
                        "truncated" if kept else "dropped: no room"))
    working: dict[str, Any] = {}
    if plan_id is not None:
        entries = working_read(owner=owner, plan_id=plan_id)
        for name, entry in sorted(entries.items(), key=lambda kv: -kv[1].version):
            size = tokens({name: entry.value})
            if used + size <= budget_tokens:
                working[name] = entry.value
                used += size
                included.append(Part(f"working:{name}", size))
            else:
                cut.append(Part(f"working:{name}", size, "budget"))
    if working:
        context["_working"] = working
    memories: list[dict[str, Any]] = []
    recalled: list[dict[str, Any]] = []
    for hit in _recall(owner, _query_of(step_input, step_key), agent, plan_id):
        label = f"memory:{hit['id']}"
        shown = {"kind": hit["kind"], "text": hit["text"], "source": hit["source"]}
        size = tokens(shown)
        similarity = hit["similarity"]
        relevant = similarity is not None and similarity >= settings.MEMORY_MIN_RELEVANCE
        if not relevant or len(memories) >= settings.MEMORY_RECALL_K:
            cut.append(Part(label, size, "relevance", f"similarity {similarity:.2f}" if similarity is not None
                            else "text match only"))
        elif used + size > budget_tokens:
            cut.append(Part(label, size, "budget"))
        else:
            memories.append(shown)
            used += size
            included.append(Part(label, size))
            recalled.append({"id": hit["id"], "kind": hit["kind"], "plan_id": hit["plan_id"],
                             "similarity": round(similarity, 3)})
    if memories:
        context["_memory"] = memories
    services.recalled(owner=owner, ids=[uuid.UUID(r["id"]) for r in recalled])
    return AssembledContext(context, used, budget_tokens, tuple(included), tuple(cut), tuple(recalled))
