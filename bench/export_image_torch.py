"""Exports a small PyTorch image classifier the way a user would (torch.onnx.export, dynamic batch
axis), for bench/shared-memory.mjs: its input is a 3x224x224 FP32 image (602,112 bytes), the size
of tensor shared memory is for, and its compute is light, so the transport's share shows.

    /usr/bin/python3 bench/export_image_torch.py OUT.onnx [--seed 7]

8x8 average pooling, a 3x3 convolution to 16 channels, ReLU, global pooling and a linear layer to
10 scores (PyTorch's default initialisation, seeded), opset 13. Needs Debian's python3-torch.
"""
import argparse

import torch
from torch import nn


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    model = nn.Sequential(
        nn.AvgPool2d(8),
        nn.Conv2d(3, 16, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 10),
    ).eval()
    example = torch.randn(2, 3, 224, 224)
    torch.onnx.export(
        model, example, args.out, opset_version=13,
        input_names=["image"], output_names=["scores"],
        dynamic_axes={"image": {0: "batch"}, "scores": {0: "batch"}},
    )


if __name__ == "__main__":
    main()
