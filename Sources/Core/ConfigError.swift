/// A configuration value that cannot be used. Names the key (dotted path), the value given and
/// what is allowed, so a person can fix the file or flag without reading code.
public struct ConfigError: Error, Equatable, CustomStringConvertible {
    /// Dotted key path, e.g. `optimizer.momentum`.
    public var key: String
    /// The value as given, rendered as text.
    public var value: String
    /// What would have been accepted.
    public var allowed: String

    public init(key: String, value: String, allowed: String) {
        self.key = key
        self.value = value
        self.allowed = allowed
    }

    public var description: String {
        "invalid value for '\(key)': \(value); allowed: \(allowed)"
    }
}

/// An enum whose cases are spelled in config files by their raw value.
public protocol ConfigChoice: CaseIterable, RawRepresentable, Sendable where RawValue == String {}

extension ConfigChoice {
    /// Parses `text` for `key`, or fails naming every allowed spelling.
    public static func parse(_ text: String, key: String) throws(ConfigError) -> Self {
        if let v = Self(rawValue: text) { return v }
        let choices = allCases.map { "\"\($0.rawValue)\"" }.joined(separator: ", ")
        throw ConfigError(key: key, value: "\"\(text)\"", allowed: "one of \(choices)")
    }
}

/// Shared range checks so every numeric option reports failures the same way.
enum Check {
    static func finite(_ x: Double, key: String) throws(ConfigError) {
        guard x.isFinite else { throw ConfigError(key: key, value: "\(x)", allowed: "a finite number") }
    }
    static func nonNegative(_ x: Double, key: String) throws(ConfigError) {
        guard x.isFinite, x >= 0 else { throw ConfigError(key: key, value: "\(x)", allowed: "a finite number >= 0") }
    }
    static func positive(_ x: Double, key: String) throws(ConfigError) {
        guard x.isFinite, x > 0 else { throw ConfigError(key: key, value: "\(x)", allowed: "a finite number > 0") }
    }
}
