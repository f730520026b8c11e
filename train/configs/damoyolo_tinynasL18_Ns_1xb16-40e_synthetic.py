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

# PyTorch's default init for the neck's depthwise downsamplers: the reference's MSRA fan-out init (std
# sqrt(2 / (9 C))) suits its 300 epochs but slows a short run (CI's 8-epoch gate run: mAP 0.292 vs 0.402)
model = dict(variant=variant, num_classes=8, channels_last=True, depthwise_msra_init=False)
train_pipeline = [
    dict(type="Mosaic", img_scale=input_size, prob=1.0),
    dict(type="RandomAffine", img_scale=input_size, max_rotate_degree=10.0, max_translate_ratio=0.2,
         scaling_ratio_range=affine_scale, max_shear_degree=0.2),
    dict(type="MixUp", prob=0.15, scale=(0.5, 1.5)),
    dict(type="FilterBoxes", min_area=4.0),
    dict(type="Resize", scale=input_size, keep_ratio=False),
    dict(type="RandomFlip", prob=0.5),
    dict(type="ScaleAwareBoxAugment", ramp_epochs=max_epochs - no_aug_epochs),
    dict(type="RandomHSV", gains=(0.015, 0.7, 0.4)),  # colour jitter: the shapes' colours vary little
    dict(type="PackDetInputs"),
]
last_stage_pipeline = [
    dict(type="Resize", scale=input_size, keep_ratio=False),
    dict(type="RandomFlip", prob=0.5),
    dict(type="PackDetInputs"),
]
train_dataloader = dict(
    batch_size=batch_size,
    num_workers=num_workers,
    dataset=dict(data_root=data_root, ann_file="annotations/instances_train.json", img_dir="train/",
                 class_names=None, pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=16,
    num_workers=2,
    dataset=dict(data_root=data_root, ann_file="annotations/instances_val.json", img_dir="val/", class_names=None,
                 input_size=input_size))
test_dataloader = val_dataloader
val_evaluator = dict(data_root=data_root, ann_file="annotations/instances_val.json", class_names=None)
test_evaluator = val_evaluator
optim_wrapper = dict(optimizer=dict(lr=base_lr))
param_scheduler = [
    dict(type="QuadraticWarmupFromZeroLR", begin=0, end=warmup_epochs, convert_to_iter_based=True),
    dict(type="CosineToMinLR", begin=warmup_epochs, end=max_epochs - no_aug_epochs, min_ratio=0.05,
         convert_to_iter_based=True),
    dict(type="FlatTailLR", begin=max_epochs - no_aug_epochs, end=max_epochs, factor=0.05,
         convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=max_epochs, val_interval=val_interval, dynamic_intervals=[(max_epochs - no_aug_epochs, 1)])
default_hooks = dict(logger=dict(interval=10))
custom_hooks = [
    dict(type="TrainProgressHook"),
    dict(type="PipelineSwitchHook", switch_epoch=max_epochs - no_aug_epochs, switch_pipeline=last_stage_pipeline),
    dict(type="EMAHook", ema_type="DAMOModelEMA", update_buffers=True, priority=49, ramp=200.0),
    dict(type="ExportCheckpointHook", metric="coco/mAP"),
]
