#!/usr/bin/python3
"""Export the PyTorch fixtures whose inputs are not a row of floats.

    /usr/bin/python3 scripts/pytorch/export_shape_fixtures.py

Writes to test/fixtures/pytorch/ (TorchScript exporter, opset 13, seeded, untrained weights):
- text.onnx: token ids (INT64 [batch, length], both free) -> Embedding(100, 12), mean over the
  sequence, Linear(12, 3): the shape of a bag-of-words text classifier;
- fixed.onnx: x (FP32 [3, 4], no batch dimension) -> the column sums of x @ x^T, shape [1, 3].
Beside each, a .json with sample inputs and PyTorch's outputs for them, as export_fixtures.py
writes for the digit models. Needs only Debian's python3-torch.
"""
import inspect
import json
import os

import torch
from torch import nn

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "test", "fixtures", "pytorch")
OPSET = 13


class Text(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(100, 12)
        self.fc = nn.Linear(12, 3)

    def forward(self, ids):
        return self.fc(self.embed(ids).mean(1))


class Fixed(nn.Module):
    def forward(self, x):
        return (x @ x.T).sum(0, keepdim=True)


def tensor_json(t, datatype):
    return {"datatype": datatype, "shape": list(t.shape), "data": t.flatten().tolist()}


def export(model, name, sample, input_name, datatype, output_name, dynamic_axes):
    model.eval()
    with torch.no_grad():
        expected = model(sample)
    path = os.path.join(OUT, f"{name}.onnx")
    kwargs = {}
    if "dynamo" in inspect.signature(torch.onnx.export).parameters:
        kwargs["dynamo"] = False
    torch.onnx.export(
        model, (sample,), path, input_names=[input_name], output_names=[output_name],
        dynamic_axes=dynamic_axes, opset_version=OPSET, do_constant_folding=True, **kwargs,
    )
    fixture = {
        "model": f"{name}.onnx",
        "torch_version": torch.__version__,
        "opset": OPSET,
        "inputs": {input_name: tensor_json(sample, datatype)},
        "outputs": {output_name: tensor_json(expected, "FP32")},
    }
    with open(os.path.join(OUT, f"{name}.json"), "w") as f:
        json.dump(fixture, f)
        f.write("\n")
    print(path)


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(3)
    torch.set_num_threads(1)
    ids = torch.randint(0, 100, (4, 6), dtype=torch.int64)
    export(Text(), "text", ids, "ids", "INT64", "logits", {"ids": {0: "batch", 1: "length"}, "logits": {0: "batch"}})
    x = torch.randn(3, 4)
    export(Fixed(), "fixed", x, "x", "FP32", "y", None)


if __name__ == "__main__":
    main()
