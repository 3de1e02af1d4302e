"""The samplers of one model compared with each other: every sampler's metrics and its difference to the best
sampler, with paired bootstrap intervals (:func:`vsgm.quality_metrics.paired_comparison`), as one table per
model (``results/{model}/quality/paired.csv``) that the solver table joins."""

from __future__ import annotations

import os
from typing import Sequence

import pandas as pd
import torch

from .quality_metrics import DIFF_PARTS, METRICS, N_BOOT, paired_comparison
from .tables import REAL_ROW  # the real training images compared alongside the samplers
PAIRED_COLUMNS = ["model", "sampler", "n_samples", "n_reference"] + [
    f"{m}{part}" for m in METRICS for part in ("", "_lo", "_hi", *DIFF_PARTS)]


def real_subset(train: torch.Tensor, n: int, seed: int = 0) -> torch.Tensor:
    """The ``n`` training images that stand for a perfect sampler (the same draw as ``vsgm quality``'s)."""
    return train[torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))[:n]]


def paired_table(model_name: str, classifier: str | os.PathLike, samples: Sequence[str | os.PathLike],
                 reference: str | os.PathLike, train_reference: str | os.PathLike | None = None,
                 n_boot: int = N_BOOT, seed: int = 0) -> pd.DataFrame:
    """Compare the samples of every sampler of one model in one bootstrap.

    Args:
        model_name: the model's name in the table.
        classifier: the model's feature classifier (vsgm classifier).
        samples: the .npz files of vsgm sample, one per sampler.
        reference: the prepared test split the samples are measured against.
        train_reference: the prepared training split: as many of its images as the largest sample set join the
            comparison as ``real (train vs test)`` (never picked as the best).
        n_boot, seed: bootstrap draws and seed.

    Returns:
        One row per sampler (and the real row) with PAIRED_COLUMNS.
    """
    from .data.loader import normalise
    from .inputs import classifier_space, prepared_space, read_samples
    from .quality import check_same_space, classifier_features, load_classifier

    clf = load_classifier(classifier)
    ref_images, ref_space = prepared_space(reference)
    parts, feats = [ref_space, classifier_space(clf, classifier)], {}
    for path in samples:
        x, info, space = read_samples(path)
        if info["sampler"] in feats:
            raise ValueError(f"{path}: a second sample set of sampler {info['sampler']!r}")
        parts.append(space)
        feats[info["sampler"]] = classifier_features(clf, x).double().numpy()
    samplers = list(feats)
    if train_reference is not None:
        train, train_space = prepared_space(train_reference)
        parts.append(train_space)
        real = normalise(real_subset(train, max(len(f) for f in feats.values())))
        feats[REAL_ROW] = classifier_features(clf, real).double().numpy()
    check_same_space(parts)
    ref = classifier_features(clf, normalise(ref_images)).double().numpy()
    result = paired_comparison(ref, feats, n_boot=n_boot, seed=seed, best_of=samplers)
    rows = [{"model": model_name, "sampler": name, "n_samples": len(feats[name]), "n_reference": len(ref), **r}
            for name, r in result.items()]
    return pd.DataFrame(rows, columns=PAIRED_COLUMNS)

