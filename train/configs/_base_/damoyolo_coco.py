# DAMO-YOLO on COCO 2017, the reference recipe (tinyvision/DAMO-YOLO configs/damoyolo_tinynasL*.py):
# 300 epochs at a total batch of 256, SGD (Nesterov) with lr 0.01 per 64 images, 5 warm-up epochs,
# cosine to 5%, the last 16 epochs without mosaic/mixup, EMA; stretch resize to the model input.
#
# The settings at the top take effect wherever they are set: here, in a child config or with
# `damo-train CONFIG --cfg-options data_root=... input_size="(512,512)"`. damo-train places each one in
# the dicts below after everything is merged (damo_yolo/training/config.py lists where each goes), so
# the dicts leave those keys out; a key set in both places must agree.
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

# ======================= possibly modified =========================
from damo_yolo.models.zoo import COCO_CLASSES as coco_classes  # noqa: E402  the 80 names, contiguous order
mosaic_size = (640, 640)           # canvas of the mosaic, 640 for the Nano models too; None: the input size
mixup_prob = 0.15
affine_scale = (0.1, 2.0)          # Ns: (0.75, 1.25)
shear = 2.0                        # T and the Nano models: 0.2
warmup_epochs = 5
no_aug_epochs = 16
min_lr_ratio = 0.05

# ======================= unmodified in most cases ==================
model = dict(type="DAMOYOLODetector", num_classes=len(coco_classes))

train_dataloader = dict(
    persistent_workers=False,  # workers are re-forked each epoch and see the data set's epoch/augment flag
    sampler=dict(type="DefaultSampler", shuffle=True),
    collate_fn=dict(type="collate_detections"),
    dataset=dict(
        type="DetectionTrainDataset",
        ann_file="annotations/instances_train2017.json",  # under data_root
        img_dir="train2017/",
        class_names=coco_classes,
        mosaic_prob=1.0,
        degrees=10.0,
        translate=0.2,
        flip_prob=0.5,
        hsv_gains=None,  # the reference has no HSV jitter (its SADA box-level policy is not reproduced)
        keep_ratio=False,
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
        ann_file="annotations/instances_val2017.json",
        img_dir="val2017/",
        class_names=coco_classes,
        keep_ratio=False,
    ),
)
test_dataloader = val_dataloader
val_evaluator = dict(type="CocoDetectionMetric", ann_file="annotations/instances_val2017.json",
                     class_names=coco_classes)
test_evaluator = val_evaluator

optim_wrapper = dict(
    type="OptimWrapper",
    optimizer=dict(type="SGD", momentum=0.9, nesterov=True, weight_decay=5e-4),
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0),  # no decay on norms and biases
)
train_cfg = dict(type="EpochBasedTrainLoop")  # dynamic_intervals: validate every epoch once augmentation is off
val_cfg = dict(type="ValLoop")
test_cfg = dict(type="TestLoop")

custom_hooks = [
    dict(type="DAMOScheduleHook"),  # warmup_epochs, no_aug_epochs, min_lr_ratio
    dict(type="EMAHook", ema_type="DAMOModelEMA", update_buffers=True, priority=49),
    dict(type="ExportCheckpointHook", metric="coco/mAP"),
]
auto_scale_lr = dict(enable=False, base_batch_size=256)  # damo-train --auto-scale-lr rescales base_lr to your batch
sync_bn = "torch"  # BN statistics over all GPUs when distributed, as the reference
