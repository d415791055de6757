// Streaming average quantization on the GPU (docs/method.md section 3), one layer at a time
// over a batch of latents z (batch x dim x G x G) and the running sums of the words chosen
// so far, each times its layer's weight w (same shape; zhat_{l-1} = sum / W_{l-1}, W_l the
// sum of the weights of layers 1..l):
//   `targets`   every cell's target t = (W_l * cell(z) - cell(sum)) / w_l, as the CPU
//               computes it;
//   `nearest`   a tiled matrix product of targets and codebook rows with the argmin fused
//               in: each workgroup scores 16 targets against one chunk of the vocabulary
//               and keeps, per target, the best score ||e||^2 - 2 e.t and its word (the
//               distance matrix is never stored);
//   `choose`    the best of the chunks, ties to the lower word as on the CPU, into tokens;
//   `add_words` the chosen words' embeddings, times w_l, added over their cells to the sums.

const TILE_TARGETS: u32 = 16u;
const TILE_WORDS: u32 = 64u;
const TILE_DIMS: u32 = 16u;
const WORDS_PER_THREAD: u32 = 4u;

struct Params {
    dim: u32,
    latent_size: u32,
    // This layer's grid side s and cell side f = G / s.
    grid: u32,
    cell: u32,
    // l, 1-based.
    layer: u32,
    // 0: cell means, 1: the cell's dilated sample at (f / 2, f / 2).
    dilated: u32,
    tokens_per_image: u32,
    // Words of the layers before this one.
    layer_offset: u32,
    vocabulary: u32,
    chunk_words: u32,
    chunks: u32,
    // w_l and W_l.
    weight: u32,
    weight_sum: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> z: array<f32>;
@group(0) @binding(2) var<storage, read_write> sums: array<f32>;
// vocabulary x dim, row-major, and each row's squared norm.
@group(0) @binding(3) var<storage, read> codebook: array<f32>;
@group(0) @binding(4) var<storage, read> norms: array<f32>;
// batch x cells x dim.
@group(0) @binding(5) var<storage, read_write> targets: array<f32>;
// batch x cells x chunks: (score as bits, word).
@group(0) @binding(6) var<storage, read_write> partial: array<vec2<u32>>;
// batch x tokens_per_image.
@group(0) @binding(7) var<storage, read_write> tokens: array<u32>;

// Invocation x: cell and channel of one image; workgroup y: batch item.
@compute @workgroup_size(256, 1, 1)
fn cell_targets(@builtin(global_invocation_id) id: vec3<u32>) {
    let cells = params.grid * params.grid;
    if id.x >= cells * params.dim {
        return;
    }
    let b = id.y;
    let cell = id.x / params.dim;
    let c = id.x % params.dim;
    let g = params.latent_size;
    let f = params.cell;
    let row = cell / params.grid;
    let col = cell % params.grid;
    let plane = (b * params.dim + c) * g * g;
    var zc = 0.0;
    var sc = 0.0;
    if params.dilated == 1u {
        let p = plane + (row * f + f / 2u) * g + col * f + f / 2u;
        zc = z[p];
        sc = sums[p];
    } else {
        for (var y = row * f; y < (row + 1u) * f; y++) {
            for (var x = col * f; x < (col + 1u) * f; x++) {
                zc += z[plane + y * g + x];
                sc += sums[plane + y * g + x];
            }
        }
        let scale = 1.0 / f32(f * f);
        zc *= scale;
        sc *= scale;
    }
    targets[(b * cells + cell) * params.dim + c] = (f32(params.weight_sum) * zc - sc) / f32(params.weight);
}

var<workgroup> tile_targets: array<f32, 256>;
var<workgroup> tile_words: array<f32, 1024>;
var<workgroup> best_scores: array<f32, 256>;
var<workgroup> best_words: array<u32, 256>;

fn better(score: f32, word: u32, than_score: f32, than_word: u32) -> bool {
    return score < than_score || (score == than_score && word < than_word);
}

// Workgroup x: a tile of 16 of one image's cells; y: a chunk of the vocabulary; z: batch
// item. Local x: words, local y: targets.
@compute @workgroup_size(16, 16, 1)
fn nearest(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(local_invocation_id) local: vec3<u32>,
    @builtin(local_invocation_index) lane: u32,
) {
    let cells = params.grid * params.grid;
    let dim = params.dim;
    let b = group.z;
    let m = group.x * TILE_TARGETS + local.y;
    let valid = m < cells;
    let target_row = (b * cells + min(m, cells - 1u)) * dim;
    let chunk_start = group.y * params.chunk_words;
    let chunk_end = min(chunk_start + params.chunk_words, params.vocabulary);
    var best = 3.4028235e38;
    var best_word = 0xffffffffu;
    for (var w0 = chunk_start; w0 < chunk_end; w0 += TILE_WORDS) {
        var acc = vec4<f32>(0.0);
        for (var k0 = 0u; k0 < dim; k0 += TILE_DIMS) {
            let k = k0 + local.x;
            tile_targets[lane] = select(0.0, targets[target_row + min(k, dim - 1u)], valid && k < dim);
            for (var r = 0u; r < WORDS_PER_THREAD; r++) {
                let e = lane + 256u * r;
                let word = w0 + e / TILE_DIMS;
                let kk = k0 + e % TILE_DIMS;
                tile_words[e] = select(0.0, codebook[min(word, params.vocabulary - 1u) * dim + min(kk, dim - 1u)], word < chunk_end && kk < dim);
            }
            workgroupBarrier();
            for (var kk = 0u; kk < TILE_DIMS; kk++) {
                let t = tile_targets[local.y * TILE_DIMS + kk];
                acc += t * vec4<f32>(
                    tile_words[local.x * TILE_DIMS + kk],
                    tile_words[(local.x + 16u) * TILE_DIMS + kk],
                    tile_words[(local.x + 32u) * TILE_DIMS + kk],
                    tile_words[(local.x + 48u) * TILE_DIMS + kk],
                );
            }
            workgroupBarrier();
        }
        for (var j = 0u; j < WORDS_PER_THREAD; j++) {
            let word = w0 + local.x + 16u * j;
            if word < chunk_end {
                let score = norms[word] - 2.0 * acc[j];
                if better(score, word, best, best_word) {
                    best = score;
                    best_word = word;
                }
            }
        }
    }
    best_scores[lane] = best;
    best_words[lane] = best_word;
    workgroupBarrier();
    for (var stride = 8u; stride > 0u; stride /= 2u) {
        if local.x < stride {
            let other = lane + stride;
            if better(best_scores[other], best_words[other], best_scores[lane], best_words[lane]) {
                best_scores[lane] = best_scores[other];
                best_words[lane] = best_words[other];
            }
        }
        workgroupBarrier();
    }
    if local.x == 0u && valid {
        partial[(b * cells + m) * params.chunks + group.y] = vec2<u32>(bitcast<u32>(best_scores[lane]), best_words[lane]);
    }
}

// Invocation x: cell of one image; workgroup y: batch item.
@compute @workgroup_size(64, 1, 1)
fn choose(@builtin(global_invocation_id) id: vec3<u32>) {
    let cells = params.grid * params.grid;
    if id.x >= cells {
        return;
    }
    let b = id.y;
    let base = (b * cells + id.x) * params.chunks;
    var best = partial[base];
    for (var chunk = 1u; chunk < params.chunks; chunk++) {
        let other = partial[base + chunk];
        if better(bitcast<f32>(other.x), other.y, bitcast<f32>(best.x), best.y) {
            best = other;
        }
    }
    tokens[b * params.tokens_per_image + params.layer_offset + id.x] = best.y;
}

// Invocation x: latent value of one image; workgroup y: batch item.
@compute @workgroup_size(256, 1, 1)
fn add_words(@builtin(global_invocation_id) id: vec3<u32>) {
    let g = params.latent_size;
    let plane = g * g;
    if id.x >= params.dim * plane {
        return;
    }
    let b = id.y;
    let c = id.x / plane;
    let y = (id.x % plane) / g;
    let x = id.x % g;
    let cell = (y / params.cell) * params.grid + x / params.cell;
    let word = tokens[b * params.tokens_per_image + params.layer_offset + cell];
    sums[b * params.dim * plane + id.x] += f32(params.weight) * codebook[word * params.dim + c];
}
