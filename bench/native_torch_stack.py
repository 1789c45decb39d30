#!/usr/bin/python3
"""Export a plain PyTorch stack of Linear layers to ONNX, as a user would bring it.

    /usr/bin/python3 bench/native_torch_stack.py OUT.onnx [--layers 6] [--width 4096] [--relu]

nn.Sequential of `--layers` nn.Linear(width, width) (bias on, PyTorch's default initialisation,
seeded), optionally with ReLU between them, exported with torch.onnx.export (TorchScript
exporter, opset 13, dynamic batch axis). The served-sparsity figures in bench/RESULTS-native.md
prune this file with `umbra prune` and serve it with `umbra serve`.
"""
import argparse

import torch
from torch import nn


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--width", type=int, default=4096)
    parser.add_argument("--relu", action="store_true", help="ReLU after every layer but the last")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    modules = []
    for i in range(args.layers):
        modules.append(nn.Linear(args.width, args.width))
        if args.relu and i + 1 < args.layers:
            modules.append(nn.ReLU())
    model = nn.Sequential(*modules).eval()
    example = torch.randn(1, args.width)
    torch.onnx.export(
        model, example, args.out, opset_version=13, input_names=["x"], output_names=["y"],
        dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}},
    )


if __name__ == "__main__":
    main()
