"""Every table, imported in one place for migrations and schema checks."""

from __future__ import annotations

from omnicanal.access import models as access_models
from omnicanal.answers import models as answer_models
from omnicanal.channels import delivery as delivery_models
from omnicanal.channels import models as channel_models
from omnicanal.channels.email import models as email_models
from omnicanal.commerce import catalog_imports as catalog_import_models
from omnicanal.commerce import models as commerce_models
from omnicanal.commerce import usage_merges as usage_merge_models
from omnicanal.consent import models as consent_models
from omnicanal.conversations import merges as conversation_merge_models
from omnicanal.conversations import models as conversation_models
from omnicanal.customers import models as customer_models
from omnicanal.db import Base
from omnicanal.idempotency import IdempotentRequest
from omnicanal.loyalty import models as loyalty_models
from omnicanal.outbox import models as outbox_models
from omnicanal.routing import models as routing_models
from omnicanal.timeline import models as timeline_models
from omnicanal.webhooks import models as webhook_models

metadata = Base.metadata

__all__ = [
    "IdempotentRequest",
    "access_models",
    "answer_models",
    "catalog_import_models",
    "channel_models",
    "commerce_models",
    "consent_models",
    "conversation_merge_models",
    "conversation_models",
    "customer_models",
    "delivery_models",
    "email_models",
    "loyalty_models",
    "metadata",
    "outbox_models",
    "routing_models",
    "timeline_models",
    "usage_merge_models",
    "webhook_models",
]
