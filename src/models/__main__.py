"""python -m src.models: the registered architectures as a markdown table."""

import sys

from src.models.registry import ARCHITECTURES, build_model, count_parameters


def main(argv: list[str] | None = None) -> int:
    print("| model | notebook | parameters | notebook's reported accuracy |")
    print("|---|---|---:|---:|")
    for name, arch in ARCHITECTURES.items():
        reported = f"{arch.reported_accuracy:.2f}%" if arch.reported_accuracy else "-"
        print(f"| {name} | {arch.notebook} | {count_parameters(build_model(name)):,} | {reported} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
