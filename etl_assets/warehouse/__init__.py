"""Staging tables and the page loader."""

from etl_assets.warehouse.loader import PageWrite, StagingLoader
from etl_assets.warehouse.records import PreparedPage, prepare_page

__all__ = ["PageWrite", "PreparedPage", "StagingLoader", "prepare_page"]
