// 2-D convolution with zero padding, any stride, weights `out x in x k x k` plus a bias, on
// batch x channels x height x width tensors; `depthwise` is the per-channel form (weights
// `channels x k x k`). Options fold neighbouring operations into the reads and writes:
// nearest-neighbour 2x upsampling of the input (decoder), an activation of the result
// (ReLU6 for the teacher, SiLU for the semantic branch's projector), and a residual tensor
// (shaped like the output) added last.
// `main` computes one output pixel for CHANNELS_PER_INVOCATION output channels per
// invocation, so every input value it reads serves several channels.

const CHANNELS_PER_INVOCATION: u32 = 4u;

struct Params {
    in_channels: u32,
    out_channels: u32,
    // Of the stored input, before upsampling.
    in_height: u32,
    in_width: u32,
    out_height: u32,
    out_width: u32,
    kernel: u32,
    stride: u32,
    // Zero rows (columns) before the first input row (column); those after are implied.
    pad_before: u32,
    // 1: read the input as if each pixel were doubled in both directions.
    upsample: u32,
    // 0: none, 1: ReLU6, 2: SiLU; applied before the residual is added.
    activation: u32,
    // 1: add `residual` to the output.
    add_residual: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> input: array<f32>;
@group(0) @binding(2) var<storage, read> weight: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
// Only read when add_residual is 1 (otherwise any buffer is bound here).
@group(0) @binding(4) var<storage, read> residual: array<f32>;
@group(0) @binding(5) var<storage, read_write> output: array<f32>;

fn activate(value: f32) -> f32 {
    switch params.activation {
        case 1u: {
            return clamp(value, 0.0, 6.0);
        }
        case 2u: {
            return value / (1.0 + exp(-value));
        }
        default: {
            return value;
        }
    }
}

fn store(b: u32, oc: u32, y: u32, x: u32, sum: f32) {
    let o = ((b * params.out_channels + oc) * params.out_height + y) * params.out_width + x;
    var value = activate(sum + bias[oc]);
    if params.add_residual == 1u {
        value += residual[o];
    }
    output[o] = value;
}

// Invocation x, y: output pixel; z: batch item and block of output channels.
@compute @workgroup_size(8, 8, 1)
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
    let x = id.x;
    let y = id.y;
    if x >= params.out_width || y >= params.out_height {
        return;
    }
    let scale = select(1u, 2u, params.upsample == 1u);
    let h = i32(params.in_height * scale);
    let w = i32(params.in_width * scale);
    let channel_blocks = (params.out_channels + CHANNELS_PER_INVOCATION - 1u) / CHANNELS_PER_INVOCATION;
    let b = id.z / channel_blocks;
    let oc0 = (id.z % channel_blocks) * CHANNELS_PER_INVOCATION;
    let k = params.kernel;
    let taps = k * k;
    let in_plane = params.in_height * params.in_width;
    let weights_per_out = params.in_channels * taps;
    let top = i32(y * params.stride) - i32(params.pad_before);
    let left = i32(x * params.stride) - i32(params.pad_before);

    // Weight rows of the four output channels (the last one repeated past the end).
    let last = params.out_channels - 1u;
    let rows = vec4<u32>(oc0, min(oc0 + 1u, last), min(oc0 + 2u, last), min(oc0 + 3u, last)) * weights_per_out;
    var acc = vec4<f32>(0.0);
    for (var ic = 0u; ic < params.in_channels; ic++) {
        let in_base = (b * params.in_channels + ic) * in_plane;
        for (var ky = 0u; ky < k; ky++) {
            let sy = top + i32(ky);
            if sy < 0 || sy >= h {
                continue;
            }
            let row = in_base + (u32(sy) / scale) * params.in_width;
            for (var kx = 0u; kx < k; kx++) {
                let sx = left + i32(kx);
                if sx < 0 || sx >= w {
                    continue;
                }
                let v = input[row + u32(sx) / scale];
                let t = ic * taps + ky * k + kx;
                acc += vec4<f32>(weight[rows.x + t], weight[rows.y + t], weight[rows.z + t], weight[rows.w + t]) * v;
            }
        }
    }
    for (var j = 0u; j < CHANNELS_PER_INVOCATION; j++) {
        if oc0 + j < params.out_channels {
            store(b, oc0 + j, y, x, acc[j]);
        }
    }
}

// The depthwise form (in_channels = out_channels, no upsampling), CHANNELS_PER_INVOCATION
// channels per invocation. Invocation x, y: output pixel; z: batch item and block of
// channels.
@compute @workgroup_size(8, 8, 1)
fn depthwise(@builtin(global_invocation_id) id: vec3<u32>) {
    let x = id.x;
    let y = id.y;
    if x >= params.out_width || y >= params.out_height {
        return;
    }
    let channels = params.out_channels;
    let channel_blocks = (channels + CHANNELS_PER_INVOCATION - 1u) / CHANNELS_PER_INVOCATION;
    let b = id.z / channel_blocks;
    let k = params.kernel;
    let h = i32(params.in_height);
    let w = i32(params.in_width);
    let top = i32(y * params.stride) - i32(params.pad_before);
    let left = i32(x * params.stride) - i32(params.pad_before);
    for (var j = 0u; j < CHANNELS_PER_INVOCATION; j++) {
        let c = (id.z % channel_blocks) * CHANNELS_PER_INVOCATION + j;
        if c >= channels {
            return;
        }
        let in_base = (b * channels + c) * params.in_height * params.in_width;
        var sum = 0.0;
        for (var ky = 0u; ky < k; ky++) {
            let sy = top + i32(ky);
            if sy < 0 || sy >= h {
                continue;
            }
            for (var kx = 0u; kx < k; kx++) {
                let sx = left + i32(kx);
                if sx < 0 || sx >= w {
                    continue;
                }
                sum += input[in_base + u32(sy) * params.in_width + u32(sx)] * weight[(c * k + ky) * k + kx];
            }
        }
        store(b, c, y, x, sum);
    }
}
