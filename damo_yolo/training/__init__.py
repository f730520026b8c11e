"""Training components: AlignedOTA assignment, GFL losses, the mmengine model, data sets and their pipeline
transforms, learning-rate schedulers, metric and hooks.

Importing this package registers them with mmengine's registries (configs name them by ``type``).
"""
from . import data, hooks, metric, model, pipeline, schedulers  # noqa: F401  (registration side effects)
