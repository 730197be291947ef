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
#include <fcntl.h>
#endif

// The memfd and seal constants (linux/memfd.h, linux/fcntl.h), for C libraries that do not
// define them without _GNU_SOURCE.
#define LARS_MFD_CLOEXEC 0x0001U
#define LARS_MFD_ALLOW_SEALING 0x0002U
#define LARS_F_ADD_SEALS 1033
#define LARS_F_GET_SEALS 1034
#define LARS_F_SEAL_SEAL 0x0001
#define LARS_F_SEAL_SHRINK 0x0002
#define LARS_F_SEAL_GROW 0x0004

/// Creates an anonymous shared-memory file (a Linux memfd) of `size` bytes with all its pages
/// reserved, sealed so that its size can never change again (F_SEAL_SHRINK, F_SEAL_GROW,
/// F_SEAL_SEAL): no process can cut it short, so a mapping of it never faults with SIGBUS.
/// Returns the descriptor (close-on-exec), or -1 with errno set.
static inline int lars_memfd_create_sealed(const char *name, int64_t size) {
#if defined(__linux__) && defined(SYS_memfd_create)
    int fd = (int)syscall(SYS_memfd_create, name, LARS_MFD_CLOEXEC | LARS_MFD_ALLOW_SEALING);
    if (fd < 0) return -1;
    int reserved = ftruncate(fd, (off_t)size) == 0 ? posix_fallocate(fd, 0, (off_t)size) : errno;
    if (reserved != 0 || fcntl(fd, LARS_F_ADD_SEALS, LARS_F_SEAL_SHRINK | LARS_F_SEAL_GROW | LARS_F_SEAL_SEAL) != 0) {
        int saved = reserved != 0 ? reserved : errno;
        close(fd);
        errno = saved;
        return -1;
    }
    return fd;
#else
    (void)name; (void)size;
    errno = ENOSYS;
    return -1;
#endif
}

/// Whether the file open as `fd` is sealed against shrinking (a memfd with F_SEAL_SHRINK), so
/// that a mapping of it can never fault with SIGBUS. False for every other kind of file.
static inline int lars_is_sealed_against_shrinking(int fd) {
#ifdef __linux__
    int seals = fcntl(fd, LARS_F_GET_SEALS);
    return seals >= 0 && (seals & LARS_F_SEAL_SHRINK) != 0;
#else
    (void)fd;
    return 0;
#endif
}

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
