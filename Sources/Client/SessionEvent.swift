import Wire

/// What the server says unasked, delivered on ``ClientSession/events``.
public enum SessionEvent: Sendable, Hashable {
    /// Evaluate the weights of `step` on the test set and answer with
    /// ``ClientSession/sendEval(step:testLoss:accuracy:sampleCount:)`` once the current push is sent.
    case evalRequest(step: Int)
    /// A step closed without this worker's push (it arrived late); `currentStep` is open.
    case stepClosed(step: Int, currentStep: Int)
    /// An ERROR the server sent: the session goes on after `step_closed` and
    /// `non_finite_gradient`, and ends after any other code.
    case serverError(code: ErrorCode, message: String)
    /// The connection was lost and is back; the server is at `currentStep`.
    case reconnected(rank: Int, currentStep: Int)
    /// The server said BYE; the session is over (the stream ends after this).
    case bye(reason: ByeReason, detail: String)
}

/// The answer to ``ClientSession/pull(step:into:)``.
public struct PulledStep: Sendable, Hashable {
    /// The step of the weights now in the caller's buffers: the step asked for, a newer one when
    /// the asked step was behind, or the server's step after a reconnect (see the pull's
    /// documentation).
    public var step: Int
}

/// The outcome of ``ClientSession/push(step:sampleCount:loss:gradients:)``.
public enum PushResult: Sendable, Hashable {
    /// The server read the whole push without refusing it.
    case accepted
    /// The step is not open on the server (it closed without this push, or the server came
    /// back at another step): pull `current` next.
    case stepClosed(current: Int)
}
