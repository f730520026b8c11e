# The Nano recipe: 416 input, AdamW (lr 0.001 per 64 images, weight decay 0.01), mild shear.
_base_ = ["./damoyolo_coco.py"]

input_size = (416, 416)
base_lr = 0.001 / 64 * 256
shear = 0.2

optim_wrapper = dict(optimizer=dict(_delete_=True, type="AdamW", weight_decay=0.01))
