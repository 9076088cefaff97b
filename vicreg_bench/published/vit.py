"""Published ImageNet numbers of self-supervised ViTs: DINO, DINOv2, MAE and MoCo v3, with their sources.

Each value was read from the paper's table, or, where noted, from the table of the official repository
that reports the paper's numbers (checked against the repositories facebookresearch/dino, dinov2, mae and
moco-v3). Percent top-1 on ImageNet-1k val. These rows are references for ViT checkpoints: the VICReg
paper's own tables (published/vicreg.py) are ResNet-50 only.
"""

from __future__ import annotations

from vicreg_bench.published.tables import Paper, PublishedTable

DINO = Paper(key="dino", title="Emerging Properties in Self-Supervised Vision Transformers",
             authors="Mathilde Caron, Hugo Touvron, Ishan Misra, Herve Jegou, Julien Mairal, Piotr Bojanowski, "
                     "Armand Joulin", venue="ICCV 2021", arxiv="2104.14294", short="DINO paper")
DINOV2 = Paper(key="dinov2", title="DINOv2: Learning Robust Visual Features without Supervision",
               authors="Maxime Oquab, Timothee Darcet, Theo Moutakanni, et al.", venue="TMLR 2024",
               arxiv="2304.07193", short="DINOv2 paper")
MAE = Paper(key="mae", title="Masked Autoencoders Are Scalable Vision Learners",
            authors="Kaiming He, Xinlei Chen, Saining Xie, Yanghao Li, Piotr Dollar, Ross Girshick",
            venue="CVPR 2022", arxiv="2111.06377", short="MAE paper")
MOCO_V3 = Paper(key="moco_v3", title="An Empirical Study of Training Self-Supervised Vision Transformers",
                authors="Xinlei Chen, Saining Xie, Kaiming He", venue="ICCV 2021", arxiv="2104.02057",
                short="MoCo v3 paper")

DINO_TABLE2 = PublishedTable(
    paper=DINO,
    number=2,
    caption="Linear and k-NN classification on ImageNet (top-1), self-supervised ViTs; the DINO rows.",
    columns=("Linear", "k-NN"),
    rows=(
        ("DINO ViT-S/16", (77.0, 74.5)),
        ("DINO ViT-B/16", (78.2, 76.1)),
    ),
    row_archs={"DINO ViT-S/16": "vit_small_patch16_224", "DINO ViT-B/16": "vit_base_patch16_224"},
    cell_notes={("DINO ViT-S/16", "Linear"): "DINO's eval_linear.py: the last 4 CLS tokens, a Linear head, 100 epochs",
                ("DINO ViT-B/16", "Linear"): "DINO's eval_linear.py: the last CLS token and the mean patch token, "
                                             "a Linear head, 100 epochs",
                ("DINO ViT-S/16", "k-NN"): "DINO's eval_knn.py, 20 neighbours, T 0.07",
                ("DINO ViT-B/16", "k-NN"): "DINO's eval_knn.py, 20 neighbours, T 0.07"},
)

DINOV2_MODELS = PublishedTable(
    paper=DINOV2,
    number="models",
    location="model table of the facebookresearch/dinov2 README (the paper's distilled models)",
    caption="ImageNet k-NN and linear top-1 of the released (distilled) DINOv2 backbones, without registers.",
    columns=("ImageNet k-NN", "ImageNet linear"),
    rows=(
        ("DINOv2 ViT-S/14 distilled", (79.0, 81.1)),
        ("DINOv2 ViT-B/14 distilled", (82.1, 84.5)),
    ),
    row_archs={"DINOv2 ViT-S/14 distilled": "vit_small_patch14_dinov2",
               "DINOv2 ViT-B/14 distilled": "vit_base_patch14_dinov2"},
    cell_notes={**{(r, "ImageNet k-NN"): "DINOv2's eval/knn.py (weighted k-NN, T 0.07, k in 10/20/100/200; "
                                         "the README does not say which k): shown in the 20-NN column"
                   for r in ("DINOv2 ViT-S/14 distilled", "DINOv2 ViT-B/14 distilled")},
                **{(r, "ImageNet linear"): "DINOv2's eval/linear.py: the best of a grid of linear heads (learning "
                                           "rates, last 1 or 4 CLS tokens, with or without the mean patch token)"
                   for r in ("DINOv2 ViT-S/14 distilled", "DINOv2 ViT-B/14 distilled")}},
)

MAE_RESULTS = PublishedTable(
    paper=MAE,
    number="ImageNet-1K",
    location="ImageNet-1K results (facebookresearch/mae README fine-tuning table; FINETUNE.md linear probing, "
             "row 'paper (TF/TPU)')",
    caption="MAE ViT-B/16 pretrained on ImageNet-1K: linear probing and end-to-end fine-tuning top-1.",
    columns=("Linear probing", "Fine-tuning"),
    rows=(("MAE ViT-B/16", (68.0, 83.6)),),
    row_archs={"MAE ViT-B/16": "vit_base_patch16_224"},
    cell_notes={("MAE ViT-B/16", "Linear probing"): "MAE's linear probing: BatchNorm (no affine) + Linear, LARS, "
                                                    "batch 16384, 90 epochs; its fine-tuning (100% labels): 83.6"},
)

MOCO_V3_LINEAR = PublishedTable(
    paper=MOCO_V3,
    number="ViT linear",
    location="ViT linear classification table of the facebookresearch/moco-v3 README (the paper's 300-epoch "
             "models)",
    caption="MoCo v3 ViTs, 300 pretraining epochs, linear classification top-1 on ImageNet.",
    columns=("linear acc",),
    rows=(("MoCo v3 ViT-S/16", (73.2,)), ("MoCo v3 ViT-B/16", (76.7,))),
    row_archs={"MoCo v3 ViT-S/16": "vit_small_patch16_224:num_heads=12", "MoCo v3 ViT-B/16": "vit_base_patch16_224"},
)

PAPERS = (DINO, DINOV2, MAE, MOCO_V3)
TABLES: tuple[PublishedTable, ...] = (DINO_TABLE2, DINOV2_MODELS, MAE_RESULTS, MOCO_V3_LINEAR)
METHOD_IDS = {"DINO ViT-S/16": "dino", "DINO ViT-B/16": "dino", "DINOv2 ViT-S/14 distilled": "dinov2",
              "DINOv2 ViT-B/14 distilled": "dinov2", "MAE ViT-B/16": "mae", "MoCo v3 ViT-S/16": "moco_v3",
              "MoCo v3 ViT-B/16": "moco_v3"}
