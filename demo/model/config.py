affine_scale = (
    0.1,
    2.0,
)
auto_scale_lr = dict(base_batch_size=256, enable=False)
base_lr = 0.04
batch_size = 16
coco_classes = (
    'person',
    'bicycle',
    'car',
    'motorcycle',
    'airplane',
    'bus',
    'train',
    'truck',
    'boat',
    'traffic light',
    'fire hydrant',
    'stop sign',
    'parking meter',
    'bench',
    'bird',
    'cat',
    'dog',
    'horse',
    'sheep',
    'cow',
    'elephant',
    'bear',
    'zebra',
    'giraffe',
    'backpack',
    'umbrella',
    'handbag',
    'tie',
    'suitcase',
    'frisbee',
    'skis',
    'snowboard',
    'sports ball',
    'kite',
    'baseball bat',
    'baseball glove',
    'skateboard',
    'surfboard',
    'tennis racket',
    'bottle',
    'wine glass',
    'cup',
    'fork',
    'knife',
    'spoon',
    'bowl',
    'banana',
    'apple',
    'sandwich',
    'orange',
    'broccoli',
    'carrot',
    'hot dog',
    'pizza',
    'donut',
    'cake',
    'chair',
    'couch',
    'potted plant',
    'bed',
    'dining table',
    'toilet',
    'tv',
    'laptop',
    'mouse',
    'remote',
    'keyboard',
    'cell phone',
    'microwave',
    'oven',
    'toaster',
    'sink',
    'refrigerator',
    'book',
    'clock',
    'vase',
    'scissors',
    'teddy bear',
    'hair drier',
    'toothbrush',
)
custom_hooks = [
    dict(
        min_lr_ratio=0.05,
        no_aug_epochs=5,
        type='DAMOScheduleHook',
        warmup_epochs=2),
    dict(
        ema_type='DAMOModelEMA',
        priority=49,
        ramp=200.0,
        type='EMAHook',
        update_buffers=True),
    dict(metric='coco/mAP', type='ExportCheckpointHook'),
]
custom_imports = dict(
    allow_failed_imports=False, imports=[
        'damo_yolo.training',
    ])
data_root = 'data/synthetic/'
default_hooks = dict(
    checkpoint=dict(
        backend_args=dict(backend='atomic_local'),
        interval=1,
        max_keep_ckpts=2,
        rule='greater',
        save_best='coco/mAP',
        type='CheckpointHook'),
    logger=dict(interval=10, type='LoggerHook'),
    param_scheduler=dict(type='ParamSchedulerHook'),
    safe_checkpoints=dict(type='SafeCheckpointContents'),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    timer=dict(type='IterTimerHook'))
env_cfg = dict(
    cudnn_benchmark=False,
    dist_cfg=dict(backend='gloo'),
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0))
input_size = (
    256,
    256,
)
launcher = 'none'
load_from = None
log_level = 'INFO'
log_processor = dict(by_epoch=True, type='LogProcessor', window_size=50)
lr = 0.004
max_epochs = 40
min_lr_ratio = 0.05
mixup_prob = 0.15
model = dict(
    channels_last=True, num_classes=8, type='DAMOYOLODetector', variant='Ns')
mosaic_size = (
    640,
    640,
)
nano_input = (
    416,
    416,
)
nano_lr = 0.004
no_aug_epochs = 16
num_workers = 8
optim_wrapper = dict(
    optimizer=dict(lr=0.004, type='AdamW', weight_decay=0.01),
    paramwise_cfg=dict(bias_decay_mult=0.0, norm_decay_mult=0.0),
    type='OptimWrapper')
randomness = dict(seed=0)
resume = False
shear = 2.0
sync_bn = None
test_cfg = dict(type='TestLoop')
test_dataloader = dict(
    batch_size=16,
    collate_fn=dict(type='collate_detections'),
    dataset=dict(
        ann_file='data/synthetic/annotations/instances_val.json',
        class_names=None,
        img_dir='data/synthetic/val/',
        input_size=(
            256,
            256,
        ),
        keep_ratio=False,
        type='DetectionValDataset'),
    drop_last=False,
    num_workers=2,
    persistent_workers=False,
    sampler=dict(shuffle=False, type='DefaultSampler'))
test_evaluator = dict(
    ann_file='data/synthetic/annotations/instances_val.json',
    class_names=None,
    type='CocoDetectionMetric')
train_cfg = dict(
    dynamic_intervals=[
        (
            35,
            1,
        ),
    ],
    max_epochs=40,
    type='EpochBasedTrainLoop',
    val_interval=5)
train_dataloader = dict(
    batch_size=16,
    collate_fn=dict(type='collate_detections'),
    dataset=dict(
        ann_file='data/synthetic/annotations/instances_train.json',
        class_names=None,
        degrees=10.0,
        flip_prob=0.5,
        hsv_gains=(
            0.015,
            0.7,
            0.4,
        ),
        img_dir='data/synthetic/train/',
        input_size=(
            256,
            256,
        ),
        keep_ratio=False,
        mixup_prob=0.15,
        mosaic_prob=1.0,
        mosaic_size=(
            256,
            256,
        ),
        scale=(
            0.5,
            1.5,
        ),
        shear=0.2,
        translate=0.2,
        type='DetectionTrainDataset'),
    num_workers=2,
    persistent_workers=False,
    sampler=dict(shuffle=True, type='DefaultSampler'))
val_cfg = dict(type='ValLoop')
val_dataloader = dict(
    batch_size=16,
    collate_fn=dict(type='collate_detections'),
    dataset=dict(
        ann_file='data/synthetic/annotations/instances_val.json',
        class_names=None,
        img_dir='data/synthetic/val/',
        input_size=(
            256,
            256,
        ),
        keep_ratio=False,
        type='DetectionValDataset'),
    drop_last=False,
    num_workers=2,
    persistent_workers=False,
    sampler=dict(shuffle=False, type='DefaultSampler'))
val_evaluator = dict(
    ann_file='data/synthetic/annotations/instances_val.json',
    class_names=None,
    type='CocoDetectionMetric')
val_interval = 10
variant = 'S'
visualizer = dict(
    type='Visualizer',
    vis_backends=[
        dict(type='LocalVisBackend'),
        dict(type='TensorboardVisBackend'),
    ])
warmup_epochs = 5
work_dir = 'work_dirs/damoyolo_tinynasL18_Ns_1xb16-40e_synthetic'
