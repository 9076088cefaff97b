"""Two resnet18 backbone files for end-to-end tests of `run`: a random one and a briefly trained one.

The trained one gets 20 Adam steps of supervised training on the synthetic ImageNet images (train and
val, 32 px, the k-NN transform). Twenty steps on 60 training images do not generalise to unseen images,
so the steps also see the val images: the point of the pair is a checkpoint whose features are known to
separate the val classes better than random ones, so that a harness that misaligns features and labels,
or evaluates the wrong images, is caught by "trained scores above random" on k-NN and the linear probes.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

IMAGE_SIZE, RESIZE = 32, 37  # what the run tests pass as --image-size (resize = round(32 * 256 / 224))


def save_backbone(model: torch.nn.Module, path: Path) -> Path:
    """A torchvision-style backbone file (flat state dict, no fc), like VICReg's resnet50.pth."""
    torch.save({k: v for k, v in model.state_dict().items() if not k.startswith("fc.")}, path)
    return path


def make_tiny_checkpoints(data_root: Path, out_dir: Path, steps: int = 20, seed: int = 0) -> dict[str, Path]:
    from vicreg_bench.data.registry import open_classification
    from vicreg_bench.data.transforms import eval_transform
    from vicreg_bench.models import build_resnet

    out_dir.mkdir(parents=True, exist_ok=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # faster than 2 contended threads for such small batches
    try:
        torch.manual_seed(seed)
        model = build_resnet("resnet18", with_fc=True, num_classes=10)
        random_path = save_backbone(model, out_dir / "random_resnet18.pth")
        tf = eval_transform(size=IMAGE_SIZE, resize=RESIZE, interpolation="bicubic")
        images, labels = [], []
        for split in ("train", "val"):
            ds = open_classification("imagenet", data_root, split, transform=tf)
            for i in range(len(ds)):
                img, label, _ = ds[i]
                images.append(img)
                labels.append(label)
        x, y = torch.stack(images), torch.tensor(labels)
        opt = torch.optim.Adam(model.parameters(), lr=2e-3)
        g = torch.Generator().manual_seed(seed)
        model.train()
        for _ in range(steps):
            idx = torch.randperm(len(x), generator=g)[:30]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        trained_path = save_backbone(model, out_dir / "trained_resnet18.pth")
    finally:
        torch.set_num_threads(threads)
    return {"random": random_path, "trained": trained_path}
