"""Training loops: a linear head on fixed features (:mod:`.head`) and a network on images (:mod:`.deep`).

``from cce.training import fit, train_head`` is the fixed-feature loop; :mod:`cce.training.deep`
imports torch and kornia and is imported on its own.
"""

from .head import ConvergenceWarning, LinearHead, Preprocessor, fit, predict_logits, train_head

__all__ = ["ConvergenceWarning", "LinearHead", "Preprocessor", "fit", "predict_logits", "train_head"]
