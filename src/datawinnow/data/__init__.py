"""Data layer: the record type, readers and writers for every format (streamed for large pools), bundled data
sets, prompt rendering."""

from .bundled import FILES as BUNDLED, bundled_path, iter_raw, load_bundled
from .readers import load, load_column_map, read_file, read_hf
from .record import Dataset, Record, assign_ids
from .rows import ColumnMap
from .stream import RecordStream, convert, iter_chunks, iter_records
from .writers import FORMAT_CHOICES, write, write_chunks

__all__ = ["BUNDLED", "ColumnMap", "Dataset", "FORMAT_CHOICES", "Record", "RecordStream", "assign_ids",
           "bundled_path", "convert", "iter_chunks", "iter_raw", "iter_records", "load", "load_bundled",
           "load_column_map", "read_file", "read_hf", "write", "write_chunks"]
