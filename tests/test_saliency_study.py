"""dapper.study.saliency_study: the study's rules by profile and dataset, and one tiny study end to end
(the loop, its results files, its text and figure 7's data), as notebook 05 and the command line run it."""

import dataclasses

import numpy as np
import pandas as pd
import pytest

from dapper.study import saliency_study as SS


def test_settings_follow_the_profile_and_the_dataset():
    from dapper.study.config import study_config

    quick = SS.saliency_settings(study_config("quick", conditions=("real", "real+rotate"), shots=(4,), folds=(0,)),
                                 condition="real+rotate")
    assert (quick.primary, list(quick.cam_layers.items())) == ("layer4", [("layer4", None), ("layer3", "layer3")])
    assert (quick.shots, quick.folds, quick.pointing_tolerance) == (4, (0,), 0.0)
    assert (quick.road_percentiles, quick.road_images, quick.maps_per_class) == ((20, 50, 80), 8, None)
    full = SS.saliency_settings(study_config("full", conditions=("real", "real+rotate")), condition="real+rotate")
    assert (full.road_percentiles, full.road_images, full.maps_per_class) == ((10, 30, 50, 70, 90), 16, None)
    real_quick = dataclasses.replace(study_config("quick", conditions=("real", "real+rotate")), dataset="stanford_cars")
    smoke = SS.saliency_settings(real_quick, condition="real+rotate")
    assert (list(smoke.cam_layers), smoke.road_images, smoke.maps_per_class) == (["layer4"], 0, 7)
    with pytest.raises(ValueError, match="condition"):
        SS.saliency_settings(study_config("quick"), condition="real+nothing")
    with pytest.raises(ValueError, match="CAM method"):
        dataclasses.replace(quick, method="nocam")


def test_saliency_config_takes_one_shot_level_and_the_profiles_folds():
    quick = SS.saliency_config("quick", "toycars", augmented="real+perturb")
    assert (quick.shots, quick.fold_ids, quick.conditions) == ((4,), (0,), ("real", "real+perturb"))
    full = SS.saliency_config("full", "toycars", augmented="real+perturb+rotate", seed=3)
    assert (full.shots, full.fold_ids, full.seed) == ((8,), (0, 1, 2, 3, 4), 3)


def test_a_tiny_study_end_to_end(tmp_path, monkeypatch):
    from study_fakes import tiny_study_inputs

    from dapper.study import saliency as S

    cfg, inputs = tiny_study_inputs(tmp_path, monkeypatch)
    settings = dataclasses.replace(SS.saliency_settings(cfg, condition="real+perturb"), road_images=2)
    study = SS.run_saliency_study(inputs, settings)
    test_idx = np.sort(inputs.folds["diverse"][0][1])
    per = study.per_image
    assert list(per.columns[:8]) == ["dataset", "scenario", "fold", "shots_per_class", "seed", "condition", "layer",
                                     "pool_index"]
    assert len(per) == 2 * len(test_idx) and set(per.layer) == {"layer3", "layer4"}
    primary = per[per.layer == "layer4"]
    assert primary.road_real.notna().sum() == 2 and per[per.layer == "layer3"].road_real.isna().all()
    pair = study.pairs[("diverse", 0)]
    assert (primary.seed == pair.seed).all() and (per.condition == "real+perturb").all()
    acc = study.accuracy.loc[("diverse", 0)]
    assert acc.correct_real == pytest.approx(primary.correct_real.mean())
    # the loop's rows are compare_classifiers' on the fold's test images, as the notebook computed them
    d = inputs.data["diverse"]
    idx = inputs.folds["diverse"][0][1]
    again = S.compare_classifiers(pair.real, pair.augmented, d.images[idx], d.labels[idx],
                                  S.object_masks(cfg, d, idx), keys=[d.keys[i] for i in idx], target_layers="layer3",
                                  method="gradcam", road_subset=0, seed=cfg.seed, bf16=cfg.finetune.bf16)
    mine = per[per.layer == "layer3"].reset_index(drop=True)[again.columns]
    pd.testing.assert_frame_equal(mine, again)

    summary = SS.write_saliency_outputs(study, settings, inputs, folder=tmp_path)
    table = pd.read_csv(tmp_path / "saliency.csv")
    assert len(table) == len(summary)
    for col in ("dataset", "profile", "condition", "method", "shots_per_class", "folds", "seed",
                "pointing_tolerance_px", "road_percentiles", "road_images_per_fold", "maps_per_class", "study_id",
                "generator", "classifier", "classifier_weights"):
        assert col in table.columns, col
    assert table.maps_per_class.eq("all").all() and table.road_percentiles.eq("20 50 80").all()
    assert len(pd.read_csv(tmp_path / "saliency_per_image.csv")) == len(per)
    assert list(SS.summary_view(summary).columns[:3]) == ["scenario", "layer", "measure"]
    text = SS.saliency_text(summary, study, settings)
    assert "#### Target layer `layer4` (primary)" in text and "#### Target layer `layer3`\n" in text
    assert "with one fold there is no test over training runs" in text
    assert SS.study_rows(inputs, settings) is None  # notebook 04 has not run here

    fig = SS.figure7_data(inputs, study, settings)
    n = len(np.unique(d.labels[idx]))
    assert fig.images.shape == (n, 32, 32, 3) and fig.masks.shape == (n, 32, 32)
    assert set(fig.cams) == {"real-only - layer4", "augmented - layer4", "real-only - layer3", "augmented - layer3"}
    assert all(len(v) == n for v in fig.notes.values()) and "seed" in fig.caption

    # the finished study is kept with its key: a rerun reads it (no training, no synthetic image), and
    # the same summary, text and figure come back
    assert fig.cams == study.figure7.cams
    monkeypatch.setattr(SS, "train_pair", lambda *a, **k: pytest.fail("a stored study was trained again"))
    assert SS.skip_if_stored(cfg, settings, tmp_path)(inputs.ids)
    again = SS.run_saliency_study(inputs, settings, folder=tmp_path)
    assert again.stored and again.pairs == {}
    pd.testing.assert_frame_equal(again.accuracy, study.accuracy)
    summary_again = SS.write_saliency_outputs(again, settings, inputs, folder=tmp_path)
    pd.testing.assert_frame_equal(summary_again, summary)
    assert SS.saliency_text(summary_again, again, settings) == text
    fig_again = SS.figure7_data(inputs, again, settings)
    assert fig_again.notes == fig.notes and fig_again.caption == fig.caption and fig_again.row_labels == fig.row_labels
    assert all(np.array_equal(fig_again.cams[k], fig.cams[k]) for k in fig.cams)
    assert list(fig_again.cams) == list(fig.cams)
    assert np.array_equal(fig_again.images, fig.images) and np.array_equal(fig_again.masks, fig.masks)
    # another setting, another id, or a per-image file that is not the one kept: nothing is read
    assert SS.stored_study(cfg, inputs.ids, dataclasses.replace(settings, road_images=3), tmp_path) is None
    assert SS.skip_if_stored(cfg, settings, tmp_path)({**inputs.ids, "real": "other"}) is None
    per_path = tmp_path / "saliency_per_image.csv"
    per_path.write_text(per_path.read_text() + "\n")
    assert SS.stored_study(cfg, inputs.ids, settings, tmp_path) is None
    inputs.skipped = "planted: prepared without images"
    with pytest.raises(RuntimeError, match="without synthetic images"):
        SS.run_saliency_study(inputs, settings, folder=tmp_path)
