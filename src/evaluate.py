"""python -m src.evaluate --ckpt PATH [PATH ...]: metrics, confusion matrix and figures of a model or an ensemble."""

import sys
from pathlib import Path

from src.cli import Parser, positive_int, run_command
from src.errors import UserError


def build_parser() -> Parser:
    p = Parser(prog="python -m src.evaluate", description="Evaluate checkpoints; several make an ensemble.")
    p.add_argument("--ckpt", nargs="+", required=True, help="a .ckpt file or a run directory (its best checkpoint)")
    p.add_argument(
        "--data",
        choices=("mnist", "kaggle"),
        default=None,
        help="MNIST test set, or the run's Kaggle validation split (default: the data the checkpoint was trained on)",
    )
    p.add_argument(
        "--data-dir",
        default=None,
        help="MNIST files, or the folder with Kaggle's train.csv (default: the checkpoint's, else data/MNIST/raw)",
    )
    p.add_argument("--batch-size", type=positive_int, default=1000, help="images per forward pass (default: 1000)")
    p.add_argument(
        "--tta", action="store_true", help="test-time augmentation: average over the image and its 1-pixel shifts"
    )
    p.add_argument("--output-dir", default=None, help="where figures and metrics.json go (default: RUN/evaluation)")
    return p


def main(argv: list[str] | None = None) -> int:
    return run_command(lambda: evaluate(build_parser().parse_args(argv)))


def evaluation_set(data: str, data_dir: str | None, split: dict):
    """(uint8 images [N, 28, 28], labels [N], description) to evaluate on."""
    from src.data.datamodule import DigitsDataModule
    from src.data.mnist import load_mnist

    if data == "mnist":
        images, labels = load_mnist("test", data_dir)
        return images, labels, f"MNIST test set ({len(labels):,} images)"
    keys = ("val_fraction", "val_split", "seed", "split_seed")  # before 2026-11-25 the seed was split_seed alone
    datamodule = DigitsDataModule(
        data="kaggle", data_dir=data_dir, **{k: split[k] for k in keys if split.get(k) is not None}
    )
    datamodule.setup()
    return datamodule.test_set.images, datamodule.test_set.labels, datamodule.test_description


def held_out(split: dict) -> tuple:
    """Which images of train.csv a Kaggle run held out: (val_fraction, val_split, the seed of a random split)."""
    from src.data.splits import split_seed_of

    seed = split_seed_of(split) if split.get("val_split") == "random" else None
    return split.get("val_fraction"), split.get("val_split"), seed


def check_scorable_on_kaggle(loaded: list) -> None:
    """Kaggle's train.csv is scored on the first member's held-out images: none of the members may have
    trained on them (MNIST's files hold most of train.csv's images; another split holds out other ones)."""
    from src.checkpoints import trained_on

    first_split, first_path = loaded[0][0].data_hparams, loaded[0][1]
    if first_split.get("val_fraction") == 0:
        raise UserError(
            first_path, "trained on every labelled image of train.csv (val_fraction 0): none is left to evaluate on"
        )
    for model, path in loaded:
        if trained_on(model) != "kaggle":
            raise UserError(path, "was trained on MNIST, whose files hold most of train.csv's images: none is held out")
        if held_out(model.data_hparams) != held_out(first_split):
            fraction, how, seed = held_out(model.data_hparams)
            same_but_seed = (fraction, how) == held_out(first_split)[:2]
            split = f"val_fraction {fraction}, {how}" + (f", seed {seed}" if how == "random" else "")
            raise UserError(
                path,
                f"held out other images of train.csv ({split}) than {first_path}, so it trained on some that are "
                "scored; train ensemble members with one "
                + ("--split-seed" if same_but_seed else "--val-fraction and val_split, and one --split-seed"),
            )


def score(probabilities, labels) -> dict:
    """Accuracy, loss, per-class precision/recall/F1 and the confusion matrix (torchmetrics)."""
    import torch
    from torchmetrics.functional.classification import (
        multiclass_accuracy,
        multiclass_confusion_matrix,
        multiclass_f1_score,
        multiclass_precision,
        multiclass_recall,
    )

    kwargs = {"num_classes": 10, "validate_args": False}
    return {
        "accuracy": multiclass_accuracy(probabilities, labels, average="micro", **kwargs).item(),
        "loss": torch.nn.functional.nll_loss(probabilities.clamp(min=1e-12).log(), labels).item(),
        "errors": int((probabilities.argmax(dim=1) != labels).sum()),
        "precision": multiclass_precision(probabilities, labels, average=None, **kwargs).tolist(),
        "recall": multiclass_recall(probabilities, labels, average=None, **kwargs).tolist(),
        "f1": multiclass_f1_score(probabilities, labels, average=None, **kwargs).tolist(),
        "confusion_matrix": multiclass_confusion_matrix(probabilities, labels, **kwargs).tolist(),
    }


def evaluate(args) -> int:
    import torch

    from src.checkpoints import load_classifier, trained_on
    from src.inference import ensemble_probabilities, predict_probabilities
    from src.runs import run_dir_of, write_json

    loaded = [load_classifier(path) for path in args.ckpt]
    split, source = loaded[0][0].data_hparams, trained_on(loaded[0][0])
    data = args.data or source
    data_dir = args.data_dir or (split.get("data_dir") if data == source else None)
    if data == "kaggle":
        check_scorable_on_kaggle(loaded)
    for model, path in loaded:  # PITFALLS.md: Kaggle's files are a reshuffle of all of MNIST
        if data == "mnist" and trained_on(model) == "kaggle":
            print(
                f"note: {path} was trained on Kaggle's train.csv, whose digits are drawn from all of MNIST, "
                "test set included: its MNIST test accuracy overstates it",
                file=sys.stderr,
            )
    images, labels, description = evaluation_set(data, data_dir, split)
    members = [predict_probabilities(model, images, args.batch_size, tta=args.tta) for model, _ in loaded]
    reports = [
        {"checkpoint": str(path), **score(probs, labels)} for probs, (_, path) in zip(members, loaded, strict=True)
    ]
    final = ensemble_probabilities(members) if len(members) > 1 else members[0]
    final_report = score(final, labels)

    if args.tta:
        description += ", with test-time augmentation (1-pixel shifts)"
    print(f"evaluated on the {description}")
    for report in reports:
        print(
            f"  {report['accuracy']:.2%} accuracy, loss {report['loss']:.4f}, {report['errors']} errors: {report['checkpoint']}"
        )
    if len(members) > 1:
        print(
            f"  {final_report['accuracy']:.2%} accuracy, loss {final_report['loss']:.4f}, {final_report['errors']} errors: ensemble of {len(members)} (mean of probabilities)"
        )
    print(per_class_table(final_report, labels))

    run_dir = run_dir_of(loaded[0][1])
    output = (
        Path(args.output_dir)
        if args.output_dir
        else run_dir / (("evaluation" if len(members) == 1 else "evaluation-ensemble") + ("-tta" if args.tta else ""))
    )
    write_figures(output, run_dir, images, labels, final, torch.tensor(final_report["confusion_matrix"]), description)
    write_json(  # last: a figure that cannot be written leaves no metrics.json that looks complete
        output / "metrics.json",
        {"evaluated_on": description, "members": reports, "ensemble": final_report if len(members) > 1 else None},
    )
    print(f"metrics.json and figures: {output}")
    return 0


def per_class_table(report: dict, labels) -> str:
    support = labels.bincount(minlength=10).tolist()
    lines = ["digit  precision  recall     f1  support"]
    for digit in range(10):
        p, r, f = report["precision"][digit], report["recall"][digit], report["f1"][digit]
        lines.append(f"{digit:>5}  {p:>9.4f}  {r:>6.4f}  {f:>5.4f}  {support[digit]:>7}")
    lines.append("confusion matrix (rows: true digit, columns: predicted)")
    lines += [" ".join(f"{count:>5}" for count in row) for row in report["confusion_matrix"]]
    return "\n".join(lines)


def write_figures(output: Path, run_dir: Path, images, labels, probabilities, matrix, description: str) -> None:
    """confusion_matrix.png, misclassified.png and curves.png, also logged to the run's TensorBoard."""
    from torch.utils.tensorboard import SummaryWriter

    from src.figures import confusion_matrix_figure, curves_figure, mistakes_figure, save_figure
    from src.runs import is_run_dir

    confidence, predicted = probabilities.max(dim=1)
    mistakes = int((predicted != labels).sum())
    figures = {
        "confusion_matrix": confusion_matrix_figure(matrix, f"Confusion matrix: {description}"),
        "misclassified": mistakes_figure(
            images, labels, predicted, confidence, f"{mistakes} mistakes, most confident first"
        ),
    }
    curves = read_curves(run_dir)
    if curves:
        figures["curves"] = curves_figure(curves, f"Training curves: {run_dir}")
    for name, figure in figures.items():
        save_figure(figure, output / f"{name}.png")
    if not is_run_dir(run_dir):  # a loose checkpoint's folder (Downloads, say) gets no TensorBoard events
        return
    try:  # a run directory may be read-only (a shared or archived run) while --output-dir is not
        with SummaryWriter(log_dir=str(run_dir)) as writer:
            for name, figure in figures.items():
                writer.add_figure(f"evaluation/{name}", figure, close=False)
    except OSError as e:
        print(f"note: the figures were not logged to {run_dir}'s TensorBoard ({e.strerror or e})", file=sys.stderr)


def read_curves(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Per-epoch train/val loss and accuracy from the run's TensorBoard events (epoch numbers from 1)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    tags = [t for t in ("train/loss", "val/loss", "train/acc", "val/acc") if t in events.Tags().get("scalars", [])]
    return {tag: [(epoch, e.value) for epoch, e in enumerate(events.Scalars(tag), start=1)] for tag in tags}


if __name__ == "__main__":
    sys.exit(main())
