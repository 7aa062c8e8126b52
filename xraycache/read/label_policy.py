"""Coded labels (1 positive, 0 negative, -1 uncertain, -2 missing) -> training targets and a loss mask.

A cache built with ``--label-cols`` stores what the tables say; what an uncertain or a missing label should
mean for training is a choice made when reading, named here:

======================  ================  =================  ==========================================
policy                  uncertain (-1)    missing (-2)       source
======================  ================  =================  ==========================================
``"u-ones"``            target 1          target 0           CheXpert paper (Irvin et al. 2019), U-Ones
``"u-zeros"``           target 0          target 0           CheXpert paper, U-Zeros
``"u-ignore"``          mask 0            target 0           CheXpert paper, U-Ignore
``"xrv"``               mask 0            mask 0             torchxrayvision's CheX_Dataset, with its
                                                             ``No Finding`` rule (below)
======================  ================  =================  ==========================================

The paper treats a blank ("not mentioned") as negative, so the three ``u-*`` presets give missing labels
target 0 with mask 1; ``LabelPolicy(uncertain=..., missing="ignore")`` masks them instead. Targets are
float32 (N, C), masks float32 (N, C): 1 where the target counts in the loss, 0 where it does not (the target
there is 0), for ``BCEWithLogitsLoss(reduction="none")(logits, targets) * mask``.

``no_finding``: torchxrayvision sets every other label to 0 (negative) where ``No Finding`` is 1, whatever
it was (positive, uncertain or missing). No preset but ``"xrv"`` does this; ``LabelPolicy(no_finding=
"No Finding")`` asks for it. The ``No Finding`` label itself is kept and follows the policy like the others.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core.errors import InputError
from ..core.schema import CODE_MISSING, CODE_NEGATIVE, CODE_POSITIVE, CODE_UNCERTAIN

UNCERTAIN = ("ones", "zeros", "ignore")
MISSING = ("zeros", "ignore")


@dataclass(frozen=True)
class LabelPolicy:
    """What uncertain and missing labels become: ``uncertain`` ones | zeros | ignore (masked), ``missing``
    zeros | ignore, and ``no_finding``: the label whose positives make every other label negative (or None)."""

    uncertain: str = "ignore"
    missing: str = "zeros"
    no_finding: str | None = None

    def __post_init__(self) -> None:
        if self.uncertain not in UNCERTAIN:
            raise InputError(f"uncertain={self.uncertain!r}; use one of: {', '.join(UNCERTAIN)}")
        if self.missing not in MISSING:
            raise InputError(f"missing={self.missing!r}; use one of: {', '.join(MISSING)}")

    def apply(self, codes: np.ndarray, label_names: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
        """(targets, mask), float32 of the shape of ``codes`` (N, C) int8."""
        codes = np.asarray(codes)
        if self.no_finding is not None:
            if self.no_finding not in label_names:
                raise InputError(f"no_finding={self.no_finding!r} is not a label; the labels: {', '.join(label_names)}")
            column = label_names.index(self.no_finding)
            healthy = codes[:, column] == CODE_POSITIVE
            if healthy.any():
                codes = codes.copy()
                others = np.arange(codes.shape[1]) != column
                codes[np.ix_(healthy, others)] = CODE_NEGATIVE
        targets = (codes == CODE_POSITIVE).astype(np.float32)
        mask = np.ones(codes.shape, dtype=np.float32)
        uncertain = codes == CODE_UNCERTAIN
        if self.uncertain == "ones":
            targets[uncertain] = 1.0
        elif self.uncertain == "ignore":
            mask[uncertain] = 0.0
        if self.missing == "ignore":
            mask[codes == CODE_MISSING] = 0.0
        return targets, mask


PRESETS = {
    "u-ones": LabelPolicy("ones", "zeros"),
    "u-zeros": LabelPolicy("zeros", "zeros"),
    "u-ignore": LabelPolicy("ignore", "zeros"),
    "xrv": LabelPolicy("ignore", "ignore", "No Finding"),
}


def label_policy(value: str | LabelPolicy | None) -> LabelPolicy | None:
    """A preset name or a LabelPolicy -> the policy (None stays None); InputError naming the presets."""
    if value is None or isinstance(value, LabelPolicy):
        return value
    if isinstance(value, str) and value.lower() in PRESETS:
        return PRESETS[value.lower()]
    raise InputError(f"label_policy={value!r}; use one of: {', '.join(PRESETS)}, or a LabelPolicy")


def coded_without_policy(path: object) -> InputError:
    """The error for reading training labels of a coded cache without saying what uncertain labels mean."""
    return InputError(
        f"{path} stores coded labels (1 positive, 0 negative, -1 uncertain, -2 missing): pass "
        f"label_policy= one of {', '.join(PRESETS)} (targets and a mask), or label_dtype='int8' for the codes"
    )
