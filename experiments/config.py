"""experiments.yaml: one pydantic model per shape (``extra="forbid"``), validated at startup (``manage.py
check`` and every process's system checks) and whenever the file is synced into the database.

    experiments:
      synthesis-prompt:              # a slug
        enabled: true                # false: left out (and not synced)
        description: ...
        template: research           # plans from this template take part (empty: every plan)
        agent: synthesis_agent       # the agent that prompt / model / agent variants change
        sticky: owner                # owner | plan
        judge: {agent: judge, rubric: "..."}   # or judge: null
        stop: {metric: judge_score, alpha: 0.05, min_samples: 10}
        variants:
          control: {weight: 50}
          terse: {weight: 50, system_prompt: "..."}   # or model / agent / template
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Literal

import yaml
from django.conf import settings
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from common.errors import DomainError
from experiments.models import METRICS

Metric = Literal["judge_score", "cost", "tokens", "latency", "failure_rate", "approval_rate"]
assert set(METRICS) == set(Metric.__args__)  # type: ignore[attr-defined]  # one list, checked


class ExperimentConfigError(DomainError):
    code = "experiment.misconfigured"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class VariantConfig(_Strict):
    weight: int = Field(default=1, ge=0)
    system_prompt: str = ""
    model: str = ""
    agent: str = ""
    template: str = ""


class JudgeConfig(_Strict):
    agent: str = "judge"
    rubric: str = "Is the answer correct, complete, clear and sourced?"


class StopConfig(_Strict):
    metric: Metric = "judge_score"
    alpha: float = Field(default=0.05, gt=0, lt=0.5)
    min_samples: int = Field(default=10, ge=2)


class ExperimentConfig(_Strict):
    enabled: bool = True
    description: str = ""
    template: str = ""
    agent: str = ""
    sticky: Literal["owner", "plan"] = "owner"
    judge: JudgeConfig | None = JudgeConfig()
    stop: StopConfig = StopConfig()
    variants: dict[str, VariantConfig] = Field(min_length=2)

    @model_validator(mode="after")
    def _consistent(self) -> ExperimentConfig:
        for name, variant in self.variants.items():
            if (variant.system_prompt or variant.model or variant.agent) and not self.agent:
                raise ValueError(f"variant {name!r} changes an agent: the experiment must name its agent")
        if not any(v.weight for v in self.variants.values()):
            raise ValueError("at least one variant needs a weight above 0")
        return self


class ExperimentsFile(_Strict):
    experiments: dict[str, ExperimentConfig] = {}


def parse(text: str, *, source: str = "experiments.yaml") -> ExperimentsFile:
    """Raises ExperimentConfigError with every problem, each with its path in the file."""
    try:
        data = yaml.safe_load(text) or {}
        return ExperimentsFile.model_validate(data)
    except yaml.YAMLError as exc:
        raise ExperimentConfigError(f"{source}: not YAML: {exc}") from None
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ExperimentConfigError(f"{source}: {problems}") from None


@cache
def load() -> ExperimentsFile:
    """EXPERIMENTS_FILE, validated (a missing file holds no experiments). Raises ExperimentConfigError."""
    path = Path(settings.EXPERIMENTS_FILE)
    if not path.exists():
        return ExperimentsFile()
    return parse(path.read_text(), source=str(path))


def known_names(found: ExperimentsFile, *, agents: set[str], templates: set[str]) -> list[str]:
    """Problems with names the file refers to (agents and templates that do not exist)."""
    problems: list[str] = []
    for name, exp in found.experiments.items():
        named_agents = {exp.agent, *(v.agent for v in exp.variants.values())}
        if exp.judge is not None:
            named_agents.add(exp.judge.agent)
        problems += [f"experiment {name!r}: no agent named {a!r}" for a in sorted(named_agents - {""} - agents)]
        named_templates = {exp.template, *(v.template for v in exp.variants.values())} - {""}
        problems += [f"experiment {name!r}: no template named {t!r}" for t in sorted(named_templates - templates)]
    return problems
