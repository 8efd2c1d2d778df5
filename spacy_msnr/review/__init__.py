"""The review loop: choose the documents a person should check, export them with the pipeline's
entities as pre-annotations (Label Studio, Prodigy), import the corrections as gold Docs, and
calibrate entity scores into precisions (a threshold that means what it says)."""
from .calibrate import Calibrator, apply, calibrate, expected_calibration_error, threshold_for_precision
from .formats import FORMATS, ImportSummary, ReviewFormatError, import_review, labelling_config, write_labelling_config, write_tasks
from .queue import ExportSummary, export_queue, read_records
from .select import NAMES, STRATEGIES, auto_accepted, select

__all__ = [
    "Calibrator", "apply", "calibrate", "expected_calibration_error", "threshold_for_precision",
    "FORMATS", "NAMES", "STRATEGIES", "ExportSummary", "ImportSummary", "ReviewFormatError", "auto_accepted", "export_queue",
    "import_review", "labelling_config", "read_records", "select", "write_labelling_config", "write_tasks",
]
