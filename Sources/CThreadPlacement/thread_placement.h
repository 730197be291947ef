// Moving one thread of this process to the core the caller runs on, and giving it back the
// cores it had, through the raw Linux system calls (no _GNU_SOURCE needed). The worker's
// training thread uses it to have its batch gatherer finish next to it while it waits.
// Header only; nothing to link.
#ifndef LARS_PS_THREAD_PLACEMENT_H
#define LARS_PS_THREAD_PLACEMENT_H

#ifdef __linux__
#include <sys/syscall.h>
#include <unistd.h>
#endif

/// A set of cores (up to 1024), as the kernel reads and writes it.
typedef struct {
    unsigned long bits[1024 / (8 * sizeof(unsigned long))];
    /// Bytes of `bits` the kernel uses; 0 when the set could not be read.
    long bytes;
} lars_core_set;

/// The calling thread's kernel id, or -1 where there is none to give.
static inline int lars_thread_id(void) {
#ifdef __linux__
    return (int)syscall(SYS_gettid);
#else
    return -1;
#endif
}

/// Reads the cores thread `tid` (0: the caller) may run on into `set`; 0 on success.
static inline int lars_get_cores(int tid, lars_core_set *set) {
#ifdef __linux__
    long bytes = syscall(SYS_sched_getaffinity, tid, sizeof set->bits, set->bits);
    set->bytes = bytes > 0 ? bytes : 0;
    return bytes > 0 ? 0 : -1;
#else
    (void)tid;
    set->bytes = 0;
    return -1;
#endif
}

/// Lets thread `tid` run on the cores of `set` (read by `lars_get_cores`); 0 on success.
static inline int lars_set_cores(int tid, const lars_core_set *set) {
#ifdef __linux__
    if (tid < 0 || set->bytes <= 0) return -1;
    return (int)syscall(SYS_sched_setaffinity, tid, (unsigned long)set->bytes, set->bits);
#else
    (void)tid; (void)set;
    return -1;
#endif
}

/// Restricts thread `tid` to the core the caller is running on; 0 on success.
static inline int lars_move_thread_here(int tid) {
#ifdef __linux__
    unsigned cpu = 0;
    if (tid < 0 || syscall(SYS_getcpu, &cpu, (void *)0, (void *)0) != 0 || cpu >= 1024) return -1;
    unsigned long mask[1024 / (8 * sizeof(unsigned long))] = {0};
    mask[cpu / (8 * sizeof(unsigned long))] = 1UL << (cpu % (8 * sizeof(unsigned long)));
    return (int)syscall(SYS_sched_setaffinity, tid, sizeof mask, mask);
#else
    (void)tid;
    return -1;
#endif
}

#endif
