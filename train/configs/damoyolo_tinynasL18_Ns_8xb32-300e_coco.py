# DAMO-YOLO-Ns (TinyNAS mobile) on COCO, 8 GPUs x 32 images, 300 epochs, 416 input.
_base_ = ["./_base_/damoyolo_nano_coco.py"]

variant = "Ns"
affine_scale = (0.75, 1.25)  # Ns: milder scale jitter than the other models
