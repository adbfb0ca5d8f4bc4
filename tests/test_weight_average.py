"""The moving average of the weights: its arithmetic, its swap, and what a run saves with it."""

import pytest
import torch
from click.testing import CliRunner
from torch import nn

from geosam.cli.main import cli
from geosam.model.model_file import load_model_file
from geosam.pipelines.finetune import finetune
from geosam.pipelines.finetune_settings import FinetuneSettings
from geosam.pipelines.training_data import TrainingPair
from geosam.pipelines.weight_average import WeightAverage


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GEOSAM_HOME", str(tmp_path / "home"))


def test_average_follows_the_ramped_decay():
    weight = nn.Parameter(torch.zeros(3))
    average = WeightAverage([weight], decay=0.9)
    expected = torch.zeros(3)
    for n, value in enumerate([1.0, 2.0, 3.0, 4.0, 5.0] * 4, start=1):
        with torch.no_grad():
            weight.fill_(value)
        average.update()
        decay = min(0.9, (1 + n) / (10 + n))
        expected = decay * expected + (1 - decay) * value
    assert torch.allclose(average.shadow[0], expected, atol=1e-6)
    # The average lags the live weight: it is not the last value.
    assert not torch.allclose(average.shadow[0], weight.detach())


def test_applied_swaps_the_average_in_and_the_live_weights_back():
    torch.manual_seed(0)
    layer = nn.Linear(4, 2)
    params = list(layer.parameters())
    average = WeightAverage(params, decay=0.5)
    with torch.no_grad():
        for p in params:
            p.add_(1.0)
    average.update()
    live = [p.detach().clone() for p in params]
    with average.applied():
        assert all(torch.equal(p, s) for p, s in zip(params, average.shadow, strict=True))
        assert not torch.equal(params[0], live[0])
    assert all(torch.equal(p, v) for p, v in zip(params, live, strict=True))


def test_no_decay_keeps_no_copy_and_changes_nothing():
    layer = nn.Linear(4, 2)
    average = WeightAverage(list(layer.parameters()), decay=0.0)
    before = layer.weight.detach().clone()
    average.update()
    with average.applied():
        assert torch.equal(layer.weight, before)
    assert average.shadow == []


@pytest.mark.parametrize("decay", [-0.1, 1.0])
def test_decay_outside_zero_to_one_is_refused(decay):
    with pytest.raises(ValueError, match="decay"):
        WeightAverage([nn.Parameter(torch.zeros(1))], decay=decay)


def test_a_run_saves_the_averaged_weights_not_the_last_steps(harbour, tmp_path):
    settings = FinetuneSettings(
        steps=6, val_every=6, batch_chips=2, train_encoder=False, device="cpu", average_decay=0.9
    )
    finetune([TrainingPair(*harbour)], tmp_path / "run", settings=settings)
    saved, _ = load_model_file(tmp_path / "run" / "model.pt")
    trainer = torch.load(tmp_path / "run" / "last.pt", weights_only=False)["trainer"]
    live, shadow = trainer["model"], trainer["average"]["shadow"]
    assert trainer["average"]["updates"] == 6
    trained = [k for k in saved if k.startswith(("sam.mask_decoder.", "prompter.", "refiner."))]
    # Every averaged tensor is in the model file; the live last step's weights are not.
    for averaged in shadow:
        assert any(torch.equal(averaged, saved[k]) for k in trained)
    assert any(not torch.equal(saved[k], live[k]) for k in trained)


def test_cli_decay_is_checked_and_recorded(harbour, tmp_path):
    scene, ships = harbour
    bad = CliRunner().invoke(
        cli, ["finetune", str(scene), str(ships), "--out", "x", "--average-decay", "1"]
    )
    assert bad.exit_code == 2 and "--average-decay" in bad.output
    assert "Traceback" not in bad.output
    run = tmp_path / "run"
    args = ["-q", "finetune", str(scene), str(ships), "--out", str(run), "--freeze-encoder"]
    args += ["--steps", "2", "--val-every", "2", "--batch", "2", "--average-decay", "0.9"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    config = torch.load(run / "last.pt", weights_only=False)["config"]
    assert config["finetune_settings"]["average_decay"] == 0.9
