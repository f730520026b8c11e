# The Nano recipe: 416 input, AdamW (lr 0.001 per 64 images, weight decay 0.01), mild shear. The dicts that
# carry those settings are restated here, so the file is complete as mmengine reads it.
_base_ = ["./damoyolo_coco.py"]

input_size = (416, 416)
base_lr = 0.001 / 64 * 256
shear = 0.2

train_pipeline = [
    dict(type="Mosaic", img_scale=(640, 640), prob=1.0),
    dict(type="RandomAffine", img_scale=(640, 640), max_rotate_degree=10.0, max_translate_ratio=0.2,
         scaling_ratio_range=(0.1, 2.0), max_shear_degree=shear),
    dict(type="MixUp", prob=0.15, scale=(0.5, 1.5)),
    dict(type="FilterBoxes", min_area=4.0),
    dict(type="Resize", scale=input_size, keep_ratio=False),
    dict(type="RandomFlip", prob=0.5),
    dict(type="ScaleAwareBoxAugment", ramp_epochs=300 - 16),
    dict(type="PackDetInputs"),
]
last_stage_pipeline = [
    dict(type="Resize", scale=input_size, keep_ratio=False),
    dict(type="RandomFlip", prob=0.5),
    dict(type="PackDetInputs"),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(input_size=input_size))
test_dataloader = val_dataloader
optim_wrapper = dict(optimizer=dict(_delete_=True, type="AdamW", lr=base_lr, weight_decay=0.01))
custom_hooks = [
    dict(type="TrainProgressHook"),
    dict(type="PipelineSwitchHook", switch_epoch=300 - 16, switch_pipeline=last_stage_pipeline),
    dict(type="EMAHook", ema_type="DAMOModelEMA", update_buffers=True, priority=49),
    dict(type="ExportCheckpointHook", metric="coco/mAP"),
]
