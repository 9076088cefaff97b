"""The VICReg paper's published numbers (Tables 1, 2 and 5), typed in as data with their source.

Source: Bardes, Ponce, LeCun, "VICReg: Variance-Invariance-Covariance Regularization for
Self-Supervised Learning", ICLR 2022 (arXiv:2105.04906); the text used here is
`shared/paper/000_9a701a24304f970b.txt`. Every number is a ResNet-50 result (the tables' captions),
in percent. A cell the paper prints as "-" is None here. The rows are kept exactly as printed (method
name with its citation).
"""

from __future__ import annotations

from vicreg_bench.published.tables import Paper, PublishedTable

PAPER = Paper(
    key="vicreg",
    title="VICReg: Variance-Invariance-Covariance Regularization for Self-Supervised Learning",
    authors="Adrien Bardes, Jean Ponce, Yann LeCun",
    venue="ICLR 2022",
    arxiv="2105.04906",
    short="VICReg paper",
)
ARCH = "resnet50"  # all three tables compare ResNet-50 backbones (table captions)


TABLE1 = PublishedTable(
    paper=PAPER,
    number=1,
    arch=ARCH,
    caption="Evaluation on ImageNet: linear classification on frozen ResNet-50 features, and "
    "semi-supervised classification with 1% and 10% of the labels. Top-1 and Top-5 accuracy (%).",
    columns=(
        "Linear Classification Top-1",
        "Linear Classification Top-5",
        "Semi-supervised Top-1 1%",
        "Semi-supervised Top-1 10%",
        "Semi-supervised Top-5 1%",
        "Semi-supervised Top-5 10%",
    ),
    rows=(
        ("Supervised", (76.5, None, 25.4, 56.4, 48.4, 80.4)),
        ("MoCo [22]", (60.6, None, None, None, None, None)),
        ("PIRL [33]", (63.6, None, None, None, 57.2, 83.8)),
        ("CPC v2 [28]", (63.8, None, None, None, None, None)),
        ("CMC [39]", (66.2, None, None, None, None, None)),
        ("SimCLR [8]", (69.3, 89.0, 48.3, 65.6, 75.5, 87.8)),
        ("MoCo v2 [10]", (71.1, None, None, None, None, None)),
        ("SimSiam [11]", (71.3, None, None, None, None, None)),
        ("SwAV [7]", (71.8, None, None, None, None, None)),
        ("InfoMin Aug [40]", (73.0, 91.1, None, None, None, None)),
        ("BYOL [21]", (74.3, 91.6, 53.2, 68.8, 78.4, 89.0)),
        ("SwAV (w/ multi-crop) [7]", (75.3, None, 53.9, 70.2, 78.5, 89.9)),
        ("Barlow Twins [49]", (73.2, 91.0, 55.0, 69.7, 79.2, 89.3)),
        ("VICReg (ours)", (73.2, 91.1, 54.8, 69.5, 79.4, 89.5)),
    ),
)

_BY_US = "the paper's \u2020: number from another method run by the VICReg authors"

TABLE2 = PublishedTable(
    paper=PAPER,
    number=2,
    arch=ARCH,
    caption="Transfer learning: linear classification on frozen features (Top-1 for Places205 and "
    "iNat18, mAP for the VOC07 SVM); VOC07+12 detection AP50 (Faster R-CNN R50-C4); COCO detection "
    "and instance segmentation AP (Mask R-CNN R50-FPN).",
    columns=(
        "Places205",
        "VOC07",
        "iNat18",
        "VOC07+12",
        "COCO det",
        "COCO seg",
    ),
    rows=(
        ("Supervised", (53.2, 87.5, 46.7, 81.3, 39.0, 35.4)),
        ("MoCo [22]", (46.9, 79.8, 31.5, None, None, None)),
        ("PIRL [33]", (49.8, 81.1, 34.1, None, None, None)),
        ("SimCLR [8]", (52.5, 85.5, 37.2, None, None, None)),
        ("MoCo v2 [10]", (51.8, 86.4, 38.6, 82.5, 39.8, 36.1)),
        ("SimSiam [11]", (None, None, None, 82.4, None, None)),
        ("BYOL [21]", (54.0, 86.6, 47.6, None, 40.4, 37.0)),
        ("SwAV (w/ multi-crop) [7]", (56.7, 88.9, 48.6, 82.6, 41.6, 37.8)),
        # Printed as "Barlow Twins [21]" in Table 2 ([21] is BYOL's reference: a typo in the paper).
        ("Barlow Twins [21]", (54.1, 86.2, 46.5, 82.6, 40.0, 36.7)),
        ("VICReg (ours)", (54.3, 86.6, 47.0, 82.4, 39.4, 36.4)),
    ),
    cell_notes={
        ("BYOL [21]", "COCO det"): _BY_US,
        ("BYOL [21]", "COCO seg"): _BY_US,
        ("Barlow Twins [21]", "COCO det"): _BY_US,
        ("Barlow Twins [21]", "COCO seg"): _BY_US,
    },
)

TABLE5 = PublishedTable(
    paper=PAPER,
    number=5,
    arch=ARCH,
    caption="k-NN classifiers on ImageNet: Top-1 accuracy with 20 and 200 nearest neighbors.",
    columns=(
        "20-NN",
        "200-NN",
    ),
    rows=(
        ("NPID [43]", (None, 46.5)),
        ("LA [51]", (None, 49.4)),
        ("PCL [30]", (54.5, None)),
        ("BYOL [21]", (66.7, 64.9)),
        ("SwAV [7]", (65.7, 62.7)),
        ("Barlow Twins [49]", (64.8, 62.9)),
        ("VICReg", (64.5, 62.8)),
    ),
)

TABLES: tuple[PublishedTable, ...] = (TABLE1, TABLE2, TABLE5)

# Printed method name (normalised) -> the harness's method name, where the harness has one.
METHOD_IDS = {
    "VICReg": "vicreg",
    "Barlow Twins": "barlowtwins",
    "BYOL": "byol",
    "SimCLR": "simclr",
    "MoCo v2": "moco_v2",
    "SwAV": "swav",
    "SwAV (w/ multi-crop)": "swav",
    "Supervised": "supervised",
}


