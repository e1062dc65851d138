"""What an import found: counts, duplicates and row errors naming file, row and field."""

from __future__ import annotations

from pydantic import BaseModel, Field

MAX_KEPT_ERRORS = 10_000  # a file of a million bad rows still gives a readable report


class RowError(BaseModel):
    """One problem in the input. `row` is 1-based (a line for JSONL, a record otherwise);
    None when the problem concerns the whole file."""

    file: str
    row: int | None
    field: str | None
    message: str

    def __str__(self) -> str:
        where = self.file if self.row is None else f"{self.file}: row {self.row}"
        if self.field:
            where += f", field '{self.field}'"
        return f"{where}: {self.message}"


class Duplicate(BaseModel):
    """A row whose content equals an earlier row of the same file (same content hash)."""

    row: int
    first_row: int
    sample_id: str


class ImportReport(BaseModel):
    file: str
    format: str = ""  # alpaca | sharegpt | openai | mixed, and the container in parentheses
    iteration: int = 0
    split: str = "train"
    n_read: int = 0  # records read, valid or not
    n_valid: int = 0
    n_imported: int = 0  # samples added to the dataset version by this import
    n_already_present: int = 0  # valid, distinct, but already members of that dataset version
    n_invalid: int = 0  # records rejected
    n_duplicates: int = 0
    duplicates: list[Duplicate] = Field(default_factory=list)
    n_errors: int = 0  # problems found (a record may have several); may exceed len(errors)
    errors: list[RowError] = Field(default_factory=list)
    skipped_invalid: bool = False
    report_path: str | None = None

    def add_error(self, error: RowError) -> None:
        self.n_errors += 1
        if len(self.errors) < MAX_KEPT_ERRORS:
            self.errors.append(error)

    def summary(self) -> str:
        parts = [f"{self.n_read:,} read", f"{self.n_imported:,} imported"]
        if self.n_duplicates:
            parts.append(f"{self.n_duplicates:,} exact duplicates")
        if self.n_already_present:
            parts.append(f"{self.n_already_present:,} already in the dataset")
        if self.n_invalid:
            parts.append(f"{self.n_invalid:,} invalid" + (" (skipped)" if self.skipped_invalid else ""))
        return f"{self.file} [{self.format}]: " + ", ".join(parts)


class DataImportError(ValueError):
    """The file cannot be imported; nothing was written. `report` lists every problem found."""

    def __init__(self, report: ImportReport, headline: str | None = None) -> None:
        self.report = report
        first = str(report.errors[0]) if report.errors else report.file
        if headline is None:
            more = f" (and {report.n_errors - 1:,} more)" if report.n_errors > 1 else ""
            headline = f"{first}{more}"
        super().__init__(headline)

    @property
    def errors(self) -> list[RowError]:
        return self.report.errors
