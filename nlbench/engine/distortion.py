"""Feature distortion (the TURN paper's Fig. 2): test features before and after full fine-tuning.

A fine-tuning cell whose grid sets ``[train] save_finetuned_features = true`` ends with one extra pass
over the test split and saves, beside its record, the test features of the fine-tuned backbone
("after"), the frozen pre-trained features of the same images from the feature cache ("before") and the
clean test labels. The report reads them back to draw t-SNE maps and to score each feature set by k-NN
accuracy of the clean labels: features that keep the classes apart score high.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nlbench.atomic import atomic_write_bytes


@dataclass(frozen=True)
class SavedTestFeatures:
    before: np.ndarray  # (N, D) pre-trained features (the feature cache's test split, view 0)
    after: np.ndarray  # (N, D) features of the fine-tuned backbone
    labels: np.ndarray  # (N,) clean test labels
    config_hash: str  # of the cell that wrote them; a report skips files whose hash differs from the record's


def save_test_features(path: str | Path, features: SavedTestFeatures) -> None:
    """Write ``features`` as one compressed .npz, atomically."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, before=np.asarray(features.before, dtype=np.float32),
                        after=np.asarray(features.after, dtype=np.float32),
                        labels=np.asarray(features.labels, dtype=np.int64),
                        config_hash=np.array(features.config_hash))
    atomic_write_bytes(Path(path), buffer.getvalue())


def load_test_features(path: str | Path) -> SavedTestFeatures | None:
    """The features saved at ``path``, or None when absent or unreadable."""
    try:
        with np.load(Path(path)) as data:
            return SavedTestFeatures(before=data["before"], after=data["after"], labels=data["labels"],
                                config_hash=str(data["config_hash"]))
    except (OSError, KeyError, ValueError):
        return None


def knn_accuracy(features: np.ndarray, labels: np.ndarray, *, k: int = 10, folds: int = 5, seed: int = 0) -> float:
    """Accuracy (%) of a k-NN classifier (cosine distance) of the clean ``labels``, out-of-fold over
    ``folds`` stratified folds of the features themselves."""
    # scikit-learn: heavy, for the report's distortion only
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.neighbors import KNeighborsClassifier
    from threadpoolctl import threadpool_limits

    labels = np.asarray(labels)
    folds = max(2, min(folds, int(np.bincount(labels).max())))
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    model = KNeighborsClassifier(n_neighbors=k, metric="cosine")
    with threadpool_limits(limits=1):  # a few thousand points: threads only add overhead
        scores = cross_val_score(model, np.asarray(features, dtype=np.float64), labels, cv=splitter)
    return 100.0 * float(scores.mean())


def tsne_embedding(features: np.ndarray, *, seed: int = 0, max_points: int = 500,
                   max_iter: int = 500) -> tuple[np.ndarray, np.ndarray]:
    """(2-D t-SNE coordinates, indices of the points used): at most ``max_points`` seeded samples and
    ``max_iter`` iterations, so a report stays within seconds."""
    from sklearn.manifold import TSNE  # scikit-learn: heavy, for the report's distortion only
    from threadpoolctl import threadpool_limits

    n = len(features)
    index = np.arange(n) if n <= max_points else np.sort(np.random.default_rng(seed).choice(n, max_points, False))
    x = np.asarray(features, dtype=np.float64)[index]
    perplexity = float(min(30.0, max(2.0, (len(index) - 1) / 3)))
    # One thread: Barnes-Hut t-SNE of a few hundred points gains nothing from OpenMP, and its spinning
    # threads slow to a crawl on a loaded machine.
    with threadpool_limits(limits=1):
        tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed, max_iter=max_iter)
        coords = tsne.fit_transform(x)
    return coords, index
