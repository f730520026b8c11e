from .zero_head import ZeroHead, distance_to_box, make_priors

__all__ = ["ZeroHead", "distance_to_box", "make_priors"]
