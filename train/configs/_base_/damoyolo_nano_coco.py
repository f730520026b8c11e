# The Nano recipe: 416 input, AdamW (lr 0.001 per 64 images, weight decay 0.01), mild shear.
_base_ = ["./damoyolo_coco.py"]

nano_input = (416, 416)
nano_lr = 0.001 / 64 * 256

train_dataloader = dict(dataset=dict(input_size=nano_input, shear=0.2))
val_dataloader = dict(dataset=dict(input_size=nano_input))
test_dataloader = dict(dataset=dict(input_size=nano_input))
optim_wrapper = dict(optimizer=dict(_delete_=True, type="AdamW", lr=nano_lr, weight_decay=0.01))
