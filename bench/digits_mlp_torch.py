#!/usr/bin/python3
"""Train a mid-size PyTorch MLP on a digits CSV and export it to ONNX, as a user would bring it.

    /usr/bin/python3 bench/digits_mlp_torch.py DIGITS.csv OUT.onnx [--hidden 1024,1024] [--epochs 30]

Columns f0..f63 are the features, `label` the class, `split` train/test (the layout of the data
the bundled digits example was built from). nn.Sequential of Linear + ReLU layers of the given
hidden widths and a Linear to 10 classes, trained with Adam on the train split (seeded), its test
accuracy printed, exported with torch.onnx.export (TorchScript exporter, opset 13, dynamic batch
axis). Unlike bench/native_torch_stack.py its weights are trained, so magnitude pruning meets the
uneven weight distributions of a real model (a global threshold prunes some layers far more than
others).
"""
import argparse
import csv

import torch
from torch import nn


def load(path: str):
    train_x, train_y, test_x, test_y = [], [], [], []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            features = [float(row[f"f{i}"]) / 16.0 for i in range(64)]
            label = int(row["label"])
            if row["split"] == "train":
                train_x.append(features)
                train_y.append(label)
            else:
                test_x.append(features)
                test_y.append(label)
    return (torch.tensor(train_x), torch.tensor(train_y), torch.tensor(test_x), torch.tensor(test_y))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("data")
    parser.add_argument("out")
    parser.add_argument("--hidden", default="1024,1024")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    train_x, train_y, test_x, test_y = load(args.data)
    widths = [64] + [int(w) for w in args.hidden.split(",")]
    modules = []
    for fan_in, fan_out in zip(widths, widths[1:]):
        modules += [nn.Linear(fan_in, fan_out), nn.ReLU()]
    modules.append(nn.Linear(widths[-1], 10))
    model = nn.Sequential(*modules)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    for _ in range(args.epochs):
        order = torch.randperm(len(train_x))
        for start in range(0, len(order), 64):
            idx = order[start:start + 64]
            optimiser.zero_grad()
            loss_fn(model(train_x[idx]), train_y[idx]).backward()
            optimiser.step()
    model.eval()
    with torch.no_grad():
        accuracy = (model(test_x).argmax(1) == test_y).float().mean().item()
    print(f"{len(train_x)} train rows, {len(test_x)} test rows, test accuracy {accuracy:.4f}")
    torch.onnx.export(
        model, test_x[:1], args.out, opset_version=13, input_names=["x"], output_names=["y"],
        dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}},
    )


if __name__ == "__main__":
    main()
