"""`finetune --minutes`: a run's length, and its learning-rate schedule, fitted to a time budget."""

import csv
import itertools
import logging
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from click.testing import CliRunner
from conftest import stop_after_two_rounds

import geosam.pipelines.finetune as finetune_module
from geosam.cli.main import cli
from geosam.pipelines.finetune import finetune, resume_finetune
from geosam.pipelines.finetune_settings import FinetuneSettings
from geosam.pipelines.lr_schedule import warmup_cosine, warmup_length
from geosam.pipelines.time_budget import rounds_within
from geosam.pipelines.training_data import TrainingPair

# Six rounds of two steps, frozen encoder (cached embeddings): quick on a CPU, and on the CPU
# also where a GPU is present, since resumed runs must equal uninterrupted ones bit for bit.
SIX_ROUNDS = FinetuneSettings(
    steps=12,
    val_every=2,
    batch_chips=2,
    train_encoder=False,
    patience=100,
    warmup_steps=2,
    device="cpu",
)
ROUND_SECONDS = 60.0


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GEOSAM_HOME", str(tmp_path / "home"))


@pytest.fixture
def minute_rounds(monkeypatch):
    """Every training round takes a minute by the trainer's clock, whatever the machine."""
    ticks = itertools.count()
    clock = SimpleNamespace(perf_counter=lambda: ROUND_SECONDS * next(ticks))
    monkeypatch.setattr(finetune_module, "time", clock)


def rows(run: Path) -> list[dict[str, str]]:
    with open(run / "metrics.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def weights(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "last.pt", weights_only=False)["trainer"]["model"]


def same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize(
    ("budget", "spent", "planned", "rounds"),
    [
        (600, [], 15, 15),  # nothing measured yet: the plan stands
        (10_000, [60, 60], 15, 15),  # the budget allows more than planned: never more
        (210, [60], 15, 3),  # 60 s a round: two more fit in the 150 s left
        (210, [60, 60, 60], 15, 3),  # the budget is spent: stop now
        (100, [130], 15, 1),  # one round already overran: stop, never below what is done
    ],
)
def test_rounds_within_a_budget(budget, spent, planned, rounds):
    assert rounds_within(budget, spent, planned) == rounds


def test_budget_shortens_the_run_and_its_schedule(harbour, tmp_path, minute_rounds, caplog):
    run = tmp_path / "run"
    settings = FinetuneSettings(**{**SIX_ROUNDS.__dict__, "minutes": 3.5})
    with caplog.at_level(logging.INFO, logger="geosam"):
        finetune([TrainingPair(*harbour)], run, settings=settings)
    done = rows(run)
    # 3.5 minutes hold three one-minute rounds of the six planned.
    assert [int(r["step"]) for r in done] == [2, 4, 6]
    # The schedule was fitted to the shorter run: it has decayed to zero at its end, where
    # the planned twelve-step run would still be above half its peak.
    assert float(done[-1]["lr"]) == pytest.approx(0.0, abs=1e-12)
    assert "time budget of 3.5 min" in caplog.text
    assert "stopped at the time budget after 6 steps" in caplog.text
    assert not (run / "UNFINISHED").exists() and (run / "model.pt").exists()


def test_a_budget_that_never_binds_changes_nothing(harbour, tmp_path):
    pair = TrainingPair(*harbour)
    short = FinetuneSettings(**{**SIX_ROUNDS.__dict__, "steps": 4})
    finetune([pair], tmp_path / "plain", settings=short)
    finetune(
        [pair], tmp_path / "budget", settings=FinetuneSettings(**{**short.__dict__, "minutes": 1e6})
    )
    assert same_weights(weights(tmp_path / "plain"), weights(tmp_path / "budget"))


def test_a_budgeted_run_resumes_exactly(harbour, tmp_path, minute_rounds):
    pair = TrainingPair(*harbour)
    settings = FinetuneSettings(**{**SIX_ROUNDS.__dict__, "minutes": 3.5})
    finetune([pair], tmp_path / "straight", settings=settings)

    stop_after_two_rounds([pair], tmp_path / "resumed", settings)
    resume_finetune(tmp_path / "resumed")
    assert [r["step"] for r in rows(tmp_path / "resumed")] == ["2", "4", "6"]
    assert same_weights(weights(tmp_path / "straight"), weights(tmp_path / "resumed"))


def test_raising_the_total_on_resume_lifts_the_budget(harbour, tmp_path, minute_rounds):
    run = tmp_path / "run"
    settings = FinetuneSettings(**{**SIX_ROUNDS.__dict__, "minutes": 1.5})
    finetune([TrainingPair(*harbour)], run, settings=settings)
    assert [r["step"] for r in rows(run)] == ["2"]
    result = CliRunner().invoke(cli, ["-q", "finetune", "--resume", str(run), "--steps", "6"])
    assert result.exit_code == 0, result.output
    assert [r["step"] for r in rows(run)] == ["2", "4", "6"]


def test_cli_budget_is_checked_and_recorded(harbour, tmp_path):
    scene, ships = harbour
    bad = CliRunner().invoke(
        cli, ["finetune", str(scene), str(ships), "--out", "x", "--minutes", "0"]
    )
    assert bad.exit_code == 2 and "--minutes" in bad.output
    run = tmp_path / "run"
    args = ["-q", "finetune", str(scene), str(ships), "--out", str(run), "--minutes", "60"]
    result = CliRunner().invoke(cli, [*args, "--steps", "2", "--val-every", "2", "--batch", "2"])
    assert result.exit_code == 0, result.output
    config = torch.load(run / "last.pt", weights_only=False)["config"]
    assert config["finetune_settings"]["minutes"] == 60


def test_the_rate_warms_up_then_decays_to_zero_at_the_last_step_even_of_a_shortened_run():
    warm = warmup_length(50, 1500)
    assert (warm, warmup_length(50, 40), warmup_length(50, 2)) == (50, 10, 1)
    rising = [warmup_cosine(step, warm, 1500) for step in range(warm)]
    assert rising[0] == pytest.approx(1 / 50) and rising[-1] == 1.0
    assert all(a < b for a, b in itertools.pairwise(rising))
    falling = [warmup_cosine(step, warm, 1500) for step in range(warm, 1501, 50)]
    assert all(a > b for a, b in itertools.pairwise(falling))
    assert falling[-1] == pytest.approx(0.0, abs=1e-12)
    # A budget that cuts the run to 1000 steps moves the end of the decay with it.
    assert warmup_cosine(1000, warm, 1000) == pytest.approx(0.0, abs=1e-12)
    assert warmup_cosine(1000, warm, 1500) > 0.2
