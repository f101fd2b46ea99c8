"""Data layer: the record type, readers and writers for every format, bundled data sets, prompt rendering."""

from .bundled import FILES as BUNDLED, bundled_path, iter_raw, load_bundled
from .readers import load, load_column_map, read_file, read_hf
from .record import Dataset, Record, assign_ids
from .rows import ColumnMap
from .writers import FORMAT_CHOICES, write

__all__ = ["BUNDLED", "ColumnMap", "Dataset", "FORMAT_CHOICES", "Record", "assign_ids", "bundled_path",
           "iter_raw", "load", "load_bundled", "load_column_map", "read_file", "read_hf", "write"]
