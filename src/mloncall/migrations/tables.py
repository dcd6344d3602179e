"""Every domain's tables, imported by name, so `Base.metadata` holds the whole schema."""

from __future__ import annotations

from mloncall.access import models as access_models
from mloncall.alerts import models as alerts_models
from mloncall.data import models as data_models
from mloncall.incidents import models as incidents_models
from mloncall.pipelines import models as pipelines_models
from mloncall.pipelines import quality_models as pipelines_quality_models
from mloncall.registry import models as registry_models
from mloncall.rollout import models as rollout_models
from mloncall.runbooks import models as runbooks_models
from mloncall.scaling import models as scaling_models
from mloncall.serving import models as serving_models
from mloncall.stores.db import Base

#: The modules that define tables (a new domain's `models` is added here).
TABLE_MODULES = (
    access_models,
    alerts_models,
    data_models,
    incidents_models,
    pipelines_models,
    pipelines_quality_models,
    registry_models,
    rollout_models,
    runbooks_models,
    scaling_models,
    serving_models,
)
metadata = Base.metadata
