// Moving one thread of this process to the core the caller runs on, and letting it run
// anywhere again, through the raw Linux system calls (no _GNU_SOURCE needed). The worker's
// training thread uses it to have its batch gatherer finish next to it while it waits.
// Header only; nothing to link.
#ifndef LARS_PS_THREAD_PLACEMENT_H
#define LARS_PS_THREAD_PLACEMENT_H

#ifdef __linux__
#include <sys/syscall.h>
#include <unistd.h>
#endif

/// The calling thread's kernel id, or -1 where there is none to give.
static inline int lars_thread_id(void) {
#ifdef __linux__
    return (int)syscall(SYS_gettid);
#else
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

/// Gives thread `tid` the cores the caller may run on; 0 on success.
static inline int lars_let_thread_run_anywhere(int tid) {
#ifdef __linux__
    unsigned long mask[1024 / (8 * sizeof(unsigned long))] = {0};
    long bytes = syscall(SYS_sched_getaffinity, 0, sizeof mask, mask);
    if (tid < 0 || bytes <= 0) return -1;
    return (int)syscall(SYS_sched_setaffinity, tid, (unsigned long)bytes, mask);
#else
    (void)tid;
    return -1;
#endif
}

#endif
