"""``nlbench advise`` on bad input: one line ``nlbench: error: …`` naming the problem, exit 2, nothing written."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from nlbench.cli.main import main


def _png(path, value: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8), value, dtype=np.uint8)).save(path)


def _tree(root, counts: dict[str, int]) -> None:
    for name, n in counts.items():
        for i in range(n):
            _png(root / "train" / name / f"{i}.png", 20 * i)


def _run(capsys, tmp_path, *args: str) -> str:
    out = tmp_path / "out"
    try:
        code = main(["advise", *args, "--out", str(out), "--no-progress"])
    except SystemExit as exc:  # argparse's own errors (same convention: one line, exit 2)
        code = exc.code
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and err.startswith("nlbench: error: ")
    assert not out.exists()  # nothing written
    return err


def test_folder_with_one_class(tmp_path, capsys):
    _tree(tmp_path / "data", {"cat": 6})
    err = _run(capsys, tmp_path, "--data", f"folder:{tmp_path / 'data'}")
    assert "1 class (cat)" in err and "at least 2" in err


def test_class_with_fewer_images_than_folds(tmp_path, capsys):
    _tree(tmp_path / "data", {"cat": 6, "dog": 3})
    err = _run(capsys, tmp_path, "--data", f"folder:{tmp_path / 'data'}")
    assert "dog (3)" in err and "5 folds" in err


def test_undecodable_image(tmp_path, capsys):
    _tree(tmp_path / "data", {"cat": 6, "dog": 6})
    (tmp_path / "data" / "train" / "dog" / "broken.png").write_text("not an image")
    err = _run(capsys, tmp_path, "--data", f"folder:{tmp_path / 'data'}")
    assert "broken.png is not a readable image" in err


def test_csv_naming_missing_files(tmp_path, capsys):
    _tree(tmp_path / "data", {"cat": 6, "dog": 6})
    rows = [f"train/{c}/{i}.png,{c}" for c in ("cat", "dog") for i in range(6)] + ["train/dog/missing.png,dog"]
    (tmp_path / "data" / "labels.csv").write_text("path,label\n" + "\n".join(rows) + "\n")
    err = _run(capsys, tmp_path, "--data", f"csv:{tmp_path / 'data' / 'labels.csv'}")
    assert "missing.png does not exist" in err


@pytest.mark.parametrize("row, expected", [("train/cat/99.png,cat", "is not an image of --data"),
                                           ("train/cat/0.png,horse", "label 'horse' is not a class")])
def test_trusted_file_with_unknown_path_or_class(tmp_path, capsys, row, expected):
    _tree(tmp_path / "data", {"cat": 6, "dog": 6})
    trusted = tmp_path / "data" / "trusted.csv"
    trusted.write_text(f"path,label\ntrain/dog/0.png,dog\n{row}\n")
    err = _run(capsys, tmp_path, "--data", f"folder:{tmp_path / 'data'}", "--trusted", str(trusted))
    assert expected in err


@pytest.mark.parametrize("args, expected", [
    (["--data", "images/"], "expected folder:PATH"),
    (["--data", "folder:/nonexistent/place"], "no such folder"),
    (["--data", "folder:.", "--budget", "soon"], "--budget 'soon'"),
    (["--data", "folder:.", "--backbones", "resnet9000"], "unknown backbone 'resnet9000'"),
    (["--data", "folder:.", "--folds", "1"], "--folds"),
    (["--data", "folder:.", "--folds", "3", "--fine-tune-folds", "4"],
     "--fine-tune-folds 4; expected an integer from 1"),
    (["--data", "folder:.", "--fine-tune-folds", "0"], "--fine-tune-folds"),
])
def test_bad_options(tmp_path, capsys, args, expected):
    assert expected in _run(capsys, tmp_path, *args)


def test_class_folders_without_train(tmp_path, capsys):
    for name in ("cat", "dog"):
        for i in range(6):
            _png(tmp_path / "data" / name / f"{i}.png")
    assert "move them into train/" in _run(capsys, tmp_path, "--data", f"folder:{tmp_path / 'data'}")
