"""Collision cross-entropy (CCE) and its EM algorithm for self-labeled classification.

Reference implementation of Zhang & Boykov, "Collision Cross-entropy and EM
Algorithm for Self-labeled Classification". The math lives in
:mod:`cce.losses` and :mod:`cce.pseudolabels`; the workflow that regenerates
the paper's tables calls the entry points in :mod:`cce.pipeline.cli`.
"""

__version__ = "0.1.0"


def __getattr__(name):  # lazy, so that `import cce` does not import torch or scikit-learn
    if name == "SelfLabelingClassifier":
        from .estimator import SelfLabelingClassifier
        return SelfLabelingClassifier
    raise AttributeError(f"module 'cce' has no attribute {name!r}")
