#!/usr/bin/python3
"""Export the PyTorch test fixtures: the kind of models a new Umbra user brings.

    /usr/bin/python3 scripts/pytorch/export_fixtures.py

Trains two small digit classifiers briefly on models/digits.csv (seeded, CPU) and exports them
with torch.onnx.export (TorchScript exporter, dynamic batch axis, opset 13) to
test/fixtures/pytorch/{mlp,cnn}.onnx. Beside each it writes a .json with a few test-split
inputs and PyTorch's outputs for them, so tests can compare served outputs with PyTorch's.
Needs only Debian's python3-torch (no onnx Python package).
"""
import csv
import inspect
import json
import os

import torch
from torch import nn

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CSV = os.path.join(ROOT, "models", "digits.csv")
OUT = os.path.join(ROOT, "test", "fixtures", "pytorch")
OPSET = 13
SAMPLES = 6


class Mlp(nn.Module):
    """Linear (Gemm), division by a constant, Relu."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(64, 32)
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x):
        x = x / 16.0
        return self.fc2(torch.relu(self.fc1(x)))


class Cnn(nn.Module):
    """Conv, Relu, MaxPool, Flatten, Linear on 1x8x8 images."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 8, kernel_size=3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(8 * 4 * 4, 10)

    def forward(self, image):
        x = self.pool(torch.relu(self.conv(image / 16.0)))
        return self.fc(self.flatten(x))


def load_digits():
    splits = {"train": ([], []), "test": ([], [])}
    with open(CSV, newline="") as f:
        for row in csv.DictReader(f):
            pixels, labels = splits[row["split"]]
            pixels.append([float(row[f"f{i}"]) for i in range(64)])
            labels.append(int(row["label"]))
    return {k: (torch.tensor(p), torch.tensor(l)) for k, (p, l) in splits.items()}


def train(model, x, y, epochs=15):
    torch.manual_seed(1)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(epochs):
        order = torch.randperm(len(y))
        for start in range(0, len(y), 32):
            idx = order[start:start + 32]
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
    model.eval()


def export(model, name, input_name, x_test, y_test):
    with torch.no_grad():
        accuracy = (model(x_test).argmax(1) == y_test).float().mean().item()
        sample = x_test[:SAMPLES]
        expected = model(sample)
    path = os.path.join(OUT, f"{name}.onnx")
    kwargs = {}
    if "dynamo" in inspect.signature(torch.onnx.export).parameters:
        kwargs["dynamo"] = False  # the TorchScript exporter, same graph shape on every version
    torch.onnx.export(
        model, (sample,), path,
        input_names=[input_name], output_names=["logits"],
        dynamic_axes={input_name: {0: "batch"}, "logits": {0: "batch"}},
        opset_version=OPSET, do_constant_folding=True, **kwargs,
    )
    fixture = {
        "model": f"{name}.onnx",
        "torch_version": torch.__version__,
        "opset": OPSET,
        "test_accuracy": round(accuracy, 4),
        "inputs": {input_name: {"datatype": "FP32", "shape": list(sample.shape), "data": sample.flatten().tolist()}},
        "outputs": {"logits": {"datatype": "FP32", "shape": list(expected.shape), "data": expected.flatten().tolist()}},
        "labels": y_test[:SAMPLES].tolist(),
    }
    with open(os.path.join(OUT, f"{name}.json"), "w") as f:
        json.dump(fixture, f)
        f.write("\n")
    print(f"{path}: test accuracy {accuracy:.4f}")


def main():
    torch.manual_seed(0)
    torch.set_num_threads(1)
    os.makedirs(OUT, exist_ok=True)
    data = load_digits()
    x_train, y_train = data["train"]
    x_test, y_test = data["test"]

    mlp = Mlp()
    train(mlp, x_train, y_train)
    export(mlp, "mlp", "x", x_test, y_test)

    torch.manual_seed(0)
    cnn = Cnn()
    train(cnn, x_train.view(-1, 1, 8, 8), y_train)
    export(cnn, "cnn", "image", x_test.view(-1, 1, 8, 8), y_test)


if __name__ == "__main__":
    main()
