# DAMO-YOLO-T (TinyNAS-L20) on COCO, 8 GPUs x 32 images, 300 epochs: the reference recipe.
_base_ = ["./_base_/damoyolo_coco.py"]

variant = "T"
shear = 0.2  # T uses the mild shear of the Nano models
