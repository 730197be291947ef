/// Where the job is, as /status reports it.
public enum RunState: String, Sendable, CaseIterable {
    /// Started, waiting for enough workers (or for a layout).
    case waiting
    /// Steps are running.
    case training
    /// Finished every step.
    case done
    /// Ended early because the loss diverged or too many steps were skipped.
    case diverged
    /// Stopped by a signal or by its owner before the end.
    case shutdown
}
