"""Synthetic label-noise models, one file each (``none.py``, ``symmetric.py``, ``asymmetric.py``,
``instance.py``; what they share: ``base.py``), each under the name of the code convention it follows.

Each model is a pure function of (clean labels, rate, seed, convention, and the inputs for
instance-dependent noise): the same arguments give the same labels on any machine, because all
randomness comes from one ``numpy.random.default_rng(seed)`` (PCG64, platform independent).
``apply_noise`` returns the noisy labels with the true/false mask, the realized transition matrix and
the model's expected one, so every run record can be audited.

Conventions (the name lands in every record as ``noise_audit.convention``):

=====  ==================  ====================================================================
model  convention          what it does, and whose code it follows
=====  ==================  ====================================================================
sym    reference           ⌊rN⌋ samples redrawn uniformly from all C classes (DivideMix, ELR,
                           UNICON code); realized flip rate r·(1 − 1/C)
sym    exclusive           ⌊rN⌋ samples moved to one of the other C − 1 classes; realized rate r
asym   block               CIFAR-100 of the ELR/DivideMix code: classes in index order in blocks
                           of 5, each to the next one of its block, cyclically
asym   superclass          the same cycle inside CIFAR-100's 20 real super-classes
asym   next                y → (y + 1) mod C
asym   dataset             the fixed mapping of CIFAR-10 (DivideMix/ELR code), Fashion-MNIST or
                           digits (ours, documented in ``ASYM_MAPS``)
asym   file:NAME:SHA       a user's JSON mapping or (C, C) transition matrix file
inst   xia2020:pixels      Xia et al., NeurIPS 2020, on the raw 0-255 pixel values (the reference)
inst   xia2020:pixels-     the same on pixels standardised per channel (``pixel_scale =
       standardised        "standardised"``; nlbench's default before labels version 2)
inst   xia2020:features    the same on backbone features, standardised per dimension
=====  ==================  ====================================================================
"""

from __future__ import annotations

# Each model file registers itself on import (``@register_noise``); a new model is one file here plus its line.
from nlbench.noise import asymmetric, instance, none, symmetric  # noqa: F401
from nlbench.noise.asymmetric import ASYM_MAPS, asym_targets
from nlbench.noise.base import (
    NoiseDraw,
    NoisyLabels,
    apply_noise,
    check_model_options,
    check_noise_options,
    expected_flip_rate,
    label_digest,
    transition_matrix,
)
from nlbench.noise.instance import flip_distribution, instance_inputs

__all__ = ["ASYM_MAPS", "NoiseDraw", "NoisyLabels", "apply_noise", "asym_targets", "check_model_options",
           "check_noise_options", "expected_flip_rate", "flip_distribution", "instance_inputs", "label_digest",
           "transition_matrix"]
