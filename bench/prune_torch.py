"""Peer baseline for bench/prune.mjs: torch.nn.utils.prune.global_unstructured (L1 magnitude)
over the same weights (same generator, same seed) as the Umbra run. Prints one JSON object.

Run with Debian's python3-torch: /usr/bin/python3 bench/prune_torch.py --layers 6 --size 4096
"""
import argparse
import json
import statistics
import time

import numpy as np
import torch
from torch import nn
from torch.nn.utils import prune


def layer_values(layer: int, count: int, seed: int) -> np.ndarray:
    """mulberry32 evaluated at global index layer*count+i (vectorised; bench/prune.mjs does the same)."""
    with np.errstate(over="ignore"):
        index = np.arange(layer * count + 1, (layer + 1) * count + 1, dtype=np.uint64).astype(np.uint32)
        t = index * np.uint32(0x6D2B79F5) + np.uint32(seed)
        t = (t ^ (t >> np.uint32(15))) * (t | np.uint32(1))
        t ^= t + (t ^ (t >> np.uint32(7))) * (t | np.uint32(61))
        t = t ^ (t >> np.uint32(14))
    return (t.astype(np.float64) / 4294967296.0 * 2.0 - 1.0).astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--sparsity", type=float, default=0.9)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    count = args.size * args.size
    modules = []
    originals = []
    for layer in range(args.layers):
        linear = nn.Linear(args.size, args.size, bias=False)
        values = torch.from_numpy(layer_values(layer, count, args.seed)).view(args.size, args.size)
        with torch.no_grad():
            linear.weight.copy_(values)
        modules.append(linear)
        originals.append(values)
    params = [(m, "weight") for m in modules]

    times = []
    cpu = []
    pruned = 0
    for _ in range(args.repeats):
        for m, original in zip(modules, originals):
            if prune.is_pruned(m):
                prune.remove(m, "weight")
            with torch.no_grad():
                m.weight.copy_(original)
        start = time.perf_counter()
        cpu_start = time.process_time()
        prune.global_unstructured(params, pruning_method=prune.L1Unstructured, amount=args.sparsity)
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - cpu_start)
        pruned = int(sum(int((m.weight_mask == 0).sum()) for m in modules))

    print(json.dumps({
        "peer": "torch.nn.utils.prune.global_unstructured (L1Unstructured)",
        "torch": torch.__version__,
        "threads": args.threads,
        "weights": args.layers * count,
        "pruned": pruned,
        "times_s": times,
        "median_s": statistics.median(times),
        "cpu_s": cpu,
        "median_cpu_s": statistics.median(cpu),
        "checksum_first_layer": float(originals[0].double().abs().sum()),
    }))


if __name__ == "__main__":
    main()
