// 2-D convolution with "same" padding (kernel / 2) and stride 1, weights `out x in x k x k`
// plus a bias, on batch x channels x height x width tensors. Two options fold neighbouring
// decoder operations into the reads and writes: nearest-neighbour 2x upsampling of the
// input, and a residual tensor (shaped like the output) added to the result.
// Each invocation computes one output pixel for CHANNELS_PER_INVOCATION output channels,
// so every input value it reads serves several channels.

const CHANNELS_PER_INVOCATION: u32 = 4u;

struct Params {
    in_channels: u32,
    out_channels: u32,
    // Of the stored input, before upsampling.
    in_height: u32,
    in_width: u32,
    kernel: u32,
    // 1: read the input as if each pixel were doubled in both directions.
    upsample: u32,
    // 1: add `residual` to the output.
    add_residual: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> input: array<f32>;
@group(0) @binding(2) var<storage, read> weight: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
// Only read when add_residual is 1 (otherwise any buffer is bound here).
@group(0) @binding(4) var<storage, read> residual: array<f32>;
@group(0) @binding(5) var<storage, read_write> output: array<f32>;

@compute @workgroup_size(8, 8, 1)
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
    let scale = select(1u, 2u, params.upsample == 1u);
    let h = params.in_height * scale;
    let w = params.in_width * scale;
    let x = id.x;
    let y = id.y;
    if x >= w || y >= h {
        return;
    }
    let channel_blocks = (params.out_channels + CHANNELS_PER_INVOCATION - 1u) / CHANNELS_PER_INVOCATION;
    let b = id.z / channel_blocks;
    let oc0 = (id.z % channel_blocks) * CHANNELS_PER_INVOCATION;
    let k = params.kernel;
    let half = i32(k / 2u);
    let taps = k * k;
    let in_plane = params.in_height * params.in_width;
    let weights_per_out = params.in_channels * taps;

    // Weight rows of the four output channels (the last one repeated past the end).
    let last = params.out_channels - 1u;
    let rows = vec4<u32>(oc0, min(oc0 + 1u, last), min(oc0 + 2u, last), min(oc0 + 3u, last)) * weights_per_out;
    var acc = vec4<f32>(0.0);
    for (var ic = 0u; ic < params.in_channels; ic++) {
        let in_base = (b * params.in_channels + ic) * in_plane;
        for (var ky = 0u; ky < k; ky++) {
            let sy = i32(y) + i32(ky) - half;
            if sy < 0 || sy >= i32(h) {
                continue;
            }
            let row = in_base + (u32(sy) / scale) * params.in_width;
            for (var kx = 0u; kx < k; kx++) {
                let sx = i32(x) + i32(kx) - half;
                if sx < 0 || sx >= i32(w) {
                    continue;
                }
                let v = input[row + u32(sx) / scale];
                let t = ic * taps + ky * k + kx;
                acc += vec4<f32>(weight[rows.x + t], weight[rows.y + t], weight[rows.z + t], weight[rows.w + t]) * v;
            }
        }
    }
    for (var j = 0u; j < CHANNELS_PER_INVOCATION; j++) {
        let oc = oc0 + j;
        if oc < params.out_channels {
            let o = ((b * params.out_channels + oc) * h + y) * w + x;
            var value = acc[j] + bias[oc];
            if params.add_residual == 1u {
                value += residual[o];
            }
            output[o] = value;
        }
    }
}
