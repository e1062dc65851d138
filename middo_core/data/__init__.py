"""SFT data in and out of a workspace: import, export, the built-in demo set."""

from middo_core.data.demo import create_demo_workspace, load_demo_eval, load_planted_labels
from middo_core.data.exporter import EXPORT_FORMATS, ExportError, export_dataset
from middo_core.data.importer import import_file
from middo_core.data.readers import FORMATS
from middo_core.data.report import DataImportError, Duplicate, ImportReport, RowError

__all__ = [
    "EXPORT_FORMATS", "FORMATS", "DataImportError", "Duplicate", "ExportError", "ImportReport",
    "RowError", "create_demo_workspace", "export_dataset", "import_file", "load_demo_eval",
    "load_planted_labels",
]
