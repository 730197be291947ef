#!/usr/bin/env python3
"""How much of `demo_2w_overhead_share` is the machine: the GEMMs of one demo worker's step,
timed alone and then as two processes at once, with nothing of lars-ps running.

One iteration is the SGEMM work of a two-worker demo step for one worker: the 784-512-512-10
MLP's forward and backward over 4,096 samples in two passes of 2,048 (the worker's default
micro-batch), through numpy's OpenBLAS on one thread per process, as in `lars-worker`. No
ReLU, bias or softmax: only the matrix products, which are over 95% of the worker's FLOPs.

For the pair it prints each process's mean, its standard deviation over its mean (compare
`demo_2w_compute_spread` of `lars-bench worker`) and the peer-wait share that two workers with
these iteration times would have if every step waited for the slower one:
mean(max(a_i, b_i) - (a_i + b_i) / 2) / mean(max(a_i, b_i)), iterations paired by index. That
part of the overhead share belongs to the machine, whatever the protocol does.

    OPENBLAS_NUM_THREADS=1 python3 scripts/probes/gemm-pair-noise.py [seconds per phase]
"""
import json
import os
import statistics as st
import subprocess
import sys
import tempfile
import time


def child(seconds, out):
    import numpy as np

    rng = np.random.default_rng(1)
    f32 = np.float32
    w1 = rng.standard_normal((512, 784), dtype=f32) * f32(0.05)
    w2 = rng.standard_normal((512, 512), dtype=f32) * f32(0.05)
    w3 = rng.standard_normal((10, 512), dtype=f32) * f32(0.05)
    x = rng.standard_normal((2048, 784), dtype=f32)
    dy = rng.standard_normal((2048, 10), dtype=f32)
    times = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        t = time.perf_counter()
        for _ in range(2):  # two passes of 2,048 samples = one worker's share of 8,192
            h1 = x @ w1.T
            h2 = h1 @ w2.T
            _ = h2 @ w3.T
            g3 = dy.T @ h2
            d2 = dy @ w3
            g2 = d2.T @ h1
            d1 = d2 @ w2
            g1 = d1.T @ x
        times.append((time.perf_counter() - t) * 1e3)
        del g1, g2, g3
    with open(out, "w") as f:
        json.dump(times[2:], f)  # the first iterations warm caches and page in


def run(n, seconds, tmp):
    outs = [os.path.join(tmp, f"p{n}-{i}.json") for i in range(n)]
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    procs = [subprocess.Popen([sys.executable, __file__, "--child", str(seconds), o], env=env) for o in outs]
    for p in procs:
        if p.wait() != 0:
            sys.exit(f"gemm-pair-noise: a child exited with {p.returncode}")
    return [json.load(open(o)) for o in outs]


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(float(sys.argv[2]), sys.argv[3])
        return
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 12
    with tempfile.TemporaryDirectory() as tmp:
        print(f"gemm_pair_phase_s={seconds:g}")
        for n in (1, 2):
            series = run(n, seconds, tmp)
            for i, t in enumerate(series):
                print(f"gemm_{n}p_proc{i}_ms_mean={st.mean(t):.1f}")
                print(f"gemm_{n}p_proc{i}_spread={st.pstdev(t) / st.mean(t):.4f}")
            if n == 2:
                a, b = series
                k = min(len(a), len(b))
                slow = [max(a[i], b[i]) for i in range(k)]
                wait = [max(a[i], b[i]) - (a[i] + b[i]) / 2 for i in range(k)]
                print(f"gemm_2p_paired_iterations={k}")
                print(f"gemm_2p_peer_wait_share={st.mean(wait) / st.mean(slow):.4f}")


if __name__ == "__main__":
    main()
