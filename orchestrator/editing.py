"""The shapes of an edit of a running plan (issue 10), validated at the edge (REST, MCP, CLI, admin) with the
plan's own step model; nothing here touches the database (services/edits.py applies an edit under the plan
lock).

An edit is ``add`` (new steps, each a planning.StepModel), ``remove`` (keys of pending steps) and ``change``
(key -> the fields to change in a pending step: agent, input, depends_on, risk, approval, fan_out, replan).
Removing a step that a remaining step depends on is refused unless the same edit changes that dependent's
``depends_on``; a removed key may be added again in the same edit (a replacement).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr, StringConstraints, ValidationError

from orchestrator import planning
from orchestrator.planning import KEY_PATTERN, FanOutModel, PlanInvalid, StepModel

Key = Annotated[StrictStr, StringConstraints(pattern=KEY_PATTERN.pattern)]


class StepChangeModel(BaseModel):
    """What a PATCH changes in a pending step: only the fields given."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    agent: Annotated[StrictStr, StringConstraints(min_length=1, max_length=100)] | None = None
    input: dict[str, Any] | StrictStr | None = Field(default=None, description="a string means {'prompt': ...}")
    depends_on: list[Annotated[StrictStr, StringConstraints(max_length=100)]] | None = None
    risk: Literal["low", "medium", "high"] | None = None
    approval: StrictBool | None = None
    fan_out: FanOutModel | None = None
    replan: StrictBool | None = None

    def given(self) -> dict[str, Any]:
        """The fields the client sent (``fan_out: null`` removes a fan-out)."""
        return {name: getattr(self, name) for name in self.model_fields_set}


class EditModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    add: list[StepModel] = Field(default_factory=list, max_length=1000)
    remove: list[Key] = Field(default_factory=list, max_length=1000)
    change: dict[Key, StepChangeModel] = Field(default_factory=dict)

    def empty(self) -> bool:
        return not (self.add or self.remove or self.change)


class AddStepsModel(BaseModel):
    """Steps to add to a running plan, each in the plan's step shape; they may depend on any step of it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    steps: list[StepModel] = Field(min_length=1, max_length=1000)


class RerunModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    input: dict[str, Any] | StrictStr | None = Field(default=None, description="the step's new input (optional)")


def _parse[M: BaseModel](model: type[M], raw: Any) -> M:
    try:
        return model.model_validate(raw if raw is not None else {})
    except ValidationError as exc:
        raise PlanInvalid(planning._first_error(exc), code="plan.invalid_schema") from None


def edit_parse(raw: Any) -> EditModel:
    """``{"add": [...], "remove": [...], "change": {...}}``. Raises PlanInvalid (plan.invalid_schema,
    plan.empty: nothing to do)."""
    edit = _parse(EditModel, raw)
    if edit.empty():
        raise PlanInvalid("the edit adds, removes and changes nothing", code="plan.empty")
    return edit


def change_parse(raw: Any) -> StepChangeModel:
    change = _parse(StepChangeModel, raw)
    if not change.given():
        raise PlanInvalid("the change names no field to change", code="plan.empty")
    return change


def add_parse(raw: Any) -> AddStepsModel:
    return _parse(AddStepsModel, raw)


def rerun_parse(raw: Any) -> RerunModel:
    return _parse(RerunModel, raw)


def step_input(value: dict[str, Any] | str) -> dict[str, Any]:
    return {"prompt": value} if isinstance(value, str) else dict(value)
