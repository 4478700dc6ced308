"""Collision cross-entropy (CCE) and its EM algorithm for self-labeled classification.

Reference implementation of Zhang & Boykov, "Collision Cross-entropy and EM
Algorithm for Self-labeled Classification". The math lives in
:mod:`cce.losses` and :mod:`cce.pseudolabels`; the workflow that regenerates
the paper's tables calls the entry points in :mod:`cce.cli`.
"""

__version__ = "0.1.0"
