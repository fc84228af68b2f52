"""Engine behaviour shared by all methods: extra test sets are scored where the test set is."""

from __future__ import annotations

import numpy as np
from test_dividemix import tiny_trainer  # tests/ is on sys.path (pytest's default prepend import mode)

from nlbench.engine.images import TensorImages
from nlbench.engine.losses import cross_entropy


def test_extra_test_set_scored_at_best_and_last_epoch(tmp_path):
    trainer = tiny_trainer(tmp_path, epochs=3)
    # an extra test set identical to the test set must score exactly the test accuracy
    test_images = trainer.images("test").images.permute(0, 2, 3, 1).cpu().numpy()
    base_images = trainer._images
    trainer._images = lambda split, device: (TensorImages(test_images, device) if split == "imagenet"
                                             else base_images(split, device))
    base_key = trainer._feature_key
    trainer._feature_key = lambda split, view: base_key("test" if split == "imagenet" else split, view)
    trainer.extra_test_labels = {"imagenet": trainer.test_labels.copy()}
    for fit in (trainer.linear_probe(cross_entropy), trainer.fine_tune(cross_entropy, epochs=2)):
        assert fit.extra_test_acc_best == {"imagenet": fit.test_acc_best}
        assert fit.extra_test_acc_last == {"imagenet": fit.test_acc_last}
        assert np.isfinite(fit.test_acc_best)
