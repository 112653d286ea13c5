"""Write the interim default model: an UNTRAINED `mini` tower (random init, seed 0).

Issue 2 ships the engine before training exists (issue 3); this file is what the engine
uses until a tower trained by `reid-search train` replaces it. Only the compare threshold
is fitted: at the equal error rate of cross-camera pairs of bbox_train (never bbox_test).

    python scripts/make_interim_model.py ../shared/data/cuhk03-mars/bbox_train
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from reid_search.calibration import equal_error_threshold, labelled_pairs
from reid_search.embedder import Embedder
from reid_search.layouts import scan_dataset
from reid_search.model_store import DEFAULT_MODEL, ModelCard, load_model, save_model, write_card
from reid_search.tower import TowerConfig, build_tower


def main(calibration_root: str, out: Path = DEFAULT_MODEL, max_images: int = 3000) -> None:
    config = TowerConfig(architecture="mini", input_height=128, input_width=64, embedding_dim=256)
    card = ModelCard(
        name="interim-untrained-mini",
        architecture=config.architecture,
        input_height=config.input_height,
        input_width=config.input_width,
        embedding_dim=config.embedding_dim,
        trained=False,
        tower_config=config.to_dict(),
        notes="UNTRAINED interim tower (random initialisation, seed 0) until issue 3 ships a "
        "trained one; expect near-chance accuracy on real people.",
    )
    save_model(build_tower(config), card, out)
    embedder = Embedder(load_model(out))
    records = scan_dataset(calibration_root).records
    step = max(1, len(records) // max_images)
    records = records[::step]
    vectors, idx, _ = embedder.embed_files([r.path for r in records])
    persons = np.array([records[i].person for i in idx])
    cameras = np.array([records[i].camera for i in idx])
    choice = equal_error_threshold(*labelled_pairs(vectors, persons, cameras))
    card.threshold = round(choice.threshold, 4)
    card.threshold_rule = (
        f"equal error rate over cross-camera pairs of {len(idx)} images of {calibration_root} "
        f"(every {step}th file): {choice.n_same} same, {choice.n_different} different pairs; "
        f"FRR {choice.false_reject:.3f}, FAR {choice.false_accept:.3f}"
    )
    card.training = {
        "command": "python scripts/make_interim_model.py " + calibration_root,
        "data": "none (untrained)",
        "epochs": 0,
        "created_at": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    write_card(out, card)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB), threshold {card.threshold}")


if __name__ == "__main__":
    main(sys.argv[1])
