"""The README's status block is what the results files say (dapper.study.status)."""

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from dapper.study import status as S

ROOT = Path(__file__).resolve().parent.parent


def test_readme_status_is_generated_from_the_results_files():
    block = S.readme_block((ROOT / "README.md").read_text())
    assert block == S.status_markdown(ROOT), (
        "README.md's status block differs from the results files: run `python -m dapper status --write`")


def test_a_changed_result_changes_the_status(tmp_path):
    (tmp_path / "bench" / "results").mkdir(parents=True)
    (tmp_path / "reports" / "results").mkdir(parents=True)
    legs = ROOT / "bench" / "results" / "source_gan_v2_legs.csv"
    shutil.copy(legs, tmp_path / "bench" / "results" / legs.name)
    before = S.status_markdown(tmp_path)
    assert "no full-profile rows" in before and "World-v2 source generator" in before
    df = pd.read_csv(legs)
    df.loc[df.index[-1], "identity_kept_w"] = 0.123
    df.to_csv(tmp_path / "bench" / "results" / legs.name, index=False)
    after = S.status_markdown(tmp_path)
    assert after != before and "12% of cases in W" in after


def test_only_the_latest_study_counts_and_the_block_round_trips():
    rows = pd.DataFrame({"condition": ["real", "real", "real+perturb", "real+perturb"],
                         "study_id": ["a", "a", "old", "new"],
                         "finished_at": ["2026-01-01", "2026-01-02", "2026-01-01", "2026-01-03"]})
    kept = S.latest_study(rows)
    assert list(kept["study_id"]) == ["a", "a", "new"]
    text = f"# x\n\n{S.BEGIN}\nold\n{S.END}\n\nafter\n"
    new = S.replace_block(text, "- new line")
    assert S.readme_block(new) == "- new line" and new.endswith("\n\nafter\n")
    with pytest.raises(ValueError, match="markers"):
        S.readme_block("# no block")


def test_results_of_an_older_generator_say_so(tmp_path):
    (tmp_path / "reports" / "results").mkdir(parents=True)
    (tmp_path / "checkpoints").mkdir()
    for suffix in (".safetensors", ".json"):
        shutil.copy(ROOT / "checkpoints" / f"source_gan_v2{suffix}", tmp_path / "checkpoints")
    shipped, _ = S.shipped_generator(tmp_path)
    assert len(shipped) == 16
    gan = pd.DataFrame({"metric": ["fd_ratio", "pose_coverage_generated"], "value": [10.0, 1.0],
                        "network": "checkpoints/source_gan_v2.safetensors", "generator_hash": "0123456789abcdef",
                        "kimg": 100.0})
    gan.to_csv(tmp_path / "reports" / "results" / "source_gan.csv", index=False)
    older = S.status_markdown(tmp_path)
    assert "It measured generator 0123456789ab at 100 kimg; the shipped one has trained on since" in older
    gan["generator_hash"] = shipped
    gan.to_csv(tmp_path / "reports" / "results" / "source_gan.csv", index=False)
    assert "It measured the shipped generator" in S.status_markdown(tmp_path)
    gan.drop(columns=["generator_hash", "kimg"]).to_csv(tmp_path / "reports" / "results" / "source_gan.csv",
                                                        index=False)
    assert "not recorded" in S.status_markdown(tmp_path)


def test_the_method_line_reads_the_identity_table(tmp_path):
    (tmp_path / "reports" / "results").mkdir(parents=True)
    rows = []
    planted = (("all rows (paper)", 0.3), ("rows 0-2 (method)", 0.4), ("rows 0-2 (method), pivotal-tuned", 0.7))
    for variant, kept in planted:
        rows.append({"space": "W", "variant": variant, "edit": "perturb", "amount": 0.5, "study_setting": True,
                     "identity_kept": kept, "n_images": 50})
        rows += [{"space": "W", "variant": variant, "edit": "rotate", "amount": a, "study_setting": True,
                  "identity_kept": kept - 0.1 * (abs(a) == 30), "n_images": 50} for a in (-30, 10, 30)]
    rows.append({"space": "W+", "variant": "rows 0-2 (method)", "edit": "perturb", "amount": 0.5, "study_setting": True,
                 "identity_kept": 0.99, "n_images": 50})
    df = pd.DataFrame(rows)
    df.loc[df.variant.str.endswith("pivotal-tuned"), ["pivotal_steps", "pivotal_cpu_seconds_per_class"]] = [100, 12.0]
    path = tmp_path / "reports" / "results" / "augment_identity.csv"
    df.to_csv(path, index=False)
    text = S.status_markdown(tmp_path)
    assert ("on the rows the method chose (rows 0-2 (method)), the study's perturbation keeps identity in 40% and a "
            "turn within +-30 deg in 30% to 40%") in text
    assert "(100 steps, 12 CPU-seconds per class), the study's perturbation keeps identity in 70%" in text
    assert "predates rotation asked through the annotator's measured response" in text  # no coefficient column
    assert "99%" not in text  # the W+ rows are not this line's
    assert "Which generator version it measured is not recorded" in text
    df.insert(0, "generator_hash", "0123456789abcdef")
    df["coefficient"] = 1.0
    df.insert(1, "kimg", 500.0)
    df.to_csv(path, index=False)
    text = S.status_markdown(tmp_path)
    assert "It measured generator 0123456789ab at 500 kimg" in text and "predates" not in text
    # without the method's variant the line names the one it reads, never 'the rows the method chose'
    df[~df.variant.str.contains("method")].to_csv(path, index=False)
    text = S.status_markdown(tmp_path)
    assert "on all rows (paper), the study's perturbation keeps identity in 30%" in text and "method chose" not in text


def test_the_method_line_reads_the_turns_as_the_study_makes_them(tmp_path):
    (tmp_path / "reports" / "results").mkdir(parents=True)
    rows = [{"space": "W", "variant": "rows 0-2 (method)", "edit": "perturb", "amount": 0.5, "study_setting": True,
             "identity_kept": 0.4, "n_images": 50}]
    for variant, kept, per_deg, pose in (("rows 0-2 (method)", 0.3, 1.6, None),
                                         ("rows 0-2 (method), own response", 0.25, 0.9, None),
                                         ("rows 0-2 (method), own response, pose-checked", 0.35, 0.95, 0.8)):
        rows += [{"space": "W", "variant": variant, "edit": "rotate", "amount": a, "study_setting": True,
                  "identity_kept": kept, "oracle_deg_per_unit": per_deg + 0.1 * (a > 0), "pose_kept": pose,
                  "n_images": 50, "coefficient": 1.0} for a in (-30, 30)]
    path = tmp_path / "reports" / "results" / "augment_identity.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    text = S.status_markdown(tmp_path)
    assert ("the study's perturbation keeps identity in 40% and a turn within +-30 deg in 25% (each image asked "
            "through its own response); turned so, the oracle reads 0.90-1.00 degrees per degree asked (goal "
            "0.8-1.25), and the pose check (by the annotator that read the responses) keeps 80% of the edits whole; "
            "through the direction's one response instead, the oracle reads 1.60-1.70") in text
    # a table without the own-response rows reads the method's own rows for both
    pd.DataFrame(rows[:3]).to_csv(path, index=False)
    text = S.status_markdown(tmp_path)
    assert "a turn within +-30 deg in 30%; turned so, the oracle reads 1.60-1.70 degrees per degree asked" in text
    assert "own response" not in text and "pose check" not in text


def test_the_gan_ab_line_reads_each_arm_and_its_paired_difference(tmp_path):
    bench = tmp_path / "bench" / "results"
    bench.mkdir(parents=True)
    arm = dict(train_cpu_seconds=3600.0, identity_kept_wplus=0.8, pair_kept_w=0.8, fd_ratio=20.0, n_views=300)
    pd.DataFrame([{"arm": "start", "kimg": 736.0, "identity_kept_w": 0.5, **arm},
                  {"arm": "control", "kimg": 780.0, "identity_kept_w": 0.55, **arm},
                  {"arm": "projected", "kimg": 770.0, "identity_kept_w": 0.61, **arm}]).to_csv(bench / "gan_v3_ab.csv")
    paired = pd.DataFrame([{"arm": "projected", "against": "control", "measure": "hit_w", "difference": 0.06,
                            "low": 0.02, "high": 0.10, "mcnemar_p": 0.01}])
    paired.to_csv(bench / "gan_v3_ab_paired.csv", index=False)
    text = S.status_markdown(tmp_path)
    assert "projected 770 kimg after 60 CPU-minutes: identity 61% in W" in text
    assert "becomes the recipe" in text and "from 736 kimg (identity 50% in W" in text
    paired.assign(difference=0.02, low=-0.01).to_csv(bench / "gan_v3_ab_paired.csv", index=False)
    assert "the control goes on" in S.status_markdown(tmp_path)


def test_the_stop_rule_reads_the_legs_forecast(tmp_path):
    from dapper.study.gan_eval import goal_forecast, stop_rule

    def legs(values):
        return pd.DataFrame([{"kimg": k, "cpu_hours": k / 50, "identity_kept_w": w,
                              "identity_kept_wplus": min(w + 0.1, 0.95),
                              "pair_kept_w": min(w + 0.2, 0.98), "fd_ratio": 10.0, "fd_ratio_source_48px": 1.5,
                              "n_projected": 100} for k, w in values])

    assert stop_rule(goal_forecast(legs([(100, 0.3), (200, 0.4)]))) is None  # two legs: too few
    slow = stop_rule(goal_forecast(legs([(100, 0.3), (200, 0.35), (400, 0.4)])))
    assert slow["applies"] and slow["more_cpu_hours"] > 40
    fast = stop_rule(goal_forecast(legs([(100, 0.5), (200, 0.65), (400, 0.8)])))  # W+ and pairs met
    assert not fast["applies"] and 0 < fast["more_cpu_hours"] <= 40
    assert "the legs stop" in S._stop_rule_sentence(goal_forecast(legs([(100, 0.3), (200, 0.35), (400, 0.4)])))
    assert "the legs go on" in S._stop_rule_sentence(goal_forecast(legs([(100, 0.5), (200, 0.65), (400, 0.8)])))


def test_the_legs_line_states_the_noise_curves_target(tmp_path):
    results = tmp_path / "reports" / "results"
    results.mkdir(parents=True)
    assert S._noise_target_sentence(tmp_path) == ""
    row = dict(scenario="diverse", method="perturb+rotate", reachable=True)
    pd.DataFrame([{**row, "shots_per_class": 2, "target_gain": 0.06, "agreement_needed": 0.4,
                   "agreement_needed_low": 0.2, "agreement_needed_high": 0.7},
                  {**row, "shots_per_class": 8, "target_gain": 0.06, "agreement_needed": 0.1,
                   "agreement_needed_low": 0.0, "agreement_needed_high": 0.3},
                  {**row, "shots_per_class": 2, "target_gain": 0.0, "agreement_needed": 0.05,
                   "agreement_needed_low": 0.0, "agreement_needed_high": 0.1}]).to_csv(
        results / "five_fold_noise_curve.csv", index=False)
    text = S._noise_target_sentence(tmp_path)
    assert "assign 40% [20%, 70%] (diverse pool, perturb+rotate)" in text and "at 2 images per class" in text


def test_the_real_quick_line_gives_each_run_beside_its_cpus_speed(tmp_path):
    bench = tmp_path / "bench" / "results"
    bench.mkdir(parents=True)
    assert S._real_quick_lines(tmp_path) == []
    pd.DataFrame([{"date": "2026-01-01 10:00", "wall_s": 600.0, "budget_s": 900, "within_budget": True,
                   "fp32_s_per_step": 2.0},
                  {"date": "2026-01-02 10:00", "wall_s": 1200.0, "budget_s": 900, "within_budget": False,
                   "fp32_s_per_step": 4.0}]).to_csv(bench / "real_quick_runs.csv", index=False)
    text = S._real_quick_lines(tmp_path)[0]
    assert text.index("2026-01-02 10:00: 20.0 min (over the 15-minute budget)") < text.index("2026-01-01")
    assert "the latest run would take about 10.0 min (an estimate, not a run)" in text


def test_the_real_quick_line_names_the_code_and_the_bf16_line_reads_its_bench(tmp_path):
    import json

    bench = tmp_path / "bench" / "results"
    bench.mkdir(parents=True)
    pd.DataFrame([{"date": "2026-01-01 10:00", "commit": "abc1234", "wall_s": 600.0, "budget_s": 900,
                   "within_budget": True, "fp32_s_per_step": 2.0},
                  {"date": "2026-01-02 10:00", "commit": None, "wall_s": 660.0, "budget_s": 900,
                   "within_budget": True, "fp32_s_per_step": 2.0}]).to_csv(bench / "real_quick_runs.csv", index=False)
    text = S._real_quick_lines(tmp_path)[0]
    assert "2026-01-01 10:00 at abc1234: 10.0 min (within" in text and "2026-01-02 10:00: 11.0 min" in text
    assert S._generator_bf16_lines(tmp_path) == []
    (bench / "generator_bf16.json").write_text(json.dumps({
        "threads": 2, "speed": {"resolution": 128, "bf16_resolutions": [16, 32, 64, 128], "synthesis_speedup": 1.75,
                                "projection_step_speedup": 1.25},
        "fidelity": [{"bf16_resolutions": [32, 64], "psnr_db_median": 55.0, "psnr_db_min": 50.0}]}))
    text = S._generator_bf16_lines(tmp_path)[0]
    assert "with its 16, 32, 64, 128 px blocks" in text and "synthesises 1.75 times" in text
    assert "projection step 1.25 times" in text and "55.0 dB (lowest 50.0 dB) with its 2 highest" in text


def test_each_filter_is_stated_from_its_own_files(tmp_path):
    from dapper.study.filter_study import result_files

    results = tmp_path / "reports" / "results"
    results.mkdir(parents=True)
    assert S._filter_lines(tmp_path) == []
    for by, diff in (("classifier", -0.048), ("nearest", 0.07)):
        files = result_files(by)
        pd.DataFrame([{"scenario": "diverse", "baseline": b, "shots_per_class": 2, "condition": "real+rotate(filtered)",
                       "diff": diff, "diff_low": diff - 0.02, "diff_high": diff + 0.02, "p_ttest_holm": 0.01}
                      for b in ("real", "real+affine")]).to_csv(results / files["tests"], index=False)
        pd.DataFrame([{"scenario": "diverse", "condition": "real+rotate(filtered)", "share_kept": 0.5,
                       "oracle_class_kept_before": 0.3, "oracle_class_kept": 0.4}]).to_csv(
            results / files["agreement"], index=False)
        (results / files["run"]).write_text(json.dumps({"made": {"filter": {"by": by, "min_confidence": 0.0},
                                                                 "generator": "0123456789abcdef"}}))
    text = "\n".join(S._filter_lines(tmp_path))
    assert "--filter classifier" in text and "--filter nearest" in text
    assert "fig6d_filter.md" in text and "fig6d_filter_nearest.md" in text
    assert "nearest real shot" in text and "names its label first" in text
    assert "-4.8 [-6.8, -2.8]" in text and "+7.0 [+5.0, +9.0]" in text
    assert text.count("The goal (+6 points, Holm-significant) is met by real+rotate(filtered)") == 1


def test_a_studys_cost_counts_adopted_runs_apart_from_those_it_made():
    made = {"runs_total": 490, "runs_made": 367, "wall_seconds": 990.0, "workers": 2}
    assert S._runs_cost(made) == "367 runs in 16 min on 2 worker processes"
    text = S._runs_cost({**made, "runs_adopted": 96})
    assert text.startswith("490 runs, of which its last call made 367 runs in 16 min") and "adopted 96" in text


def test_the_full_reports_time_is_read_from_the_runners_record(tmp_path):
    reports = tmp_path / "reports"
    reports.mkdir()
    assert S._report_time_lines(tmp_path) == []
    runs = {f"0{i}_nb.ipynb": {"profile": "full", "dataset": "toycars", "finished": "2026-12-07 05:40",
                               "seconds": 300.0} for i in range(7)}
    runs["00_nb.ipynb"]["seconds"] = 12.5
    quick = {"99_other.ipynb": {"profile": "quick", "dataset": "toycars", "finished": "x", "seconds": 9999.0}}
    (reports / "notebook_runs.json").write_text(json.dumps({**runs, **quick}))
    text = S._report_time_lines(tmp_path)[0]
    assert "30.2 min for 7 notebooks" in text and "00 12 s; 01 300 s" in text and "within the 60-minute" in text
    assert "99" not in text and "more than one run" not in text and "Not a clean" not in text
    runs["03_nb.ipynb"].update(seconds=3000.0, timing="machine shared")
    runs["06_nb.ipynb"].update(status="FAILED", finished="2026-12-07 06:00")
    (reports / "notebook_runs.json").write_text(json.dumps(runs))
    text = S._report_time_lines(tmp_path)[0]
    assert "over the 60-minute budget" in text and "Failed or interrupted: 06_nb.ipynb" in text
    assert "06 300 s before it stopped" in text
    runs["03_nb.ipynb"]["seconds"] = 300.0
    (reports / "notebook_runs.json").write_text(json.dumps(runs))
    text = S._report_time_lines(tmp_path)[0]
    assert "so far within the 60-minute budget, which says nothing of the whole" in text
    assert "more than one run" in text and "Not a clean measurement: 03: machine shared" in text
