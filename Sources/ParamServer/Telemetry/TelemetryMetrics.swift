import Prometheus

/// The Prometheus families of DESIGN.md §5, registered once with `# HELP` and `# TYPE`, every
/// series created up front so it exports a value before the first step (0, or NaN where the
/// value is not known yet).
///
/// Counters and gauges are atomics inside swift-prometheus: updating them needs no lock of ours.
struct TelemetryMetrics: Sendable {
    /// Buckets of `lars_step_duration_seconds`: 1 ms to 60 s, roughly 1-2.5-5 per decade.
    static let stepDurationBuckets: [Double] = [
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
    ]

    let registry = PrometheusCollectorRegistry()

    let stepsTotal: Counter
    let skippedStepsTotal: Counter
    let stepDuration: ValueHistogram
    let loss: Gauge
    let testAccuracy: Gauge
    let testLoss: Gauge
    let learningRate: Gauge
    let step: Gauge
    let epoch: Gauge
    let workersConnected: Gauge
    let pushBytesTotal: Counter
    /// Pulls answered, by how the weights went: `shared_memory` or `tcp`.
    let pullsSharedMemory: Counter
    let pullsTCP: Counter
    let lastStepTimestamp: Gauge
    let rejectedFrames: [RejectReason: Counter]

    init(version: String) {
        let registry = self.registry
        func family(_ name: String, _ help: String) -> MetricNameDescriptor {
            MetricNameDescriptor(metricName: name, unitName: "", helpText: help)
        }
        func gauge(_ name: String, _ help: String, initial: Double) -> Gauge {
            let gauge = registry.makeGauge(descriptor: family(name, help))
            gauge.set(to: initial)
            return gauge
        }
        stepsTotal = registry.makeCounter(
            descriptor: family("lars_steps_total", "Synchronous steps closed, skipped ones included."))
        skippedStepsTotal = registry.makeCounter(
            descriptor: family("lars_skipped_steps_total", "Steps skipped because a gradient was not finite."))
        stepDuration = registry.makeValueHistogram(
            descriptor: family(
                "lars_step_duration_seconds", "Time from a step's opening to its close, in seconds."),
            buckets: Self.stepDurationBuckets)
        loss = gauge("lars_loss", "Training loss of the last step that reported one (NaN before).", initial: .nan)
        testAccuracy = gauge(
            "lars_test_accuracy", "Test accuracy of the last evaluation, 0 to 1 (NaN before).", initial: .nan)
        testLoss = gauge("lars_test_loss", "Test loss of the last evaluation (NaN before).", initial: .nan)
        learningRate = gauge("lars_learning_rate", "Global learning rate of the last closed step.", initial: 0)
        step = gauge("lars_step", "Number of the last closed step.", initial: 0)
        epoch = gauge("lars_epoch", "Training progress in epochs at the last closed step.", initial: 0)
        workersConnected = gauge("lars_workers_connected", "Workers currently connected.", initial: 0)
        pushBytesTotal = registry.makeCounter(
            descriptor: family("lars_push_bytes_total", "Gradient payload bytes received from workers."))
        let pulls = family("lars_pulls_total", "Pulls answered, by how the weights went (shared_memory: the file in /dev/shm).")
        pullsSharedMemory = registry.makeCounter(descriptor: pulls, labels: [("via", "shared_memory")])
        pullsTCP = registry.makeCounter(descriptor: pulls, labels: [("via", "tcp")])
        lastStepTimestamp = gauge(
            "lars_last_step_timestamp_seconds", "Unix time at which the last step closed (0 before).", initial: 0)
        let rejected = family("lars_rejected_frames_total", "Frames from workers refused, by reason.")
        var byReason: [RejectReason: Counter] = [:]
        for reason in RejectReason.allCases {
            byReason[reason] = registry.makeCounter(descriptor: rejected, labels: [("reason", reason.rawValue)])
        }
        rejectedFrames = byReason
        registry.makeGauge(
            descriptor: family("lars_build_info", "Always 1; the server's version as a label."),
            labels: [("version", version)]
        ).set(to: 1)
    }

    /// The per-layer series (trust ratio, ||w||, ||g||) of `names`, created at NaN.
    func layerSeries(_ names: [String]) -> LayerSeries {
        func perLayer(_ name: String, _ help: String) -> [Gauge] {
            let descriptor = MetricNameDescriptor(metricName: name, unitName: "", helpText: help)
            return names.map { layer in
                let gauge = registry.makeGauge(descriptor: descriptor, labels: [("layer", layer)])
                gauge.set(to: .nan)
                return gauge
            }
        }
        return LayerSeries(
            names: names,
            trustRatio: perLayer("lars_trust_ratio", "LARS trust ratio of each tensor at the last step (NaN before)."),
            weightNorm: perLayer("lars_weight_norm", "L2 norm of each tensor's weights at the last step (NaN before)."),
            gradientNorm: perLayer(
                "lars_gradient_norm", "L2 norm of each tensor's averaged gradient at the last step (NaN before)."))
    }
}

/// The layout's tensor names and their per-layer gauges.
struct LayerSeries: Sendable {
    var names: [String]
    var trustRatio: [Gauge]
    var weightNorm: [Gauge]
    var gradientNorm: [Gauge]
}
