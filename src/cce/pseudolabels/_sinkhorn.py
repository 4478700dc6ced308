"""SeLa: equal-partition pseudo-labels by entropic optimal transport, eq. (4), solved by POT."""

from __future__ import annotations

import torch
from torch import Tensor

from ..losses import check_prior, safe_log
from ._common import _check_sigma


def sinkhorn(
    sigma: Tensor,
    n_iter: int = 1000,
    epsilon: float = 0.05,
    prior=None,
    tol: float = 1e-9,
) -> tuple[Tensor, dict]:
    """SeLa pseudo-labels (eq. 4): entropic OT from points (mass 1/M) to classes (mass u_k).

    Cost -ln sigma_ik, regularization epsilon, solved by POT's log-domain Sinkhorn
    (``ot.sinkhorn(..., method="sinkhorn_log")``): every point's mass is exact, and it stops
    when the L2 error of the class marginals is below tol (checked every 10 iterations) or
    after n_iter iterations. CPU tensors go to POT as NumPy arrays (faster there than POT's
    torch backend: ``benchmarks/sinkhorn.py``), CUDA tensors stay on the device. Returns hard
    one-hot y (M, K) = argmax_k P_ik and info {"plan": P (M, K), "iterations",
    "marginal_error" (that L2 error), "converged"}.
    """
    import ot  # here: importing POT takes about 2 s, and only SeLa needs it

    sigma = _check_sigma(sigma)
    M, K = sigma.shape
    prior = check_prior(prior, K, sigma)
    a = torch.full((M,), 1.0 / M, dtype=sigma.dtype, device=sigma.device)
    cost = -safe_log(sigma)
    args = (a, prior, cost) if sigma.is_cuda else (a.numpy(), prior.cpu().numpy(), cost.numpy())
    plan, log = ot.sinkhorn(*args, epsilon, method="sinkhorn_log", numItermax=n_iter, stopThr=tol,
                            log=True, warn=False)
    plan = torch.as_tensor(plan, device=sigma.device)
    err = float(log["err"][-1]) if log["err"] else float("inf")
    y = torch.nn.functional.one_hot(plan.argmax(1), K).to(sigma.dtype)
    return y, {"plan": plan, "iterations": int(log["niter"]) + 1, "marginal_error": err, "converged": err < tol}
