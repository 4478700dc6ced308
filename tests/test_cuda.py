"""The CUDA path: y-step solvers against the CPU, a deep training step, augmentation on the device, resume.

Every test here is marked ``cuda``: skipped with its reason on a machine without CUDA (tests/conftest.py)
and collected and run by ``make gpu-check`` (benchmarks/gpu_check.py) on a GPU.
"""

import math

import numpy as np
import pytest
import torch

from cce.losses import self_labeling_objective
from cce.pseudolabels import em, interior_point, mi_adm, pgd, sinkhorn
from data_fixtures import halves_images

pytestmark = pytest.mark.cuda

LAM = 100.0


def _sigma(M, K, seed, dtype, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    return torch.softmax(scale * torch.randn(M, K, generator=g, dtype=torch.float64), 1).to(dtype)


def _objective(y, sigma, fairness):
    return float(self_labeling_objective(y.double().cpu(), sigma.double().cpu(), LAM, fairness=fairness))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("fairness", ["reverse_kl", "kl"])
def test_interior_point_on_cuda_matches_the_compiled_cpu_path(dtype, fairness):
    """The torch primal-dual method on CUDA and the numba one on the CPU reach the same optimum."""
    for seed, (M, K) in enumerate([(250, 10), (160, 10), (250, 20), (250, 100)]):
        sigma = _sigma(M, K, seed, dtype)
        y_cpu, info_cpu = interior_point(sigma, LAM, fairness=fairness, tol=1e-9)
        y_gpu, info_gpu = interior_point(sigma.cuda(), LAM, fairness=fairness, tol=1e-9)
        assert y_gpu.is_cuda and y_gpu.dtype == dtype and info_gpu["converged"] and info_cpu["converged"]
        f_cpu, f_gpu = info_cpu["objective"][-1], info_gpu["objective"][-1]
        assert f_gpu == pytest.approx(f_cpu, rel=1e-7), (M, K)
        # the objective of the returned y (rounded to dtype) agrees too
        assert _objective(y_gpu, sigma, fairness) == pytest.approx(_objective(y_cpu, sigma, fairness), rel=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_other_solvers_on_cuda_match_the_cpu(dtype):
    sigma = _sigma(250, 10, 11, dtype)
    runs = {
        "em": lambda s: em(s, LAM, tol=1e-9, max_iter=3000, acceleration="squarem"),
        "pgd": lambda s: pgd(s, LAM, fairness="kl", step="armijo", tol=1e-9, max_iter=3000),
        "mi_adm": lambda s: mi_adm(s, lam=1.0, tol=1e-9, max_iter=3000),
    }
    for name, run in runs.items():
        y_cpu, info_cpu = run(sigma)
        y_gpu, info_gpu = run(sigma.cuda())
        assert y_gpu.is_cuda and y_gpu.dtype == dtype, name
        assert info_gpu["objective"][-1] == pytest.approx(info_cpu["objective"][-1], rel=1e-5), name
        np.testing.assert_allclose(y_gpu.mean(0).cpu().double().numpy(), y_cpu.mean(0).double().numpy(),
                                   atol=1e-4, err_msg=name)


def test_sinkhorn_on_cuda_matches_the_cpu():
    sigma = _sigma(2000, 10, 12, torch.float64, scale=1.0)
    y_cpu, info_cpu = sinkhorn(sigma, n_iter=1000, epsilon=0.05, tol=1e-6)
    y_gpu, info_gpu = sinkhorn(sigma.cuda(), n_iter=1000, epsilon=0.05, tol=1e-6)
    assert y_gpu.is_cuda and info_gpu["converged"] and info_cpu["converged"]
    torch.testing.assert_close(info_gpu["plan"].cpu(), info_cpu["plan"], rtol=1e-6, atol=1e-9)
    # hard labels: at most a few ties may break differently
    assert float((y_gpu.cpu() != y_cpu).any(1).double().mean()) < 0.01


def test_augmentation_on_the_device():
    """uint8 images on CUDA -> float32 views on CUDA in [0, 1]; the same generator state gives the same views,
    and the views equal the CPU's up to interpolation round-off (kornia draws its parameters on the CPU)."""
    from cce.data.augment import SelfAugmentation

    images = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    aug = SelfAugmentation(3, flip=True, rotation=25.0, color=True)
    views = [aug(images.cuda(), torch.Generator().manual_seed(5), 2) for _ in range(2)]
    assert views[0].is_cuda and views[0].dtype == torch.float32 and views[0].shape == (128, 3, 32, 32)
    assert float(views[0].min()) >= 0.0 and float(views[0].max()) <= 1.0
    assert torch.equal(views[0], views[1])
    on_cpu = aug(images, torch.Generator().manual_seed(5), 2)
    assert float((views[0].cpu() - on_cpu).abs().mean()) < 1e-3


@pytest.mark.parametrize("precision", ["float32", "bf16"])
@pytest.mark.parametrize("method", ["cce_plus", "mi_d", "sela"])
def test_deep_training_step_on_cuda(method, precision):
    from cce.training.deep import train_deep

    images, labels = halves_images(96)
    opts = {"epochs": 1, "batch_size": 32, "device": "cuda", "precision": precision, "eval_batch_size": 64}
    pred, info = train_deep(images, 2, method, 0, opts, y_true=labels, dataset="mnist", progress=False)
    assert info["device"].startswith("cuda") and pred.shape == (96,)
    assert math.isfinite(info["curves"]["loss"][0]) and info["precision"] == precision
    assert info["timing"]["network_s"][0] > 0


def test_checkpoint_resume_on_cuda(tmp_path):
    """A run stopped after epoch 1 and resumed on CUDA ends where the run that never stopped ends
    (cuDNN in its deterministic mode, as cuDNN's default kernels may differ by round-off)."""
    from cce.training.deep import TrainingStopped, train_deep

    images, labels = halves_images(64)
    opts = {"epochs": 2, "batch_size": 16, "device": "cuda", "eval_batch_size": 64}
    deterministic, benchmark = torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        pred_a, info_a = train_deep(images, 2, "cce_plus", 3, opts, y_true=labels, progress=False)
        ck = tmp_path / "run.ckpt"
        with pytest.raises(TrainingStopped):
            train_deep(images, 2, "cce_plus", 3, opts, y_true=labels, checkpoint=ck, stop_after_epoch=1,
                       progress=False)
        pred_b, info_b = train_deep(images, 2, "cce_plus", 3, opts, y_true=labels, checkpoint=ck, progress=False)
    finally:
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = deterministic, benchmark
    assert info_b["resumed_at_epochs"] == [1]
    assert np.array_equal(pred_a, pred_b)
    assert info_a["curves"]["loss"] == info_b["curves"]["loss"]
    assert info_a["curves"]["accuracy"] == info_b["curves"]["accuracy"]
