"""Detection transfer (VOC07+12 Faster R-CNN R50-C4, COCO Mask R-CNN R50-FPN) with two engines.

- detectron2 (`d2_*` modules, configs/detectron2/): the protocol behind the published numbers; imported lazily.
- torchvision (`c4_model`, `fpn_model`, `tv_engine`): embedded, pip-installable, runs on CPU and CUDA.
Evaluation: `voc_eval.voc_detection_ap` (equal to detectron2's VOC evaluator) and `coco_eval` (pycocotools).
"""
