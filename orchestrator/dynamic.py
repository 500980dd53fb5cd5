"""Plans that grow while they run (issue 10): the shapes and the trigger language. Nothing here touches the
database; services/growth.py applies these under the plan lock.

A workflow template may have, beside its ``initial_tasks`` (or ``steps``):

* ``triggers``: named conditions, each ``{after: STEP_KEY, when: EXPRESSION}``. When the step ``after``
  succeeds, ``when`` is evaluated over ``output`` (that step's output) and ``inputs`` (the plan's inputs).
  Expressions are simpleeval (a safe subset of Python expressions: no imports, no dunder attributes, no
  assignment, bounded powers and string lengths; never ``eval``). ``output.text`` is ``output["text"]``;
  functions: ``len``, ``str``, ``int``, ``float``, ``lower``, ``contains``.
* ``dynamic_rules``: ``[{trigger: NAME, spawn_tasks: [...]}]``. A spawn task is ``agent``, ``key`` (default:
  the agent's name), ``input`` (``{{ inputs.NAME }}`` filled in), ``depends_on`` (keys, or agent names of
  steps of the plan or of this rule), ``parallel`` (default true; false: it also waits for the task listed
  before it), ``risk``, ``approval``. A task with no dependency depends on the triggering step (it gets its
  output as context).
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from typing import Annotated, Any, Literal

import simpleeval
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr, StringConstraints, field_validator

KEY = r"^[a-z][a-z0-9_-]{0,99}$"
EXPRESSION_NAMES = frozenset({"output", "inputs", "True", "False", "None"})


def _contains(haystack: Any, needle: Any) -> bool:
    return str(needle).lower() in str(haystack).lower()


EXPRESSION_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "len": len, "str": str, "int": int, "float": float, "lower": lambda v: str(v).lower(), "contains": _contains,
}


class ExpressionError(ValueError):
    pass


def expression_check(expression: str) -> None:
    """Parse an expression and check that it names only ``output``, ``inputs`` and the functions above.
    Raises ExpressionError."""
    try:
        tree = simpleeval.SimpleEval().parse(expression)
    except SyntaxError as exc:
        raise ExpressionError(f"{expression!r} is not a valid expression: {exc.msg}") from None
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id not in EXPRESSION_NAMES | set(EXPRESSION_FUNCTIONS):
            raise ExpressionError(f"{expression!r} names {node.id!r}; it can use output, inputs and "
                                  f"{', '.join(sorted(EXPRESSION_FUNCTIONS))}")
        if isinstance(node, ast.Attribute) and node.attr.startswith("_"):
            raise ExpressionError(f"{expression!r}: attributes starting with '_' are not allowed")


def expression_eval(expression: str, *, output: Any, inputs: dict[str, Any]) -> bool:
    """Evaluate a trigger. Raises ExpressionError (a missing key, a wrong type) rather than guessing."""
    evaluator = simpleeval.SimpleEval(names={"output": output, "inputs": inputs, "True": True, "False": False,
                                             "None": None}, functions=EXPRESSION_FUNCTIONS)
    try:
        return bool(evaluator.eval(expression))
    except Exception as exc:  # noqa: BLE001 - simpleeval's own errors, KeyError / TypeError from the data
        raise ExpressionError(f"{expression!r} failed: {type(exc).__name__}: {exc}") from None


class TriggerModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    after: Annotated[StrictStr, StringConstraints(pattern=KEY)] = Field(
        description="the step whose success evaluates the condition")
    when: StrictStr = Field(description="a simpleeval expression over output and inputs")

    @field_validator("when")
    @classmethod
    def _parses(cls, value: str) -> str:
        expression_check(value)
        return value


class SpawnTaskModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    agent: Annotated[StrictStr, StringConstraints(min_length=1, max_length=100)]
    key: Annotated[StrictStr, StringConstraints(pattern=KEY)] | None = None
    input: dict[str, Any] | StrictStr = Field(default_factory=dict)
    depends_on: list[Annotated[StrictStr, StringConstraints(max_length=100)]] = Field(default_factory=list)
    parallel: StrictBool = True
    risk: Literal["low", "medium", "high"] = "low"
    approval: StrictBool = False

    @property
    def step_key(self) -> str:
        return self.key or self.agent


class RuleModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    trigger: StrictStr
    spawn_tasks: list[SpawnTaskModel] = Field(min_length=1)


def rules_check(*, initial_keys: list[str], triggers: dict[str, TriggerModel], rules: list[RuleModel]) -> None:
    """What a template's rules can be checked for before any plan runs: known triggers, ``after`` naming a
    step that can exist, each ``depends_on`` naming a key or agent some step can have. Raises ValueError."""
    names = set(initial_keys)
    for rule in rules:
        names |= {task.step_key for task in rule.spawn_tasks} | {task.agent for task in rule.spawn_tasks}
    for name, trigger in triggers.items():
        if trigger.after not in names:
            raise ValueError(f"trigger {name!r} fires after {trigger.after!r}, which no step is called")
    for index, rule in enumerate(rules):
        if rule.trigger not in triggers:
            raise ValueError(f"dynamic_rules.{index}: unknown trigger {rule.trigger!r}; "
                             f"triggers: {', '.join(sorted(triggers)) or 'none'}")
        keys = [task.step_key for task in rule.spawn_tasks]
        if len(set(keys)) != len(keys):
            raise ValueError(f"dynamic_rules.{index}: two spawn tasks have the same key; give them distinct keys")
        for task in rule.spawn_tasks:
            for dep in task.depends_on:
                if dep not in names:
                    raise ValueError(f"dynamic_rules.{index}: {task.step_key!r} depends on {dep!r}, "
                                     "which is neither a step's key nor an agent's")
