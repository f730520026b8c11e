# DAMO-YOLO-Ns on the project's synthetic shapes set (damo-synthetic), sized to train on a CPU in minutes.
# Make the data first:  damo-synthetic --out data/synthetic --train 800 --val 200 --size 320 --seed 0
_base_ = ["./_base_/damoyolo_nano_coco.py"]

# ======================= frequently modified =======================
data_root = "data/synthetic/"
input_size = (256, 256)
batch_size = 16
max_epochs = 40
lr = 0.004                         # AdamW, as the Nano recipe at its 256 batch: a small set wants the full step

model = dict(variant="Ns", num_classes=8, channels_last=True)
train_dataloader = dict(
    batch_size=batch_size,
    num_workers=2,
    dataset=dict(ann_file=data_root + "annotations/instances_train.json", img_dir=data_root + "train/",
                 input_size=input_size, class_names=None, mosaic_size=input_size, scale=(0.5, 1.5),
                 mixup_prob=0.15, hsv_gains=(0.015, 0.7, 0.4)))
val_dataloader = dict(
    batch_size=16,
    num_workers=2,
    dataset=dict(ann_file=data_root + "annotations/instances_val.json", img_dir=data_root + "val/",
                 input_size=input_size, class_names=None))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + "annotations/instances_val.json", class_names=None)
test_evaluator = val_evaluator
optim_wrapper = dict(optimizer=dict(lr=lr))
train_cfg = dict(max_epochs=max_epochs, val_interval=5, dynamic_intervals=[(max_epochs - 5, 1)])
default_hooks = dict(logger=dict(interval=10))
custom_hooks = [
    dict(type="DAMOScheduleHook", warmup_epochs=2, no_aug_epochs=5, min_lr_ratio=0.05),
    dict(type="EMAHook", ema_type="DAMOModelEMA", update_buffers=True, priority=49, ramp=200.0),
    dict(type="ExportCheckpointHook", metric="coco/mAP"),
]
