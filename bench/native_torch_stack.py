#!/usr/bin/python3
"""Export a plain PyTorch stack of Linear layers to ONNX, as a user would bring it.

    /usr/bin/python3 bench/native_torch_stack.py OUT.onnx [--layers 6] [--width 4096] [--relu]
        [--activation relu|tanh|sigmoid|gelu] [--inputs N] [--outputs N]

nn.Sequential of `--layers` nn.Linear layers (bias on, PyTorch's default initialisation,
seeded), `--width` wide, the first taking `--inputs` and the last giving `--outputs` (both
`--width` unless given), optionally with an activation between them (`--relu` is
`--activation relu`), exported with torch.onnx.export (TorchScript exporter, opset 13, dynamic
batch axis). The served-sparsity figures in bench/RESULTS-native.md
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
    parser.add_argument("--activation", choices=["relu", "tanh", "sigmoid", "gelu"], help="this after every layer but the last")
    parser.add_argument("--inputs", type=int, help="the first layer's inputs (default --width)")
    parser.add_argument("--outputs", type=int, help="the last layer's outputs (default --width)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    activation = args.activation or ("relu" if args.relu else None)
    make = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "gelu": nn.GELU}
    modules = []
    for i in range(args.layers):
        fan_in = args.inputs if i == 0 and args.inputs else args.width
        fan_out = args.outputs if i + 1 == args.layers and args.outputs else args.width
        modules.append(nn.Linear(fan_in, fan_out))
        if activation and i + 1 < args.layers:
            modules.append(make[activation]())
    model = nn.Sequential(*modules).eval()
    example = torch.randn(1, args.inputs or args.width)
    torch.onnx.export(
        model, example, args.out, opset_version=13, input_names=["x"], output_names=["y"],
        dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}},
    )


if __name__ == "__main__":
    main()
