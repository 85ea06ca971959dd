"""Every module's tables, imported once so Alembic and tests see the whole schema."""

from app.access import models as access_models
from app.audit import models as audit_models
from app.book import models as book_models
from app.core import idempotency
from app.core.db import Base
from app.directory import models as directory_models
from app.intake import models as intake_models
from app.jobs import models as job_models
from app.notify import models as notify_models
from app.risk import models as risk_models
from app.transfer import models as transfer_models
from app.transfer.followups import models as followup_models

metadata = Base.metadata

__all__ = [
    "access_models",
    "audit_models",
    "book_models",
    "directory_models",
    "followup_models",
    "idempotency",
    "intake_models",
    "job_models",
    "metadata",
    "notify_models",
    "risk_models",
    "transfer_models",
]
