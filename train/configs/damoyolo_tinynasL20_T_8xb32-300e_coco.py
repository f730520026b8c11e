# DAMO-YOLO-T (TinyNAS-L20) on COCO, 8 GPUs x 32 images, 300 epochs: the reference recipe.
_base_ = ["./_base_/damoyolo_coco.py"]

variant = "T"
shear = 0.2  # T uses the mild shear of the Nano models

model = dict(variant=variant)
train_pipeline = [
    dict(type="Mosaic", img_scale=(640, 640), prob=1.0),
    dict(type="RandomAffine", img_scale=(640, 640), max_rotate_degree=10.0, max_translate_ratio=0.2,
         scaling_ratio_range=(0.1, 2.0), max_shear_degree=shear),
    dict(type="MixUp", prob=0.15, scale=(0.5, 1.5)),
    dict(type="FilterBoxes", min_area=4.0),
    dict(type="Resize", scale=(640, 640), keep_ratio=False),
    dict(type="RandomFlip", prob=0.5),
    dict(type="ScaleAwareBoxAugment", ramp_epochs=300 - 16),
    dict(type="PackDetInputs"),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
