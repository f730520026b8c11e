# DAMO-YOLO on COCO 2017, the reference recipe (tinyvision/DAMO-YOLO configs/damoyolo_tinynasL*.py):
# 300 epochs at a total batch of 256, SGD (Nesterov) with lr 0.01 per 64 images, 5 warm-up epochs,
# cosine to 5%, the last 16 epochs without mosaic/mixup, EMA; stretch resize to the model input.
_base_ = ["./default_runtime.py"]

# ======================= frequently modified =======================
variant = "S"                      # T, S, M, L, Ns, Nm, Nl
data_root = "data/coco/"           # annotations/instances_{train,val}2017.json, train2017/, val2017/
input_size = (640, 640)            # (H, W) of training and test images; the Nano variants use 416
batch_size = 32                    # per GPU: 8 GPUs x 32 = 256 as the reference
num_workers = 8
max_epochs = 300
base_lr = 0.01 / 64 * 256          # lr per image x total batch
val_interval = 10

# ======================= possibly modified =========================
from damo_yolo.models.zoo import COCO_CLASSES as coco_classes  # noqa: E402  the 80 names, contiguous order
mosaic_size = (640, 640)           # stays 640 for the Nano models too
mixup_prob = 0.15
affine_scale = (0.1, 2.0)          # Ns: (0.75, 1.25)
shear = 2.0                        # T and the Nano models: 0.2
warmup_epochs = 5
no_aug_epochs = 16
min_lr_ratio = 0.05

# ======================= unmodified in most cases ==================
model = dict(type="DAMOYOLODetector", variant=variant, num_classes=len(coco_classes))

train_dataloader = dict(
    batch_size=batch_size,
    num_workers=num_workers,
    persistent_workers=False,  # workers are re-forked each epoch and see the data set's epoch/augment flag
    sampler=dict(type="DefaultSampler", shuffle=True),
    collate_fn=dict(type="collate_detections"),
    dataset=dict(
        type="DetectionTrainDataset",
        ann_file=data_root + "annotations/instances_train2017.json",
        img_dir=data_root + "train2017/",
        input_size=input_size,
        class_names=coco_classes,
        mosaic_size=mosaic_size,
        mosaic_prob=1.0,
        mixup_prob=mixup_prob,
        degrees=10.0,
        translate=0.2,
        scale=affine_scale,
        shear=shear,
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
        ann_file=data_root + "annotations/instances_val2017.json",
        img_dir=data_root + "val2017/",
        input_size=input_size,
        class_names=coco_classes,
        keep_ratio=False,
    ),
)
test_dataloader = val_dataloader
val_evaluator = dict(type="CocoDetectionMetric", ann_file=data_root + "annotations/instances_val2017.json",
                     class_names=coco_classes)
test_evaluator = val_evaluator

optim_wrapper = dict(
    type="OptimWrapper",
    optimizer=dict(type="SGD", lr=base_lr, momentum=0.9, nesterov=True, weight_decay=5e-4),
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0),  # no decay on norms and biases
)
train_cfg = dict(type="EpochBasedTrainLoop", max_epochs=max_epochs, val_interval=val_interval,
                 dynamic_intervals=[(max_epochs - no_aug_epochs, 1)])  # validate every epoch at the end
val_cfg = dict(type="ValLoop")
test_cfg = dict(type="TestLoop")

custom_hooks = [
    dict(type="DAMOScheduleHook", warmup_epochs=warmup_epochs, no_aug_epochs=no_aug_epochs,
         min_lr_ratio=min_lr_ratio),
    dict(type="EMAHook", ema_type="DAMOModelEMA", update_buffers=True, priority=49),
    dict(type="ExportCheckpointHook", metric="coco/mAP"),
]
auto_scale_lr = dict(enable=False, base_batch_size=256)
sync_bn = "torch"  # BN statistics over all GPUs when distributed, as the reference  # --auto-scale-lr rescales base_lr to your batch
