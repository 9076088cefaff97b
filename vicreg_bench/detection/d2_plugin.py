"""What detectron2 lacks for the VOC protocol: the C4 RoI head with an extra norm after res5.

MoCo's detection protocol (which the VICReg paper follows, appendix B.4) appends a normalisation layer,
of the type `MODEL.RESNETS.NORM` (synchronised BN), to the res5 stage of the C4 box head; MoCo defines it as
`Res5ROIHeadsExtraNorm` in its own train_net.py, so configs naming that head fail in plain detectron2.
`register()` adds a head of that name to detectron2's ROI_HEADS_REGISTRY. detectron2 is imported only here,
when the detectron2 engine actually runs; without it, `require_detectron2()` says how to install it.
"""

from __future__ import annotations

from vicreg_bench.errors import UserError

HEAD_NAME = "Res5ROIHeadsExtraNorm"
# the detectron2 commit whose config keys the configs in configs/detectron2 were checked against
DETECTRON2_COMMIT = "02b5c4e295e990042a714712c21dc79b731e8833"
INSTALL_HINT = (
    "detectron2 is not installed; it is not on PyPI and must be built from its source against your torch: "
    "from a vicreg-bench checkout, scripts/build_detectron2.sh SRC (SRC: a clone of "
    "https://github.com/facebookresearch/detectron2; it runs pip install --no-build-isolation --no-deps and "
    "installs the runtime dependencies; docs/detection.md), or use the Docker image built from docker/Dockerfile; "
    "or run the embedded engine with --det-engine torchvision"
)


def require_detectron2():
    """The detectron2 module, or a UserError with the install instructions."""
    try:
        import detectron2  # noqa: F401
    except ImportError as e:
        raise UserError(f"{INSTALL_HINT} ({e})") from None
    return detectron2


def register() -> None:
    """Register `Res5ROIHeadsExtraNorm` with detectron2 (idempotent)."""
    require_detectron2()
    from detectron2.layers import get_norm
    from detectron2.modeling.roi_heads import ROI_HEADS_REGISTRY, Res5ROIHeads

    if HEAD_NAME in ROI_HEADS_REGISTRY:
        return

    class Res5ROIHeadsExtraNorm(Res5ROIHeads):
        """detectron2's C4 head, whose res5 stage ends with one more norm layer (named `norm`)."""

        @classmethod
        def from_config(cls, cfg, input_shape):
            ret = super().from_config(cfg, input_shape)
            res5 = ret["res5"]
            res5.add_module("norm", get_norm(cfg.MODEL.RESNETS.NORM, res5[-1].out_channels))
            return ret

    ROI_HEADS_REGISTRY.register(Res5ROIHeadsExtraNorm)
