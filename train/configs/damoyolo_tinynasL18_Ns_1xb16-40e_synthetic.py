# DAMO-YOLO-Ns on the project's synthetic shapes set (damo-synthetic), sized to train on a CPU in minutes.
# Make the data first:  damo-synthetic --out data/synthetic --train 800 --val 200 --size 320 --seed 0
_base_ = ["./_base_/damoyolo_nano_coco.py"]

# ======================= frequently modified =======================
variant = "Ns"
data_root = "data/synthetic/"      # holds annotations/instances_{train,val}.json, train/, val/
input_size = (256, 256)
batch_size = 16
num_workers = 2
max_epochs = 40
base_lr = 0.004                    # AdamW, as the Nano recipe at its 256 batch: a small set wants the full step
val_interval = 5

# ======================= possibly modified =========================
mosaic_size = None                 # the input size
affine_scale = (0.5, 1.5)
warmup_epochs = 2
no_aug_epochs = 5

model = dict(num_classes=8, channels_last=True)
train_dataloader = dict(
    dataset=dict(ann_file="annotations/instances_train.json", img_dir="train/", class_names=None,
                 hsv_gains=(0.015, 0.7, 0.4)))
val_dataloader = dict(
    batch_size=16,
    num_workers=2,
    dataset=dict(ann_file="annotations/instances_val.json", img_dir="val/", class_names=None))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file="annotations/instances_val.json", class_names=None)
test_evaluator = val_evaluator
default_hooks = dict(logger=dict(interval=10))
custom_hooks = [
    dict(type="DAMOScheduleHook"),
    dict(type="EMAHook", ema_type="DAMOModelEMA", update_buffers=True, priority=49, ramp=200.0),
    dict(type="ExportCheckpointHook", metric="coco/mAP"),
]
