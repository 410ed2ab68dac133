"""The identity oracle's label agreement with a study's synthetic images, kept beside the study's rows.

Reading the agreement (:func:`dapper.study.tables.synthetic_label_agreement`) needs every synthetic
image, and making those (projecting each training image, then editing it) is most of a study's cold
cost. The rows are already kept and reused by their study ids; this file keeps the agreement the same
way, so that a report over finished rows regenerates its tables, figures and sentences without
remaking images no run needs (notebook 04 and ``python -m dapper experiments``).

Each stored table is one block of ``oracle_agreement.csv`` under the results folder. Its ``key`` hashes
everything the numbers depend on: the profile, dataset, scenarios, folds, seed and shot level asked
for, every condition's study id (generator, direction, projection, augmentation and filter settings,
code) and the identity oracle's weights. Its ``slot`` hashes the question alone (the same minus ids
and oracle), so a new answer to the same question replaces the old one. The oracle only measures:
nothing in the method reads this file.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from dapper.judges import oracles
from dapper.utils import atomic_save, json_digest, reports_dir, weights_hash

__all__ = ["STORE_FILE", "agreement_key", "stored_agreement", "store_agreement", "agreement_stored", "oracle_and_id",
           "store_path"]

STORE_FILE = "oracle_agreement.csv"


def _question(config, shots) -> dict:
    return {"profile": config.profile, "dataset": config.dataset, "scenarios": list(config.scenarios),
            "folds": list(config.fold_ids), "seed": config.seed, "shots": "all" if shots is None else int(shots),
            "conditions": sorted(config.conditions)}


def agreement_key(config, ids: dict, shots: int | None, oracle_id: str) -> tuple[str, str]:
    """``(key, slot)`` of the agreement table for ``config`` at ``shots`` (None: every image once)."""
    question = _question(config, shots)
    answer = {**question, "ids": {c: ids.get(c) for c in config.conditions}, "oracle": oracle_id}
    return json_digest(answer, 16, default=str), json_digest(question, 16, default=str)


def store_path(results) -> Path:
    """The store's file under ``results`` (default ``reports_dir("results")``)."""
    return Path(results or reports_dir("results")) / STORE_FILE


def _read_store(path: Path) -> pd.DataFrame:
    if not path.exists():
        return pd.DataFrame(columns=["key", "slot"])
    return pd.read_csv(path, dtype={"key": str, "slot": str})


def stored_agreement(results, key: str) -> pd.DataFrame | None:
    """The stored table with this ``key`` (without the store's own columns), else None. A block
    stored as empty (a study whose conditions made no synthetic image) reads back as an empty table."""
    store = _read_store(store_path(results))
    block = store[store["key"] == key]
    if block.empty:
        return None
    block = block.drop(columns=["key", "slot"])
    block = block[block["scenario"].notna()] if "scenario" in block.columns else block.iloc[0:0]
    block = block.dropna(axis=1, how="all").reset_index(drop=True)
    for col in ("n_images", "n_before"):  # counts come back as floats where other blocks left gaps
        if col in block.columns and block[col].notna().all():
            block[col] = block[col].astype(int)
    return block


def store_agreement(results, key: str, slot: str, table: pd.DataFrame) -> None:
    """Keep ``table`` under ``key``, replacing any block of the same ``slot`` (atomic rewrite)."""
    path = store_path(results)
    store = _read_store(path)
    store = store[(store["slot"] != slot) & (store["key"] != key)]
    block = table.assign(key=key, slot=slot) if len(table) else pd.DataFrame({"key": [key], "slot": [slot]})
    out = pd.concat([store, block], ignore_index=True) if len(store) else block
    cols = ["key", "slot"] + [c for c in out.columns if c not in ("key", "slot")]
    atomic_save(path, lambda p: out[cols].to_csv(p, index=False))


def oracle_and_id(identity_oracle=None) -> tuple:
    """``(identity oracle, its weights hash)``: ``identity_oracle``, else the shipped one."""
    model = oracles.load_identity_oracle() if identity_oracle is None else identity_oracle
    return model, weights_hash(model)


def agreement_stored(config, ids: dict, shots: int | None, results=None, identity_oracle=None) -> bool:
    """Whether the agreement of ``config`` at ``shots`` is stored for these ids (real mode: there is
    none to keep, so always)."""
    if config.dataset != "toycars":
        return True
    _, oracle_id = oracle_and_id(identity_oracle)
    return stored_agreement(results, agreement_key(config, ids, shots, oracle_id)[0]) is not None
