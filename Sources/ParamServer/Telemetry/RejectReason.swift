/// Why a frame from a worker was refused; the `reason` label of `lars_rejected_frames_total`.
public enum RejectReason: String, Sendable, CaseIterable {
    /// A push for a step that has already closed (answered STEP_CLOSED, connection kept).
    case stepClosed = "step_closed"
    /// A tensor chunk whose length disagrees with the layout.
    case wrongLength = "wrong_length"
    /// A tensor chunk in a dtype the server does not accept there.
    case wrongDtype = "wrong_dtype"
    /// A frame that could not be parsed.
    case malformed
    /// A handshake with a missing or wrong auth token.
    case auth
    /// A gradient holding NaN or Inf (the step is skipped as a whole).
    case nonFinite = "non_finite"
    /// A valid frame at the wrong time (before the handshake, unknown type, out of order).
    case `protocol`
}
