"""VICReg pretraining (`vicreg-train`), equal to facebookresearch/vicreg by default.

Public API: `vicreg_loss`, `LARS`, `exclude_bias_and_norm` (see DESIGN.md); the network is
`trainers.vicreg.model.VICReg` and the command line `trainers.vicreg.train:main`.
"""

from .loss import vicreg_loss
from .optim import LARS, exclude_bias_and_norm, learning_rate

__all__ = ["vicreg_loss", "LARS", "exclude_bias_and_norm", "learning_rate"]
