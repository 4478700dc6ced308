"""Training loops: a linear head on fixed features (:mod:`.head`), a network on images (:mod:`.deep`) and with targets (:mod:`.weak`).

``from cce.training import fit, train_head`` is the fixed-feature loop; :mod:`cce.training.deep`
and :mod:`cce.training.weak` (weak supervision, noisy labels) import torch and kornia and
are imported on their own.
"""

from .head import ConvergenceWarning, LinearHead, Preprocessor, fit, fit_predict, predict_logits, train_head

__all__ = ["ConvergenceWarning", "LinearHead", "Preprocessor", "fit", "fit_predict", "predict_logits", "train_head"]
