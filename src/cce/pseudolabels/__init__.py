"""Pseudo-label solvers (the y-step of self-labeling): EM, PGD, interior point, SeLa Sinkhorn, MI-ADM.

POT-style plain functions: each takes predictions ``sigma`` (M, K), rows on the
simplex, and returns ``(y, info)`` with pseudo-labels ``y`` (M, K) and a dict.
All are batched over M (no Python loop over points), run on CPU and CUDA and
accept float32 and float64. Equation numbers refer to Zhang & Boykov.

Convergence test shared by ``em``, ``pgd`` and ``mi_adm`` (:func:`converged`):
stop after the iteration where ``|F_prev - F| <= tol * |F_prev|`` for the
objective F, i.e. the relative change of the objective falls below ``tol``.
``interior_point`` stops at a relative gap bound; :func:`dual_bound` certifies any y.
"""

from ._common import converged
from ._dual import dual_bound
from ._em import em, em_map, m_step
from ._interior_point import interior_point
from ._mi_adm import mi_adm
from ._pgd import pgd, proj_simplex, proj_simplex_sort
from ._sinkhorn import sinkhorn

__all__ = [
    "m_step",
    "em",
    "em_map",
    "interior_point",
    "pgd",
    "proj_simplex",
    "proj_simplex_sort",
    "sinkhorn",
    "mi_adm",
    "converged",
    "dual_bound",
]
