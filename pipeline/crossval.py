"""k-fold cross-validation of the NLU pipeline (``deltatrain test nlu --cross-validation``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

from pipeline.build import with_epochs
from pipeline.data.model import Config, NluData
from pipeline.evaluation import cross_validation_folds, evaluate_nlu, write_nlu_reports


def run_cross_validation(
    data: NluData, config: Config, folds: int, out_dir: Path, *, epochs: int | None = None, progress: Any = None
) -> dict[str, Any]:
    """Train on k-1 folds, test on the held-out fold; write per-fold reports and the mean metrics."""
    from pipeline.training.nlu import train_nlu
    from pipeline.training.runtime import configure_tensorflow

    configure_tensorflow()
    config = with_epochs(config, epochs, None)
    per_fold: list[Mapping[str, Any]] = []
    for index, (train, test) in enumerate(cross_validation_folds(data, folds), start=1):
        model = train_nlu(train, config, progress=progress)
        evaluation = evaluate_nlu(model.parse_batch, test)
        write_nlu_reports(evaluation, out_dir / f"fold_{index}")
        per_fold.append(evaluation.headline)
    keys = [k for k in per_fold[0] if per_fold[0][k] is not None] if per_fold else []
    summary = {
        "folds": folds,
        "mean": {k: sum(float(f[k]) for f in per_fold) / len(per_fold) for k in keys},
        "per_fold": per_fold,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "cross_validation.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary
