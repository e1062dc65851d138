"""SFT data in and out of a workspace: import, export, the built-in demo set."""

from middo_core.data.exporter import EXPORT_FORMATS, ExportError, export_dataset
from middo_core.data.importer import import_file
from middo_core.data.readers import FORMATS
from middo_core.data.report import DataImportError, Duplicate, ImportReport, RowError

__all__ = [
    "EXPORT_FORMATS", "FORMATS", "DataImportError", "Duplicate", "ExportError", "ImportReport",
    "RowError", "export_dataset", "import_file",
]
