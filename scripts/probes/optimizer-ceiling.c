/*
 * The ceiling of `lars-bench optimizer`'s ratio on this machine, in C: the same passes as the
 * Swift optimizer (a ||g||^2 pass that is also the finite check, then the fused w/v update that
 * returns ||w'||^2), written with baseline x86-64 SSE like the portable Swift build, over the
 * same 25,557,032 parameters in 2 MiB-aligned huge-page arenas, timed against the same bound
 * (in-place b += s*c, 12 bytes per element, 20 bytes per parameter for the floor).
 *
 *   cc -O2 -o /tmp/optimizer-ceiling scripts/probes/optimizer-ceiling.c && /tmp/optimizer-ceiling [elements]
 *
 * It prints the median of 31 rounds of each figure (rounds alternate between the figures, as in
 * lars-bench). If C with the same memory traffic (24 bytes per
 * parameter: g is read twice because every tensor's finite check must come before any update)
 * cannot reach the Swift bar either, the gap is the machine's read bandwidth, not the code.
 */
#include <emmintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#define PARAMS 25557032L
#define ROUNDS 31

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static float *arena(long n) {
    void *p = NULL;
    size_t bytes = (size_t)n * 4;
    if (posix_memalign(&p, 2 << 20, bytes) != 0) exit(1);
    madvise(p, bytes, MADV_HUGEPAGE);
    memset(p, 0, bytes);
    return p;
}

/* Sum of squares as four streams over quarters of x, like OptimizerKernels.sumOfSquares. */
__attribute__((noinline)) static double sum_of_squares(const float *x, long n) {
    long q = (n / 4) & ~7L;
    __m128 a[8];
    for (int j = 0; j < 8; j++) a[j] = _mm_setzero_ps();
    for (long i = 0; i < q; i += 8)
        for (int j = 0; j < 4; j++) {
            __m128 y = _mm_loadu_ps(x + j * q + i), z = _mm_loadu_ps(x + j * q + i + 4);
            a[j] = _mm_add_ps(a[j], _mm_mul_ps(y, y));
            a[4 + j] = _mm_add_ps(a[4 + j], _mm_mul_ps(z, z));
        }
    double s = 0;
    for (long i = 4 * q; i < n; i++) s += (double)x[i] * x[i];
    float t[4];
    for (int j = 0; j < 8; j++) {
        _mm_storeu_ps(t, a[j]);
        s += (double)t[0] + t[1] + t[2] + t[3];
    }
    return s;
}

/* d = g + beta w; v' = m v + a d; w' = w - v'; returns ||w'||^2. */
__attribute__((noinline)) static double fused_update(float *w, const float *g, float *v, long n) {
    __m128 beta = _mm_set1_ps(5e-4f), m = _mm_set1_ps(0.9f), a = _mm_set1_ps(1e-3f);
    __m128 s0 = _mm_setzero_ps(), s1 = s0;
    long i = 0;
    for (; i + 8 <= n; i += 8) {
        __m128 w0 = _mm_loadu_ps(w + i), w1 = _mm_loadu_ps(w + i + 4);
        __m128 d0 = _mm_add_ps(_mm_loadu_ps(g + i), _mm_mul_ps(beta, w0));
        __m128 d1 = _mm_add_ps(_mm_loadu_ps(g + i + 4), _mm_mul_ps(beta, w1));
        __m128 v0 = _mm_add_ps(_mm_mul_ps(m, _mm_loadu_ps(v + i)), _mm_mul_ps(a, d0));
        __m128 v1 = _mm_add_ps(_mm_mul_ps(m, _mm_loadu_ps(v + i + 4)), _mm_mul_ps(a, d1));
        __m128 n0 = _mm_sub_ps(w0, v0), n1 = _mm_sub_ps(w1, v1);
        _mm_storeu_ps(v + i, v0);
        _mm_storeu_ps(v + i + 4, v1);
        _mm_storeu_ps(w + i, n0);
        _mm_storeu_ps(w + i + 4, n1);
        s0 = _mm_add_ps(s0, _mm_mul_ps(n0, n0));
        s1 = _mm_add_ps(s1, _mm_mul_ps(n1, n1));
    }
    double s = 0;
    for (; i < n; i++) {
        float d = g[i] + 5e-4f * w[i], nv = 0.9f * v[i] + 1e-3f * d;
        v[i] = nv;
        w[i] -= nv;
        s += (double)w[i] * w[i];
    }
    float t[4];
    _mm_storeu_ps(t, _mm_add_ps(s0, s1));
    return s + t[0] + t[1] + t[2] + t[3];
}

__attribute__((noinline)) static void axpy_in_place(float *b, const float *c, long n) {
    __m128 s = _mm_set1_ps(1e-7f);
    long i = 0;
    /* 32 floats per iteration, as lars-bench's SIMD16 x 2 BandwidthKernel. */
    for (; i + 32 <= n; i += 32)
        for (int k = 0; k < 32; k += 4)
            _mm_storeu_ps(b + i + k, _mm_add_ps(_mm_loadu_ps(b + i + k), _mm_mul_ps(s, _mm_loadu_ps(c + i + k))));
    for (; i < n; i++) b[i] += 1e-7f * c[i];
}

static int by_value(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    /* The element count may be given as the first argument (default: the ResNet-50 set). */
    long n = argc > 1 ? atol(argv[1]) : PARAMS;
    if (n < 64) n = PARAMS;
    float *w = arena(n), *g = arena(n), *v = arena(n), *b = arena(n), *c = arena(n);
    for (long i = 0; i < n; i++) {
        w[i] = 0.01f * (float)((i % 13) - 6);
        g[i] = 1e-3f * (float)((i % 7) - 3);
    }
    double times[4][ROUNDS], best[4];
    volatile double sink = 0;
    for (int r = 0; r < ROUNDS; r++) {
        double t;
        t = now(); axpy_in_place(b, c, n); times[0][r] = now() - t;
        t = now(); sink += sum_of_squares(g, n); times[1][r] = now() - t;
        t = now(); sink += fused_update(w, g, v, n); times[2][r] = now() - t;
        t = now(); sink += sum_of_squares(g, n); sink += fused_update(w, g, v, n); times[3][r] = now() - t;
    }
    for (int k = 0; k < 4; k++) {
        qsort(times[k], ROUNDS, sizeof(double), by_value);
        best[k] = times[k][ROUNDS / 2];
    }
    double bw = n * 12.0 / best[0], floor_s = n * 20.0 / bw;
    printf("update_bandwidth_1t_gbs=%.1f\n", bw / 1e9);
    printf("read_bandwidth_1t_gbs=%.1f\n", n * 4.0 / best[1] / 1e9);
    printf("floor_1t_ms=%.2f\n", floor_s * 1e3);
    printf("gradient_pass_ms=%.2f\n", best[1] * 1e3);
    printf("fused_update_ms=%.2f ratio_to_bound=%.3f\n", best[2] * 1e3, floor_s / best[2]);
    printf("step_ms=%.2f ratio_to_bound=%.3f\n", best[3] * 1e3, floor_s / best[3]);
    return sink == 12345.0;
}
