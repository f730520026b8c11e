from .coco_eval import COCO_METRIC_NAMES, evaluate_coco_results, per_class_ap

__all__ = ["COCO_METRIC_NAMES", "evaluate_coco_results", "per_class_ap"]
