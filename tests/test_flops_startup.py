"""Start-up (metadata without the ``onnx`` package, no torch on the runtime path) and the graph FLOP counter."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rawedge.errors import RawedgeError

ROOT = Path(__file__).resolve().parents[1]


def test_opening_a_model_imports_neither_onnx_nor_torch(tiny_unet):
    code = f"""
import sys, json
import rawedge.runtimes
from rawedge.runtimes import Reconstructor
rec = Reconstructor.open({str(tiny_unet[0])!r}, runtime="ort", threads=1)
rec.close()
print(json.dumps(sorted(m for m in ("onnx", "torch", "openvino", "tensorrt") if m in sys.modules)))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_metadata_is_read_from_the_wire_format(tiny_unet, tmp_path):
    onnx = pytest.importorskip("onnx")
    from rawedge.metadata.onnx import read_onnx_metadata
    from rawedge.metadata.protobuf import metadata_props, read_header

    path, _, meta = tiny_unet
    proto = onnx.load(str(path))
    expected = {p.key: p.value for p in proto.metadata_props}
    assert metadata_props(path) == expected
    assert read_onnx_metadata(path).to_json() == meta.to_json()
    assert read_header(path)["opsets"] == {(o.domain or "ai.onnx"): o.version for o in proto.opset_import}
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\xff\xff\xff")
    with pytest.raises(RawedgeError, match="not a readable ONNX model"):
        read_onnx_metadata(bad)
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    with pytest.raises(RawedgeError, match="empty"):
        read_onnx_metadata(empty)
    next(p for p in proto.metadata_props if p.key == "rawedge").value = "x"
    proto.metadata_props.add(key="broken", value="")
    damaged = tmp_path / "damaged.onnx"
    onnx.save(proto, str(damaged))
    data = damaged.read_bytes()
    i = data.rindex(b"broken")
    damaged.write_bytes(data[:i] + b"\xff\xfe\xfdken" + data[i + 6:])  # same length, not UTF-8
    with pytest.raises(RawedgeError, match="not valid UTF-8"):
        metadata_props(damaged)


def _export(module, path, inputs: dict, dynamic: dict):
    torch = pytest.importorskip("torch")
    torch.onnx.export(module, tuple(inputs.values()), str(path), input_names=list(inputs), output_names=["raw"],
                      dynamic_axes=dynamic, opset_version=17, dynamo=False)
    return path


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.onnx.export without dynamo
def test_flops_of_one_conv_match_the_hand_count(tmp_path):
    torch = pytest.importorskip("torch")
    from rawedge.runtimes.flops import count_flops

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 8, 3, stride=2, padding=1)
            self.fc = torch.nn.Linear(4, 8)

        def forward(self, srgb, exif):
            return self.conv(srgb) + self.fc(exif)[:, :, None, None]

    path = _export(Net().eval(), tmp_path / "conv.onnx", {"srgb": torch.rand(1, 3, 16, 16), "exif": torch.rand(1, 4)},
                   {"srgb": {0: "N", 2: "H", 3: "W"}, "exif": {0: "N"}})
    for tile in (32, 64):
        count = count_flops(path, tile=tile)
        h_out = w_out = tile // 2
        assert count.tile_flops == 2 * 3 * 8 * 3 * 3 * h_out * w_out  # 2*Cin*Cout*k*k*Hout*Wout
        assert count.global_flops == 2 * 4 * 8  # the Linear on exif: once per photo
        assert count.per_pixel == count.tile_flops / tile**2
        # elementwise, counted apart: the conv's bias and the broadcast add (one per output element each),
        # the Gemm's bias
        assert count.tile_elementwise_flops == 2 * 8 * h_out * w_out and count.global_elementwise_flops == 8
    assert count.summary() == (f"{count.per_pixel / 1e3:.1f} kFLOP per input pixel (tile 64; global branch "
                               "0.0 MFLOP per photo)")


def test_flops_of_the_tiny_unet_match_pytorch_modules(tiny_unet):
    torch = pytest.importorskip("torch")
    from rawedge.runtimes.flops import count_flops

    from rawedge.models.checkpoint import load_checkpoint
    from tests.test_runtimes import contract_feed

    tile = 64
    count = count_flops(tiny_unet[0], tile=tile)
    model, _ = load_checkpoint(tiny_unet[1])
    total = [0.0]

    def hook(module, args, out):
        w = module.weight
        if isinstance(module, torch.nn.ConvTranspose2d):
            total[0] += 2.0 * args[0].numel() * w[0].numel()
        else:
            total[0] += 2.0 * out.numel() * w[0].numel()

    for m in model.modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d, torch.nn.Linear)):
            m.register_forward_hook(hook)
    feed = {k: torch.from_numpy(v) for k, v in contract_feed(n=1, size=tile).items()}
    with torch.inference_mode():
        model(**feed)
    counted = count.tile_flops + count.global_flops - count.by_op.get("Einsum", 0.0) - count.by_op.get("MatMul", 0.0)
    assert counted == pytest.approx(total[0], rel=1e-9)
    assert count.tile_flops > 0 and count.global_flops > 0
    assert count_flops(tiny_unet[0], tile=2 * tile).per_pixel == pytest.approx(count.per_pixel, rel=0.05)


def test_rawedge_info_prints_compute(tiny_unet):
    from rawedge.cli.model_info import describe_model

    lines = describe_model(tiny_unet[0])
    line = next(x for x in lines if x.startswith("compute"))
    assert "kFLOP per input pixel (tile" in line and "MFLOP per photo" in line


def test_sgemm_peak_probe_is_positive():
    from rawedge.bench.speed import sgemm_peak_gflops

    assert sgemm_peak_gflops(size=256, repeat=2) > 0.1
    assert np.isfinite(sgemm_peak_gflops(size=128, repeat=1))


def test_flops_of_a_graph_with_unnamed_nodes_and_constants(tmp_path):
    """Nodes without names are matched to ONNX Runtime's by index (Constant nodes become initializers)."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper
    from rawedge.runtimes.flops import count_flops

    weight = numpy_helper.from_array(np.ones((8, 3, 3, 3), np.float32), "W")
    nodes = [helper.make_node("Constant", [], ["c"], value=numpy_helper.from_array(np.ones((1, 8, 1, 1), np.float32))),
             helper.make_node("Conv", ["srgb", "W"], ["y"], pads=[1, 1, 1, 1]),
             helper.make_node("Constant", [], ["unused"], value=numpy_helper.from_array(np.ones(1, np.float32))),
             helper.make_node("Mul", ["y", "c"], ["raw"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("srgb", TensorProto.FLOAT, ["N", 3, "H", "W"])],
                              [helper.make_tensor_value_info("raw", TensorProto.FLOAT, ["N", 8, "H", "W"])], [weight])
    path = tmp_path / "unnamed.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    count = count_flops(path, tile=16)
    assert count.tile_flops == 2 * 3 * 8 * 3 * 3 * 16 * 16 and count.global_flops == 0
    assert count.tile_elementwise_flops == 8 * 16 * 16  # the Mul
