import csv
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from src.checkpoints import load_classifier
from src.data.kaggle_csv import read_kaggle_csv
from src.data.mnist import load_mnist
from src.inference import predict_probabilities
from src.predict import main
from tests.conftest import KAGGLE_DIR, ROOT


def test_kaggle_submission_has_the_exact_format(kaggle_run, tmp_path, capsys):
    output = tmp_path / "submission.csv"
    assert main(["--ckpt", str(kaggle_run), "--input", str(KAGGLE_DIR / "test.csv"), "--output", str(output)]) == 0
    assert capsys.readouterr().err == ""
    lines = output.read_text().splitlines()
    assert len(lines) == 1001 and lines[0] == "ImageId,Label"
    ids, labels = zip(*(line.split(",") for line in lines[1:]), strict=True)
    assert [int(i) for i in ids] == list(range(1, 1001))
    assert set(labels) <= set("0123456789") and len(set(labels)) > 5
    # ImageId n is the prediction for row n of test.csv
    images, _ = read_kaggle_csv(KAGGLE_DIR / "test.csv")
    predicted = predict_probabilities(load_classifier(kaggle_run)[0], images).argmax(dim=1)
    assert [int(label) for label in labels] == predicted.tolist()
    assert not list(tmp_path.glob(".*tmp"))


def test_tta_submission_is_the_argmax_of_the_shift_averaged_probabilities(kaggle_run, tmp_path):
    output = tmp_path / "submission.csv"
    argv = ["--ckpt", str(kaggle_run), "--input", str(KAGGLE_DIR / "test.csv"), "--output", str(output), "--tta"]
    assert main(argv) == 0
    images, _ = read_kaggle_csv(KAGGLE_DIR / "test.csv")
    model = load_classifier(kaggle_run)[0]
    with_tta = predict_probabilities(model, images, tta=True).argmax(dim=1)
    assert with_tta.tolist() != predict_probabilities(model, images).argmax(dim=1).tolist()  # TTA changes some
    assert [int(line.split(",")[1]) for line in output.read_text().splitlines()[1:]] == with_tta.tolist()


def test_a_submission_from_an_mnist_model_comes_with_a_note(short_run, tmp_path, capsys):
    output = tmp_path / "submission.csv"
    assert main(["--ckpt", str(short_run), "--input", str(KAGGLE_DIR / "test.csv"), "--output", str(output)]) == 0
    err = capsys.readouterr().err
    assert err.startswith("note: ") and "trained on the MNIST files" in err and err.count("\n") == 1
    assert len(output.read_text().splitlines()) == 1001


def test_bad_kaggle_csv_writes_no_submission(short_run, tmp_path, capsys):
    source = tmp_path / "test.csv"
    source.write_text("pixel0,pixel1\n1,2\n")
    output = tmp_path / "submission.csv"
    assert main(["--ckpt", str(short_run), "--input", str(source), "--output", str(output)]) == 2
    assert capsys.readouterr().err.startswith(f"error: {source}, line 1: header has 2 columns, expected 784")
    assert not output.exists()


@pytest.fixture
def digit_files(tmp_path):
    """Three MNIST test digits as dark-on-light PNGs of another size, plus a file that is not an image."""
    images, labels = load_mnist("test")
    paths = []
    for index in range(3):
        paper = 255 - np.kron(images[index].numpy(), np.ones((6, 6), dtype=np.uint8))  # 168x168, black ink
        path = tmp_path / f"digit{index}.png"
        Image.fromarray(paper).convert("RGB").save(path)
        paths.append(path)
    broken = tmp_path / "broken.png"
    broken.write_text("not an image")
    return paths, broken, labels[:3].tolist()


def test_own_images_get_top3_and_a_bad_file_does_not_stop_the_others(short_run, digit_files, tmp_path, capsys):
    paths, broken, labels = digit_files
    output, preview = tmp_path / "preds.csv", tmp_path / "seen.png"
    argv = ["--ckpt", str(short_run), "--input", str(paths[0]), str(broken), *map(str, paths[1:])]
    assert main([*argv, "--output", str(output), "--show-preprocessed", str(preview)]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith(f"error: {broken}: ")
    rows = list(csv.DictReader(output.open()))
    assert [row["file"] for row in rows] == [str(p) for p in paths]
    assert [int(row["top1"]) for row in rows] == labels
    for row in rows:
        assert 1 >= float(row["p1"]) >= float(row["p2"]) >= float(row["p3"]) >= 0
    assert preview.read_bytes()[:4] == b"\x89PNG"
    assert f"{paths[0]}: {labels[0]} (" in captured.out


def test_a_reader_that_stops_early_costs_no_traceback_and_no_predictions(short_run, digit_files, tmp_path):
    """`predict ... | head`: 300 lines are more than Python buffers, so the reader's end is met mid-print."""
    (first, *_), _, labels = digit_files
    folder = tmp_path / "many"
    folder.mkdir()
    for index in range(300):
        shutil.copy(first, folder / f"a_long_file_name_for_a_long_line_of_output_{index:03d}.png")
    output = tmp_path / "preds.csv"
    command = [sys.executable, "-m", "src.predict", "--ckpt", str(short_run), "--input", str(folder)]
    reader, writer = os.pipe()
    os.close(reader)  # the reader is gone before the first line
    try:
        done = subprocess.run(
            [*command, "--output", str(output)], cwd=ROOT, stdout=writer, stderr=subprocess.PIPE, text=True, timeout=120
        )
    finally:
        os.close(writer)
    assert (done.returncode, done.stderr) == (141, "")
    assert [int(row["top1"]) for row in csv.DictReader(output.open())] == [labels[0]] * 300


def test_file_names_that_are_not_utf8_are_escaped_not_a_crash(short_run, digit_files, tmp_path, capsys):
    paths, broken, labels = digit_files
    latin1 = tmp_path / b"caf\xe9.png".decode("utf-8", "surrogateescape")  # as Python decodes a Latin-1 name
    paths[0].rename(latin1)
    broken.rename(tmp_path / b"\xff.png".decode("utf-8", "surrogateescape"))
    output = tmp_path / "preds.csv"
    assert main(["--ckpt", str(short_run), "--input", str(tmp_path), "--output", str(output)]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith(f"error: {tmp_path}/\\xff.png: ")
    assert f"{tmp_path}/caf\\xe9.png: {labels[0]} (" in captured.out
    rows = list(csv.DictReader(output.open(encoding="utf-8")))
    assert rows[0]["file"] == f"{tmp_path}/caf\\xe9.png" and int(rows[0]["top1"]) == labels[0]


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--output", "{tmp}"], "error: {tmp}: could not be written (Is a directory)"),
        (
            ["--show-preprocessed", "{tmp}/seen.png"],
            "error: --show-preprocessed: shows images given as files; a Kaggle CSV is already 28x28",
        ),
        (  # it wrote PNG data under that name
            ["--show-preprocessed", "{tmp}/seen.jpg"],
            "error: --show-preprocessed: writes a PNG; give a file name ending in .png, not {tmp}/seen.jpg",
        ),
        (
            ["--batch-size", "0"],
            "error: python -m src.predict: argument --batch-size: expected a whole number of at least 1, got '0'",
        ),
    ],
)
def test_bad_output_and_batch_size_are_one_line(flags, message, kaggle_run, tmp_path, capsys):
    flags = [flag.format(tmp=tmp_path) for flag in flags]
    assert main(["--ckpt", str(kaggle_run), "--input", str(KAGGLE_DIR / "test.csv"), *flags]) == 2
    assert capsys.readouterr().err == message.format(tmp=tmp_path) + "\n"
    assert list(tmp_path.iterdir()) == []


def test_a_preview_that_cannot_be_written_leaves_no_predictions_file(short_run, digit_files, tmp_path, capsys):
    paths, _, _ = digit_files
    output, preview = tmp_path / "out" / "preds.csv", tmp_path / "out" / "seen.png"
    preview.mkdir(parents=True)  # a folder where the picture would go
    argv = ["--ckpt", str(short_run), "--input", str(paths[0]), "--output", str(output)]
    assert main([*argv, "--show-preprocessed", str(preview)]) == 2
    assert capsys.readouterr().err == f"error: {preview}: could not be written (Is a directory)\n"
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["seen.png"]


def test_outputs_never_replace_the_commands_inputs(short_run, digit_files, tmp_path, capsys):
    (first, *_), _, _ = digit_files
    test_csv = tmp_path / "test.csv"
    test_csv.write_bytes((KAGGLE_DIR / "test.csv").read_bytes())
    cases = [
        (["--input", str(test_csv), "--output", str(test_csv)], "--output", test_csv),
        (["--input", str(first), "--output", str(first)], "--output", first),
        (["--input", str(tmp_path), "--show-preprocessed", str(first)], "--show-preprocessed", first),  # in the folder
    ]
    for flags, flag, victim in cases:
        before = victim.read_bytes()
        assert main(["--ckpt", str(short_run), *flags]) == 2
        assert (
            capsys.readouterr().err
            == f"error: {flag}: {victim} is also an input of this command; give another file to write\n"
        )
        assert victim.read_bytes() == before


def test_a_kaggle_csv_is_predicted_alone(short_run, digit_files, tmp_path, capsys):
    (first, *_), _, _ = digit_files
    test_csv = str(KAGGLE_DIR / "test.csv")
    assert main(["--ckpt", str(short_run), "--input", str(first), test_csv, "--output", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err == (
        f"error: --input: {test_csv} is a Kaggle CSV, which makes one submission: give it alone\n"
    )
    assert not (tmp_path / "out").exists()


def test_the_two_outputs_must_be_two_files(short_run, digit_files, tmp_path, capsys):
    (first, *_), _, _ = digit_files
    same = tmp_path / "out.png"
    argv = ["--ckpt", str(short_run), "--input", str(first), "--output", str(same), "--show-preprocessed"]
    assert main([*argv, f"{tmp_path}/./out.png"]) == 2  # the same file, spelled another way
    assert capsys.readouterr().err == f"error: --output: {same} is also --show-preprocessed; give each its own file\n"
    assert not same.exists()


def test_a_labelled_csv_is_predicted_with_a_note_that_kaggle_scores_test_csv(kaggle_run, tmp_path, capsys):
    output = tmp_path / "submission.csv"
    assert main(["--ckpt", str(kaggle_run), "--input", str(KAGGLE_DIR / "train.csv"), "--output", str(output)]) == 0
    note = f"note: {KAGGLE_DIR / 'train.csv'} has a label column (like Kaggle's train.csv); the submission ignores it."
    assert capsys.readouterr().err.startswith(note)
    assert len(output.read_text().splitlines()) == 2001
