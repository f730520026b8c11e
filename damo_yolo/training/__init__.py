"""Training components: AlignedOTA assignment, GFL losses, the mmengine model, hooks and distillation."""
