"""ONNX export of rawedge models: one self-describing file per model (contract inputs/outputs, metadata,
parity with PyTorch measured at export). Importing this package does not import torch."""
from rawedge.export.onnx_export import default_output_path, export_checkpoint, export_model

__all__ = ["default_output_path", "export_checkpoint", "export_model"]
