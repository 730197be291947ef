// Atomic loads, stores and fences on memory shared between processes (the shared weight
// file's sequence counters), through the compiler builtins, which Swift cannot call on a raw
// pointer; and the Linux futex calls that sleep on and wake such a word. Header only.
#ifndef LARS_PS_SHARED_MEMORY_H
#define LARS_PS_SHARED_MEMORY_H

#include <stdint.h>
#include <errno.h>
#include <time.h>
#ifdef __linux__
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

/// Reads `*p` with acquire ordering: what was written before the matching release store is
/// visible after this load.
static inline uint64_t lars_load_acquire(const uint64_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }

/// Writes `*p` with release ordering: everything written before is visible to an acquire
/// load that sees `value`.
static inline void lars_store_release(uint64_t *p, uint64_t value) { __atomic_store_n(p, value, __ATOMIC_RELEASE); }

/// Writes `*p` with no ordering of its own (a fence orders it).
static inline void lars_store_relaxed(uint64_t *p, uint64_t value) { __atomic_store_n(p, value, __ATOMIC_RELAXED); }

/// Reads `*p` with no ordering of its own (a fence orders it).
static inline uint64_t lars_load_relaxed(const uint64_t *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }

/// Orders the loads before it against the loads after it (the reader's check after a copy).
static inline void lars_fence_acquire(void) { __atomic_thread_fence(__ATOMIC_ACQUIRE); }

/// Orders the stores before it against the stores after it (the writer's odd counter before
/// the data).
static inline void lars_fence_release(void) { __atomic_thread_fence(__ATOMIC_RELEASE); }

/// Reads the 32-bit `*p` with acquire ordering.
static inline uint32_t lars_load_acquire32(const uint32_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }

/// Adds one to the 32-bit `*p` with release ordering.
static inline void lars_increment_release32(uint32_t *p) { __atomic_fetch_add(p, 1, __ATOMIC_RELEASE); }

/// Sleeps while `*p` holds `expected`, for at most `timeout_ns` nanoseconds or until
/// `lars_futex_wake_all` on the same word, in any process that maps the same file (a Linux
/// futex, not private). May return early for no reason: the caller checks what it waits for.
/// Where the futex call fails for another reason than those (a file system that does not
/// support it, say), it sleeps 0.5 ms instead, so that a caller's loop never spins.
static inline void lars_futex_wait(const uint32_t *p, uint32_t expected, int64_t timeout_ns) {
    struct timespec nap = { 0, 500000 };
#ifdef __linux__
    struct timespec ts = { (time_t)(timeout_ns / 1000000000), (long)(timeout_ns % 1000000000) };
    if (syscall(SYS_futex, p, FUTEX_WAIT, expected, &ts, NULL, 0) == 0) return;
    if (errno == EAGAIN || errno == ETIMEDOUT || errno == EINTR) return;
#else
    (void)p; (void)expected; (void)timeout_ns;
#endif
    nanosleep(&nap, NULL);
}

/// Wakes every thread sleeping in `lars_futex_wait` on `p`.
static inline void lars_futex_wake_all(uint32_t *p) {
#ifdef __linux__
    syscall(SYS_futex, p, FUTEX_WAKE, INT32_MAX, NULL, NULL, 0);
#else
    (void)p;
#endif
}

#endif
