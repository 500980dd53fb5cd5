"""experiments.yaml: validated whole (extra keys refused) at start and by `manage.py check`, and synced
into the database without reviving a stopped variant; the statistics behind the report and stop rule."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.core.checks import run_checks
from django.test import override_settings

from experiments import config, services, stats
from experiments.config import ExperimentConfigError
from experiments.models import Experiment, Variant

GOOD = """
experiments:
  synth:
    template: research
    agent: synthesis_agent
    stop: {metric: cost, alpha: 0.1, min_samples: 4}
    variants:
      control: {weight: 3}
      terse: {weight: 1, system_prompt: Be brief.}
  paused:
    enabled: false
    variants: {a: {}, b: {}}
"""


def test_a_bad_file_is_refused_with_every_problem_and_its_place() -> None:
    with pytest.raises(ExperimentConfigError) as raised:
        config.parse("experiments:\n  x:\n    sticky: team\n    variants: {a: {colour: red}}\n")
    message = raised.value.message
    assert raised.value.code == "experiment.misconfigured"
    assert "experiments.x.sticky" in message and "experiments.x.variants.a.colour: Extra inputs" in message
    assert "experiments.x.variants" in message  # fewer than two variants
    with pytest.raises(ExperimentConfigError, match="must name its agent"):
        config.parse("experiments:\n  x:\n    variants: {a: {}, b: {model: gpt-4o}}\n")


def test_manage_py_check_reports_a_bad_file_and_unknown_names(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("experiments:\n  x:\n    variants: {a: {}, b: {}}\n    surprise: 1\n")
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("experiments:\n  x:\n    template: nope\n    agent: ghost\n    variants: {a: {}, b: {}}\n")
    good = tmp_path / "good.yaml"
    good.write_text(GOOD)
    with override_settings(EXPERIMENTS_FILE=bad):
        assert [m.id for m in run_checks(tags=["experiments"])] == ["experiments.E001"]
    with override_settings(EXPERIMENTS_FILE=unknown):
        found = [m.msg for m in run_checks(tags=["experiments"])]
        assert "experiment 'x': no agent named 'ghost'" in found and "experiment 'x': no template named 'nope'" in found
    with override_settings(EXPERIMENTS_FILE=good):
        assert run_checks(tags=["experiments"]) == []
    config.load.cache_clear()


@pytest.mark.django_db
def test_the_file_is_synced_and_a_stopped_variant_stays_stopped(tmp_path: Path) -> None:
    path = tmp_path / "experiments.yaml"
    path.write_text(GOOD)
    with override_settings(EXPERIMENTS_FILE=path):
        assert services.experiments_sync() == 2
        experiment = Experiment.objects.get(name="synth")
        assert (experiment.from_file, experiment.stop_metric, experiment.stop_min_samples) == (True, "cost", 4)
        assert {v.name: v.weight for v in experiment.variants.all()} == {"control": 3, "terse": 1}
        assert not Experiment.objects.filter(name="paused").exists()
        Variant.objects.filter(name="terse").update(status="stopped")
        path.write_text(GOOD.replace("weight: 1,", "weight: 2,"))
        services.experiments_sync()
        terse = Variant.objects.get(name="terse")
        assert (terse.status, terse.weight, terse.system_prompt) == ("stopped", 2, "Be brief.")
    config.load.cache_clear()


def test_intervals_and_the_one_sided_test() -> None:
    mean = stats.mean_interval([1.0, 2.0, 3.0, 4.0])
    assert mean is not None and mean.value == 2.5 and mean.low is not None and mean.high is not None
    assert round(mean.low, 3) == 0.446 and round(mean.high, 3) == 4.554  # t(0.975, 3) = 3.182, sem 0.645
    wilson = stats.proportion_interval(5, 20)
    assert wilson is not None and round(wilson.low or 0, 3) == 0.112 and round(wilson.high or 0, 3) == 0.469
    assert stats.mean_interval([]) is None and stats.proportion_interval(0, 0) is None
    low, high = [1.0, 2.0, 1.5, 2.5, 1.0], [7.0, 8.0, 7.5, 6.5, 8.0]
    p = stats.p_worse(low, high, higher_is_better=True)
    assert p is not None and p < 0.001
    reverse = stats.p_worse(high, low, higher_is_better=True)
    assert reverse is not None and reverse > 0.99
    assert stats.p_worse([1.0, 1.0], [2.0, 2.0], higher_is_better=False) == 1.0  # constant: told apart anyway
    assert stats.p_worse([1.0], [2.0, 3.0], higher_is_better=True) is None
