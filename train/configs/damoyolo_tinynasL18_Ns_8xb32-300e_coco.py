# DAMO-YOLO-Ns (TinyNAS mobile) on COCO, 8 GPUs x 32 images, 300 epochs, 416 input.
_base_ = ["./_base_/damoyolo_nano_coco.py"]

variant = "Ns"
affine_scale = (0.75, 1.25)  # Ns: milder scale jitter than the other models

model = dict(variant=variant)
train_pipeline = [
    dict(type="Mosaic", img_scale=(640, 640), prob=1.0),
    dict(type="RandomAffine", img_scale=(640, 640), max_rotate_degree=10.0, max_translate_ratio=0.2,
         scaling_ratio_range=affine_scale, max_shear_degree=0.2),
    dict(type="MixUp", prob=0.15, scale=(0.5, 1.5)),
    dict(type="FilterBoxes", min_area=4.0),
    dict(type="Resize", scale=(416, 416), keep_ratio=False),
    dict(type="RandomFlip", prob=0.5),
    dict(type="ScaleAwareBoxAugment", ramp_epochs=300 - 16),
    dict(type="PackDetInputs"),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
