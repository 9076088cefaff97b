"""Frozen features: the deterministic transforms, the on-disk cache, and the extraction that fills it.

- `transforms`: the named deterministic feature transforms (eval, knn, svm_squash, svm_center_crop);
- `feature_set`: `FeatureSet`, the features of one dataset split as tasks receive them;
- `cache`: cache keys and `CacheEntry`, one resumable sharded extraction on disk;
- `extract`: the frozen trunk, `features_for_dataset` and `FeatureExtractor`, what a run calls;
- `files`: the `.npz` feature files of the `knn`, `svm` and `linear` commands.
"""

from vicreg_bench.features.extract import FeatureExtractor, features_for_dataset
from vicreg_bench.features.feature_set import FeatureSet

__all__ = ["FeatureExtractor", "FeatureSet", "features_for_dataset"]
