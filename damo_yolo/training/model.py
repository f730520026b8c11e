"""The mmengine face of DAMO-YOLO: a BaseModel whose state dict is exactly the detector's.

It adopts the ``backbone``, ``neck`` and ``head`` of :func:`damo_yolo.models.build_model`, so checkpoint
keys stay in the official layout (``backbone.``, ``neck.``, ``head.``) and the weights load straight into
the plain detector used by export. Modes: ``loss`` (AlignedOTA + GFL losses), ``predict`` (post-processed
detections in original image pixels, by the reference's evaluation protocol: no cap on the candidates entering
NMS, boxes not clipped to the image), ``tensor`` (the eval contract: scores, boxes).

Data samples are dicts: ``boxes`` [n, 4] xyxy and ``labels`` [n] in input pixels for ``loss``;
``img_id``, ``scale`` (scale_y, scale_x: input = original · scale) and ``orig_size`` (H, W) for ``predict``.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch
from mmengine.logging import MMLogger
from mmengine.model import BaseModel
from mmengine.registry import MODELS

from ..contract import MAX_DETECTIONS
from ..data.preprocess import ResizeInfo
from ..models import DAMOYOLO, build_model, detector_weights, get_model_cfg
from ..models.checkpoint import load_backbone_and_neck
from ..models.layers import DepthwiseConv
from ..postprocess import NMS_PRE, postprocess
from .distill import FeatureDistiller, distill_weight, load_teacher
from .losses import DAMOYOLOLoss


@MODELS.register_module()
class DAMOYOLODetector(BaseModel):
    def __init__(self, variant: str, num_classes: int = 80, score_threshold: Optional[float] = None,
                 iou_threshold: Optional[float] = None, max_detections: int = MAX_DETECTIONS,
                 channels_last: bool = False, teacher: Optional[dict] = None, finetune: Optional[str] = None,
                 served_postprocess: bool = False, depthwise_msra_init: bool = True,
                 data_preprocessor: Optional[dict] = None, detector: Optional[DAMOYOLO] = None):
        """``detector``: adopt this detector's modules (e.g. from ``load_model``) instead of building fresh ones.
        ``finetune``: a checkpoint whose backbone and neck the weights start from (see :meth:`init_weights`).
        ``served_postprocess``: ``predict`` as the serving backend post-processes (at most ``NMS_PRE``
        candidates into NMS, boxes clipped to the image) instead of the reference's evaluation protocol.
        ``depthwise_msra_init``: initialise the Nano neck's depthwise downsamplers as the reference does
        (see :meth:`init_weights`)."""
        super().__init__(data_preprocessor=data_preprocessor)
        if detector is None:
            detector = build_model(variant, num_classes)
        elif (detector.cfg.name, detector.num_classes) != (get_model_cfg(variant).name, num_classes):
            raise ValueError(f"the config's model is DAMO-YOLO-{variant} with {num_classes} classes, the checkpoint's "
                             f"DAMO-YOLO-{detector.cfg.name} with {detector.num_classes}")
        self.model_cfg, self.num_classes = detector.cfg, num_classes
        self.backbone, self.neck, self.head = detector.backbone, detector.neck, detector.head
        self.criterion = DAMOYOLOLoss(num_classes, detector.cfg.reg_max)
        self.score_threshold = detector.cfg.score_threshold if score_threshold is None else score_threshold
        self.iou_threshold = detector.cfg.iou_threshold if iou_threshold is None else iou_threshold
        self.max_detections = max_detections
        self.finetune, self.served_postprocess = finetune, served_postprocess
        self.depthwise_msra_init = depthwise_msra_init
        # Distillation: the teacher is held outside the module tree (not trained, saved, or EMA-averaged);
        # the align convs are trained with the student. ``train_progress`` is set by TrainProgressHook.
        self.distiller, self.train_progress = None, 0.0
        object.__setattr__(self, "_teacher", None)
        if teacher:
            teacher_model = load_teacher(teacher["config"], teacher["checkpoint"])
            object.__setattr__(self, "_teacher", teacher_model)
            self.distiller = FeatureDistiller(detector.cfg.neck_out_channels, teacher_model.cfg.neck_out_channels)
        # NHWC activations: the layout oneDNN's CPU convolutions (and AMP's on GPUs) run fastest in; same results
        self.channels_last = channels_last
        if channels_last:
            self.to(memory_format=torch.channels_last)

    def init_weights(self) -> None:
        """mmengine's initialisation (before ``load_from``/``resume``): the modules' own, the reference's
        MSRA init (normal, fan-out, ReLU gain) of the depthwise downsamplers' convs with
        ``depthwise_msra_init``, then, when fine-tuning, the backbone and neck from the checkpoint; the head
        stays fresh for this config's classes."""
        super().init_weights()
        if self.depthwise_msra_init:
            for module in self.modules():
                if isinstance(module, DepthwiseConv):
                    for conv in (module.depthwise, module.pointwise):
                        torch.nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
        if self.finetune:
            # logged from here, so the quiet console (hooks.QuietConsole) shows it as the project's own message
            MMLogger.get_current_instance().info(str(load_backbone_and_neck(self, self.finetune)))

    def detector_state_dict(self) -> dict[str, torch.Tensor]:
        """The weights in the official layout (no extra keys such as distillation adapters)."""
        return detector_weights(self.state_dict())

    def to_detector(self) -> DAMOYOLO:
        """A plain :class:`DAMOYOLO` with these weights (for export and inference)."""
        detector = build_model(self.model_cfg.name, self.num_classes)
        detector.load_state_dict({k: v.contiguous() for k, v in self.detector_state_dict().items()}, strict=True)
        return detector

    def forward(self, inputs: torch.Tensor, data_samples: Optional[list] = None, mode: str = "tensor"):
        if self.channels_last:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        feats = self.neck(self.backbone(inputs))
        if mode == "loss":
            scores, reg_logits, priors = self.head.forward_raw(feats)
            boxes = self.head.decode(reg_logits, priors)
            gt_boxes = [torch.as_tensor(s["boxes"], dtype=boxes.dtype, device=boxes.device).reshape(-1, 4)
                        for s in data_samples]
            gt_labels = [torch.as_tensor(s["labels"], dtype=torch.long, device=boxes.device).reshape(-1)
                         for s in data_samples]
            losses = self.criterion(scores, reg_logits, boxes, priors, gt_boxes, gt_labels)
            if self._teacher is not None:
                teacher = self._teacher.to(inputs.device)
                with torch.no_grad():
                    teacher_feats = teacher.eval().extract_features(inputs)
                losses["loss_distill"] = distill_weight(self.train_progress) * self.distiller(feats, teacher_feats)
            return losses
        scores, boxes = self.head(feats)
        if mode == "tensor":
            return scores, boxes
        if mode != "predict":
            raise ValueError(f"unknown mode {mode!r}; use 'loss', 'predict' or 'tensor'")
        results = []
        for i, sample in enumerate(data_samples or [{}] * len(inputs)):
            # the reference's evaluation protocol: every candidate enters NMS, boxes are not clipped (serving
            # keeps its candidate cap and clipping: damo_yolo.serving)
            det_boxes, det_scores, det_labels = postprocess(
                scores[i].float().cpu().numpy(), boxes[i].float().cpu().numpy(), self.score_threshold,
                self.iou_threshold, self.max_detections, nms_pre=NMS_PRE if self.served_postprocess else None)
            if "scale" in sample:
                h, w = sample["orig_size"]
                info = ResizeInfo(int(h), int(w), *map(float, sample["scale"]))
                det_boxes = info.to_original(det_boxes, clip=self.served_postprocess)
            results.append({"img_id": sample.get("img_id"), "boxes": det_boxes.astype(np.float32),
                            "scores": det_scores, "labels": det_labels})
        return results
