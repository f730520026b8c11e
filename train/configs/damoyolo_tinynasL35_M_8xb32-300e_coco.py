# DAMO-YOLO-M (TinyNAS-L35) on COCO, 8 GPUs x 32 images, 300 epochs: the reference recipe.
_base_ = ["./_base_/damoyolo_coco.py"]

variant = "M"

model = dict(variant=variant)
