#!/usr/bin/env python3
"""Reference vectors for Core's LARS/SGD optimizer and learning-rate schedules.

An independent Float64 implementation of DESIGN.md §3 (the trust ratio with its zero-norm
rule, the adapt mask, both denominators, both momentum placements, nesterov, LARC clipping,
eps, the `sgd` baseline) and of the schedules of §2–3 (linear warm-up then polynomial decay,
constant, step). Weights and momenta are rounded to Float32 after every step, as Core keeps
them; norms, trust ratios and rates stay Float64.

Regenerate the committed fixtures (from the repository root; needs only numpy):

    python3 scripts/lars_reference.py

It writes Tests/CoreTests/Fixtures/lars_cases.json (small layouts: every input stored) and
Tests/CoreTests/Fixtures/lars_large.json (one tensor of 1,000,003 elements whose inputs are
drawn from SplitMix64, which Sources/Core/SplitMix64.swift implements identically). Output is
deterministic: rerunning it must leave `git diff` empty. The tests never run this script.

Float32 values are written as the shortest decimal that reads back, through Float64, as the
same Float32 (checked here for every value), so the tests decode them as Double then Float.
"""

import json
import math
import os
import re
import sys

import numpy as np

F32 = np.float32
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "Tests", "CoreTests", "Fixtures")


# --- SplitMix64, exactly as Sources/Core/SplitMix64.swift -------------------------------------

class SplitMix64:
    """Steele, Lea, Flood 2014. Output k (from 1) of seed s is mix(s + k * golden) mod 2^64."""

    GOLDEN = 0x9E3779B97F4A7C15
    MASK = (1 << 64) - 1

    def __init__(self, seed):
        self.state = seed & self.MASK

    def next_block(self, n):
        """The next n outputs as uint64, vectorized."""
        with np.errstate(over="ignore"):
            k = np.arange(1, n + 1, dtype=np.uint64)
            z = np.uint64(self.state) + k * np.uint64(self.GOLDEN)
            z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
            z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
            z = z ^ (z >> np.uint64(31))
        self.state = (self.state + n * self.GOLDEN) & self.MASK
        return z

    def next_floats(self, n, lo, hi):
        """`nextFloat(in: lo...hi)` n times: the top 24 bits as a fraction of 2^24, scaled in
        Float64 by the Float32 span (hi - lo, subtracted in Float32), rounded once to Float32."""
        unit = (self.next_block(n) >> np.uint64(40)).astype(np.float64) / float(1 << 24)
        lo32 = F32(lo)
        span = float(F32(F32(hi) - lo32))
        return (float(lo32) + unit * span).astype(F32)


def _check_splitmix():
    # Published first outputs for seed 0.
    first = [int(x) for x in SplitMix64(0).next_block(3)]
    assert first == [0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4, 0x06C45D188009454F], [hex(x) for x in first]
    g = SplitMix64(5)
    a = list(g.next_block(2)) + list(g.next_block(3))
    assert [int(x) for x in a] == [int(x) for x in SplitMix64(5).next_block(5)]


# --- schedules ---------------------------------------------------------------------------------

def round_half_away(x):
    """Round to the nearest integer, halves away from zero (Swift .toNearestOrAwayFromZero)."""
    a = abs(x)
    q = math.floor(a)
    if a - q >= 0.5:
        q += 1
    return int(math.copysign(q, x))


SCHEDULE_DEFAULTS = dict(name="polynomial", peak_rate=0.1, warmup_epochs=0.0, power=2.0,
                         end_rate=0.0, milestones=[], factor=0.1)


def schedule(**kw):
    s = dict(SCHEDULE_DEFAULTS)
    s.update(kw)
    return s


def schedule_rates(s, steps_per_epoch, total_steps):
    """gamma_t for t = 0..T-1 and W."""
    W = round_half_away(s["warmup_epochs"] * steps_per_epoch)
    T = total_steps
    assert 0 <= W <= T
    milestones = [round_half_away(m * steps_per_epoch) for m in s["milestones"]]
    peak = s["peak_rate"]
    rates = []
    for t in range(T):
        if t < W:
            r = peak * (t + 1) / W
        elif s["name"] == "constant":
            r = peak
        elif s["name"] == "polynomial":
            r = s["end_rate"] + (peak - s["end_rate"]) * (1 - (t - W) / (T - W)) ** s["power"]
        elif s["name"] == "step":
            r = peak * s["factor"] ** sum(1 for m in milestones if t >= m)
        else:
            raise ValueError(s["name"])
        rates.append(float(r))
    return rates, W


# --- the optimizer -----------------------------------------------------------------------------

OPTIMIZER_DEFAULTS = dict(name="lars", eta=0.001, momentum=0.9, weight_decay=5e-4, eps=0.0,
                          adapt="rank2", denominator="sum_of_norms", momentum_placement="paper",
                          nesterov=False, clip=False)


def optimizer(**kw):
    o = dict(OPTIMIZER_DEFAULTS)
    o.update(kw)
    assert o["name"] in ("lars", "sgd")
    assert o["adapt"] in ("rank2", "all", "pattern")
    assert o["denominator"] in ("sum_of_norms", "norm_of_sum")
    assert o["momentum_placement"] in ("paper", "scaled_grad")
    assert (o["adapt"] == "pattern") == ("adapt_pattern" in o)
    return o


def adapts(o, name, shape):
    if o["adapt"] == "rank2":
        return len(shape) >= 2
    if o["adapt"] == "all":
        return True
    return re.search(o["adapt_pattern"], name) is not None


def reference_step(o, gamma, adapted, w32, g32, v32):
    """One tensor, one step, in Float64. Returns (w', v', trust, effective rate), w' and v'
    rounded to Float32. For `scaled_grad` v is the u of DESIGN.md §3."""
    w = w32.astype(np.float64)
    g = g32.astype(np.float64)
    v = v32.astype(np.float64)
    lars = o["name"] == "lars"
    beta = o["weight_decay"] if adapted else 0.0
    m = o["momentum"]
    d = g + beta * w
    wn = math.sqrt(float(np.dot(w, w)))
    gn = math.sqrt(float(np.dot(g, g)))
    trust = 1.0
    if lars and adapted and wn > 0 and gn > 0:  # zero-norm rule, on the raw gradient
        if o["denominator"] == "sum_of_norms":
            den = gn + beta * wn + o["eps"]
        else:
            den = math.sqrt(float(np.dot(d, d))) + o["eps"]
        trust = o["eta"] * wn / den
    clipped = o["clip"] and lars and adapted
    if o["momentum_placement"] == "paper":
        s = min(trust, gamma) if clipped else gamma * trust
        v_new = m * v + s * d
        w_new = w - (m * v_new + s * d) if o["nesterov"] else w - v_new
        effective = s
    else:
        c = (min(trust / gamma, 1.0) if gamma > 0 else 1.0) if clipped else trust
        v_new = m * v + c * d
        w_new = w - gamma * (m * v_new + c * d) if o["nesterov"] else w - gamma * v_new
        effective = gamma * c
    return w_new.astype(F32), v_new.astype(F32), float(trust), float(effective)


def run(o, s, steps_per_epoch, total_steps, layout, w0, grads, snapshot_steps):
    """Runs every step; returns rates, W, trust and effective rates per step, and (w, v) after
    each step in snapshot_steps."""
    rates, W = schedule_rates(s, steps_per_epoch, total_steps)
    mask = [adapts(o, t["name"], t["shape"]) for t in layout]
    w = [x.copy() for x in w0]
    v = [np.zeros_like(x) for x in w0]
    trusts, effective, snapshots = [], [], {}
    for t, g in enumerate(grads):
        assert all(np.all(np.isfinite(x)) for x in g)
        out = [reference_step(o, rates[t], mask[i], w[i], g[i], v[i]) for i in range(len(layout))]
        w = [x[0] for x in out]
        v = [x[1] for x in out]
        trusts.append([x[2] for x in out])
        effective.append([x[3] for x in out])
        if t in snapshot_steps:
            snapshots[t] = ([x.copy() for x in w], [x.copy() for x in v])
    return rates, W, trusts, effective, snapshots, w, v


# --- encoding ----------------------------------------------------------------------------------

def f32_values(a):
    """Float32 array -> JSON numbers that read back exactly through Float64 then Float32."""
    out = []
    for x in np.asarray(a, dtype=F32).ravel():
        d = float(str(x))  # shortest Float32 decimal, as the nearest Float64
        if F32(d) != x or not math.isfinite(d):
            d = float(x)  # the exact value; always reads back
        assert F32(float(repr(d))) == x
        out.append(d)
    return out


def tensor_layout(layout):
    """The spelling of Core's `Layout` Codable."""
    return {"tensors": [{"name": t["name"], "shape": t["shape"]} for t in layout]}


# --- cases -------------------------------------------------------------------------------------

# A small model: every tensor size is a SIMD tail (1, 5, 7) or body plus tail (35, 54), a rank-1
# norm scale that is not a bias, and a rank-2 tensor of one element.
STANDARD = [
    dict(name="conv1.weight", shape=[3, 2, 3, 3], w=0.2, g=0.02),
    dict(name="bn1.weight", shape=[7], w=None, g=0.01),  # around 1, like a fresh norm scale
    dict(name="bn1.bias", shape=[7], w=0.05, g=0.01),
    dict(name="fc.weight", shape=[5, 7], w=0.3, g=0.05),
    dict(name="fc.bias", shape=[5], w=0.1, g=0.03),
    dict(name="head.weight", shape=[1, 1], w=0.5, g=0.2),
    dict(name="head.bias", shape=[1], w=0.2, g=0.1),
]


def short(x):
    """Float32 values with at most 4 significant digits: exact inputs that keep fixtures small."""
    return np.array([float(f"{v:.4g}") for v in x], dtype=np.float64).astype(F32)


def draw_inputs(rng, spec, steps, zero_init=(), zero_grads=()):
    """Initial weights and per-step gradients, Float32. zero_init: tensor names that start at
    zero; zero_grads: (step, name) pairs (name None: every tensor) whose gradient is zero."""
    w0, grads = [], []
    for t in spec:
        n = int(np.prod(t["shape"]))
        if t["name"] in zero_init:
            w = np.zeros(n)
        elif t["w"] is None:
            w = 1 + 0.1 * rng.standard_normal(n)
        else:
            w = t["w"] * rng.standard_normal(n)
        w0.append(short(w))
    for step in range(steps):
        g = []
        for t in spec:
            n = int(np.prod(t["shape"]))
            # Per-step scale changes so the trust ratio moves between steps.
            x = t["g"] * (0.5 + rng.random()) * rng.standard_normal(n)
            if (step, t["name"]) in zero_grads or (step, None) in zero_grads:
                x = np.zeros(n)
            g.append(short(x))
        grads.append(g)
    return w0, grads


def make_case(name, about, o, s, steps_per_epoch, total_steps, spec=STANDARD, seed=1,
              zero_init=(), zero_grads=(), edit=None, snapshot_steps=None):
    rng = np.random.default_rng(seed)
    w0, grads = draw_inputs(rng, spec, total_steps, zero_init, zero_grads)
    if edit:
        edit(w0, grads)
    layout = [dict(name=t["name"], shape=t["shape"]) for t in spec]
    if snapshot_steps is None:
        snapshot_steps = range(total_steps)
    snapshot_steps = sorted(set(snapshot_steps))
    rates, W, trusts, effective, snaps, _, _ = run(o, s, steps_per_epoch, total_steps, layout, w0,
                                                  grads, snapshot_steps)
    return {
        "name": name,
        "about": about,
        "optimizer": o,
        "schedule": s,
        "steps_per_epoch": steps_per_epoch,
        "total_steps": total_steps,
        "warmup_steps": W,
        "layout": tensor_layout(layout),
        "initial_weights": [f32_values(x) for x in w0],
        "gradients": [[f32_values(x) for x in g] for g in grads],
        "rates": rates,
        "trust_ratios": trusts,
        "effective_rates": effective,
        "snapshots": [
            {"step": t, "weights": [f32_values(x) for x in snaps[t][0]],
             "momenta": [f32_values(x) for x in snaps[t][1]]}
            for t in snapshot_steps
        ],
    }


def small_cases():
    cases = []
    # Multi-step runs across warm-up and polynomial decay: 20 steps, 4 per epoch, W = 5.
    warm = schedule(peak_rate=4.0, warmup_epochs=1.25)
    clip_warm = schedule(peak_rate=0.5, warmup_epochs=1.25)
    long = dict(steps_per_epoch=4, total_steps=20, snapshot_steps=[0, 5, 12, 19])

    def add(name, about, o, s, **kw):
        cases.append(make_case(name, about, o, s, seed=len(cases) + 1, **kw))

    add("paper_warmup_poly", "defaults (paper placement) across warm-up and decay", optimizer(), warm, **long)
    add("scaled_grad_warmup_poly", "scaled_grad: differs from paper once the rate moves",
        optimizer(momentum_placement="scaled_grad"), warm, **long)
    add("paper_nesterov_warmup_poly", "nesterov with paper placement",
        optimizer(nesterov=True), warm, **long)
    add("scaled_grad_nesterov_warmup_poly", "nesterov with scaled_grad placement",
        optimizer(momentum_placement="scaled_grad", nesterov=True), warm, **long)
    # eta 0.02 puts trust ratios (about 0.05 to 1) across the rate (0.1 to 0.5): the clip switches.
    add("paper_clip_warmup_poly", "LARC clip, paper: min(trust, gamma) as trust and rate cross",
        optimizer(eta=0.02, clip=True), clip_warm, **long)
    add("scaled_grad_clip_warmup_poly", "LARC clip, scaled_grad: factor min(trust/gamma, 1)",
        optimizer(eta=0.02, clip=True, momentum_placement="scaled_grad"), clip_warm, **long)
    add("paper_nesterov_clip_warmup_poly", "LARC clip with nesterov, paper",
        optimizer(eta=0.02, clip=True, nesterov=True), clip_warm, **long)
    add("scaled_grad_nesterov_clip_norm_of_sum_eps_all",
        "every option at once: scaled_grad, nesterov, clip, norm_of_sum, eps, adapt all",
        optimizer(eta=0.02, clip=True, nesterov=True, momentum_placement="scaled_grad",
                  denominator="norm_of_sum", eps=0.01, adapt="all"), clip_warm, **long)
    add("norm_of_sum_warmup_poly", "norm_of_sum denominator across warm-up and decay (large decay)",
        optimizer(denominator="norm_of_sum", weight_decay=0.05), warm, **long)
    add("scaled_grad_norm_of_sum_pattern_warmup_poly", "norm_of_sum, scaled_grad, adapt by pattern",
        optimizer(denominator="norm_of_sum", weight_decay=0.05, momentum_placement="scaled_grad",
                  adapt="pattern", adapt_pattern=r"^(fc|bn1)\."), warm, **long)
    step_sched = schedule(name="step", peak_rate=0.1, warmup_epochs=0.5, milestones=[2.0, 3.5], factor=0.1)
    add("sgd_paper_step", "momentum SGD, step schedule (warm-up 2 steps, milestones at steps 8 and 14)",
        optimizer(name="sgd"), step_sched, **long)
    add("sgd_scaled_grad_step", "momentum SGD with scaled_grad: differs from paper after each milestone",
        optimizer(name="sgd", momentum_placement="scaled_grad"), step_sched, **long)
    add("sgd_nesterov_warmup_poly", "momentum SGD with nesterov (paper)",
        optimizer(name="sgd", nesterov=True), schedule(peak_rate=0.1, warmup_epochs=1.25), **long)
    add("sgd_scaled_grad_nesterov_warmup_poly", "momentum SGD with nesterov (scaled_grad)",
        optimizer(name="sgd", nesterov=True, momentum_placement="scaled_grad"),
        schedule(peak_rate=0.1, warmup_epochs=1.25), **long)
    add("fresh_zero_tensors", "a zero weight matrix and zero biases at init: trust 1 on step 0",
        optimizer(), warm, zero_init=("fc.weight", "bn1.bias", "fc.bias", "head.bias"), **long)
    add("fresh_zero_tensors_scaled_grad_nesterov", "zero tensors at init, scaled_grad nesterov",
        optimizer(momentum_placement="scaled_grad", nesterov=True), warm,
        zero_init=("conv1.weight", "bn1.bias", "fc.bias"), **long)
    add("polynomial_end_rate_power1", "polynomial decay to end_rate with p = 1, no warm-up",
        optimizer(), schedule(peak_rate=3.0, power=1.0, end_rate=0.3), **long)

    # Each option alone, 3 steps at a constant rate.
    const = schedule(name="constant", peak_rate=2.0)
    short = dict(steps_per_epoch=3, total_steps=3)
    add("defaults_constant", "defaults at a constant rate", optimizer(), const, **short)
    add("scaled_grad_constant", "scaled_grad at a constant rate: w equals paper's, v = paper's / gamma",
        optimizer(momentum_placement="scaled_grad"), const, **short)
    add("nesterov_constant", "nesterov alone", optimizer(nesterov=True), const, **short)
    add("adapt_all", "every tensor adapts (biases get trust and decay)", optimizer(adapt="all"), const, **short)
    add("adapt_pattern", "adapt by name: rank-1 fc.bias in, rank-4 conv1.weight out",
        optimizer(adapt="pattern", adapt_pattern=r"^fc\."), const, **short)
    add("norm_of_sum", "norm_of_sum alone", optimizer(denominator="norm_of_sum", weight_decay=0.05), const, **short)
    add("eps", "eps comparable to ||g||", optimizer(eps=0.05), const, **short)
    add("clip_constant", "LARC clip alone (rate above every trust ratio)", optimizer(clip=True), const, **short)
    add("clip_scaled_grad_constant", "LARC clip with scaled_grad at a rate below some trust ratios",
        optimizer(clip=True, eta=0.05, momentum_placement="scaled_grad"),
        schedule(name="constant", peak_rate=0.2), **short)
    add("no_momentum_no_decay", "momentum 0 and weight decay 0", optimizer(momentum=0.0, weight_decay=0.0), const, **short)
    add("sgd_constant", "momentum SGD at a constant rate", optimizer(name="sgd"), schedule(name="constant", peak_rate=0.05), **short)
    add("zero_gradient", "zero gradients: fc.weight on step 1, every tensor on step 2 (trust 1, decay only)",
        optimizer(), const, zero_grads=((1, "fc.weight"), (2, None)), **short)
    add("zero_gradient_norm_of_sum", "zero gradients with norm_of_sum: trust 1 although d != 0",
        optimizer(denominator="norm_of_sum", weight_decay=0.05), const,
        zero_grads=((1, "fc.weight"), (2, None)), **short)

    def huge(w0, grads):
        grads[0][3][4] = F32(1e20)  # its square overflows Float32: finite, must be used
        grads[0][3][9] = F32(-3e19)
        grads[1][0][50] = F32(2e19)

    add("huge_finite_gradient", "finite elements whose squares overflow Float32 (1e20, -3e19, 2e19)",
        optimizer(), const, edit=huge, **short)
    add("huge_finite_gradient_norm_of_sum", "huge finite elements with norm_of_sum",
        optimizer(denominator="norm_of_sum"), const, edit=huge, **short)

    one = [dict(name="scale", shape=[1], w=0.7, g=0.05)]
    seven = [dict(name="w", shape=[7], w=0.3, g=0.02)]
    add("size_1", "a single element, adapted", optimizer(adapt="all"), warm, spec=one,
        steps_per_epoch=4, total_steps=8)
    add("size_1_rank2_clip", "a 1x1 weight with clip and nesterov", optimizer(eta=0.05, clip=True, nesterov=True),
        clip_warm, spec=[dict(name="head.weight", shape=[1, 1], w=0.7, g=0.05)], steps_per_epoch=4, total_steps=8)
    add("size_7", "seven elements: a SIMD tail only", optimizer(adapt="all"), warm, spec=seven,
        steps_per_epoch=4, total_steps=8)
    add("size_7_scaled_grad", "seven elements, scaled_grad", optimizer(adapt="all", momentum_placement="scaled_grad"),
        warm, spec=seven, steps_per_epoch=4, total_steps=8)
    return cases


def schedule_cases():
    """Rate tables only: the counting of W and milestones, every schedule shape."""
    table = [
        ("warmup_half_rounds_up", schedule(peak_rate=1.0, warmup_epochs=0.5), 5, 40),       # W = round(2.5) = 3
        ("warmup_1_5_rounds_up", schedule(peak_rate=1.0, warmup_epochs=0.3), 5, 40),        # W = round(1.5) = 2
        ("warmup_rounds_down", schedule(peak_rate=6.4, warmup_epochs=0.45), 5, 40),          # W = round(2.25) = 2
        ("no_warmup_poly", schedule(peak_rate=2.0), 7, 35),
        ("poly_power_1_end", schedule(peak_rate=2.0, warmup_epochs=1.0, power=1.0, end_rate=0.05), 6, 30),
        ("poly_power_0_5", schedule(peak_rate=2.0, warmup_epochs=2.0, power=0.5), 5, 50),
        ("poly_power_3_end", schedule(peak_rate=29.0, warmup_epochs=5.0, power=3.0, end_rate=1e-4), 4, 60),
        ("warmup_is_whole_run", schedule(peak_rate=1.0, warmup_epochs=4.0), 5, 20),
        ("constant", schedule(name="constant", peak_rate=0.3), 5, 20),
        ("constant_warmup", schedule(name="constant", peak_rate=0.3, warmup_epochs=1.5), 5, 20),
        ("step", schedule(name="step", peak_rate=0.1, milestones=[3.0, 6.0, 8.0], factor=0.1), 5, 50),
        ("step_warmup_half_milestones", schedule(name="step", peak_rate=0.4, warmup_epochs=1.0,
                                                 milestones=[2.5, 3.3], factor=0.5), 3, 30),  # 7.5 -> 8, 9.9 -> 10
        ("step_milestone_at_0", schedule(name="step", peak_rate=1.0, milestones=[0.0, 2.0], factor=0.2), 4, 16),
    ]
    out = []
    for name, s, spe, T in table:
        rates, W = schedule_rates(s, spe, T)
        out.append({"name": name, "schedule": s, "steps_per_epoch": spe, "total_steps": T,
                    "warmup_steps": W, "rates": rates})
    return out


# --- the 1,000,003-element case ----------------------------------------------------------------

def large_case():
    seed = 0x1A45
    w_range, g_range = (-0.1, 0.1), (-0.01, 0.01)
    layout = [dict(name="big.weight", shape=[1000003]), dict(name="small.weight", shape=[3, 7])]
    o = optimizer(adapt="all", nesterov=True)
    s = schedule(peak_rate=4.0, warmup_epochs=1.0)
    steps_per_epoch, total_steps = 2, 4
    stride = 1000
    rng = SplitMix64(seed)
    first = [format(int(x), "016x") for x in SplitMix64(seed).next_block(4)]
    w0 = [rng.next_floats(int(np.prod(t["shape"])), *w_range) for t in layout]
    grads = [[rng.next_floats(int(np.prod(t["shape"])), *g_range) for t in layout]
             for _ in range(total_steps)]
    rates, W, trusts, effective, _, w, v = run(o, s, steps_per_epoch, total_steps, layout, w0, grads, [])
    return {
        "name": "size_1000003",
        "about": "a 1,000,003-element tensor (SIMD body, block folds, tail) drawn from SplitMix64",
        "seed": seed,
        "first_draws": first,
        "weight_range": list(w_range),
        "gradient_range": list(g_range),
        "draw_order": "initial weights of each tensor in layout order, then per step the gradient "
                      "of each tensor in layout order; momenta start at zero",
        "optimizer": o,
        "schedule": s,
        "steps_per_epoch": steps_per_epoch,
        "total_steps": total_steps,
        "warmup_steps": W,
        "layout": tensor_layout(layout),
        "rates": rates,
        "trust_ratios": trusts,
        "effective_rates": effective,
        "stride": stride,
        "initial_weights_sampled": [f32_values(x[::stride]) for x in w0],
        "final_weights_sampled": [f32_values(x[::stride]) for x in w],
        "final_momenta_sampled": [f32_values(x[::stride]) for x in v],
        "final_max_abs_weight": [float(np.max(np.abs(x))) for x in w],
        "final_max_abs_momentum": [float(np.max(np.abs(x))) for x in v],
    }


def write(name, obj):
    path = os.path.join(FIXTURES, name)
    text = json.dumps(obj, separators=(",", ":"), allow_nan=False)
    with open(path, "w") as f:
        f.write(text + "\n")
    print(f"{os.path.relpath(path, ROOT)}: {len(text) / 1e3:.0f} kB", file=sys.stderr)


def main():
    _check_splitmix()
    os.makedirs(FIXTURES, exist_ok=True)
    write("lars_cases.json", {
        "generator": "scripts/lars_reference.py",
        "note": "w and v after step t (0-based) in snapshots; v is u for scaled_grad; momenta start at 0",
        "cases": small_cases(),
        "schedules": schedule_cases(),
    })
    write("lars_large.json", large_case())


if __name__ == "__main__":
    main()
