#!/usr/bin/env python3
"""Umbra's CUDA kernels against PyTorch (cuBLAS) on the same shapes, in one run, on one GPU.

Runs the standalone benchmark (native/tests/cuda/cuda_bench.cc, built with
-DUMBRA_BUILD_CUDA_TESTS=ON), then times PyTorch on the same shapes with CUDA events, and prints
a Markdown table for bench/RESULTS-gpu.md plus the issue's acceptance checks.

    python3 bench/cuda/torch_compare.py --bench build-tests/umbra_cuda_bench [--quick]

fp32 comparisons set torch.backends.cuda.matmul.allow_tf32 = False so cuBLAS runs true fp32.
GEMM rows come twice where the bench found cuBLASLt: Umbra's own kernels ("own") and the dense path
through cuBLASLt ("cublaslt"). Unless UMBRA_CUBLASLT_PATH is set, the bench is pointed at the
cuBLASLt that this PyTorch loads (its nvidia-cublas wheel), so both sides use the same library.
The torch side of a GEMM row is eager `torch.relu(F.linear(x, w, b))`: cuBLAS's GEMM with the bias,
then a second kernel for the relu into a fresh tensor, where Umbra's GEMM fuses bias and relu. Its
"cuBLAS" figures are therefore cuBLAS plus one elementwise pass, not cuBLAS alone.
"""
import argparse
import glob
import json
import os
import site
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


def torch_cublaslt():
    """The libcublasLt this PyTorch ships with (its nvidia wheel, or torch/lib), or None."""
    roots = site.getsitepackages() + [site.getusersitepackages(), os.path.dirname(os.path.dirname(torch.__file__))]
    for root in roots:
        for pattern in ("nvidia/*/lib/libcublasLt.so*", "torch/lib/libcublasLt*.so*"):
            found = sorted(glob.glob(os.path.join(root, pattern)), reverse=True)
            if found:
                return found[0]
    return None


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bench", default="build-tests/umbra_cuda_bench")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    env = dict(os.environ)
    if "UMBRA_CUBLASLT_PATH" not in env and torch_cublaslt():
        env["UMBRA_CUBLASLT_PATH"] = torch_cublaslt()
    out = subprocess.run([args.bench] + (["--quick"] if args.quick else []), check=True, capture_output=True, text=True, env=env)
    rows = [json.loads(line) for line in out.stdout.splitlines() if line.strip()]
    if any("skip" in r or "error" in r for r in rows):
        print(out.stdout)
        sys.exit(1)
    device = rows[0]
    print(f"GPU: {device['device']} (cc {device['cc']}, {device['sms']} SMs), torch {torch.__version__}, "
          f"cuBLAS via torch {torch.version.cuda}, runtime {device['runtime']}, driver {device['driver']}, "
          f"Umbra's cuBLASLt: {device.get('cublaslt') or 'none'} ({device.get('cublaslt_version', 0)})\n")
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

    print("\n| op | umbra path | precision | batch | umbra ms | torch ms (F.linear + relu, 2 kernels) | umbra / torch speed |\n|---|---|---|---|---|---|---|")
    weights = torch.randn(4096, 4096, device=dev)
    bias = torch.randn(4096, device=dev)
    dense_fp32 = {}
    torch_ms = {}
    for r in rows:
        if r.get("op") != "gemm":
            continue
        m, p, impl = r["m"], r["precision"], r.get("impl", "own")
        if (p, m) not in torch_ms:
            x = torch.randn(m, r["k"], device=dev)
            torch.backends.cuda.matmul.allow_tf32 = p == "tf32"
            if p == "bf16":
                xb, wb, bb = x.bfloat16(), weights.bfloat16(), bias.bfloat16()
                fn = lambda: torch.relu(torch.nn.functional.linear(xb, wb, bb))
            else:
                fn = lambda: torch.relu(torch.nn.functional.linear(x, weights, bias))
            torch_ms[(p, m)] = time_ms(fn, 5 if m >= 1024 else 20)
        t_ms = torch_ms[(p, m)]
        if p == "fp32" and impl == "own":
            dense_fp32[m] = t_ms
            checks.append((f"own fp32 GEMM 4096x4096 batch {m}, the fallback (0.67-0.92x cuBLAS before)", None, t_ms / r["ms"]))
        if p == "fp32" and impl == "cublaslt":
            checks.append((f"fp32 GEMM batch {m} through cuBLASLt >= 0.95x cuBLAS", t_ms / r["ms"] >= 0.95, t_ms / r["ms"]))
        if p == "bf16":
            checks.append((f"bf16 GEMM batch {m} >= 0.9x cuBLAS bf16", t_ms / r["ms"] >= 0.9, t_ms / r["ms"]))
        print(f"| gemm+bias+relu | {impl} | {p} | {m} | {r['ms']:.4f} | {t_ms:.4f} | {t_ms / r['ms']:.2f}x |")
    torch.backends.cuda.matmul.allow_tf32 = False
    for r in rows:
        if r.get("op") == "spmm":
            m = r["m"]
            base = dense_fp32.get(m)
            if base is None:
                x = torch.randn(m, 4096, device=dev)
                base = time_ms(lambda: torch.relu(torch.nn.functional.linear(x, weights, bias)), 20)
            checks.append((f"SpMM 90% sparse batch {m} >= 2x cuBLAS dense fp32", base / r["ms"] >= 2, base / r["ms"]))
            print(f"| spmm 90% (CSR) vs dense fp32 | own | fp32 | {m} | {r['ms']:.4f} | {base:.4f} | {base / r['ms']:.2f}x |")
    prune = next(r for r in rows if r.get("op") == "prune")
    checks.append((f"prune threshold+mask over {prune['weights']:.0e} weights < 2 ms", prune["ms"] < 2, prune["ms"]))
    print(f"\nprune (global threshold + mask, 90%, {prune['weights']} weights): {prune['ms']:.3f} ms")
    print("\n| acceptance | pass | figure |\n|---|---|---|")
    for name, ok, value in checks:
        print(f"| {name} | {'-' if ok is None else 'yes' if ok else 'NO'} | {value:.2f} |")


if __name__ == "__main__":
    main()
