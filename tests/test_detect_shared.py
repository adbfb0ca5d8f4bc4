"""End to end on the real Sentinel-2 scenes: train on one port, detect and score on another."""

import geopandas as gpd
import pytest
import rasterio
from conftest import SHIPS_DEV, shared_path

from geosam.data.settings import ChipSettings
from geosam.pipelines.detect import DetectSettings, detect
from geosam.pipelines.evaluate import evaluate
from geosam.pipelines.finetune import finetune
from geosam.pipelines.finetune_settings import FinetuneSettings
from geosam.pipelines.training_data import TrainingPair

STEPS = 100  # the default recipe, shortened: enough to find some ships
MIN_FOUND = {False: 3, True: 10}  # of casablanca's 15 ships, at IoU >= 0.3 (seen: 9, 15)
# A 100-step model's operating point, chosen on Gdynia's 9 validation ships, keeps none of
# Casablanca's (0.15; its ships score 0.02-0.1 there): this test asks whether the prompter
# and decoder find ships on an unseen port, so it detects at a low threshold (an untrained
# prompter proposes nothing there: its prior is 0.01); the operating point has its own tests
# (test_finetune, test_validation, test_detect). Casablanca's Web Mercator pixels (8.3 m of
# ground) are read at Gdynia's 3.3 m (`READ_M`), so its ships are as long in metres as
# Gdynia's were. The read size is given, not the scale rule's: at the rule's x2.75 (3.6 m)
# this 100-step, one-port model found none of Casablanca's ships at seeds 0 and 1 (12 false
# alarms each), where read at 3.3 m it finds some (9 under the old x3 rule, 4 with the read
# size given); the benchmark's model of all ports moved within
# its noise between the two (bench/RESULTS.md, section 6, twenty-first session).
READ_M = 10 / 3
PROMPT_FREE = DetectSettings(prompter_threshold=0.02, min_score=0.02)


@pytest.fixture(scope="module")
def gdynia_model(tmp_path_factory):
    shared_path(SHIPS_DEV / "s2_gdynia.tif")
    run = tmp_path_factory.mktemp("run") / "r"
    mp = pytest.MonkeyPatch()
    mp.setenv("GEOSAM_HOME", str(tmp_path_factory.mktemp("home")))
    finetune(
        [TrainingPair(SHIPS_DEV / "s2_gdynia.tif", SHIPS_DEV / "ships.gpkg", "s2_gdynia")],
        run,
        chip_settings=ChipSettings(size=256, overlap=32, gsd=READ_M),
        settings=FinetuneSettings(steps=STEPS, val_every=STEPS),
    )
    mp.undo()
    return run / "model.pt"


@pytest.mark.parametrize("use_prompts", [False, True], ids=["prompt-free", "prompts"])
def test_detect_on_an_unseen_port_gives_a_valid_layer_in_its_crs(
    gdynia_model, tmp_path, use_prompts
):
    scene = shared_path(SHIPS_DEV / "s2_casablanca.tif")  # EPSG:3857, not seen in training
    out = tmp_path / "ships.gpkg"
    prompts = SHIPS_DEV / "ships.gpkg" if use_prompts else None
    detect(
        [scene],
        gdynia_model,
        out,
        DetectSettings() if use_prompts else PROMPT_FREE,
        prompts=prompts,
        prompts_layer="s2_casablanca" if use_prompts else None,
    )
    frame = gpd.read_file(out, layer="s2_casablanca")
    with rasterio.open(scene) as src:
        assert frame.crs == src.crs
    assert frame.geometry.is_valid.all()
    if use_prompts:
        assert 0 < len(frame) <= 15  # at most one ship per reference footprint
    report = evaluate(
        out, SHIPS_DEV / "ships.gpkg", pred_layer="s2_casablanca", truth_layer="s2_casablanca"
    )
    scores = report.overall
    assert scores.tp + scores.fn == 15 and scores.tp + scores.fp == len(frame)
    loose = evaluate(
        out,
        SHIPS_DEV / "ships.gpkg",
        iou_threshold=0.3,
        pred_layer="s2_casablanca",
        truth_layer="s2_casablanca",
    ).overall
    print(f"\n{'prompts' if use_prompts else 'prompt-free'}: {len(frame)} ships, TP@0.3 {loose.tp}")
    assert loose.tp >= MIN_FOUND[use_prompts]
