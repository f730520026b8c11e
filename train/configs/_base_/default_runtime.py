# mmengine runtime shared by every DAMO-YOLO config: hooks, logging, visualisation, environment.
custom_imports = dict(imports=["damo_yolo.training"], allow_failed_imports=False)

default_hooks = dict(
    timer=dict(type="IterTimerHook"),
    logger=dict(type="LoggerHook", interval=50),
    param_scheduler=dict(type="ParamSchedulerHook"),
    # mmengine checkpoints of the last two epochs (for --resume), written atomically. The best weights by val
    # mAP are ExportCheckpointHook's best.pth (the file export reads), so mmengine keeps no second best file.
    checkpoint=dict(type="CheckpointHook", interval=1, max_keep_ckpts=2, backend_args=dict(backend="atomic_local")),
    sampler_seed=dict(type="DistSamplerSeedHook"),
    safe_checkpoints=dict(type="SafeCheckpointContents"),  # resume loads with torch.load(weights_only=True)
    checkpoint_format=dict(type="DetectorCheckpointFormat"),  # load_from reads project and official checkpoints
)

env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method="fork", opencv_num_threads=0),
    dist_cfg=dict(backend="nccl"),
)

# scalars.json beside the logs, and tensorboard event files (tensorboard --logdir work_dirs)
visualizer = dict(type="Visualizer", vis_backends=[dict(type="LocalVisBackend"), dict(type="TensorboardVisBackend")])
log_processor = dict(type="LogProcessor", window_size=50, by_epoch=True)
log_level = "INFO"
load_from = None  # all weights that fit, from a project, official or mmengine checkpoint (mmengine's load_from)
resume = False
randomness = dict(seed=0)
