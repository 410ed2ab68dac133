"""dapper.study.experiments and dapper.study.stats: folds, paired subsets, resumable results, statistics."""

import math

import numpy as np
import pandas as pd
import pytest
from study_fakes import FakeDirection, FakeGenerator, TunableFakeGenerator, fake_apply_direction, fake_project

from dapper.study import config as C
from dapper.study import experiments as E
from dapper.study import ids, results_file, runs, tuned
from dapper.study import stats as S
from dapper.study.params import DATASETS, PROFILES

# ---------------------------------------------------------------------------------------------
# Folds and subsets


def test_folds_are_stratified_disjoint_and_reproducible():
    labels = np.repeat(np.arange(10), 40)
    folds = E.make_folds(labels, 5, seed=0)
    assert len(folds) == 5
    seen = np.concatenate([te for _, te in folds])
    assert sorted(seen.tolist()) == list(range(len(labels)))
    for tr, te in folds:
        assert not set(tr) & set(te)
        assert (np.bincount(labels[te], minlength=10) == 8).all()
        assert (np.bincount(labels[tr], minlength=10) == 32).all()
    again = E.make_folds(labels, 5, seed=0)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(folds, again))


def test_real_subsets_are_nested_balanced_and_the_same_for_every_condition():
    labels = np.repeat(np.arange(4), 10)
    tr, te = E.make_folds(labels, 5, seed=1)[2]
    subsets = {s: E.real_subset(labels, tr, s, fold=2, seed=1) for s in (1, 2, 4, 8)}
    for s, idx in subsets.items():
        assert (np.bincount(labels[idx], minlength=4) == s).all()
        assert set(idx) <= set(tr) and not set(idx) & set(te)
    assert set(subsets[1]) <= set(subsets[2]) <= set(subsets[4]) <= set(subsets[8])
    assert np.array_equal(subsets[4], E.real_subset(labels, tr, 4, fold=2, seed=1))
    with pytest.raises(ValueError, match="fewer than"):
        E.real_subset(labels, tr, 9, fold=2, seed=1)
    cfg = E.study_config("full")
    runs = E.plan_runs(cfg)
    by_pair = {}
    for r in runs:
        by_pair.setdefault((r.scenario, r.shots, r.fold), set()).add(r.seed)
    assert all(len(seeds) == 1 for seeds in by_pair.values())  # one seed per (fold, shots): paired
    assert len(runs) == 2 * 5 * 5 * 5


def test_profiles():
    full, quick = E.study_config("full"), E.study_config("quick")
    assert full.n_folds == quick.n_folds == 5 and len(full.fold_ids) == 5 and len(full.shots) >= 5
    assert max(full.shots) <= full.n_per_class * (full.n_folds - 1) // full.n_folds
    assert set(full.conditions) == set(E.CONDITIONS) and "homogeneous" in full.scenarios
    assert len(E.plan_runs(quick)) < len(E.plan_runs(full)) / 5
    with pytest.raises(TypeError):
        E.study_config("quick", no_such_setting=1)


def test_profile_table_covers_every_profile_and_dataset():
    assert set(PROFILES) == {"quick", "full"} and set(DATASETS) == {"toycars", "stanford_cars"}
    assert {(p, None) for p in PROFILES} | {(None, d) for d in DATASETS} <= set(C.PROFILE_LAYERS)
    assert {p for p, _ in C.PROFILE_LAYERS} <= {None, *PROFILES}
    assert {d for _, d in C.PROFILE_LAYERS} <= {None, *DATASETS}
    for profile in PROFILES:
        for dataset in DATASETS:
            cfg = C.study_config(profile, dataset)
            assert (cfg.profile, cfg.dataset) == (profile, dataset) and cfg.finetune.bf16
            settings = {}  # the last layer to set a setting wins; a nested one keeps the last layer's fields
            for key in C.profile_layer_keys(profile, dataset):
                settings.update(C.PROFILE_LAYERS.get(key, {}))
            for name, value in settings.items():
                if name in ("augment", "finetune"):
                    assert all(getattr(getattr(cfg, name), field) == v for field, v in value.items())
                else:
                    assert getattr(cfg, name) == value
            with pytest.raises(TypeError, match="no setting 'no_such_setting'"):
                C.study_config(profile, dataset, no_such_setting=1)
    quick_real = C.study_config("quick", "stanford_cars")
    assert quick_real.folds == (0,) and quick_real.augment.k == 1 and quick_real.finetune.max_steps == 10
    assert C.study_config("quick").projection is not C.PROFILE_LAYERS[("quick", None)]["projection"]


# ---------------------------------------------------------------------------------------------
# Results file and resuming


def test_append_row_writes_required_columns_first(tmp_path):
    path = tmp_path / "r.csv"
    E.append_row(path, {"dataset": "toycars", "condition": "real", "shots_per_class": 2, "fold": 0, "seed": 1,
                        "accuracy": 0.5, "n_real": 20, "n_synthetic": 0, "study_id": "abc"})
    E.append_row(path, {"dataset": "toycars", "condition": "real+affine", "shots_per_class": 2, "fold": 0})
    df = pd.read_csv(path)
    assert list(df.columns[:8]) == E.REQUIRED_COLUMNS and len(df) == 2
    assert E.finished_runs(path, "abc") == {("diverse", "real", 2, 0)}


def test_a_results_file_without_the_newer_columns_is_widened_and_keeps_its_rows(tmp_path):
    path = tmp_path / "r.csv"
    old = ["dataset", "condition", "shots_per_class", "fold", "seed", "accuracy", "n_real", "n_synthetic", "study_id"]
    path.write_text(",".join(old) + "\ntoycars,real,2,0,1,0.5,20,0,abc\n")
    E.append_row(path, {"dataset": "toycars", "condition": "real", "shots_per_class": 2, "fold": 1, "seed": 1,
                        "accuracy": 0.25, "n_real": 20, "n_synthetic": 0, "study_id": "abc",
                        "classifier_weights": "scratch (random initialisation, asked for by name)"})
    df = pd.read_csv(path)
    assert list(df["accuracy"]) == [0.5, 0.25] and list(df.columns[: len(old)]) == old
    assert df["classifier_weights"].isna().tolist() == [True, False]
    assert not (tmp_path / "r.csv.bak").exists()
    # a row without the new columns leaves a file's header as it is
    before = path.read_text().splitlines()[0]
    E.append_row(path, {"dataset": "toycars", "condition": "real", "shots_per_class": 2, "fold": 2})
    assert path.read_text().splitlines()[0] == before


def test_study_runs_resume_and_never_leak(tmp_path, monkeypatch):
    monkeypatch.setenv("DAPPER_CACHE", str(tmp_path / "cache"))
    from dapper.classify import FineTuneSettings

    cfg = E.study_config("quick", n_per_class=5, image_size=32, folds=(0, 1), shots=(1, 2), n_test_views=1,
                         conditions=("real", "real+affine", "real+perturb(residual)", "real+perturb+rotate"),
                         classifier_weights=None, workers=1,
                         finetune=FineTuneSettings(min_steps=2, max_steps=2, batch_size=8))
    G = FakeGenerator(resolution=32)
    inputs = E.prepare_inputs(cfg, progress=False, G=G, direction=FakeDirection(), project=fake_project,
                              apply_direction=fake_apply_direction)
    syn = inputs.synthetic["diverse"]
    d = inputs.data["diverse"]
    for fold in cfg.fold_ids:  # every source is a training image of a fold that uses it
        train, test = inputs.folds["diverse"][fold]
        used = {d.keys[i] for i in E.real_subset(d.labels, train, 2, fold, cfg.seed)}
        assert used <= set(syn.manifest["source_key"])
    assert syn.manifest["source_key"].is_unique is False and len(syn) == len(syn.manifest)
    sources = set(syn.manifest["source_key"])
    # two methods, two compositions (residual for one condition, generated for the other), k=2,
    # one copy per source image
    assert len(sources) * 2 * 2 * 2 == len(syn)
    path = tmp_path / "five_fold.csv"
    rows = E.five_fold_runs(cfg, inputs, path=path, progress=False)
    assert len(rows) == 4 * 2 * 2
    # the files notebook 04 and `python -m dapper experiments` both write, from one function
    monkeypatch.setattr("dapper.judges.oracles.predict_identity",
                        lambda images, model=None: (np.zeros(len(images), int), None))
    out = E.write_study_outputs(cfg, inputs, rows, results=tmp_path / "results")
    written = {f.name for f in (tmp_path / "results").iterdir()}
    assert set(E.STUDY_FILES.values()) <= written and out["text"].startswith("Synthetic images:")
    assert len(pd.read_csv(tmp_path / "results" / "five_fold_summary.csv")) == len(out["tables"]["summary"])
    assert list(pd.read_csv(path).columns[:8]) == E.REQUIRED_COLUMNS
    # every row names the classifier's weights it started from
    assert pd.read_csv(path)["classifier_weights"].str.startswith("embedded").all()
    assert (rows.loc[rows.condition.isin(["real", "real+affine"]), "n_synthetic"] == 0).all()
    gen = rows[rows.condition == "real+perturb(residual)"]
    assert (gen["n_synthetic"] == gen["n_real"] * cfg.augment.k).all()
    assert (rows.groupby(["shots_per_class", "fold"])["seed"].nunique() == 1).all()
    # A rerun finds every row and runs nothing; a lost row is redone.
    monkeypatch.setattr(runs, "run_one", lambda *a, **k: pytest.fail("a finished run was repeated"))
    assert len(E.five_fold_runs(cfg, inputs, path=path, progress=False)) == len(rows)
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:-1]) + "\n")
    calls = []
    monkeypatch.setattr(runs, "run_one", lambda inp, spec, **k: calls.append(spec) or {
        "scenario": spec.scenario, "condition": spec.condition, "shots_per_class": spec.shots, "fold": spec.fold,
        "study_id": inp.ids[spec.condition], "accuracy": 0.5, "dataset": cfg.dataset, "profile": cfg.profile})
    E.five_fold_runs(cfg, inputs, path=path, progress=False)
    assert len(calls) == 1
    # another results file of the same study (the filter study's, say) adopts these runs, runs none
    monkeypatch.setattr(runs, "run_one", lambda *a, **k: pytest.fail("an adoptable run was repeated"))
    adopted = E.five_fold_runs(cfg, inputs, path=tmp_path / "other.csv", progress=False, adopt_from=[path])
    assert len(adopted) == len(rows) and inputs.timings["n_adopted"] == len(rows) and inputs.timings["n_runs"] == 0


def test_tuned_conditions_draw_each_class_with_a_generator_tuned_on_that_runs_shots_only(tmp_path, monkeypatch):
    import dataclasses

    monkeypatch.setenv("DAPPER_CACHE", str(tmp_path / "cache"))
    from dapper.augment import LeakageError
    from dapper.classify import FineTuneSettings
    from dapper.inversion import pivotal
    from dapper.utils import weights_hash

    cfg = E.study_config("quick", n_per_class=5, image_size=32, folds=(0, 1), shots=(1, 2), tuned_shots=(1,),
                         n_test_views=1, conditions=("real", "real+perturb(tuned)", "real+rotate(tuned)"),
                         classifier_weights=None, workers=1, pivotal={"steps": 2, "perceptual_weight": 0.0},
                         finetune=FineTuneSettings(min_steps=2, max_steps=2, batch_size=8))
    G = TunableFakeGenerator(resolution=32)
    kw = dict(progress=False, G=G, direction=FakeDirection(), project=fake_project,
              apply_direction=fake_apply_direction)
    inputs = E.prepare_inputs(cfg, **kw)
    assert not inputs.synthetic  # no shared-generator condition: nothing made with G itself
    assert sorted(inputs.tuned) == [("diverse", 0, 1), ("diverse", 1, 1)]  # the tuned shot level only
    d = inputs.data["diverse"]
    for (_, fold, shots), syn in inputs.tuned.items():
        train, test = inputs.folds["diverse"][fold]
        used = E.real_subset(d.labels, train, shots, fold, cfg.seed)
        assert set(syn.manifest["source_key"]) == {d.keys[i] for i in used}
        assert not set(syn.manifest["source_key"]) & {d.keys[i] for i in test}
        assert sorted(set(syn.manifest["method"])) == ["perturb", "rotate"]
        # one tuned generator per class, never G itself
        per_class = syn.manifest.groupby("label")["generator_hash"].unique()
        assert all(len(h) == 1 for h in per_class) and len({h[0] for h in per_class}) == len(d.class_names)
        assert weights_hash(G) not in set(syn.manifest["generator_hash"])
    # other shot levels run no tuned condition
    plan = E.plan_runs(cfg)
    assert {s.shots for s in plan if E.condition_tuned(s.condition)} == {1} and len(plan) == 2 * 2 + 2 * 2
    rows = E.five_fold_runs(cfg, inputs, path=tmp_path / "five_fold.csv", progress=False)
    tuned_rows = rows[rows.condition.str.endswith("(tuned)")]
    assert len(rows) == 8 and (tuned_rows["n_synthetic"] == tuned_rows["n_real"] * cfg.augment.k).all()
    # a rerun reads the tunings back from the cache
    monkeypatch.setattr(pivotal, "tune_generator", lambda *a, **k: pytest.fail("tuned again"))
    again = E.prepare_inputs(cfg, **kw)
    assert all(len(again.tuned[k]) == len(v) for k, v in inputs.tuned.items())
    # a test image among a run's shots is refused before anything is tuned
    train, test = inputs.folds["diverse"][0]
    idx = E.real_subset(d.labels, train, 1, 0, cfg.seed)
    with pytest.raises(LeakageError):
        E.tuned_synthetic(cfg, G, d, idx, fake_project(G, d.images[idx]), ["perturb"], None,
                          [d.keys[i] for i in np.append(test, idx[0])], 0)
    # the parallel fill of the cache (single-thread processes) makes what a tuning in this process reads back
    settings = pivotal.PivotalSettings(**dict(cfg.pivotal, steps=3))
    jobs = [(d.images[[i]], fake_project(G, d.images[[i]])) for i in range(4)]
    tuned.tune_in_parallel(dataclasses.replace(cfg, pivotal=settings.to_dict()), G, jobs, workers=2)
    assert all(pivotal.tune_generator_cached(G, im, w, settings)[1]["cached"] for im, w in jobs)
    # the pivotal settings are part of the tuned conditions' ids only

    a = E.condition_ids(cfg, "g", "d")
    b = E.condition_ids(dataclasses.replace(cfg, pivotal={"steps": 3}, tuned_shots=(2,)), "g", "d")
    assert all(a[k] == b[k] for k in E.CONDITIONS + E.RESIDUAL_CONDITIONS)
    assert all(a[k] != b[k] for k in E.TUNED_CONDITIONS)


def test_run_one_refuses_synthetic_images_from_test_images(tmp_path, monkeypatch):
    monkeypatch.setenv("DAPPER_CACHE", str(tmp_path / "cache"))
    from dapper.augment import LeakageError
    from dapper.classify import FineTuneSettings

    cfg = E.study_config("quick", n_per_class=5, image_size=32, folds=(0,), shots=(1,), n_test_views=0,
                         conditions=("real+perturb",), classifier_weights=None, workers=1,
                         finetune=FineTuneSettings(min_steps=1, max_steps=1, batch_size=4))
    inputs = E.prepare_inputs(cfg, progress=False, G=FakeGenerator(32), project=fake_project)
    spec = E.plan_runs(cfg)[0]
    E.run_one(inputs, spec)  # consistent split: fine
    # A split that no longer matches the synthetic set (a real image now in the test fold) is refused.
    train, test = inputs.folds["diverse"][0]
    sub = E.real_subset(inputs.data["diverse"].labels, train, 1, 0, cfg.seed)
    inputs.folds["diverse"][0] = (train, np.append(test, sub[0]))
    with pytest.raises(LeakageError):
        E.run_one(inputs, spec)


def test_a_new_generator_or_direction_reruns_only_the_rows_it_changes():
    cfg = E.study_config("quick", classifier_weights=None)
    a = E.condition_ids(cfg, "gen-a", "dir-a")
    b = E.condition_ids(cfg, "gen-b", "dir-a")
    c = E.condition_ids(cfg, "gen-a", "dir-b")
    assert a["real"] == a["real+affine"] == b["real"] == b["real+affine"]
    assert all(a[k] != b[k] for k in ("real+perturb", "real+rotate", "real+perturb+rotate"))
    assert a["real+perturb"] == c["real+perturb"] and a["real+rotate"] != c["real+rotate"]
    d = E.condition_ids(E.study_config("quick", classifier_weights=None, seed=1), "gen-a", "dir-a")
    assert all(a[k] != d[k] for k in a)


# ---------------------------------------------------------------------------------------------
# Statistics


def test_t_interval_covers_the_mean_about_95_percent_of_the_time():
    rng = np.random.default_rng(0)
    hits = 0
    for _ in range(2000):
        iv = S.mean_interval(rng.normal(0.7, 0.05, 5))
        hits += iv.low <= 0.7 <= iv.high
    assert 0.93 <= hits / 2000 <= 0.97
    assert math.isnan(S.mean_interval([0.5]).low) and S.mean_interval([]).n == 0


def test_saving_is_exact_on_a_planted_learning_curve():
    shots = [2, 4, 8, 16, 32]
    real = [0.3 + 0.1 * math.log2(s) for s in shots]  # linear in log-shots
    target = 0.3 + 0.1 * math.log2(12)
    assert S.shots_needed(shots, real, target) == pytest.approx(12)
    assert S.real_data_saving(8, target, shots, real) == pytest.approx(1 - 8 / 12)
    assert S.real_data_saving(8, real[2], shots, real) == pytest.approx(0)
    assert S.real_data_saving(16, real[2], shots, real) == pytest.approx(-1)  # needed twice the data
    assert math.isnan(S.real_data_saving(8, 0.99, shots, real))  # beyond the curve: no extrapolation
    assert math.isnan(S.real_data_saving(2, 0.1, shots, real))  # below its first point
    dip = [0.4, 0.35, 0.5, 0.6, 0.7]  # a dip never makes a second crossing
    assert S.shots_needed([2, 4, 8, 16, 32], dip, 0.45) == pytest.approx(2 * 2 ** 1.5)


def test_learning_curve_area_and_paired_test():
    assert S.learning_curve_area([2, 4, 8], [0.5, 0.5, 0.5]) == pytest.approx(0.5)
    assert S.learning_curve_area([2, 4, 8, 16], [0.2, 0.3, 0.4, 0.5]) == pytest.approx(0.35)
    a = np.array([0.50, 0.55, 0.60, 0.52, 0.58])
    t = S.paired_test(a, a + np.array([0.05, 0.07, 0.04, 0.06, 0.05]))
    assert t.diff.mean == pytest.approx(0.054) and t.diff.low > 0 and t.wins == 5
    assert t.p_t < 0.01 and t.p_wilcoxon == pytest.approx(0.0625)  # the floor with five pairs
    same = S.paired_test(a, a)
    assert same.p_wilcoxon == 1.0 and same.diff.mean == 0


def test_study_tables_on_synthetic_rows():
    rng = np.random.default_rng(1)
    rows = []
    for cond, gain in (("real", 0.0), ("real+affine", 0.02), ("real+perturb", 0.06)):
        for s in (2, 4, 8, 16):
            for f in range(5):
                acc = 0.3 + 0.1 * math.log2(s) + gain + rng.normal(0, 0.01)
                rows.append(dict(dataset="toycars", scenario="diverse", condition=cond, shots_per_class=s, fold=f,
                                 seed=f, accuracy=acc, n_real=10 * s, n_synthetic=0))
    tables = E.study_tables(pd.DataFrame(rows))
    summ = tables["summary"]
    assert len(summ) == 12 and (summ["ci_low"] < summ["mean"]).all() and (summ["n_folds"] == 5).all()
    vs = tables["vs_real"].set_index(["condition", "shots_per_class"])
    assert vs.loc[("real+perturb", 2), "diff"] == pytest.approx(0.06, abs=0.02)
    sav = tables["savings"].set_index(["condition", "shots_per_class"])
    # +0.06 on a curve rising 0.1 per doubling: 2 ** 0.6 times the data, i.e. about 34% saved.
    assert sav.loc[("real+perturb", 4), "saving"] == pytest.approx(1 - 2 ** -0.6, abs=0.1)
    areas = tables["areas"].set_index("condition")
    assert areas.loc["real+perturb", "aulc"] > areas.loc["real", "aulc"]
    assert set(tables["vs_affine"]["condition"]) == {"real+perturb"}
    # Holm: one family per scenario (2 conditions x 4 shot levels against real-only)
    vs = tables["vs_real"]
    assert (vs["p_ttest_holm"] >= vs["p_ttest"] - 1e-12).all() and (vs["p_ttest_holm"] <= 1).all()
    smallest = vs["p_ttest"].idxmin()
    assert vs.loc[smallest, "p_ttest_holm"] == pytest.approx(min(1.0, len(vs) * vs.loc[smallest, "p_ttest"]))
    text = E.study_statements(tables)
    assert "**diverse**" in text and "- real+perturb:" in text and "[" in text
    assert "Holm-adjusted over the scenario's 8 comparisons" in text
    # one fold (real mode's quick profile): no test to quote, and said so
    one = E.study_tables(pd.DataFrame([r for r in rows if r["fold"] == 0]))
    text1 = E.study_statements(one)
    assert "(1 fold)" in text1 and "one fold, so no paired test" in text1 and "p=nan" not in text1


def test_holm_adjusts_one_family_and_keeps_nans_out():
    adj = S.holm([0.01, 0.04, float("nan"), 0.03])
    assert adj[0] == pytest.approx(0.03) and adj[3] == pytest.approx(0.06) and adj[1] == pytest.approx(0.06)
    assert math.isnan(adj[2])
    assert S.holm([]).shape == (0,) and S.holm([0.5, 0.9]).tolist() == [1.0, 1.0]


def test_the_study_device_reaches_every_stage(tmp_path, monkeypatch):
    """Generator, projection, augmentation, fine-tuning and the saliency pair all run on
    ``config.device`` (here "cpu:0", a name the default never produces, so a stage that drops it shows)."""
    import torch

    from dapper import classify
    from dapper.classify import FineTuneSettings
    from dapper.study import config, inputs, saliency
    from dapper.stylegan2 import checkpoints

    monkeypatch.setenv("DAPPER_CACHE", str(tmp_path / "cache"))
    seen = {}
    G = FakeGenerator(resolution=32)

    def load(path, device="cpu", **k):
        seen["generator"] = torch.device(device)
        return G.to(device)

    class Proj:
        def __init__(self, ws):
            self.ws = ws

    def project(G_, images, settings=None, cache=True, progress=True, device=None, **k):
        seen["projection"] = torch.device(device)
        return Proj(fake_project(G_, images))

    train = classify.train_classifier

    def train_on(*a, device=None, **k):
        seen.setdefault("fine-tuning", []).append(torch.device(device))
        return train(*a, device=device, **k)

    # each where the study looks it up
    monkeypatch.setattr(checkpoints, "load_generator", load)
    monkeypatch.setattr(config, "load_generator", load)
    monkeypatch.setattr(inputs, "project_images", project)
    monkeypatch.setattr(runs, "train_classifier", train_on)
    cfg = E.study_config("quick", n_per_class=5, image_size=32, folds=(0,), shots=(1,), n_test_views=1,
                         conditions=("real", "real+perturb"), classifier_weights=None, workers=1, device="cpu:0",
                         network=str(tmp_path / "G.pkl"),
                         finetune=FineTuneSettings(min_steps=1, max_steps=1, batch_size=4))
    for room in (ids, runs):  # the weights file names its hash in the ids and starts every run
        monkeypatch.setattr(room, "classifier_weights_path", lambda config: None)
    inputs = E.prepare_inputs(cfg, progress=False)
    row = E.run_one(inputs, E.plan_runs(cfg)[1])
    pair = saliency.train_pair(inputs, "diverse", 0, 1, "real+perturb")
    cpu0 = torch.device("cpu:0")
    assert seen["generator"] == cpu0 and seen["projection"] == cpu0
    assert seen["fine-tuning"] == [cpu0] * 3 and row["device"] == "cpu:0"  # the run, then the pair's two
    assert pair.augmented is not None and next(pair.augmented.parameters()).device.type == "cpu"


def test_superseded_rows_move_to_the_archive_and_the_code_is_part_of_the_study_id(tmp_path, monkeypatch):
    path = tmp_path / "five_fold.csv"
    rows = [dict(dataset="toycars", condition=c, shots_per_class=2, fold=0, seed=1, accuracy=0.5, n_real=20,
                 n_synthetic=0, profile=p, study_id=i) for c, p, i in
            [("real", "full", "old"), ("real", "full", "new"), ("real+affine", "full", "new2"),
             ("real", "quick", "old"), ("real+perturb", "full", "gone")]]
    for r in rows:
        E.append_row(path, r)
    moved = E.archive_superseded(path, {"real": "new", "real+affine": "new2"}, "full", "toycars")
    assert moved == 1  # the quick row and the condition this study does not run stay
    kept = pd.read_csv(path, dtype={"study_id": str})
    assert sorted(kept.study_id) == ["gone", "new", "new2", "old"] and len(kept) == 4
    archived = pd.read_csv(results_file.archive_path(path), dtype={"study_id": str})
    assert archived.study_id.tolist() == ["old"] and archived.profile.tolist() == ["full"]
    assert E.archive_superseded(path, {"real": "new", "real+affine": "new2"}, "full", "toycars") == 0
    # a change to the fine-tuning code gives other ids
    cfg = E.study_config("quick")
    a = E.condition_ids(cfg, "g", "d")
    monkeypatch.setattr(ids, "code_version", lambda files: "changed")
    b = E.condition_ids(cfg, "g", "d")
    assert all(a[c] != b[c] for c in a)


def test_synthetic_label_agreement_counts_what_the_oracle_says(tmp_path, monkeypatch):
    from dapper.augment import SyntheticSet
    from dapper.judges import oracles

    manifest = pd.DataFrame({"source_key": ["a", "a", "b", "b"], "method": ["perturb"] * 4,
                             "compose": ["generated"] * 4, "fold": [0] * 4})
    syn = SyntheticSet(np.zeros((4, 8, 8, 3), np.uint8), np.array([0, 0, 2, 2]), manifest)
    monkeypatch.setattr(oracles, "predict_identity", lambda images, model=None: (np.array([0, 1, 3, 5]), None))

    class Inputs:
        config = E.study_config("quick", conditions=("real", "real+perturb"))
        synthetic = {"diverse": syn}

    table = E.synthetic_label_agreement(Inputs(), identity_oracle=object())
    row = table.iloc[0]
    assert (row.condition, row.n_images, row.oracle_class_kept, row.oracle_pair_kept) == ("real+perturb", 4, 0.25, 0.75)
    assert "real+perturb 25% (pair 75%)" in E.label_agreement_statement(table)


def test_label_agreement_at_one_shot_level_reads_only_the_images_of_its_runs(monkeypatch):
    from dapper.augment import SyntheticSet
    from dapper.judges import oracles

    labels = np.repeat(np.arange(2), 10)
    keys = [f"k{i}" for i in range(20)]
    cfg = E.study_config("quick", conditions=("real", "real+perturb", "real+perturb(tuned)"), folds=(0, 1),
                         n_per_class=10)
    folds = E.make_folds(labels, cfg.n_folds, cfg.seed)
    d = E.ScenarioData("toycars", "diverse", np.zeros((20, 8, 8, 3), np.uint8), labels, keys, ["a", "b"],
                       np.zeros((0, 8, 8, 3), np.uint8), np.zeros(0, np.int64))

    def made(sources, tag):
        m = pd.DataFrame({"source_key": sources, "method": "perturb", "compose": "generated", "fold": 0,
                          "tag": tag})
        return SyntheticSet(np.zeros((len(sources), 8, 8, 3), np.uint8),
                            np.array([labels[keys.index(k)] for k in sources]), m)

    one = {k for f in cfg.fold_ids for i in E.real_subset(labels, folds[f][0], 1, f, cfg.seed) for k in [keys[i]]}

    class Inputs:
        config, data = cfg, {"diverse": d}
        synthetic = {"diverse": made(keys, "shared")}
        tuned = {("diverse", f, n): made([keys[i] for i in E.real_subset(labels, folds[f][0], n, f, cfg.seed)],
                                         f"tuned{n}") for f in cfg.fold_ids for n in (1, 2)}
    Inputs.folds = {"diverse": folds}
    monkeypatch.setattr(oracles, "predict_identity", lambda images, model=None: (np.zeros(len(images), int), None))
    every = E.synthetic_label_agreement(Inputs(), identity_oracle=object()).set_index("condition")
    at_one = E.synthetic_label_agreement(Inputs(), identity_oracle=object(), shots=1).set_index("condition")
    assert every.loc["real+perturb", "n_images"] == 20 and at_one.loc["real+perturb", "n_images"] == len(one)
    assert every.loc["real+perturb(tuned)", "n_images"] == 2 * (2 + 4) and at_one.loc["real+perturb(tuned)",
                                                                                       "n_images"] == 2 * 2


def test_the_label_noise_relation_recovers_a_planted_line_and_says_where_it_leads():
    conds = ["real+perturb", "real+rotate", "real+perturb(residual)", "real+rotate(tuned)"]
    kept = np.array([0.3, 0.4, 0.7, 0.8])
    rows = []
    for sc, (a, b) in {"diverse": (-0.07, 0.1), "homogeneous": (-0.02, 0.0)}.items():
        for c, k in zip(conds, kept):
            for shots, extra in ((2, 0.0), (4, 0.5)):  # another shot level: not read
                d = a + b * k + extra
                rows.append({"scenario": sc, "condition": c, "baseline": "real", "shots_per_class": shots,
                             "diff": d, "diff_low": d - 0.03, "diff_high": d + 0.03})
        rows.append({"scenario": sc, "condition": "real+affine", "baseline": "real", "shots_per_class": 2,
                     "diff": 0.5, "diff_low": 0.4, "diff_high": 0.6})  # not generative: left out
    vs = pd.DataFrame(rows)
    agreement = pd.DataFrame([{"scenario": sc, "condition": c, "oracle_class_kept": k}
                              for sc in ("diverse", "homogeneous") for c, k in zip(conds, kept)])
    pts, fits = E.label_noise_relation(vs, agreement)
    assert len(pts) == 8 and set(pts["shots_per_class"]) == {2} and "real+affine" not in set(pts["condition"])
    f = fits.set_index("scenario")
    assert f.loc["diverse", "slope"] == pytest.approx(0.1) and f.loc["diverse", "at_full"] == pytest.approx(0.03)
    assert f.loc["diverse", "r"] == pytest.approx(1.0) and f.loc["diverse", "at_full_low"] == pytest.approx(0.03)
    assert f.loc["homogeneous", "at_full"] == pytest.approx(-0.02)
    text = E.label_noise_statement(fits)
    assert "+3.0 points [+3.0, +3.0], short of the +6-point goal" in text and "rises" in text
    # noisy points: the interval of the line's mean at full agreement, by hand
    vs.loc[vs["condition"] == "real+rotate", "diff"] += 0.15
    _, fits = E.label_noise_relation(vs, agreement, shots=2)
    d = fits.set_index("scenario").loc["diverse"]
    y = -0.07 + 0.1 * kept + np.array([0, 0.15, 0, 0])
    b1, b0 = np.polyfit(kept, y, 1)
    s = np.sqrt(((y - b0 - b1 * kept) ** 2).sum() / 2)
    se = s * np.sqrt(1 / 4 + (1 - kept.mean()) ** 2 / ((kept - kept.mean()) ** 2).sum())
    from scipy import stats as st

    half = st.t.ppf(0.975, 2) * se
    assert d.n == 4 and d.at_full == pytest.approx(b0 + b1)
    assert (d.at_full_low, d.at_full_high) == pytest.approx((b0 + b1 - half, b0 + b1 + half))
    assert d.p > 0.05 and "does not clearly follow" in E.label_noise_statement(fits)
    # an unfinished comparison (no paired folds) is left out, not fitted as NaN
    nan = vs.copy()
    nan.loc[(nan["condition"] == "real+perturb") & (nan["scenario"] == "diverse"), "diff"] = np.nan
    pts, fits = E.label_noise_relation(nan, agreement)
    assert len(pts[pts["scenario"] == "diverse"]) == 3 and np.isfinite(fits["at_full"]).all()
    # too few conditions, or all with the same agreement: no line
    _, none = E.label_noise_relation(vs[vs["condition"].isin(conds[:2])], agreement)
    assert none.empty
    same = agreement.assign(oracle_class_kept=0.5)
    assert E.label_noise_relation(vs, same)[1].empty


# ---------------------------------------------------------------------------------------------
# The study's tasks on a cluster


def test_cluster_plan_counts_the_tasks_and_schedules_longest_first():
    from dapper.study import cluster_plan as C

    assert C.list_schedule([5, 4, 3, 3, 3], 2) == 10.0  # 5 / 4, 4+3, 5+3, 7+3: the queue, not the optimum (9)
    assert C.list_schedule([], 3) == 0.0
    with pytest.raises(ValueError):
        C.list_schedule([1], 0)
    cfg = E.study_config("full", "stanford_cars")
    runs = E.plan_runs(cfg)
    ordered = C.longest_first(cfg, runs, n_classes=10)
    steps = [C.run_steps(cfg, s, 10) for s in ordered]
    assert steps == sorted(steps, reverse=True) and len(ordered) == len(runs) == 5 * 5 * 5
    n = C.projected_images(cfg, n_classes=10, n_per_class=80)
    assert 10 * max(cfg.shots) <= n <= 10 * 80
    tasks = C.study_tasks(cfg, 10, 80, projection_batch=8)
    assert sum(tasks.projection_batches) == n and max(tasks.projection_batches) == 8
    plan = C.study_plan(tasks, [1, 2, 8], step_seconds=2.0, batch_step_seconds=1.0)
    one, two, eight = plan
    expected = (sum(tasks.runs) * 2.0 + tasks.projection_steps * sum(tasks.projection_batches) / 8) / 3600
    assert one["work_hours"] == pytest.approx(expected, abs=0.01) and one["hours"] == pytest.approx(expected, abs=0.01)
    assert one["hours"] > two["hours"] > eight["hours"] >= one["hours"] / 8 - 0.01
    assert all(0 < r["efficiency"] <= 1.0 for r in plan)
    real_only = E.study_config("full", "stanford_cars", conditions=("real",))
    assert C.study_tasks(real_only, 10, 80, 8).projection_batches == []


def test_the_models_sources_are_said_in_words():
    from dapper.study.config import model_sources

    assert "embedded" in model_sources(E.study_config("quick"))["classifier_weights"]
    assert model_sources(E.study_config("quick", classifier_weights="scratch"))["classifier_weights"].startswith(
        "scratch")
    real = E.study_config("quick", "stanford_cars", classifier_weights="/m/w.safetensors", vehicle_detector="embedded",
                          pose_annotator="my_pose:load")
    said = model_sources(real)
    assert said["classifier_weights"] == "/m/w.safetensors"
    assert "embedded toycars vehicle detector" in said["instruments"] and "my_pose:load" in said["instruments"]


def test_an_archive_written_before_a_column_existed_is_widened(tmp_path):
    path = tmp_path / "five_fold.csv"
    archive = results_file.archive_path(path)
    archive.write_text("dataset,condition,shots_per_class,fold,seed,accuracy,n_real,n_synthetic,profile,study_id\n"
                       "toycars,real,2,0,1,0.5,20,0,quick,old0\n")
    E.append_row(path, {"dataset": "toycars", "condition": "real", "shots_per_class": 2, "fold": 1, "seed": 1,
                        "accuracy": 0.25, "n_real": 20, "n_synthetic": 0, "profile": "quick", "study_id": "old1",
                        "classifier_weights": "embedded"})
    assert results_file.archive_superseded(path, {"real": "new"}, "quick", "toycars") == 1
    moved = pd.read_csv(archive, dtype={"study_id": str})
    assert list(moved["study_id"]) == ["old0", "old1"] and list(moved["accuracy"]) == [0.5, 0.25]
    assert moved["classifier_weights"].isna().tolist() == [True, False]


def test_rows_of_this_very_study_are_adopted_from_another_file_and_nothing_else(tmp_path):
    def row(condition, fold, study_id, accuracy, profile="full", dataset="toycars", shots=2):
        return {"dataset": dataset, "condition": condition, "shots_per_class": shots, "fold": fold, "seed": fold,
                "accuracy": accuracy, "n_real": 4, "n_synthetic": 0, "scenario": "diverse", "profile": profile,
                "study_id": study_id, "seconds": 9.0}

    other, mine = tmp_path / "five_fold.csv", tmp_path / "five_fold_filter.csv"
    planted = [row("real", 0, "r", 0.5), row("real", 1, "r", 0.6),  # adopted
               row("real", 2, "old", 0.1),  # another study id: other settings or code
               row("real", 3, "r", 0.2, profile="quick"), row("real", 4, "r", 0.3, dataset="stanford_cars"),
               row("real", 0, "r", 0.4, shots=4),  # not a run this study plans
               row("real+perturb", 0, "p", 0.7)]  # a condition whose id this study gives otherwise
    for r in planted:
        E.append_row(other, r)
    E.append_row(mine, row("real", 1, "r", 0.9))  # this study's own row stays as it is
    ids = {"real": "r", "real+perturb": "p2"}
    keys = {results_file.row_key("diverse", c, 2, f) for c in ids for f in range(5)}
    assert results_file.adopt_rows(mine, ids, [mine, other], keys, "full", "toycars") == 1
    got = results_file.read_results(mine, ids).sort_values("fold")
    assert list(got["fold"]) == [0, 1] and list(got["accuracy"]) == [0.5, 0.9] and list(got["seconds"]) == [9.0, 9.0]
    assert results_file.adopt_rows(mine, ids, [other], keys, "full", "toycars") == 0  # again: nothing new
    assert len(results_file.read_results(other)) == len(planted)  # the source is left as it was


def test_a_report_over_finished_rows_makes_no_synthetic_image_and_reads_the_stored_agreement(tmp_path, monkeypatch):
    import torch

    from dapper.judges import oracles

    monkeypatch.setenv("DAPPER_CACHE", str(tmp_path / "cache"))
    cfg = E.study_config("quick", n_per_class=5, image_size=16, folds=(0, 1), shots=(1, 2), n_test_views=1,
                         conditions=("real", "real+perturb", "real+perturb+rotate"), classifier_weights=None,
                         workers=1)
    path, results = tmp_path / "five_fold.csv", tmp_path / "results"
    oracle = torch.nn.Linear(2, 2)
    monkeypatch.setattr(oracles, "load_identity_oracle", lambda *a, **k: oracle)
    monkeypatch.setattr(oracles, "predict_identity",  # a planted oracle: odd pixel sums read as the wrong class
                        lambda images, model=None: (np.asarray(images).reshape(len(images), -1).sum(1) % 2, None))
    projected = []

    def counting_project(G, images):
        projected.append(len(images))
        return fake_project(G, images)

    def inputs_now(project=counting_project):
        return E.study_inputs(cfg, progress=False, path=path, results=results, G=FakeGenerator(resolution=16),
                              direction=FakeDirection(), project=project, apply_direction=fake_apply_direction)

    def fake_run(inp, spec, **k):
        return {"scenario": spec.scenario, "condition": spec.condition, "shots_per_class": spec.shots,
                "fold": spec.fold, "study_id": inp.ids[spec.condition], "accuracy": 0.5 + 0.1 * spec.fold,
                "n_real": 2 * spec.shots, "n_synthetic": 0,
                "dataset": cfg.dataset, "profile": cfg.profile}

    monkeypatch.setattr(runs, "run_one", fake_run)
    first = inputs_now()
    assert first.skipped is None and sum(projected) > 0 and len(first.synthetic["diverse"])
    rows = E.five_fold_runs(cfg, first, path=path, progress=False)
    made = E.write_study_outputs(cfg, first, rows, results=results)
    assert len(made["agreement"]) == 2 and (results / "oracle_agreement.csv").exists()

    # every row finished and the agreement stored for these ids: no image is made, nothing is run, the
    # same tables and sentences come back
    projected.clear()
    again = inputs_now(project=lambda *a: pytest.fail("a finished study projected its images again"))
    assert again.skipped and again.synthetic == {} and again.ids == first.ids
    monkeypatch.setattr(runs, "run_one", lambda *a, **k: pytest.fail("a finished run was repeated"))
    rows_again = E.five_fold_runs(cfg, again, path=path, progress=False)
    reread = E.write_study_outputs(cfg, again, rows_again, results=results)
    pd.testing.assert_frame_equal(reread["agreement"], made["agreement"], check_dtype=False)
    assert reread["text"] == made["text"]

    # a lost row: the images are made again, and a run refuses inputs prepared without them
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(RuntimeError, match="without synthetic images"):
        E.five_fold_runs(cfg, again, path=path, progress=False)
    assert inputs_now().skipped is None and sum(projected) > 0
    monkeypatch.setattr(runs, "run_one", fake_run)
    E.five_fold_runs(cfg, inputs_now(), path=path, progress=False)

    # another oracle (weights) has no stored reading: the images are made to be read again
    projected.clear()
    with torch.no_grad():
        oracle.weight.add_(1.0)
    assert inputs_now().skipped is None and sum(projected) > 0
