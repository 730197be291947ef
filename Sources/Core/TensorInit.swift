/// How one tensor of a built-in model starts out.
public enum TensorInit: Sendable, Hashable {
    /// Independent draws, uniform in `[-bound, bound]`. PyTorch's default for linear and conv
    /// layers: weights by `kaiming_uniform_(a: sqrt(5))` and biases alike, both giving
    /// bound = 1 / sqrt(fan_in).
    case uniform(bound: Float)
    /// Every element equal to the value (batch-norm scales 1, shifts 0).
    case constant(Float)

    /// PyTorch's default for a weight or bias of a layer whose weight has `fanIn` inputs per
    /// output (`in` for linear, `in x kh x kw` for conv).
    public static func pyTorchDefault(fanIn: Int) -> TensorInit {
        .uniform(bound: Float(1.0 / Double(fanIn).squareRoot()))
    }
}
