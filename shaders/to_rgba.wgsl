// The decoder's output (batch x 3 x H x W, -1..1 before clamping), clamped to -1..1 into
// an f32 buffer (read back for metrics, export and tests; the CPU turns it into bytes
// exactly as it does its own decodes), and as 0..1 colours into the layers of an RGBA
// texture array that the studio draws directly.

@group(0) @binding(0) var<storage, read> decoded: array<f32>;
// batch x 3 x H x W, clamped to -1..1.
@group(0) @binding(1) var<storage, read_write> pixels: array<f32>;
@group(0) @binding(2) var image: texture_storage_2d_array<rgba8unorm, write>;

@compute @workgroup_size(8, 8, 1)
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
    let size = textureDimensions(image);
    if id.x >= size.x || id.y >= size.y {
        return;
    }
    let plane = size.x * size.y;
    let base = id.z * 3u * plane + id.y * size.x + id.x;
    var rgb: vec3<f32>;
    for (var c = 0u; c < 3u; c++) {
        let value = clamp(decoded[base + c * plane], -1.0, 1.0);
        pixels[base + c * plane] = value;
        rgb[c] = (value + 1.0) * 0.5;
    }
    textureStore(image, vec2<u32>(id.x, id.y), id.z, vec4<f32>(rgb, 1.0));
}
