// Software prefetch for Core's optimizer passes: the compiler builtin, which Swift cannot
// call directly. Header only; nothing to link.
#ifndef LARS_PS_PREFETCH_H
#define LARS_PS_PREFETCH_H

/// Asks for the cache line at `p` ahead of a sequential read (no temporal-locality hint: the
/// line is read once). Never faults, whatever `p` is.
static inline void lars_prefetch_read(const void *p) { __builtin_prefetch(p, 0, 0); }

#endif
