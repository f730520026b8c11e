# DAMO-YOLO on COCO 2017, the reference recipe (tinyvision/DAMO-YOLO configs/damoyolo_tinynasL*.py):
# 300 epochs at a total batch of 256, SGD (Nesterov) with lr 0.01 per 64 images, 5 warm-up epochs,
# cosine to 5%, the last 16 epochs without mosaic/mixup, EMA; stretch resize to the model input.
#
# The file is complete as it stands: Runner.from_cfg(Config.fromfile(path)) trains it. The settings at the
# top are also copied into the dicts below (the pipeline's Resize.scale is input_size, a scheduler's end is
# max_epochs - no_aug_epochs, ...). Change them at the top, in a child config or with
# `damo-train CONFIG --cfg-options input_size="(512,512)"`: damo-train moves every copy along
# (damo_yolo/training/config.py lists where each goes) and refuses a copy set against its setting.
_base_ = ["./default_runtime.py"]

# ======================= frequently modified =======================
variant = "S"                      # T, S, M, L, Ns, Nm, Nl
data_root = "data/coco/"           # holds annotations/instances_{train,val}2017.json, train2017/, val2017/
input_size = (640, 640)            # (H, W) of training and test images; the Nano variants use 416
batch_size = 32                    # per GPU: 8 GPUs x 32 = 256 as the reference
num_workers = 8
max_epochs = 300
base_lr = 0.01 / 64 * 256          # lr per image x total batch
val_interval = 10
finetune = None                    # a checkpoint to fine-tune from: its backbone and neck, a fresh head

# ======================= possibly modified =========================
from damo_yolo.models.zoo import COCO_CLASSES as coco_classes  # noqa: E402  the 80 names, contiguous order

mosaic_size = (640, 640)           # canvas of the mosaic, 640 for the Nano models too; None: the input size
mixup_prob = 0.15
affine_scale = (0.1, 2.0)          # Ns: (0.75, 1.25)
shear = 2.0                        # T and the Nano models: 0.2
warmup_epochs = 5
no_aug_epochs = 16
min_lr_ratio = 0.05
teacher_config = None              # distillation from a larger model: its config and checkpoint
teacher_checkpoint = None

# ======================= unmodified in most cases ==================
model = dict(type="DAMOYOLODetector", variant=variant, num_classes=len(coco_classes), finetune=finetune,
             teacher=None)  # distilling: dict(config=teacher_config, checkpoint=teacher_checkpoint)

train_pipeline = [
    dict(type="Mosaic", img_scale=mosaic_size, prob=1.0),
    dict(type="RandomAffine", img_scale=mosaic_size, max_rotate_degree=10.0, max_translate_ratio=0.2,
         scaling_ratio_range=affine_scale, max_shear_degree=shear),
    dict(type="MixUp", prob=mixup_prob, scale=(0.5, 1.5)),
    dict(type="FilterBoxes", min_area=4.0),
    dict(type="Resize", scale=input_size, keep_ratio=False),
    dict(type="RandomFlip", prob=0.5),
    dict(type="ScaleAwareBoxAugment", ramp_epochs=max_epochs - no_aug_epochs),  # SADA
    dict(type="PackDetInputs"),
]
last_stage_pipeline = [  # the last no_aug_epochs (PipelineSwitchHook)
    dict(type="Resize", scale=input_size, keep_ratio=False),
    dict(type="RandomFlip", prob=0.5),
    dict(type="PackDetInputs"),
]
train_dataloader = dict(
    batch_size=batch_size,
    num_workers=num_workers,
    persistent_workers=False,  # workers are re-forked each epoch and see the data set's epoch and pipeline
    sampler=dict(type="DefaultSampler", shuffle=True),
    collate_fn=dict(type="collate_detections"),
    dataset=dict(
        type="DetectionTrainDataset",
        data_root=data_root,
        ann_file="annotations/instances_train2017.json",  # under data_root
        img_dir="train2017/",
        class_names=coco_classes,
        pipeline=train_pipeline,
    ),
)
val_dataloader = dict(
    batch_size=8,
    num_workers=2,
    persistent_workers=False,
    drop_last=False,
    sampler=dict(type="DefaultSampler", shuffle=False),
    collate_fn=dict(type="collate_detections"),
    dataset=dict(
        type="DetectionValDataset",
        data_root=data_root,
        ann_file="annotations/instances_val2017.json",
        img_dir="val2017/",
        class_names=coco_classes,
        input_size=input_size,
        keep_ratio=False,
    ),
)
test_dataloader = val_dataloader
val_evaluator = dict(type="CocoDetectionMetric", data_root=data_root, ann_file="annotations/instances_val2017.json",
                     class_names=coco_classes)
test_evaluator = val_evaluator

optim_wrapper = dict(
    type="OptimWrapper",
    optimizer=dict(type="SGD", lr=base_lr, momentum=0.9, nesterov=True, weight_decay=5e-4),
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0),  # no decay on norms and biases
    clip_grad=None,  # distillation: dict(max_norm=30.0), as the reference clips only when distilling
)
# quadratic warm-up from 0, cosine down to min_lr_ratio, flat for the last no_aug_epochs; set per iteration
param_scheduler = [
    dict(type="QuadraticWarmupFromZeroLR", begin=0, end=warmup_epochs, convert_to_iter_based=True),
    dict(type="CosineToMinLR", begin=warmup_epochs, end=max_epochs - no_aug_epochs, min_ratio=min_lr_ratio,
         convert_to_iter_based=True),
    dict(type="FlatTailLR", begin=max_epochs - no_aug_epochs, end=max_epochs, factor=min_lr_ratio,
         convert_to_iter_based=True),
]
train_cfg = dict(type="EpochBasedTrainLoop", max_epochs=max_epochs, val_interval=val_interval,
                 dynamic_intervals=[(max_epochs - no_aug_epochs, 1)])  # every epoch once augmentation is off
val_cfg = dict(type="ValLoop")
test_cfg = dict(type="TestLoop")

custom_hooks = [
    dict(type="TrainProgressHook"),
    dict(type="PipelineSwitchHook", switch_epoch=max_epochs - no_aug_epochs, switch_pipeline=last_stage_pipeline),
    dict(type="EMAHook", ema_type="DAMOModelEMA", update_buffers=True, priority=49),
    dict(type="ExportCheckpointHook", metric="coco/mAP"),
]
auto_scale_lr = dict(enable=False, base_batch_size=256)  # damo-train --auto-scale-lr rescales base_lr to your batch
sync_bn = "torch"  # BN statistics over all GPUs when distributed, as the reference
