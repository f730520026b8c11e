affine_scale = (
    0.5,
    1.5,
)
auto_scale_lr = dict(base_batch_size=256, enable=False)
base_lr = 0.004
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
    dict(type='TrainProgressHook'),
    dict(
        switch_epoch=35,
        switch_pipeline=[
            dict(keep_ratio=False, scale=(
                256,
                256,
            ), type='Resize'),
            dict(prob=0.5, type='RandomFlip'),
            dict(type='PackDetInputs'),
        ],
        type='PipelineSwitchHook'),
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
        type='CheckpointHook'),
    checkpoint_format=dict(type='DetectorCheckpointFormat'),
    logger=dict(interval=10, type='LoggerHook'),
    param_scheduler=dict(type='ParamSchedulerHook'),
    safe_checkpoints=dict(type='SafeCheckpointContents'),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    timer=dict(type='IterTimerHook'))
env_cfg = dict(
    cudnn_benchmark=False,
    dist_cfg=dict(backend='gloo'),
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0))
finetune = None
input_size = (
    256,
    256,
)
last_stage_pipeline = [
    dict(keep_ratio=False, scale=(
        256,
        256,
    ), type='Resize'),
    dict(prob=0.5, type='RandomFlip'),
    dict(type='PackDetInputs'),
]
launcher = 'none'
load_from = None
log_level = 'INFO'
log_processor = dict(by_epoch=True, type='LogProcessor', window_size=50)
max_epochs = 40
min_lr_ratio = 0.05
mixup_prob = 0.15
model = dict(
    channels_last=True,
    depthwise_msra_init=False,
    finetune=None,
    num_classes=8,
    teacher=None,
    type='DAMOYOLODetector',
    variant='Ns')
mosaic_size = None
no_aug_epochs = 5
num_workers = 2
optim_wrapper = dict(
    clip_grad=None,
    optimizer=dict(lr=0.004, type='AdamW', weight_decay=0.01),
    paramwise_cfg=dict(bias_decay_mult=0.0, norm_decay_mult=0.0),
    type='OptimWrapper')
param_scheduler = [
    dict(
        begin=0,
        convert_to_iter_based=True,
        end=2,
        type='QuadraticWarmupFromZeroLR'),
    dict(
        begin=2,
        convert_to_iter_based=True,
        end=35,
        min_ratio=0.05,
        type='CosineToMinLR'),
    dict(
        begin=35,
        convert_to_iter_based=True,
        end=40,
        factor=0.05,
        type='FlatTailLR'),
]
randomness = dict(seed=0)
resume = False
shear = 0.2
sync_bn = None
teacher_checkpoint = None
teacher_config = None
test_cfg = dict(type='TestLoop')
test_dataloader = dict(
    batch_size=16,
    collate_fn=dict(type='collate_detections'),
    dataset=dict(
        ann_file='annotations/instances_val.json',
        class_names=None,
        data_root='data/synthetic/',
        img_dir='val/',
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
    ann_file='annotations/instances_val.json',
    class_names=None,
    data_root='data/synthetic/',
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
        ann_file='annotations/instances_train.json',
        class_names=None,
        data_root='data/synthetic/',
        img_dir='train/',
        pipeline=[
            dict(img_scale=(
                256,
                256,
            ), prob=1.0, type='Mosaic'),
            dict(
                img_scale=(
                    256,
                    256,
                ),
                max_rotate_degree=10.0,
                max_shear_degree=0.2,
                max_translate_ratio=0.2,
                scaling_ratio_range=(
                    0.5,
                    1.5,
                ),
                type='RandomAffine'),
            dict(prob=0.15, scale=(
                0.5,
                1.5,
            ), type='MixUp'),
            dict(min_area=4.0, type='FilterBoxes'),
            dict(keep_ratio=False, scale=(
                256,
                256,
            ), type='Resize'),
            dict(prob=0.5, type='RandomFlip'),
            dict(ramp_epochs=35, type='ScaleAwareBoxAugment'),
            dict(gains=(
                0.015,
                0.7,
                0.4,
            ), type='RandomHSV'),
            dict(type='PackDetInputs'),
        ],
        type='DetectionTrainDataset'),
    num_workers=2,
    persistent_workers=False,
    sampler=dict(shuffle=True, type='DefaultSampler'))
train_pipeline = [
    dict(img_scale=(
        256,
        256,
    ), prob=1.0, type='Mosaic'),
    dict(
        img_scale=(
            256,
            256,
        ),
        max_rotate_degree=10.0,
        max_shear_degree=0.2,
        max_translate_ratio=0.2,
        scaling_ratio_range=(
            0.5,
            1.5,
        ),
        type='RandomAffine'),
    dict(prob=0.15, scale=(
        0.5,
        1.5,
    ), type='MixUp'),
    dict(min_area=4.0, type='FilterBoxes'),
    dict(keep_ratio=False, scale=(
        256,
        256,
    ), type='Resize'),
    dict(prob=0.5, type='RandomFlip'),
    dict(ramp_epochs=35, type='ScaleAwareBoxAugment'),
    dict(gains=(
        0.015,
        0.7,
        0.4,
    ), type='RandomHSV'),
    dict(type='PackDetInputs'),
]
val_cfg = dict(type='ValLoop')
val_dataloader = dict(
    batch_size=16,
    collate_fn=dict(type='collate_detections'),
    dataset=dict(
        ann_file='annotations/instances_val.json',
        class_names=None,
        data_root='data/synthetic/',
        img_dir='val/',
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
    ann_file='annotations/instances_val.json',
    class_names=None,
    data_root='data/synthetic/',
    type='CocoDetectionMetric')
val_interval = 5
variant = 'Ns'
visualizer = dict(
    type='Visualizer',
    vis_backends=[
        dict(type='LocalVisBackend'),
        dict(type='TensorboardVisBackend'),
    ])
warmup_epochs = 2
work_dir = 'work_dirs/damoyolo_tinynasL18_Ns_1xb16-40e_synthetic'
