"""One FFT budget for the study (issue 23, point 10).

Reference: TURN has no code; the summary's experimental setup gives one training time for the whole study,
"20 Epochs LP, 5 Epochs FFT". Its most literal reading is E_FFT = 5 for every FFT run of the paper grids, the
baselines' as well as TURN's; nlbench's earlier 10 epochs for the baselines stay an option
(``--set train.fft_epochs=10``). The CPU grids keep their own, smaller, budget.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from nlbench.engine.config import TrainConfig
from nlbench.run.grids import expand, load_grid

GRIDS = Path(__file__).resolve().parents[1] / "benchmarks" / "grids"
PAPER_GRIDS = ("paper_table1", "paper_clothing1m", "paper_webvision")


def fft_epochs_of(cells) -> dict[tuple[str, str], set[int]]:
    """(method, mode) → the FFT epochs its cells run: [train] fft_epochs, or TURN's own param."""
    out: dict[tuple[str, str], set[int]] = {}
    for c in cells:
        if "fft" not in c.mode:
            continue
        epochs = c.method_params["fft_epochs"] if c.method == "turn" else c.train_config.fft_epochs
        out.setdefault((c.method, c.mode), set()).add(epochs)
    return out


def test_the_engine_default_is_the_studys_budget():
    assert (TrainConfig().lp_epochs, TrainConfig().fft_epochs) == (20, 5)


@pytest.mark.parametrize("grid", PAPER_GRIDS)
def test_every_fft_run_of_a_paper_grid_trains_5_epochs_and_the_option_gives_10(grid):
    path = str(GRIDS / f"{grid}.toml")
    default = fft_epochs_of(expand(load_grid(path)))
    assert default == {("ce", "fft"): {5}, ("gce", "fft"): {5}, ("elr", "fft"): {5}, ("turn", "lp-fft"): {5}}
    longer = fft_epochs_of(expand(load_grid(path, ["train.fft_epochs=10"])))
    # The option lengthens the baselines; TURN's E_FFT is its own param and stays 5.
    assert longer == {("ce", "fft"): {10}, ("gce", "fft"): {10}, ("elr", "fft"): {10}, ("turn", "lp-fft"): {5}}


def test_the_option_re_runs_the_fft_cells_only():
    path = str(GRIDS / "paper_table1.toml")
    five = {c.cell_id: c.config_hash for c in expand(load_grid(path))}
    ten = {c.cell_id: c.config_hash for c in expand(load_grid(path, ["train.fft_epochs=10"]))}
    changed = {cell for cell in five if five[cell] != ten[cell]}
    # 6 backbones × 4 settings × 3 seeds × (3 FFT baselines + TURN): TURN runs its own fft_epochs, but its
    # lp-fft cells hash every fft_* [train] field (nlbench.run.spec.train_fields_used counts by phase), so they
    # re-run too; the 6 × 4 × 3 × 5 LP cells keep their hashes.
    assert len(changed) == 6 * 4 * 3 * 4
    assert all("__fft__" in cell or "__lp-fft__turn__" in cell for cell in changed)
    assert len(five) - len(changed) == 6 * 4 * 3 * 5


def test_the_quickstart_keeps_its_cpu_budget():
    cells = expand(load_grid(str(GRIDS / "quickstart.toml")))
    assert fft_epochs_of(cells) == {("ce", "fft"): {3}, ("gce", "fft"): {3}, ("elr", "fft"): {3},
                                    ("turn", "lp-fft"): {5}}
