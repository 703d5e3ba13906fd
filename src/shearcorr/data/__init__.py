"""Datasets: parameter designs, generation on any executor, the resumable Zarr store."""

from .generate import generate
from .store import dataset_info, export_netcdf, format_info, open_dataset, select_done

__all__ = ["generate", "open_dataset", "select_done", "export_netcdf", "dataset_info", "format_info"]
