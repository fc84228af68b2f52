"""What a leaderboard can show and how it is written: the constants the command line's options offer,
apart from ``nlbench.report.tables`` so that ``nlbench --help`` loads no pandas."""

METRICS = {
    "test_acc_best": "test accuracy (%) at the best validation epoch",
    "test_acc_last": "test accuracy (%) at the last epoch",
    "val_acc_best": "best validation accuracy (%)",
    "time": "wall time per cell (s)",
    "realized_rate": "realized noise rate of the training labels",
    "selection_f1": "F1 (%) of the last selected clean set against the true clean mask",
    "backbone_forward_images": "images passed forward through a backbone per cell (feature-cache fills included)",
    "backbone_backward_images": "images backpropagated through a backbone per cell",
    "pair_disagreement": "share (%) of the samples on which a two-network method's networks disagreed in the last "
                         "epoch",
}
# Costs: lower is better (bold marks the cheapest).
LOWER_IS_BETTER = ("time", "realized_rate", "backbone_forward_images", "backbone_backward_images")
# Diagnostics: neither direction is better, so no cell is bold.
UNRANKED = ("pair_disagreement",)
FORMATS = ("markdown", "latex", "csv")
