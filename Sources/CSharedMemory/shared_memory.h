// Atomic loads, stores and fences on memory shared between processes (the shared weight
// file's sequence counters), through the compiler builtins, which Swift cannot call on a raw
// pointer. Header only; nothing to link.
#ifndef LARS_PS_SHARED_MEMORY_H
#define LARS_PS_SHARED_MEMORY_H

#include <stdint.h>

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

#endif
