"""Every table, imported in one place for migrations and schema checks."""

from __future__ import annotations

from omnicanal.access import models as access_models
from omnicanal.consent import models as consent_models
from omnicanal.customers import models as customer_models
from omnicanal.db import Base
from omnicanal.idempotency import IdempotentRequest
from omnicanal.timeline import models as timeline_models

metadata = Base.metadata

__all__ = ["IdempotentRequest", "access_models", "consent_models", "customer_models", "metadata", "timeline_models"]
