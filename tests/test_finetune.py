from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import stop_after_two_rounds

from geosam.cli.main import cli
from geosam.errors import CheckpointError, DeviceError, OutputExistsError, TrainingDataError
from geosam.model.device import pick_device
from geosam.model.model_file import load_model_file
from geosam.pipelines.finetune import finetune, resume_finetune
from geosam.pipelines.finetune_settings import FinetuneSettings
from geosam.pipelines.training_data import TrainingPair

# On the CPU: runs with one seed, and resumed runs, must equal bit for bit, which holds there; a
# GPU adds in a varying order (on an H200 two such runs differed by ~0.1 % in loss after 8
# steps). tests/test_cuda.py covers training on a GPU.
FAST = FinetuneSettings(epochs=2, batch_chips=2, train_encoder=False, patience=100, device="cpu")


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GEOSAM_HOME", str(tmp_path / "home"))


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "last.pt", weights_only=False)["trainer"]["model"]


def same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_encoder_runs_once_per_chip_then_never(harbour, tmp_path):
    pair = TrainingPair(*harbour)
    finetune([pair], tmp_path / "a", settings=FAST)
    rows = (tmp_path / "a" / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    calls = [int(r.split(",")[header.index("encoder_calls")]) for r in rows[1:]]
    assert calls[0] > 0 and calls[1] == 0
    # A second run over the same chips reads every embedding from the disk cache.
    metrics = finetune([pair], tmp_path / "b", settings=FAST)
    assert metrics["encoder_calls"] == 0


def test_seed_makes_runs_identical(harbour, tmp_path):
    pair = TrainingPair(*harbour)
    one = FinetuneSettings(**{**FAST.__dict__, "epochs": 1})
    finetune([pair], tmp_path / "a", settings=one)
    finetune([pair], tmp_path / "b", settings=one)
    finetune([pair], tmp_path / "c", settings=FinetuneSettings(**{**one.__dict__, "seed": 1}))
    assert same_weights(weights(tmp_path / "a"), weights(tmp_path / "b"))
    assert not same_weights(weights(tmp_path / "a"), weights(tmp_path / "c"))


RESUMABLE = {
    "epochs": FinetuneSettings(**{**FAST.__dict__, "epochs": 4}),
    "steps": FinetuneSettings(**{**FAST.__dict__, "epochs": None, "steps": 8, "val_every": 2}),
    # An encoder that trains, with ships pasted onto its views in jittered colours: the
    # pastes and the colours resume exactly too.
    "steps, pasted ships, colours": FinetuneSettings(
        **{
            **FAST.__dict__,
            "epochs": None,
            "steps": 8,
            "val_every": 2,
            "train_encoder": True,
            "paste_ships": 3,
            "colour_jitter": True,
        }
    ),
    # The moving average of the weights resumes where it stopped.
    "steps, averaged weights": FinetuneSettings(
        **{**FAST.__dict__, "epochs": None, "steps": 8, "val_every": 2, "average_decay": 0.9}
    ),
}


@pytest.mark.parametrize("length", sorted(RESUMABLE))
def test_resume_equals_uninterrupted_run(harbour, tmp_path, length):
    pair = TrainingPair(*harbour)
    settings = RESUMABLE[length]
    finetune([pair], tmp_path / "straight", settings=settings)

    stop_after_two_rounds([pair], tmp_path / "resumed", settings)
    # A stopped run says so: its model.pt is the best so far, not the run's result.
    assert (tmp_path / "resumed" / "UNFINISHED").exists()
    assert not (tmp_path / "straight" / "UNFINISHED").exists()
    resume_finetune(tmp_path / "resumed")
    assert not (tmp_path / "resumed" / "UNFINISHED").exists()
    assert same_weights(weights(tmp_path / "straight"), weights(tmp_path / "resumed"))
    saved = [load_model_file(tmp_path / run / "model.pt")[0] for run in ("straight", "resumed")]
    assert same_weights(*saved)
    straight = (tmp_path / "straight" / "metrics.csv").read_text().splitlines()
    resumed = (tmp_path / "resumed" / "metrics.csv").read_text().splitlines()
    assert len(straight) == len(resumed) == 5
    assert [r.split(",")[:3] for r in straight] == [r.split(",")[:3] for r in resumed]
    header = straight[0].split(",")
    steps = [int(r.split(",")[header.index("step")]) for r in straight[1:]]
    assert steps == ([steps[0] * k for k in (1, 2, 3, 4)] if length == "epochs" else [2, 4, 6, 8])


def test_loss_falls_and_model_file_records_what_made_it(harbour, tmp_path):
    settings = FinetuneSettings(
        epochs=6, batch_chips=2, train_encoder=False, lr=1e-3, warmup_steps=2
    )
    finetune([TrainingPair(*harbour)], tmp_path / "run", settings=settings)
    # Training flushes denormals on CPU for speed, and puts the processor back afterwards.
    assert 2.2250738585072014e-308 / 2 != 0.0
    rows = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    losses = [float(r.split(",")[header.index("train_loss")]) for r in rows[1:]]
    assert losses[-1] < 0.7 * losses[0]
    state, meta = load_model_file(tmp_path / "run" / "model.pt")
    assert meta["model_type"] == "tiny" and meta["chip_settings"]["size"] == 256
    assert meta["base_hash"] == "random-init" and "val_iou" in meta["metrics"]
    assert any(k.startswith("prompter.") for k in state)
    assert any(k.startswith("sam.mask_decoder.") for k in state)
    for name in ("metrics.csv", "curves.png", "finetune.log", "last.pt"):
        assert (tmp_path / "run" / name).stat().st_size > 0


def test_one_annotated_chip_still_trains(make_scene, make_layer, tmp_path, caplog):
    from conftest import pixel_polygon

    scene = make_scene(width=200, height=200)
    labels = make_layer([pixel_polygon(40, 60, 90, 70)])
    metrics = finetune(
        [TrainingPair(scene, labels)],
        tmp_path / "run",
        settings=FinetuneSettings(epochs=1, train_encoder=False),
    )
    assert metrics["train_chips"] == 1 and metrics["val_chips"] == 1
    assert "validating on training chips" in caplog.text


def test_footprints_that_hit_no_chip_are_refused(make_scene, make_layer, tmp_path):
    import shapely

    scene = make_scene()
    labels = make_layer([shapely.box(0, 0, 10, 10)])  # far from the scene, same CRS
    with pytest.raises(TrainingDataError, match="nothing to train on"):
        finetune([TrainingPair(scene, labels)], tmp_path / "run", settings=FAST)


def test_existing_run_dir_is_refused(harbour, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "model.pt").write_text("keep me")
    with pytest.raises(OutputExistsError, match="--overwrite"):
        finetune([TrainingPair(*harbour)], run, settings=FAST)
    assert (run / "model.pt").read_text() == "keep me"


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
def test_cuda_without_gpu_is_a_clear_error():
    with pytest.raises(DeviceError, match="no CUDA GPU"):
        pick_device("cuda")


def test_corrupt_model_file_is_named(tmp_path):
    bad = tmp_path / "model.pt"
    bad.write_bytes(np.random.default_rng(0).bytes(1000))
    with pytest.raises(CheckpointError, match="model.pt"):
        load_model_file(bad)


def test_cli_finetune_and_its_errors(harbour, tmp_path):
    scene, labels = harbour
    runner = CliRunner()
    out = tmp_path / "run"
    result = runner.invoke(
        cli,
        [
            "-q",
            "finetune",
            str(scene),
            str(labels),
            "--out",
            str(out),
            "--epochs",
            "1",
            "--freeze-encoder",
        ],
    )
    assert result.exit_code == 0, result.output
    assert (out / "model.pt").exists()
    again = runner.invoke(cli, ["finetune", str(scene), str(labels), "--out", str(out)])
    assert again.exit_code == 1 and "--overwrite" in again.output
    assert "Traceback" not in again.output
    unknown = runner.invoke(
        cli, ["finetune", str(scene), str(labels), "--out", str(out), "--model-type", "vit_z"]
    )
    assert unknown.exit_code == 2 and "vit_z" in unknown.output
    if not torch.cuda.is_available():
        cuda = runner.invoke(
            cli,
            ["finetune", str(scene), str(labels), "--out", str(tmp_path / "c"), "--device", "cuda"],
        )
        assert cuda.exit_code == 1 and "no CUDA GPU" in cuda.output


def test_model_file_holds_the_operating_point_chosen_on_validation(harbour, tmp_path):
    from geosam.pipelines.validation import SCORE_GRID

    finetune([TrainingPair(*harbour)], tmp_path / "run", settings=FAST)
    _, meta = load_model_file(tmp_path / "run" / "model.pt")
    point = meta["operating_point"]
    assert point["min_score"] == meta["metrics"]["score_threshold"]
    assert point["min_score"] in SCORE_GRID.tolist()
    assert 0 < point["prompter_threshold"] < point["min_score"] or point["min_score"] <= 0.1
    # The harbour's longest hull is about 80 px (40 m at 0.5 m): the stitch limit is above it.
    assert 60 < point["max_ship_length_px"] < 200
    assert meta["prompt_settings"]["dense_box"] is True


def _steps(run_dir: Path) -> list[int]:
    rows = (run_dir / "metrics.csv").read_text().splitlines()
    column = rows[0].split(",").index("step")
    return [int(r.split(",")[column]) for r in rows[1:]]


def test_resume_with_a_raised_total_trains_on_to_it(harbour, tmp_path):
    """`--resume RUN --steps N` after a finished run trains on to N, never silently nothing."""
    settings = RESUMABLE["steps"]
    run = tmp_path / "run"
    finetune([TrainingPair(*harbour)], run, settings=settings)
    before = weights(run)
    result = CliRunner().invoke(cli, ["-q", "finetune", "--resume", str(run), "--steps", "12"])
    assert result.exit_code == 0, result.output
    assert _steps(run) == [2, 4, 6, 8, 10, 12]
    assert not same_weights(before, weights(run))
    _, meta = load_model_file(run / "model.pt")
    assert meta["finetune_settings"]["steps"] in (8, 12)  # the best model's own record
    assert (
        torch.load(run / "last.pt", weights_only=False)["config"]["finetune_settings"]["steps"]
        == 12
    )


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--steps", "8"], 1, "has trained 8 steps already; give --steps above 8"),
        (["--epochs", "9"], 1, "counts its length in steps; give --steps instead"),
        (["--lr", "0.1", "--seed", "3"], 2, "--lr, --seed cannot change"),
    ],
    ids=["not-longer", "other-unit", "fixed-settings"],
)
def test_resume_refuses_flags_it_cannot_honour(harbour, tmp_path, args, code, message):
    run = tmp_path / "run"
    finetune([TrainingPair(*harbour)], run, settings=RESUMABLE["steps"])
    last = (run / "last.pt").read_bytes()
    result = CliRunner().invoke(cli, ["finetune", "--resume", str(run), *args])
    assert result.exit_code == code, result.output
    assert message in result.stderr and "Traceback" not in result.output
    assert (run / "last.pt").read_bytes() == last


def test_two_sensors_get_an_operating_point_each_and_detect_picks_by_pixel_size(
    harbour, tmp_path, caplog
):
    """The harbour and a copy of it at twice the pixel size train as two sensors; model.pt
    keeps a threshold per pixel size and `detect` reads each scene at its own."""
    import logging

    import geopandas as gpd
    import rasterio
    import shapely

    from geosam.pipelines.detect import detect
    from geosam.pipelines.validation import thresholds_by_pixel_size

    scene, ships = harbour
    coarse_scene, coarse_ships = tmp_path / "coarse.tif", tmp_path / "coarse.gpkg"
    with rasterio.open(scene) as src:
        profile, pixels, t = src.profile, src.read(), src.transform
    coarse = t @ t.scale(2.0)  # same pixels, 2x the ground per pixel, same corner
    with rasterio.open(coarse_scene, "w", **{**profile, "transform": coarse}) as dst:
        dst.write(pixels)
    frame = gpd.read_file(ships)
    to_coarse = coarse @ ~t  # scene coordinates of the fine harbour -> of the coarse copy
    frame["geometry"] = shapely.transform(
        frame.geometry.values, lambda xy: np.stack(to_coarse @ (xy[:, 0], xy[:, 1]), 1)
    )
    frame.to_file(coarse_ships)
    pairs = [TrainingPair(scene, ships), TrainingPair(coarse_scene, coarse_ships)]
    finetune(pairs, tmp_path / "run", settings=FAST)
    _, meta = load_model_file(tmp_path / "run" / "model.pt")
    fine_size = abs(t.a)
    by_size = thresholds_by_pixel_size(meta["metrics"])
    assert [size for size, _ in by_size] == pytest.approx([fine_size, 2 * fine_size], rel=1e-3)
    assert meta["operating_point"]["min_score_by_pixel_size"] == [list(e) for e in by_size]
    with caplog.at_level(logging.INFO, logger="geosam.pipelines.detect"):
        detect([scene, coarse_scene], tmp_path / "run" / "model.pt", tmp_path / "ships.gpkg")
    for name, (_, threshold) in zip(("harbour", "coarse"), by_size, strict=True):
        assert f"ships scoring >= {threshold:.2f}" in next(
            r.getMessage() for r in caplog.records if r.getMessage().startswith(f"{name}.tif")
        )


def test_pasting_ships_onto_a_frozen_encoder_says_it_is_off(harbour, tmp_path, caplog):
    settings = FinetuneSettings(**{**FAST.__dict__, "epochs": 1, "paste_ships": 2})
    with caplog.at_level("WARNING", logger="geosam"):
        finetune([TrainingPair(*harbour)], tmp_path / "run", settings=settings)
    assert any("paste_ships needs" in r.getMessage() for r in caplog.records)


def test_a_run_recorded_before_colour_jitter_existed_resumes_without_it(harbour, tmp_path):
    pair = TrainingPair(*harbour)
    base = {**RESUMABLE["steps, pasted ships, colours"].__dict__, "paste_ships": 0}
    plain = FinetuneSettings(**{**base, "colour_jitter": False})
    finetune([pair], tmp_path / "straight", settings=plain)

    stop_after_two_rounds([pair], tmp_path / "old", plain)
    last = tmp_path / "old" / "last.pt"
    state = torch.load(last, map_location="cpu", weights_only=False)
    del state["config"]["finetune_settings"]["colour_jitter"]  # as an older geosam wrote it
    torch.save(state, last)
    resume_finetune(tmp_path / "old")
    assert same_weights(weights(tmp_path / "straight"), weights(tmp_path / "old"))
