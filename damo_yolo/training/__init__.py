"""Training components: AlignedOTA assignment, GFL losses, the mmengine model, data sets, metric and hooks.

Importing this package registers them with mmengine's registries (configs name them by ``type``).
"""
from . import data, hooks, metric, model  # noqa: F401  (registration side effects)
