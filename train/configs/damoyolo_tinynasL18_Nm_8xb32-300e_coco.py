# DAMO-YOLO-Nm (TinyNAS mobile) on COCO, 8 GPUs x 32 images, 300 epochs, 416 input.
_base_ = ["./_base_/damoyolo_nano_coco.py"]

variant = "Nm"

model = dict(variant=variant)
