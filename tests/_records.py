"""A finished record of a cell as run_cell builds it (schema 2), with hand-chosen numbers, for tests that
need a real record on disk without training anything."""

from __future__ import annotations

import numpy as np

from nlbench.run.records import Cost, NoiseAudit, Record, cell_fields


def record_of(spec, **overrides) -> Record:
    """A record as run_cell builds it (schema 2), with hand-chosen numbers."""
    fields = dict(
        **cell_fields(spec),
        test_acc_best=61.25, test_acc_last=60.5, extra_test_acc_best={}, extra_test_acc_last={},
        val_acc_best=58.0, best_epoch=1,
        history=[{"epoch": 0, "train_loss": 2.0, "val_acc": 50.0, "test_acc": 52.0},
                 {"epoch": 1, "train_loss": 1.5, "val_acc": 58.0, "test_acc": 61.25}],
        extra={"note": "x"},
        noise_audit=NoiseAudit(convention="reference", realized_rate=0.54, labels_sha256="ab" * 32,
                               transition=np.round(np.array([[0.4, 0.6], [0.25, 0.75]]), 6)),
        selection=[],
        cost=Cost(wall_s=1.5, peak_rss_mb=900.0, peak_cuda_mb=None, feature_cache={"train/view0": "fill"},
                  fft_epoch_s=[], resumed_from=[], counters={"backbone_forward_images": 100,
                                                             "backbone_backward_images": 0, "backbones_built": 1}),
        env={"python": "3.11", "versions": {}, "git_commit": None, "cuda": None},
        determinism={"threads": 2, "threads_pinned": True},
    )
    return Record(**{**fields, **overrides})
