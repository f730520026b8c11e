from .coco_eval import COCO_METRIC_NAMES, evaluate_coco_results, precision_recall
from .served import evaluate_pipeline, evaluate_served, served_coco_results

__all__ = ["COCO_METRIC_NAMES", "evaluate_coco_results", "precision_recall", "evaluate_served",
           "evaluate_pipeline", "served_coco_results"]
