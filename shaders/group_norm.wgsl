// Group normalization over batch x channels x plane tensors, optionally followed by SiLU,
// in two passes: `statistics` (one workgroup per batch item and group: the mean, then the
// variance about it, as candle computes them) and `apply` (one invocation per value).

const WORKGROUP: u32 = 256u;

struct Params {
    channels: u32,
    // Height x width.
    plane: u32,
    groups: u32,
    // 1: apply SiLU, x * sigmoid(x), after the affine transform.
    silu: u32,
    eps: f32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> input: array<f32>;
@group(0) @binding(2) var<storage, read> gamma: array<f32>;
@group(0) @binding(3) var<storage, read> beta: array<f32>;
// Per batch item and group: mean, 1 / sqrt(variance + eps).
@group(0) @binding(4) var<storage, read_write> stats: array<f32>;
@group(0) @binding(5) var<storage, read_write> output: array<f32>;

var<workgroup> partial: array<f32, WORKGROUP>;

fn workgroup_sum(value: f32, lane: u32) -> f32 {
    partial[lane] = value;
    workgroupBarrier();
    for (var stride = WORKGROUP / 2u; stride > 0u; stride /= 2u) {
        if lane < stride {
            partial[lane] += partial[lane + stride];
        }
        workgroupBarrier();
    }
    let total = partial[0];
    workgroupBarrier();
    return total;
}

// Workgroup x: group, workgroup y: batch item.
@compute @workgroup_size(256, 1, 1)
fn statistics(@builtin(workgroup_id) group_id: vec3<u32>, @builtin(local_invocation_index) lane: u32) {
    let count = (params.channels / params.groups) * params.plane;
    let slot = group_id.y * params.groups + group_id.x;
    let start = slot * count;
    var sum = 0.0;
    for (var i = lane; i < count; i += WORKGROUP) {
        sum += input[start + i];
    }
    let mean = workgroup_sum(sum, lane) / f32(count);
    var squares = 0.0;
    for (var i = lane; i < count; i += WORKGROUP) {
        let d = input[start + i] - mean;
        squares += d * d;
    }
    let variance = workgroup_sum(squares, lane) / f32(count);
    if lane == 0u {
        stats[2u * slot] = mean;
        stats[2u * slot + 1u] = 1.0 / sqrt(variance + params.eps);
    }
}

// Invocation x: value within a batch item; workgroup y: batch item.
@compute @workgroup_size(256, 1, 1)
fn apply(@builtin(global_invocation_id) id: vec3<u32>) {
    let per_image = params.channels * params.plane;
    if id.x >= per_image {
        return;
    }
    let c = id.x / params.plane;
    let slot = id.y * params.groups + c / (params.channels / params.groups);
    let i = id.y * per_image + id.x;
    var value = (input[i] - stats[2u * slot]) * stats[2u * slot + 1u] * gamma[c] + beta[c];
    if params.silu == 1u {
        value = value / (1.0 + exp(-value));
    }
    output[i] = value;
}
