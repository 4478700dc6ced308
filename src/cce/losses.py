"""Entropies, cross-entropies and the self-labeling objectives of the paper.

Conventions: distributions are rows of (M, K) tensors (the last dimension is
the class dimension); row-wise functions return (M,) tensors; ``0 ln 0 = 0``.
Equation numbers refer to Zhang & Boykov, "Collision Cross-entropy and EM
Algorithm for Self-labeled Classification".
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "entropy",
    "collision_entropy",
    "shannon_cross_entropy",
    "collision_cross_entropy",
    "kl_divergence",
    "mutual_information_loss",
    "collision_cross_entropy_with_logits",
    "shannon_cross_entropy_with_logits",
    "generalized_cross_entropy_with_logits",
    "mutual_information_loss_with_logits",
    "CollisionCrossEntropyLoss",
    "self_labeling_objective",
    "uniform_prior",
    "check_prior",
]

FAIRNESS = ("reverse_kl", "kl")
CROSS_ENTROPY = ("collision", "shannon")


# ----------------------------------------------------------------------------
# Probability versions
# ----------------------------------------------------------------------------
def entropy(p: Tensor) -> Tensor:
    """Shannon entropy H(p) = -sum_k p_k ln p_k of each row; (..., K) -> (...)."""
    return -torch.special.xlogy(p, p).sum(-1)


def collision_entropy(p: Tensor) -> Tensor:
    """Collision (order-2 Renyi) entropy H2(p) = -ln sum_k p_k^2, eq. (6); (..., K) -> (...)."""
    return -torch.log((p * p).sum(-1))


def shannon_cross_entropy(y: Tensor, sigma: Tensor) -> Tensor:
    """Shannon cross-entropy H(y, sigma) = -sum_k y_k ln sigma_k, eq. (8); (..., K) -> (...).

    ``0 ln 0 = 0``; ``y_k > 0`` with ``sigma_k = 0`` gives ``+inf``.
    """
    return -torch.special.xlogy(y, sigma).sum(-1)


def collision_cross_entropy(y: Tensor, sigma: Tensor) -> Tensor:
    """Collision cross-entropy H2(y, sigma) = -ln sum_k y_k sigma_k, eq. (9); (..., K) -> (...).

    Symmetric in its arguments; equals H(y, sigma) for one-hot ``y``.
    """
    return -torch.log((y * sigma).sum(-1))


def kl_divergence(p: Tensor, q: Tensor) -> Tensor:
    """KL(p || q) = sum_k p_k ln(p_k / q_k), eq. (7); (..., K) -> (...).

    ``0 ln 0 = 0`` and ``0 ln(0 / 0) = 0``; ``p_k > 0`` with ``q_k = 0`` gives ``+inf``.
    """
    return (torch.special.xlogy(p, p) - torch.special.xlogy(p, q)).sum(-1)


def mutual_information_loss(sigma: Tensor) -> Tensor:
    """L_mi = mean_i H(sigma_i) - H(mean_i sigma_i), eq. (1); (M, K) -> scalar."""
    return entropy(sigma).mean() - entropy(sigma.mean(0))


# ----------------------------------------------------------------------------
# Logit versions (log space, no epsilon)
# ----------------------------------------------------------------------------
def safe_log(y: Tensor) -> Tensor:
    """ln y with ln 0 = -inf whose backward never forms 0 * inf (shared with cce.pseudolabels)."""
    pos = y > 0
    return torch.where(pos, torch.log(torch.where(pos, y, torch.ones_like(y))), -torch.inf)


class _CollisionCEWithLogits(torch.autograd.Function):
    """-logsumexp(l + ln y) + logsumexp(l) with exact, finite gradients at y_k = 0."""

    @staticmethod
    def forward(ctx, y, logits):
        lse_l = torch.logsumexp(logits, -1, keepdim=True)
        lse_ly = torch.logsumexp(logits + safe_log(y), -1, keepdim=True)
        ctx.save_for_backward(y, logits, lse_l, lse_ly)
        return (lse_l - lse_ly).squeeze(-1)

    @staticmethod
    def backward(ctx, grad):
        y, logits, lse_l, lse_ly = ctx.saved_tensors
        g = grad.unsqueeze(-1)
        grad_y = grad_l = None
        if ctx.needs_input_grad[1]:
            # d/dl_k = sigma_k - y_k sigma_k / (sigma . y)
            q = torch.exp(logits + safe_log(y) - lse_ly)
            grad_l = g * (torch.exp(logits - lse_l) - q)
        if ctx.needs_input_grad[0]:
            # d/dy_k = -sigma_k / (sigma . y), finite also where y_k = 0
            grad_y = -g * torch.exp(logits - lse_ly)
        return grad_y, grad_l


def collision_cross_entropy_with_logits(y: Tensor, logits: Tensor) -> Tensor:
    """H2(y, softmax(logits)) = -logsumexp(l + ln y) + logsumexp(l), eq. (9) in log space.

    y, logits: (..., K) -> (...). ``ln 0 = -inf`` is handled exactly (no epsilon);
    gradients w.r.t. both arguments are finite where ``y_k = 0``.
    """
    y, logits = torch.broadcast_tensors(y.to(logits.dtype), logits)
    return _CollisionCEWithLogits.apply(y, logits)


def shannon_cross_entropy_with_logits(y: Tensor, logits: Tensor) -> Tensor:
    """H(y, softmax(logits)) = -sum_k y_k log_softmax(l)_k, eq. (8); (..., K) -> (...)."""
    return -(y * F.log_softmax(logits, -1)).sum(-1)


def generalized_cross_entropy_with_logits(y: Tensor, logits: Tensor, q: float = 0.7) -> Tensor:
    """Generalized cross-entropy L_q = sum_k y_k (1 - sigma_k^q) / q, sigma = softmax(logits); (..., K) -> (...).

    Zhang and Sabuncu (2018): for a one-hot y on class c, (1 - sigma_c^q) / q, a bounded loss that
    tends to H's -ln sigma_c as q -> 0 and to the MAE-like 1 - sigma_c at q = 1; its gradient is H's
    times sigma_c^q, so it down-weights images the network contradicts (robust to label noise, slow
    to fit). q = 0.7 is their choice. ``sigma_k^q = exp(q log_softmax(l)_k)``: no epsilon.
    """
    if not 0.0 < q <= 1.0:
        raise ValueError(f"q must be in (0, 1], got {q}")
    return (y * -torch.expm1(q * F.log_softmax(logits, -1))).sum(-1) / q


def mutual_information_loss_with_logits(logits: Tensor) -> Tensor:
    """L_mi of eq. (1) from logits (M, K) -> scalar; ln(mean sigma) via logsumexp."""
    logp = F.log_softmax(logits, -1)
    p = logp.exp()
    mean_h = -(p * logp).sum(-1).mean()
    log_pbar = torch.logsumexp(logp, 0) - math.log(logits.shape[0])
    h_mean = -(log_pbar.exp() * log_pbar).sum()
    return mean_h - h_mean


class CollisionCrossEntropyLoss(torch.nn.Module):
    """Collision cross-entropy H2(y, softmax(logits)), eq. (9), beside ``nn.CrossEntropyLoss``.

    forward(logits, target): logits (N, K) or (N, K, d1, ...); target either class
    indices (N,) / (N, d1, ...) of dtype long, or probabilities of the logits' shape.
    For hard targets H2 = H, so the result is exactly ``nn.CrossEntropyLoss`` (with
    ``ignore_index``). ``reduction`` is "mean", "sum" or "none"; "mean" over soft
    targets averages over all N * d1 * ... positions.
    """

    def __init__(self, reduction: str = "mean", ignore_index: int = -100):
        super().__init__()
        if reduction not in ("mean", "sum", "none"):
            raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
        self.reduction = reduction
        self.ignore_index = ignore_index

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        if not target.is_floating_point():
            return F.cross_entropy(logits, target, reduction=self.reduction, ignore_index=self.ignore_index)
        if target.shape != logits.shape:
            raise ValueError(f"soft target shape {tuple(target.shape)} != logits shape {tuple(logits.shape)}")
        loss = collision_cross_entropy_with_logits(target.movedim(1, -1), logits.movedim(1, -1))
        if self.reduction == "mean":
            return loss.mean()
        if self.reduction == "sum":
            return loss.sum()
        return loss


# ----------------------------------------------------------------------------
# Self-labeling objectives
# ----------------------------------------------------------------------------
def uniform_prior(K: int, like: Tensor) -> Tensor:
    """The uniform distribution u (K,) with the dtype and device of ``like``."""
    return torch.full((K,), 1.0 / K, dtype=like.dtype, device=like.device)


def check_prior(prior, K: int, like: Tensor) -> Tensor:
    """Validate ``prior`` (K,) (non-negative, sums to 1); ``None`` -> uniform."""
    if prior is None:
        return uniform_prior(K, like)
    prior = torch.as_tensor(prior, dtype=like.dtype, device=like.device)
    if prior.shape != (K,):
        raise ValueError(f"prior must have shape ({K},), got {tuple(prior.shape)}")
    if bool((prior < 0).any()) or abs(float(prior.sum()) - 1.0) > 1e-6:
        raise ValueError("prior must be non-negative and sum to 1")
    return prior


def _check_options(fairness: str, cross_entropy: str) -> None:
    if fairness not in FAIRNESS:
        raise ValueError(f"fairness must be one of {FAIRNESS}, got {fairness!r}")
    if cross_entropy not in CROSS_ENTROPY:
        raise ValueError(f"cross_entropy must be one of {CROSS_ENTROPY}, got {cross_entropy!r}")


def fairness_term(ybar: Tensor, prior: Tensor, fairness: str) -> Tensor:
    """KL(prior || ybar) ("reverse_kl") or KL(ybar || prior) ("kl"); (K,) -> scalar."""
    if fairness == "reverse_kl":
        return kl_divergence(prior, ybar)
    return kl_divergence(ybar, prior)


def self_labeling_objective(
    y: Tensor,
    sigma: Tensor,
    lam: float,
    prior=None,
    fairness: str = "reverse_kl",
    cross_entropy: str = "collision",
) -> Tensor:
    """mean_i CE(y_i, sigma_i) + lam * fairness(ybar), ybar = mean_i y_i; y, sigma (M, K) -> scalar.

    - fairness="reverse_kl", cross_entropy="collision": L_CCE+, eq. (11)/(19), lam * KL(u || ybar)
    - fairness="kl", cross_entropy="collision": L_CCE, eq. (10)/(18), lam * KL(ybar || u)
    - fairness="kl", cross_entropy="shannon": L_ce+kl, eq. (5) with weight lam.
    ``prior`` (K,) replaces u (default uniform). ``lam = 0`` drops the fairness term
    (so an empty class gives no ``0 * inf``).
    """
    _check_options(fairness, cross_entropy)
    if y.shape != sigma.shape or y.dim() != 2:
        raise ValueError(f"y and sigma must both be (M, K), got {tuple(y.shape)} and {tuple(sigma.shape)}")
    prior = check_prior(prior, y.shape[1], y)
    return _objective_unchecked(y, sigma, lam, prior, fairness, cross_entropy)


def _objective_unchecked(y: Tensor, sigma: Tensor, lam: float, prior: Tensor, fairness: str,
                         cross_entropy: str) -> Tensor:
    # The formula of self_labeling_objective without its validation (no device -> host syncs),
    # for solver loops whose inputs were validated once on entry: y, sigma (M, K) of one dtype
    # and device, prior (K,) a checked tensor of that dtype, known option strings.
    ce = collision_cross_entropy(y, sigma) if cross_entropy == "collision" else shannon_cross_entropy(y, sigma)
    obj = ce.mean()
    if lam != 0:
        obj = obj + lam * fairness_term(y.mean(0), prior, fairness)
    return obj


# ----------------------------------------------------------------------------
# Deep self-labeled losses with self-augmentation (Section 5.2, Table 3)
# ----------------------------------------------------------------------------
__all__ += ["view_mixture_logits", "mi_d_loss", "iic_joint", "iic_loss"]


def view_mixture_logits(view_logits: Tensor) -> Tensor:
    """ln sigma_i for sigma_i = E_t[sigma(t(X_i))] (Section 5.2) from V views' logits (V, B, K) -> (B, K).

    The rows are normalized log-probabilities, so softmax of them is the mean of the views'
    softmax and they can stand as logits in every ``*_with_logits`` loss: H2(y, sigma_i)
    and H(y, sigma_i) of the view-averaged prediction, in log space.
    """
    return torch.logsumexp(F.log_softmax(view_logits, -1), 0) - math.log(view_logits.shape[0])


def mi_d_loss(view_logits: Tensor, fairness_weight: float = 1.0) -> Tensor:
    """MI-D (IMSAT [14]): mean_i H(sigma_i) - w * H(mean_i sigma_i), eq. (1), with self-augmentation.

    view_logits (V, B, K) -> scalar; sigma_i = E_t[sigma(t(X_i))] over the V views, so the
    conditional-entropy term is low only where the views agree confidently. ``w = 1`` is eq. (1).
    """
    logp = view_mixture_logits(view_logits)
    mean_h = -(logp.exp() * logp).sum(-1).mean()
    log_pbar = torch.logsumexp(logp, 0) - math.log(logp.shape[0])
    h_mean = -(log_pbar.exp() * log_pbar).sum()
    return mean_h - fairness_weight * h_mean


def iic_joint(p1: Tensor, p2: Tensor) -> Tensor:
    """IIC's [16] joint distribution of two views' clusters: P = sym(mean_i p1_i p2_i^T); (B, K) x2 -> (K, K).

    Symmetrized, (P + P^T) / 2, because the two views are exchangeable; sums to 1.
    """
    P = p1.transpose(0, 1) @ p2 / p1.shape[0]
    P = (P + P.transpose(0, 1)) / 2
    return P / P.sum()


def iic_loss(logits1: Tensor, logits2: Tensor, lamb: float = 1.0, eps: float = 2.220446049250313e-16) -> Tensor:
    """IIC's loss -I(z, z') = -sum_kl P_kl (ln P_kl - lamb ln P_k - lamb ln P_l); logits (B, K) x2 -> scalar.

    P = :func:`iic_joint` of the views' softmax, P_k and P_l its marginals; ``lamb = 1`` is
    the mutual information. As in IIC, entries below ``eps`` (float64's machine epsilon) are
    raised to it so that the logarithms stay finite; here with ``clamp`` on new tensors,
    since IIC's in-place write into an expanded tensor is refused by current PyTorch.
    """
    P = iic_joint(torch.softmax(logits1, -1), torch.softmax(logits2, -1))
    pk = P.sum(1, keepdim=True).clamp(min=eps)
    pl = P.sum(0, keepdim=True).clamp(min=eps)
    P = P.clamp(min=eps)
    return -(P * (torch.log(P) - lamb * torch.log(pk) - lamb * torch.log(pl))).sum()
