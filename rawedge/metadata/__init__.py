"""Model metadata, the one home of reading and writing it: ``schema`` (the fields every exported model
carries), ``read`` (``read_model_metadata(path)`` for any model file), the per-format readers and
writers (``onnx``, ``ort_format``, ``openvino``, ``sidecar`` for TensorRT engines), ``protobuf`` (the
ONNX wire-format reader) and ``integrity`` (model hashes). Imports the standard library only: never
torch, onnx, ONNX Runtime or OpenVINO."""
