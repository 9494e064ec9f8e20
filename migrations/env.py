"""Alembic environment: runs against the engine `archiver.migrate` hands over."""

from __future__ import annotations

from alembic import context

from archiver import accounts as account_models  # noqa: F401  (the web UI's accounts)
from archiver import audit as audit_models  # noqa: F401  (the audit trail)
from archiver import ledger as ledger_models  # noqa: F401  (tamper evidence)
from archiver import plugins
from archiver.cases import models as case_models  # noqa: F401  (legal cases)
from archiver.erasure import models as erasure_models  # noqa: F401  (erasure requests)
from archiver.migrate import include_name
from archiver.models import Base, UtcDateTime
from archiver.production import models as production_models  # noqa: F401
from archiver.retention import models as retention_models  # noqa: F401
from archiver.timestamps import models as timestamp_models  # noqa: F401  (RFC 3161)

plugins.load_models()  # the plug-ins' tables (the list engine's)


def render_item(type_: str, obj: object, autogen_context: object) -> str | bool:
    """Write UTC columns as plain DateTime, so migrations never import application code."""
    if type_ == "type" and isinstance(obj, UtcDateTime):
        return "sa.DateTime()"
    return False


connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through `arsip db upgrade`, which supplies the database")


context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
    render_item=render_item,
    include_name=include_name,
)
with context.begin_transaction():
    context.run_migrations()
