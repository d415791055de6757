// SAQ dequantization from token ids (docs/method.md section 3): for batch item b decoded from
// its first k layers, zhat(c, y, x) = (1/W_k) sum_{l<=k} w_l codebook[token_l(cell of y, x)][c],
// w_l layer l's weight in the running mean and W_k = sum_{l<=k} w_l.
// Layer l (0-based here) is a grid of s = min(2^l, G) words; a word owns a (G/s)^2 cell.
// One invocation per latent value; workgroups along y are batch items.

struct Params {
    dim: u32,
    latent_size: u32,
    // Words in one pyramid, all layers.
    tokens_per_image: u32,
    _pad: u32,
    // w_l of layer l (0-based here) at weights[l / 4][l % 4], up to 16 layers.
    weights: array<vec4<u32>, 4>,
}

@group(0) @binding(0) var<uniform> params: Params;
// vocabulary x dim, row-major.
@group(0) @binding(1) var<storage, read> codebook: array<f32>;
// batch x tokens_per_image, layer after layer, each layer row-major.
@group(0) @binding(2) var<storage, read> tokens: array<u32>;
// Layers to average, per batch item.
@group(0) @binding(3) var<storage, read> prefix_layers: array<u32>;
// batch x dim x G x G.
@group(0) @binding(4) var<storage, read_write> zhat: array<f32>;

@compute @workgroup_size(256, 1, 1)
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
    let g = params.latent_size;
    let plane = g * g;
    let per_image = params.dim * plane;
    let i = id.x;
    if i >= per_image {
        return;
    }
    let b = id.y;
    let c = i / plane;
    let y = (i % plane) / g;
    let x = i % g;
    let k = prefix_layers[b];
    let base = b * params.tokens_per_image;
    var offset = 0u;
    var sum = 0.0;
    var total = 0u;
    for (var l = 0u; l < k; l++) {
        let w = params.weights[l / 4u][l % 4u];
        let s = min(1u << l, g);
        let cell = g / s;
        let token = tokens[base + offset + (y / cell) * s + x / cell];
        sum += f32(w) * codebook[token * params.dim + c];
        total += w;
        offset += s * s;
    }
    zhat[b * per_image + i] = sum / f32(total);
}
