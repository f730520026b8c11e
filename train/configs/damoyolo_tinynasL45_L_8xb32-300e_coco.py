# DAMO-YOLO-L (TinyNAS-L45) on COCO, 8 GPUs x 32 images, 300 epochs: the reference recipe.
_base_ = ["./_base_/damoyolo_coco.py"]

variant = "L"

model = dict(variant=variant)
