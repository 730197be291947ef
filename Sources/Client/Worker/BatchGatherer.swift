import CThreadPlacement
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// One thread that copies training samples into batch buffers at the lowest nice level (19): it
/// runs beside the forward/backward when a core is free, or while this worker waits for a slower
/// peer or for the server, and otherwise takes a small share of a busy core (a weight of 15
/// against a training thread's 1024). So the copy leaves the step's critical path, where it
/// used to compete with the push and the server's update for the two cores, and still ends
/// within the step when no core is ever free.
///
/// (It was `SCHED_IDLE` until session 10. With two workers on two cores that starved it in the
/// steps where both workers finished together, an 8 ms stall at the next step; and a
/// `SCHED_IDLE` thread on one core kept the server's event loop, preempted on the other, from
/// moving to it for several milliseconds. docs/performance.md, worker, session 10.)
///
/// The training thread shares the copy (`Trainer`'s row blocks) and waits only for the block
/// the gatherer is in, bounded (`wait(until:upTo:)`); a caller that gives up calls `abandon()`
/// and copies the batch itself into another buffer. A job checks `shouldStop` between blocks
/// and returns early once abandoned.
final class BatchGatherer: @unchecked Sendable {
    /// A copy job; it calls the argument now and then and returns early when it says true.
    typealias Job = @Sendable (_ shouldStop: () -> Bool) -> Void

    private let condition = NSCondition()
    /// The job submitted and not started yet, and when it may start.
    private var job: Job?
    private var jobStart = ContinuousClock.now
    /// Whether the thread is running a job.
    private var running = false
    private var working: Bool { running || job != nil }
    private var abandoned = false
    private var stopping = false
    /// The gatherer thread's kernel id and the cores it may run on (set before `init`
    /// returns; no cores read: never moved).
    private var threadID: Int32 = -1
    private var cores = lars_core_set()

    init() {
        let ready = DispatchSemaphore(value: 0)
        let thread = Thread { [self] in
            #if os(Linux)
            // Named for top and ps (Thread.name does not reach the OS here, and Glibc's Swift
            // module lacks pthread_setname_np).
            if let f = fopen("/proc/thread-self/comm", "w") {
                fputs("batch-gatherer", f)
                fclose(f)
            }
            #endif
            Self.lowerOwnPriority()
            threadID = lars_thread_id()
            _ = lars_get_cores(0, &cores)
            ready.signal()
            serve()
        }
        thread.start()
        ready.wait()
    }

    /// Whether no job is queued or running (an abandoned one included).
    var isIdle: Bool {
        condition.withLock { !working }
    }

    /// Whether a job may be submitted: none is waiting to start. (One may be running: the caller
    /// knows when that one has nothing left to write, see `Trainer.prefetch`.)
    var canSubmit: Bool {
        condition.withLock { job == nil }
    }

    /// Starts `work` on the gatherer thread, after the job it is running, if any, and not before
    /// `delay` has passed. The job counts as running meanwhile; `abandon`, `stop` or the next
    /// `submit` cut the wait short. No other job may be waiting to start.
    func submit(after delay: Duration = .zero, _ work: @escaping Job) {
        condition.lock()
        precondition(job == nil, "BatchGatherer.submit while a job waits to start")
        job = work
        jobStart = ContinuousClock.now + delay
        abandoned = false
        condition.broadcast()
        condition.unlock()
    }

    /// Waits until `done` says true (asked every 50 µs), or `timeout` has passed; returns its
    /// last answer. Meanwhile the gatherer thread may run only on the caller's core: at nice 19
    /// it could otherwise sit behind another worker's forward/backward on the other core, while
    /// this core, whose thread now sleeps, has nothing to do.
    func wait(until done: () -> Bool, upTo timeout: Duration) -> Bool {
        if done() { return true }
        var saved = cores
        let pinned = saved.bytes > 0 && !isIdle && lars_move_thread_here(threadID) == 0
        defer { if pinned { _ = lars_set_cores(threadID, &saved) } }
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            usleep(50)
            if done() { return true }
        }
        return done()
    }

    /// Waits until the jobs submitted are done, or `timeout` has passed; true when they are.
    func wait(upTo timeout: Duration) -> Bool {
        let deadline = Date(timeIntervalSinceNow: timeout.seconds)
        condition.lock()
        defer { condition.unlock() }
        while working {
            if !condition.wait(until: deadline) { return !working }
        }
        return true
    }

    /// Tells the running job to stop at its next check; returns at once. The gatherer is busy
    /// until the job has returned (`isIdle`).
    func abandon() {
        condition.withLock {
            abandoned = true
            condition.broadcast()
        }
    }

    /// Lets the thread end once its job, if any, is done (an unstarted job is dropped).
    func stop() {
        condition.lock()
        stopping = true
        abandoned = true
        job = nil
        condition.broadcast()
        while working { condition.wait() }
        condition.unlock()
    }

    private func serve() {
        while true {
            condition.lock()
            while job == nil && !stopping { condition.wait() }
            guard let work = job else {
                condition.unlock()
                return
            }
            job = nil
            running = true
            let start = jobStart
            while !abandoned && !stopping && job == nil {
                let left = ContinuousClock.now.duration(to: start)
                guard left > .zero else { break }
                _ = condition.wait(until: Date(timeIntervalSinceNow: left.seconds))
            }
            condition.unlock()
            work { [self] in condition.withLock { abandoned } }
            condition.lock()
            running = false
            condition.broadcast()
            condition.unlock()
        }
    }

    /// The gatherer's nice level (Linux gives nice levels to threads). Nice 10 (weight 110) ended
    /// the stalls too but took enough of the busy cores to widen the gap between the two
    /// workers' forward/backward times (docs/performance.md, worker, session 10).
    static let niceLevel: Int32 = 19

    /// Lowers the calling thread to `niceLevel`.
    private static func lowerOwnPriority() {
        #if os(Linux)
        _ = setpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0, niceLevel)
        #endif
    }
}
