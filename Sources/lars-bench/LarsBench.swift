import ArgumentParser

/// `lars-bench SUITE`: runs one benchmark suite and prints its figures as `name=value` lines,
/// each hot path next to a bound measured in the same run (DESIGN.md §6).
@main
struct LarsBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lars-bench",
        abstract: "Benchmarks for lars-ps; figures print as name=value lines.",
        subcommands: [
            OptimizerBench.self,
            WireBench.self,
            WorkerBench.self,
            StepBench.self,
        ]
    )
}
