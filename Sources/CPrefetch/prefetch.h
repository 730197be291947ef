// Cache control for Core's passes: software prefetch and streaming (non-temporal) stores, through
// the compiler builtins, which Swift cannot call directly. Header only; nothing to link.
#ifndef LARS_PS_PREFETCH_H
#define LARS_PS_PREFETCH_H

/// Asks for the cache line at `p` ahead of a sequential read (no temporal-locality hint: the
/// line is read once). Never faults, whatever `p` is.
static inline void lars_prefetch_read(const void *p) { __builtin_prefetch(p, 0, 0); }

/// Copies `bytes` bytes from `src` to `dst` (not overlapping), writing `dst` with
/// non-temporal stores where it is 16-byte aligned: the lines go to memory without being read
/// first or kept in the caches. For data written now and read much later (a worker's next
/// batch). The stores are weakly ordered: call `lars_store_fence` before another thread may
/// read `dst`.
static inline void lars_stream_copy(void *dst, const void *src, unsigned long bytes) {
#if defined(__x86_64__) && defined(__SSE2__)
    typedef float f4 __attribute__((vector_size(16)));
    typedef float f4u __attribute__((vector_size(16), aligned(1)));
    char *d = (char *)dst;
    const char *s = (const char *)src;
    while (bytes > 0 && ((unsigned long)d & 15) != 0) { *d++ = *s++; bytes--; }
    for (; bytes >= 64; bytes -= 64, d += 64, s += 64) {
        f4 a = *(const f4u *)s, b = *(const f4u *)(s + 16), c = *(const f4u *)(s + 32), e = *(const f4u *)(s + 48);
        __builtin_nontemporal_store(a, (f4 *)d);
        __builtin_nontemporal_store(b, (f4 *)(d + 16));
        __builtin_nontemporal_store(c, (f4 *)(d + 32));
        __builtin_nontemporal_store(e, (f4 *)(d + 48));
    }
    while (bytes > 0) { *d++ = *s++; bytes--; }
#else
    __builtin_memcpy(dst, src, bytes);
#endif
}

/// Orders the non-temporal stores before it ahead of every store after it.
static inline void lars_store_fence(void) {
#if defined(__x86_64__)
    __builtin_ia32_sfence();
#else
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
#endif
}

#endif
