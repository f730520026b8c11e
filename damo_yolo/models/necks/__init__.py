from .giraffe_fpn import GiraffeNeckV2

__all__ = ["GiraffeNeckV2"]
