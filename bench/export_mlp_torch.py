"""Exports a PyTorch MLP the way a user would (torch.onnx.export, dynamic batch axis), for
bench/batch.mjs: the model is one the project never built itself.

    /usr/bin/python3 bench/export_mlp_torch.py OUT.onnx [--widths 64,1024,1024,10] [--seed 28]

Linear layers with ReLU between them (PyTorch's default initialisation, seeded), opset 13.
Needs Debian's python3-torch.
"""
import argparse

import torch
from torch import nn


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--widths", default="64,1024,1024,10")
    parser.add_argument("--seed", type=int, default=28)
    args = parser.parse_args()
    widths = [int(w) for w in args.widths.split(",")]
    torch.manual_seed(args.seed)
    layers = []
    for i in range(len(widths) - 1):
        layers.append(nn.Linear(widths[i], widths[i + 1]))
        if i + 2 < len(widths):
            layers.append(nn.ReLU())
    model = nn.Sequential(*layers).eval()
    example = torch.randn(2, widths[0])
    torch.onnx.export(
        model, example, args.out, opset_version=13,
        input_names=["features"], output_names=["scores"],
        dynamic_axes={"features": {0: "batch"}, "scores": {0: "batch"}},
    )


if __name__ == "__main__":
    main()
