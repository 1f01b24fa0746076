"""python -m src.predict --ckpt PATH --input test.csv | images...: a Kaggle submission, or digits in your own images."""

import contextlib
import csv
import io
import sys
from pathlib import Path

from src.atomic import check_not_an_input
from src.cli import Parser, positive_int, run_command
from src.errors import UserError, printable


def build_parser() -> Parser:
    p = Parser(prog="python -m src.predict", description="Predict digits with one checkpoint or an ensemble.")
    p.add_argument(
        "--ckpt", nargs="+", required=True, help="a .ckpt file or a run directory; several average their probabilities"
    )
    p.add_argument("--input", nargs="+", required=True, help="Kaggle's test.csv, or image files and folders of images")
    p.add_argument(
        "--output",
        default=None,
        help="submission CSV for a Kaggle input (default: submission.csv); predictions CSV for images",
    )
    p.add_argument(
        "--show-preprocessed", default=None, metavar="PNG", help="save the 28x28 images the model saw (images only)"
    )
    p.add_argument("--batch-size", type=positive_int, default=1000, help="images per forward pass (default: 1000)")
    p.add_argument(
        "--tta", action="store_true", help="test-time augmentation: average over the image and its 1-pixel shifts"
    )
    return p


def main(argv: list[str] | None = None) -> int:
    return run_command(lambda: predict(build_parser().parse_args(argv)))


def predict(args) -> int:
    from src.checkpoints import load_classifier, trained_on

    if args.show_preprocessed and Path(args.show_preprocessed).suffix.lower() != ".png":
        raise UserError(
            "--show-preprocessed", f"writes a PNG; give a file name ending in .png, not {args.show_preprocessed}"
        )
    csv_inputs = [path for path in args.input if path.lower().endswith(".csv")]
    if csv_inputs and len(args.input) > 1:
        raise UserError("--input", f"{csv_inputs[0]} is a Kaggle CSV, which makes one submission: give it alone")
    if csv_inputs and args.show_preprocessed:
        raise UserError("--show-preprocessed", "shows images given as files; a Kaggle CSV is already 28x28")
    if args.output and args.show_preprocessed and Path(args.output).resolve() == Path(args.show_preprocessed).resolve():
        raise UserError("--output", f"{args.output} is also --show-preprocessed; give each its own file")
    loaded = [load_classifier(path) for path in args.ckpt]
    models = [model for model, _ in loaded]
    if csv_inputs:
        output = Path(args.output or "submission.csv")
        check_not_an_input("--output", output, [args.input[0], *(path for _, path in loaded)])
        predict_kaggle_csv(models, Path(args.input[0]), output, args.batch_size, args.tta)
        # PITFALLS.md: Kaggle's train.csv and test.csv are a reshuffle of all 70,000 MNIST images.
        for model, path in loaded:
            if trained_on(model) == "mnist":
                print(
                    f"note: {path} was trained on the MNIST files, which hold most of the digits of Kaggle's "
                    "test.csv: a Kaggle score of this submission measures memory (train with --data kaggle)",
                    file=sys.stderr,
                )
        return 0
    for flag, output in (("--output", args.output), ("--show-preprocessed", args.show_preprocessed)):
        if output:
            check_not_an_input(flag, output, [*image_files(args.input), *(path for _, path in loaded)])
    return predict_images(models, args.input, args.output, args.show_preprocessed, args.batch_size, args.tta)


def image_files(inputs: list[str]) -> list[Path]:
    """The files the inputs name: themselves, or a folder's files (an unreadable folder is reported later)."""
    files = []
    for path in map(Path, inputs):
        with contextlib.suppress(OSError):
            files += list(path.iterdir()) if path.is_dir() else [path]
    return files


def probabilities(models, images, batch_size: int, tta: bool):
    from src.inference import ensemble_probabilities, predict_probabilities

    return ensemble_probabilities([predict_probabilities(model, images, batch_size, tta=tta) for model in models])


def predict_kaggle_csv(models, source: Path, output: Path, batch_size: int, tta: bool = False) -> int:
    """Kaggle's exact submission format: header ImageId,Label; ImageId from 1, one row per test row, in order."""
    from src.atomic import atomic_write_text
    from src.data.kaggle_csv import read_kaggle_csv

    images, labels = read_kaggle_csv(source)
    if labels is not None:
        print(
            f"note: {printable(source)} has a label column (like Kaggle's train.csv); the submission ignores it. "
            "Kaggle scores predictions of test.csv",
            file=sys.stderr,
        )
    predicted = probabilities(models, images, batch_size, tta).argmax(dim=1).tolist()
    lines = ["ImageId,Label", *(f"{image_id},{label}" for image_id, label in enumerate(predicted, start=1))]
    atomic_write_text(output, "\n".join(lines) + "\n")
    print(f"{len(predicted):,} predictions written to {printable(output)}")
    return 0


def predict_images(
    models, inputs: list[str], output: str | None, show: str | None, batch_size: int, tta: bool = False
) -> int:
    """Top-3 digits per image; a file that cannot be read is reported and the others still predicted."""
    import torch

    from src.data.images import read_digit_images

    results = read_digit_images(inputs)
    good = [(path, image) for path, image in results if not isinstance(image, UserError)]
    for _, error in results:
        if isinstance(error, UserError):
            print(f"error: {error}", file=sys.stderr)
    if not good:
        return 2
    images = torch.stack([image for _, image in good])
    top = probabilities(models, images, batch_size, tta).topk(3, dim=1)
    rows, lines = [], []
    for (path, _), values, digits in zip(good, top.values.tolist(), top.indices.tolist(), strict=True):
        lines.append(f"{printable(path)}: " + ", ".join(f"{d} ({v:.1%})" for d, v in zip(digits, values, strict=True)))
        rows.append(
            [printable(path), *(x for pair in zip(digits, values, strict=True) for x in (pair[0], f"{pair[1]:.6f}"))]
        )
    # The files before the printing, which a reader that stops early (`| head`) cuts short.
    if show:  # before the predictions file: one that cannot be written leaves no predictions behind
        from src.figures import image_grid_figure, save_figure

        captions = [f"{printable(Path(path).name)[:18]}: {row[1]}" for (path, _), row in zip(good, rows, strict=True)]
        save_figure(image_grid_figure(images, captions, "What the model saw (28x28, MNIST-style)"), show)
        lines.append(f"preprocessed images: {printable(show)}")
    if output:
        write_predictions(Path(output), rows)
        lines.append(f"predictions written to {printable(output)}")
    print("\n".join(lines))
    return 0 if len(good) == len(results) else 2


def write_predictions(path: Path, rows: list[list]) -> None:
    from src.atomic import atomic_write_text

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["file", "top1", "p1", "top2", "p2", "top3", "p3"])
    writer.writerows(rows)
    atomic_write_text(path, buffer.getvalue())


if __name__ == "__main__":
    sys.exit(main())
