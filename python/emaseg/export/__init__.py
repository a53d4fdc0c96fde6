"""Export to one self-describing TorchScript file (docs/model_file_format.md)."""
from .exporter import ExportError, export_model, load_exported
from .metadata import ExportedFileError, read_metadata
from .module import ResizePolicy, SegmentationModule

__all__ = ["ExportError", "ExportedFileError", "ResizePolicy", "SegmentationModule", "export_model",
           "load_exported", "read_metadata"]
