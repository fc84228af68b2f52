"""Whether ``torch.compile`` pays for a fine-tuning run, from the backbone's measured H100 figures."""

from __future__ import annotations

from nlbench.backbones import BackboneCost, backbone_facts
from nlbench.registry import BACKBONES

# The input size the measured rates were taken at; a run at another size scales them by (size / 224)².
REFERENCE_SIZE = 224


def measured_cost(backbone: str) -> BackboneCost | None:
    """The measured H100 figures ``backbone`` declares (None when it declares none or is not registered)."""
    return backbone_facts(backbone).cost if backbone in BACKBONES else None


def compile_pays(backbone: str, train_images: float, *, scale: float = 1.0) -> bool:
    """Whether torch.compile shortens a fine-tuning run of ``train_images`` images (224-px equivalents ×
    ``scale``) on ``backbone``: only with measured compiled and eager rates and compile time, and only
    when the time saved exceeds one compilation."""
    cost = measured_cost(backbone)
    if cost is None or not cost.train_img_s_compiled or cost.compile_s is None:
        return False
    saved = train_images * scale * (1.0 / cost.train_img_s - 1.0 / cost.train_img_s_compiled)
    return saved > cost.compile_s
