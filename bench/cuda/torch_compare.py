#!/usr/bin/env python3
"""Umbra's CUDA kernels against PyTorch (cuBLAS) on the same shapes, in one run, on one GPU.

Runs the standalone benchmark (native/tests/cuda/cuda_bench.cc, built with
-DUMBRA_BUILD_CUDA_TESTS=ON), then times PyTorch on the same shapes with CUDA events, and prints
a Markdown table for bench/RESULTS-gpu.md plus the issue's acceptance checks.

    python3 bench/cuda/torch_compare.py --bench build-tests/umbra_cuda_bench [--quick]

fp32 comparisons set torch.backends.cuda.matmul.allow_tf32 = False so cuBLAS runs true fp32.
"""
import argparse
import json
import subprocess
import sys

import torch


def time_ms(fn, reps):
    fn()
    torch.cuda.synchronize()
    trials = []
    for _ in range(5):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        for _ in range(reps):
            fn()
        b.record()
        b.synchronize()
        trials.append(a.elapsed_time(b) / reps)
    return sorted(trials)[2]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bench", default="build-tests/umbra_cuda_bench")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    out = subprocess.run([args.bench] + (["--quick"] if args.quick else []), check=True, capture_output=True, text=True)
    rows = [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
    if any("skip" in r or "error" in r for r in rows):
        print(out.stdout)
        sys.exit(1)
    device = rows[0]
    print(f"GPU: {device['device']} (cc {device['cc']}, {device['sms']} SMs), torch {torch.__version__}, "
          f"cuBLAS via torch {torch.version.cuda}, runtime {device['runtime']}, driver {device['driver']}\n")
    dev = torch.device("cuda")
    torch.manual_seed(0)
    checks = []

    copy = next(r for r in rows if r.get("op") == "copy")
    n = int(copy["bytes"] / 8)
    src = torch.randn(n, device=dev)
    dst = torch.empty_like(src)
    torch_copy = 2 * n * 4 / time_ms(lambda: dst.copy_(src), 10) / 1e6
    print("| memory-bound | GB/s | vs cudaMemcpy D2D |\n|---|---|---|")
    print(f"| cudaMemcpy D2D | {copy['memcpy_gbps']:.0f} | 1.00 |")
    print(f"| torch copy_ | {torch_copy:.0f} | {torch_copy / copy['memcpy_gbps']:.2f} |")
    for r in rows:
        if r.get("op") in ("copy", "bias_relu", "softmax"):
            name = {"copy": "umbra copy kernel", "bias_relu": "umbra bias+relu (in place)", "softmax": "umbra softmax (1024-wide rows)"}[r["op"]]
            print(f"| {name} | {r['kernel_gbps']:.0f} | {r['kernel_gbps'] / copy['memcpy_gbps']:.2f} |")

    print("\n| op | precision | batch | umbra ms | torch ms | umbra / torch speed |\n|---|---|---|---|---|---|")
    weights = torch.randn(4096, 4096, device=dev)
    bias = torch.randn(4096, device=dev)
    dense_fp32 = {}
    for r in rows:
        if r.get("op") != "gemm":
            continue
        m, p = r["m"], r["precision"]
        x = torch.randn(m, r["k"], device=dev)
        torch.backends.cuda.matmul.allow_tf32 = p == "tf32"
        if p == "bf16":
            xb, wb, bb = x.bfloat16(), weights.bfloat16(), bias.bfloat16()
            fn = lambda: torch.relu(torch.nn.functional.linear(xb, wb, bb))
        else:
            fn = lambda: torch.relu(torch.nn.functional.linear(x, weights, bias))
        t_ms = time_ms(fn, 5 if m >= 1024 else 20)
        if p == "fp32":
            dense_fp32[m] = t_ms
            checks.append((f"fp32 GEMM 4096x4096 batch {m} >= 0.7x cuBLAS", t_ms / r["ms"] >= 0.7, t_ms / r["ms"]))
        print(f"| gemm+bias+relu | {p} | {m} | {r['ms']:.4f} | {t_ms:.4f} | {t_ms / r['ms']:.2f}x |")
    torch.backends.cuda.matmul.allow_tf32 = False
    for r in rows:
        if r.get("op") == "spmm":
            m = r["m"]
            base = dense_fp32.get(m)
            if base is None:
                x = torch.randn(m, 4096, device=dev)
                base = time_ms(lambda: torch.relu(torch.nn.functional.linear(x, weights, bias)), 20)
            checks.append((f"SpMM 90% sparse batch {m} >= 2x cuBLAS dense fp32", base / r["ms"] >= 2, base / r["ms"]))
            print(f"| spmm 90% (CSR) vs dense fp32 | fp32 | {m} | {r['ms']:.4f} | {base:.4f} | {base / r['ms']:.2f}x |")
    prune = next(r for r in rows if r.get("op") == "prune")
    checks.append((f"prune threshold+mask over {prune['weights']:.0e} weights < 2 ms", prune["ms"] < 2, prune["ms"]))
    print(f"\nprune (global threshold + mask, 90%, {prune['weights']} weights): {prune['ms']:.3f} ms")
    print("\n| acceptance | pass | figure |\n|---|---|---|")
    for name, ok, value in checks:
        print(f"| {name} | {'yes' if ok else 'NO'} | {value:.2f} |")


if __name__ == "__main__":
    main()
