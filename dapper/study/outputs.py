"""The five-fold study's results files and statements from its rows: what notebook 04 and
``python -m dapper experiments`` both write (:func:`write_study_outputs`), so the two paths give the
same files."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from dapper.augment import describe_settings
from dapper.instruments import describe
from dapper.study import agreement_store
from dapper.study.config import StudyConfig
from dapper.study.inputs import StudyInputs
from dapper.study.statements import label_agreement_statement, label_noise_statement, study_statements
from dapper.study.tables import label_noise_relation, study_tables, synthetic_label_agreement
from dapper.utils import atomic_save, reports_dir

__all__ = ["STUDY_FILES", "label_agreement", "write_study_outputs"]

STUDY_FILES = {"summary": "five_fold_summary.csv", "tests": "five_fold_tests.csv", "savings": "five_fold_savings.csv",
               "areas": "five_fold_areas.csv", "agreement": "five_fold_label_agreement.csv",
               "relation": "five_fold_label_noise.csv", "fits": "five_fold_label_noise_fit.csv",
               "statements": "fig6_accuracy_vs_shots.md"}


def _save(df: pd.DataFrame, path: Path) -> None:
    atomic_save(path, lambda p: df.to_csv(p, index=False))


def write_study_outputs(config: StudyConfig, inputs: StudyInputs, rows: pd.DataFrame, results=None) -> dict:
    """Write the study's tables (:data:`STUDY_FILES`) under ``results`` (default
    ``reports_dir("results")``) from its ``rows``, with the statements that read them (generated,
    never typed); in the embedded world also the identity oracle's label agreement with the
    synthetic images and whether the gains follow it (the oracle only measures). Returns ``tables``,
    ``text``, ``agreement``, ``relation`` and ``fits`` (the last three empty in real mode)."""
    results = Path(results or reports_dir("results"))
    results.mkdir(parents=True, exist_ok=True)
    tables = study_tables(rows)
    _save(tables["summary"], results / STUDY_FILES["summary"])
    _save(pd.concat([tables["vs_real"], tables.get("vs_affine", pd.DataFrame())]), results / STUDY_FILES["tests"])
    _save(tables["savings"], results / STUDY_FILES["savings"])
    _save(tables["areas"], results / STUDY_FILES["areas"])
    text = f"Synthetic images: {describe_settings(config.augment)}.\n\n" + study_statements(
        tables, hardness_rule=config.profile == "full")
    if config.classifier_weights == "scratch":
        text = ("The classifier was trained from random initialisation (classifier_weights='scratch'), not fine-tuned "
                "from ImageNet weights.\n\n" + text)
    if config.vehicle_detector == "embedded" or config.pose_annotator == "embedded":
        text = f"Method's instruments: {describe(config.vehicle_detector, config.pose_annotator)}.\n\n" + text
    # toycars: the oracle reads every synthetic image (or its reading stored for these very study ids)
    agreement = label_agreement(inputs, results=results)
    relation = fits = pd.DataFrame()
    if len(agreement):
        _save(agreement, results / STUDY_FILES["agreement"])
        text += "\n\nLabel noise the synthetic images add (read the gains against it):\n" + label_agreement_statement(
            agreement)
        # does a condition's gain at the fewest shots follow its label noise there? (Figure 6b)
        few = min(config.shots)
        relation, fits = label_noise_relation(tables["vs_real"], label_agreement(inputs, shots=few, results=results),
                                              shots=few)
        _save(relation, results / STUDY_FILES["relation"])
        _save(fits, results / STUDY_FILES["fits"])
        if len(fits):
            text += ("\n\nDoes the gain follow the label noise? (Figure 6b; `five_fold_label_noise.csv`, "
                     "`five_fold_label_noise_fit.csv`)\n" + label_noise_statement(fits))
    atomic_save(results / STUDY_FILES["statements"], lambda p: Path(p).write_text(text + "\n"))
    return {"tables": tables, "text": text, "agreement": agreement, "relation": relation, "fits": fits}


def label_agreement(inputs, shots: int | None = None, results=None, identity_oracle=None) -> pd.DataFrame:
    """:func:`dapper.study.tables.synthetic_label_agreement` of ``inputs`` at ``shots``: the table
    stored under ``results`` for these very ids (:mod:`dapper.study.agreement_store`), else measured
    from the synthetic images and stored. Inputs prepared without synthetic images
    (``StudyInputs.skipped``) must find it stored."""
    config = inputs.config
    if config.dataset != "toycars":
        return synthetic_label_agreement(inputs, shots=shots)
    model, oracle_id = agreement_store.oracle_and_id(identity_oracle)
    key, slot = agreement_store.agreement_key(config, inputs.ids, shots, oracle_id)
    stored = agreement_store.stored_agreement(results, key)
    if stored is not None:
        return stored
    if inputs.skipped:
        raise RuntimeError(f"no stored label agreement for these study ids in {agreement_store.store_path(results)}, "
                           f"and the inputs were prepared without synthetic images ({inputs.skipped}): prepare "
                           "them again with images")
    table = synthetic_label_agreement(inputs, identity_oracle=model, shots=shots)
    agreement_store.store_agreement(results, key, slot, table)
    return table
