# DAMO-YOLO-S (TinyNAS-L25) on COCO, 8 GPUs x 32 images, 300 epochs: the reference recipe.
_base_ = ["./_base_/damoyolo_coco.py"]

variant = "S"

model = dict(variant=variant)
