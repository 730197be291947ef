/*
 * How much of `lars-bench optimizer`'s step is the gradient's second read, in C, over the 161
 * ResNet-50 tensors (25,557,032 parameters) in 2 MiB-aligned huge-page arenas, baseline x86-64
 * SSE like the portable Swift build. Three orders of the same work (a ||g||^2 pass per tensor,
 * then the fused w/v update returning ||w'||^2) against the same bound as lars-bench (in-place
 * b += s*c, 12 bytes per element; the floor is 20 bytes per parameter at that bandwidth):
 *
 *   all_first    every tensor's ||g|| pass (smallest first), then every update (largest first):
 *                the order LARSOptimizer uses, so the finite check covers all tensors before any
 *                changes; the largest gradients, read last, are partly still in the L3.
 *   per_tensor_out_of_place_nt
 *                each tensor's ||g|| pass straight before its update while its g is in cache,
 *                w and v written to second buffers with non-temporal stores, so nothing live
 *                changes before every tensor is checked (also legal).
 *   per_tensor_in_place
 *                the same order in place: NOT legal (a NaN in a later tensor would be found after
 *                earlier tensors changed); printed only to show what the second read costs.
 *
 *   cc -O2 -o /tmp/optimizer-order scripts/probes/optimizer-order.c && /tmp/optimizer-order
 *
 * Medians of 21 rounds; rounds alternate between the figures.
 */
#include <emmintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>

#define ROUNDS 21
#define MAX_TENSORS 161

static long sizes[MAX_TENSORS], offsets[MAX_TENSORS];
static int tensors, by_size[MAX_TENSORS];

static void add(long n) { sizes[tensors++] = n; }

/* torchvision ResNet-50, named_parameters() order. */
static void resnet50(void) {
    static const int blocks[4] = {3, 4, 6, 3}, planes[4] = {64, 128, 256, 512};
    add(64 * 3 * 49); add(64); add(64);
    int in = 64;
    for (int s = 0; s < 4; s++)
        for (int b = 0; b < blocks[s]; b++) {
            int p = planes[s];
            add((long)p * in); add(p); add(p);
            add((long)p * p * 9); add(p); add(p);
            add((long)p * 4 * p); add(4 * p); add(4 * p);
            if (b == 0) { add((long)p * 4 * in); add(4 * p); add(4 * p); }
            in = 4 * p;
        }
    add(1000L * 2048); add(1000);
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static float *arena(long n, float scale) {
    void *p = NULL;
    if (posix_memalign(&p, 2 << 20, (size_t)n * 4) != 0) exit(1);
    madvise(p, (size_t)n * 4, MADV_HUGEPAGE);
    float *f = p;
    for (long i = 0; i < n; i++) f[i] = scale * (float)((i % 13) - 6);
    return f;
}

/* Four streams over quarters of x, as OptimizerKernels.sumOfSquares reads large tensors. */
__attribute__((noinline)) static double sum_of_squares(const float *x, long n) {
    __m128 a0 = _mm_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    long q = (n / 4) & ~3L, i = 0;
    if (q >= 1024) {
        for (long j = 0; j < q; j += 4) {
            __m128 y0 = _mm_loadu_ps(x + j), y1 = _mm_loadu_ps(x + q + j);
            __m128 y2 = _mm_loadu_ps(x + 2 * q + j), y3 = _mm_loadu_ps(x + 3 * q + j);
            a0 = _mm_add_ps(a0, _mm_mul_ps(y0, y0));
            a1 = _mm_add_ps(a1, _mm_mul_ps(y1, y1));
            a2 = _mm_add_ps(a2, _mm_mul_ps(y2, y2));
            a3 = _mm_add_ps(a3, _mm_mul_ps(y3, y3));
        }
        i = 4 * q;
    }
    for (; i + 4 <= n; i += 4) {
        __m128 y = _mm_loadu_ps(x + i);
        a0 = _mm_add_ps(a0, _mm_mul_ps(y, y));
    }
    double s = 0;
    for (; i < n; i++) s += (double)x[i] * x[i];
    float t[4];
    _mm_storeu_ps(t, _mm_add_ps(_mm_add_ps(a0, a1), _mm_add_ps(a2, a3)));
    return s + t[0] + t[1] + t[2] + t[3];
}

/* d = g + beta w; v' = m v + a d; w' = w - v' into (wo, vo); returns ||w'||^2. */
#define FUSED_BODY(STORE)                                                                   \
    __m128 beta = _mm_set1_ps(5e-4f), m = _mm_set1_ps(0.9f), a = _mm_set1_ps(1e-3f);        \
    __m128 s = _mm_setzero_ps();                                                            \
    long i = 0;                                                                             \
    for (; i + 4 <= n; i += 4) {                                                            \
        __m128 w0 = _mm_loadu_ps(w + i);                                                    \
        __m128 d = _mm_add_ps(_mm_loadu_ps(g + i), _mm_mul_ps(beta, w0));                   \
        __m128 nv = _mm_add_ps(_mm_mul_ps(m, _mm_loadu_ps(v + i)), _mm_mul_ps(a, d));       \
        __m128 nw = _mm_sub_ps(w0, nv);                                                     \
        STORE(vo + i, nv);                                                                  \
        STORE(wo + i, nw);                                                                  \
        s = _mm_add_ps(s, _mm_mul_ps(nw, nw));                                              \
    }                                                                                       \
    double total = 0;                                                                       \
    for (; i < n; i++) {                                                                    \
        float d = g[i] + 5e-4f * w[i], nv = 0.9f * v[i] + 1e-3f * d;                        \
        vo[i] = nv;                                                                         \
        wo[i] = w[i] - nv;                                                                  \
        total += (double)wo[i] * wo[i];                                                     \
    }                                                                                       \
    float t[4];                                                                             \
    _mm_storeu_ps(t, s);                                                                    \
    return total + t[0] + t[1] + t[2] + t[3];

__attribute__((noinline)) static double fused(const float *w, float *wo, const float *g, const float *v, float *vo, long n) {
    FUSED_BODY(_mm_storeu_ps)
}

/* Offsets are multiples of 16 floats, so every tensor's start is 16-byte aligned. */
__attribute__((noinline)) static double fused_nt(const float *w, float *wo, const float *g, const float *v, float *vo, long n) {
    FUSED_BODY(_mm_stream_ps)
}

__attribute__((noinline)) static void axpy_in_place(float *b, const float *c, long n) {
    __m128 s = _mm_set1_ps(1e-7f);
    for (long i = 0; i + 4 <= n; i += 4)
        _mm_storeu_ps(b + i, _mm_add_ps(_mm_loadu_ps(b + i), _mm_mul_ps(s, _mm_loadu_ps(c + i))));
}

typedef double (*fused_fn)(const float *, float *, const float *, const float *, float *, long);

/* Each tensor, largest first: its ||g|| pass, then `update` from (w, v) into (wo, vo). */
static double per_tensor(const float *w, float *wo, const float *g, const float *v, float *vo, fused_fn update) {
    double sink = 0;
    for (int k = 0; k < tensors; k++) {
        int i = by_size[k];
        long o = offsets[i];
        sink += sum_of_squares(g + o, sizes[i]);
        sink += update(w + o, wo + o, g + o, v + o, vo + o, sizes[i]);
    }
    return sink;
}

static int by_value(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int larger_first(const void *a, const void *b) {
    long x = sizes[*(const int *)a], y = sizes[*(const int *)b];
    return (x < y) - (x > y);
}

int main(void) {
    resnet50();
    long n = 0, params = 0;
    for (int k = 0; k < tensors; k++) {
        offsets[k] = n;
        n += (sizes[k] + 15) & ~15L;
        params += sizes[k];
        by_size[k] = k;
    }
    qsort(by_size, tensors, sizeof(int), larger_first);
    float *w = arena(n, 1e-2f), *g = arena(n, 1e-3f), *v = arena(n, 0), *w2 = arena(n, 0), *v2 = arena(n, 0);
    float *b = arena(n, 0), *c = arena(n, 1);
    volatile double sink = 0;
    double times[4][ROUNDS];
    for (int r = 0; r < ROUNDS; r++) {
        double t = now();
        axpy_in_place(b, c, n);
        times[0][r] = now() - t;

        t = now();
        for (int k = tensors - 1; k >= 0; k--) { int i = by_size[k]; sink += sum_of_squares(g + offsets[i], sizes[i]); }
        for (int k = 0; k < tensors; k++) {
            int i = by_size[k]; long o = offsets[i];
            sink += fused(w + o, w + o, g + o, v + o, v + o, sizes[i]);
        }
        times[1][r] = now() - t;

        /* Out of place: this round's second buffers are the next round's inputs. */
        float *wi = (r & 1) ? w2 : w, *wn = (r & 1) ? w : w2, *vi = (r & 1) ? v2 : v, *vn = (r & 1) ? v : v2;
        t = now();
        sink += per_tensor(wi, wn, g, vi, vn, fused_nt);
        times[2][r] = now() - t;

        t = now();
        sink += per_tensor(wn, wn, g, vn, vn, fused);
        times[3][r] = now() - t;
    }
    double median[4];
    for (int k = 0; k < 4; k++) {
        qsort(times[k], ROUNDS, sizeof(double), by_value);
        median[k] = times[k][ROUNDS / 2];
    }
    double bandwidth = params * 12.0 / median[0], floor_s = params * 20.0 / bandwidth;
    printf("tensors=%d params=%ld\n", tensors, params);
    printf("update_bandwidth_1t_gbs=%.1f floor_1t_ms=%.2f\n", bandwidth / 1e9, floor_s * 1e3);
    static const char *names[4] = {"", "all_first", "per_tensor_out_of_place_nt", "per_tensor_in_place (not legal)"};
    for (int k = 1; k < 4; k++)
        printf("%s: step_ms=%.2f ratio_to_bound=%.3f\n", names[k], median[k] * 1e3, floor_s / median[k]);
    return sink == 12345.0;
}
