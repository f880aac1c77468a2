"""The resource that owns the warehouse connection and all ``dw_etl_runs`` I/O."""

from __future__ import annotations

import dagster as dg
from pydantic import PrivateAttr
from sqlalchemy.engine import Engine

from etl_assets.checkpoints import CheckpointStore
from etl_assets.settings import Settings, validate_schema
from etl_assets.warehouse.engine import create_warehouse_engine


class CheckpointStoreResource(dg.ConfigurableResource):
    """Warehouse engine plus the checkpoint store of ``dw_etl_runs``.

    Left empty, both fields come from ``ETL_DATABASE_URL`` and ``ETL_WAREHOUSE_SCHEMA``
    when a run starts, so one set of definitions serves a laptop and production. The
    engine lives for one run: created in ``setup_for_execution``, disposed after.
    """

    database_url: str | None = None
    warehouse_schema: str | None = None

    _engine: Engine | None = PrivateAttr(default=None)
    _store: CheckpointStore | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        settings = Settings.from_env()
        schema = self.warehouse_schema or settings.warehouse_schema
        if schema:
            validate_schema(schema, what="warehouse_schema")
        self._engine = create_warehouse_engine(self.database_url or settings.database_url)
        self._store = CheckpointStore(self._engine, schema)

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._engine is not None:
            self._engine.dispose()
        self._engine = None
        self._store = None

    @property
    def store(self) -> CheckpointStore:
        if self._store is None:
            raise RuntimeError("CheckpointStoreResource used outside a run")
        return self._store
