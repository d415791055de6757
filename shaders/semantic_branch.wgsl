// The semantic branch's glue around the teacher's and the projector's convolutions
// (docs/method.md section 2a), on batch x channels x height x width tensors:
//   `teacher_input`  pixels in -1..1 resized bilinearly (half-pixel centres, as candle's
//                    upsample_bilinear2d without aligned corners) to the teacher's input
//                    side, then normalized to the EfficientNet-Lite convention;
//   `average_pool`   means over f x f windows (the teacher's grid, a layer's cells);
//   `add_cells`      a layer's projected cell values plus its learned offset, spread over
//                    each cell's latent positions and added to the latent z;
//   `named_targets`  the same values as that layer's SAQ targets, where the branch names
//                    the upper words.

struct Params {
    channels: u32,
    // Side of the input (pixels, features, projected cells).
    in_side: u32,
    // Side of the output (teacher input, pooled features, latent).
    out_side: u32,
    // add_cells: the layer, 0-based, whose offset row is added.
    layer: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> input: array<f32>;
// add_cells: layers x channels.
@group(0) @binding(2) var<storage, read> offsets: array<f32>;
@group(0) @binding(3) var<storage, read_write> output: array<f32>;

// Source row (column) of output row (column) `o` and its weight, as candle computes them.
fn source(o: u32) -> vec3<f32> {
    let scale = f32(params.in_side) / f32(params.out_side);
    let s = max(scale * (f32(o) + 0.5) - 0.5, 0.0);
    let i0 = floor(s);
    let i1 = min(i0 + 1.0, f32(params.in_side - 1u));
    return vec3<f32>(i0, i1, clamp(s - i0, 0.0, 1.0));
}

// Channel, row and column of value `i` of a channels x n x n image.
fn position(i: u32, n: u32) -> vec3<u32> {
    return vec3<u32>(i / (n * n), (i % (n * n)) / n, i % n);
}

// Invocation x: value of one image's output; workgroup y: batch item.
@compute @workgroup_size(256, 1, 1)
fn teacher_input(@builtin(global_invocation_id) id: vec3<u32>) {
    let n = params.out_side;
    if id.x >= params.channels * n * n {
        return;
    }
    let at = position(id.x, n);
    let base = (id.y * params.channels + at.x) * params.in_side * params.in_side;
    var value = 0.0;
    if params.in_side == n {
        value = input[base + at.y * n + at.z];
    } else {
        let h = source(at.y);
        let w = source(at.z);
        let row0 = base + u32(h.x) * params.in_side;
        let row1 = base + u32(h.y) * params.in_side;
        let top = input[row0 + u32(w.x)] * (1.0 - w.z) + input[row0 + u32(w.y)] * w.z;
        let bottom = input[row1 + u32(w.x)] * (1.0 - w.z) + input[row1 + u32(w.y)] * w.z;
        value = top * (1.0 - h.z) + bottom * h.z;
    }
    output[id.y * params.channels * n * n + id.x] = ((value + 1.0) * 0.5 - 0.498) / 0.502;
}

// Invocation x: value of one image's pooled output; workgroup y: batch item.
@compute @workgroup_size(256, 1, 1)
fn average_pool(@builtin(global_invocation_id) id: vec3<u32>) {
    let n = params.out_side;
    if id.x >= params.channels * n * n {
        return;
    }
    let at = position(id.x, n);
    let f = params.in_side / n;
    let base = (id.y * params.channels + at.x) * params.in_side * params.in_side;
    var sum = 0.0;
    for (var y = at.y * f; y < (at.y + 1u) * f; y++) {
        for (var x = at.z * f; x < (at.z + 1u) * f; x++) {
            sum += input[base + y * params.in_side + x];
        }
    }
    output[id.y * params.channels * n * n + id.x] = sum / f32(f * f);
}

// Invocation x: latent value of one image; workgroup y: batch item.
@compute @workgroup_size(256, 1, 1)
fn add_cells(@builtin(global_invocation_id) id: vec3<u32>) {
    let g = params.out_side;
    if id.x >= params.channels * g * g {
        return;
    }
    let at = position(id.x, g);
    let s = params.in_side;
    let f = g / s;
    let cell = input[((id.y * params.channels + at.x) * s + at.y / f) * s + at.z / f];
    output[id.y * params.channels * g * g + id.x] += cell + offsets[params.layer * params.channels + at.x];
}

// Invocation x: target value of one image (cells x channels, channel-last, as SAQ's search
// reads its targets); workgroup y: batch item. A layer's projected cell values plus its
// offset, where the branch names that layer's words.
@compute @workgroup_size(256, 1, 1)
fn named_targets(@builtin(global_invocation_id) id: vec3<u32>) {
    let cells = params.in_side * params.in_side;
    if id.x >= params.channels * cells {
        return;
    }
    let cell = id.x / params.channels;
    let c = id.x % params.channels;
    let value = input[(id.y * params.channels + c) * cells + cell];
    output[id.y * params.channels * cells + id.x] = value + offsets[params.layer * params.channels + c];
}
