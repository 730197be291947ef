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
/// `wait(upTo:)` is bounded all the same, and a caller that gives up calls `abandon()` and
/// copies the batch itself at normal priority into another buffer. A job checks `shouldStop`
/// between rows and returns early once abandoned.
final class BatchGatherer: @unchecked Sendable {
    /// A copy job; it calls the argument now and then and returns early when it says true.
    typealias Job = @Sendable (_ shouldStop: () -> Bool) -> Void

    private let condition = NSCondition()
    private var job: Job?
    private var working = false
    private var abandoned = false
    private var stopping = false

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

    /// Starts `work` on the gatherer thread; the gatherer must be idle.
    func submit(_ work: @escaping Job) {
        condition.lock()
        precondition(job == nil && !working, "BatchGatherer.submit while a job is in flight")
        job = work
        working = true
        abandoned = false
        condition.broadcast()
        condition.unlock()
    }

    /// Waits until the job submitted last is done, or `timeout` has passed; true when it is done.
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
        condition.withLock { abandoned = true }
    }

    /// Lets the thread end once its job, if any, is done (an unstarted job is dropped).
    func stop() {
        condition.lock()
        stopping = true
        abandoned = true
        if job != nil {
            job = nil
            working = false
        }
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
            condition.unlock()
            work { [self] in condition.withLock { abandoned } }
            condition.lock()
            working = false
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
