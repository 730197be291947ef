// swift-tools-version: 6.1
import PackageDescription

/// Strict settings shared by every Swift target.
let strict: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
]

let package = Package(
    name: "lars-ps",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "lars-server", targets: ["lars-server"]),
        .executable(name: "lars-bench", targets: ["lars-bench"]),
        .executable(name: "lars-worker", targets: ["lars-worker"]),
    ],
    dependencies: [
        // Command-line parsing for the thin executables.
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        // Event-driven networking: ByteBuffer, channel pipelines, codecs (Wire and up).
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        // Structured logging: one line per event that matters.
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        // Prometheus registry and text exposition for /metrics (HELP and TYPE per family).
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
    ],
    targets: [
        // Numerics and formats shared by server and worker: LARS, schedules, kernels, layouts.
        .target(name: "Core", dependencies: ["CZlib", "COpenBLAS", "CPrefetch"], swiftSettings: strict),
        // zlib (gzread for IDX data sets, crc32 for the data set fingerprint).
        .systemLibrary(name: "CZlib", pkgConfig: nil, providers: [.apt(["zlib1g-dev"])]),
        // Software prefetch (a header-only C shim) for the optimizer's passes over memory.
        .systemLibrary(name: "CPrefetch"),
        // Atomic loads, stores and fences (a header-only C shim) for the shared weight file.
        .systemLibrary(name: "CSharedMemory"),
        // Thread placement (a header-only C shim): the worker's batch gatherer moved to a core.
        .systemLibrary(name: "CThreadPlacement"),
        // OpenBLAS (cblas_sgemm for the layers; openblas_set_num_threads).
        .systemLibrary(name: "COpenBLAS", pkgConfig: nil, providers: [.apt(["libopenblas-dev"])]),
        // The binary protocol: message types, frame codec, streaming parser, limits.
        .target(
            name: "Wire",
            dependencies: ["Core", "CSharedMemory", .product(name: "NIOCore", package: "swift-nio")],
            swiftSettings: strict
        ),
        // The service: step coordinator, connections, HTTP, checkpoints.
        .target(
            name: "ParamServer",
            dependencies: [
                "Core", "Wire",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            swiftSettings: strict
        ),
        // The worker side: session (handshake, pull/push, reconnect and resend).
        .target(
            name: "Client",
            dependencies: [
                "Core", "Wire", "CThreadPlacement",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        // Thin executable: parse flags and the job file, run ParamServer.
        .executableTarget(
            name: "lars-server",
            dependencies: [
                "Core", "ParamServer",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        // Thin executable: parse flags, run the Client training loop.
        .executableTarget(
            name: "lars-worker",
            dependencies: [
                "Client",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        // Benchmarks; figures printed as name=value lines.
        .executableTarget(
            name: "lars-bench",
            dependencies: [
                "Core",
                "Wire",
                "ParamServer",
                "Client",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "ParamServerTests",
            dependencies: [
                "ParamServer", "Client", "Core", "Wire",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "ClientTests",
            dependencies: [
                "Client", "Core", "Wire",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        .testTarget(name: "CoreTests", dependencies: ["Core"], resources: [.copy("Fixtures")], swiftSettings: strict),
        .testTarget(
            name: "WireTests",
            dependencies: [
                "Wire",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOTestUtils", package: "swift-nio"),
            ],
            resources: [.copy("Fixtures")],
            swiftSettings: strict
        ),
    ]
)
