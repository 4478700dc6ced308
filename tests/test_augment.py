"""Self-augmentation: reproducible from the generator, one random transform per image, shapes and ranges kept."""

import pytest
import torch

from cce.data.augment import SelfAugmentation


def _grey_batch(n=16, copies=True):
    # an asymmetric image (a bar in the upper-left corner), so that every transform changes it
    img = torch.zeros(1, 1, 28, 28, dtype=torch.uint8)
    img[..., 3:8, 2:20] = 255
    img[..., 8:20, 2:6] = 180
    if copies:
        return img.repeat(n, 1, 1, 1)
    g = torch.Generator().manual_seed(5)
    return torch.randint(0, 256, (n, 1, 28, 28), generator=g, dtype=torch.uint8)


def _rgb_batch(n=16):
    g = torch.Generator().manual_seed(6)
    img = torch.randint(0, 256, (1, 3, 32, 32), generator=g, dtype=torch.uint8)
    return img.repeat(n, 1, 1, 1)


def _distinct_rows(x):
    return len({tuple(r.flatten().tolist()) for r in x})


def test_same_generator_seed_gives_identical_views_and_calls_advance_it():
    aug = SelfAugmentation(1, flip=True, rotation=25.0, color=False)
    x = _grey_batch(copies=False)
    a = aug(x, torch.Generator().manual_seed(11), n_views=2)
    b = aug(x, torch.Generator().manual_seed(11), n_views=2)
    assert torch.equal(a, b)
    g = torch.Generator().manual_seed(11)
    first, second = aug(x, g, 2), aug(x, g, 2)
    assert torch.equal(first, a) and not torch.equal(first, second)
    assert not torch.equal(a, aug(x, torch.Generator().manual_seed(12), n_views=2))


def test_global_rng_left_untouched():
    aug = SelfAugmentation(3, flip=True, rotation=10.0, color=True)
    before = torch.get_rng_state()
    aug(_rgb_batch(), torch.Generator().manual_seed(0), 2)
    assert torch.equal(torch.get_rng_state(), before)


def test_every_image_gets_its_own_rotation():
    x = _grey_batch(16)  # 16 copies of one image
    out = SelfAugmentation(1, flip=False, rotation=25.0, color=False)(x, torch.Generator().manual_seed(0), 2)
    assert _distinct_rows(out) == 32  # both views of all copies differ from each other


def test_flip_is_drawn_per_image():
    x = _grey_batch(32)
    out = SelfAugmentation(1, flip=True, rotation=0.0, color=False)(x, torch.Generator().manual_seed(0))
    unit = x.float() / 255
    flipped = [torch.equal(o, unit[0].flip(-1)) for o in out]
    kept = [torch.equal(o, unit[0]) for o in out]
    assert all(f or k for f, k in zip(flipped, kept))
    assert 0 < sum(flipped) < 32


def test_colour_jitter_is_drawn_per_image():
    x = _rgb_batch(16)
    out = SelfAugmentation(3, flip=False, rotation=0.0, color=True)(x, torch.Generator().manual_seed(0))
    # applied with probability 0.8: the jittered copies all differ, the others stay equal to the input
    unit = x[0].float() / 255
    untouched = sum(torch.equal(o, unit) for o in out)
    assert untouched < 16 and _distinct_rows(out) == 16 - untouched + (1 if untouched else 0)


@pytest.mark.parametrize("channels", [1, 3])
def test_shapes_dtype_and_range(channels):
    x = _grey_batch(copies=False) if channels == 1 else _rgb_batch(5)
    aug = SelfAugmentation(channels, flip=True, rotation=25.0, color=channels == 3)
    out = aug(x, torch.Generator().manual_seed(3), n_views=2)
    assert out.shape == (2 * x.shape[0], *x.shape[1:]) and out.dtype == torch.float32
    assert out.min() >= 0 and out.max() <= 1
    assert x.dtype == torch.uint8  # the stored images are not touched


def test_no_transform_means_scaled_copies_in_view_major_order():
    x = torch.arange(2 * 8 * 8, dtype=torch.uint8).reshape(2, 1, 8, 8) % 17
    aug = SelfAugmentation(1, flip=False, rotation=0.0, color=False, pixel_max=16.0)
    out = aug(x, torch.Generator().manual_seed(0), n_views=3)
    assert torch.equal(out, (x.float() / 16).repeat(3, 1, 1, 1))


def test_invalid_settings_refused():
    with pytest.raises(ValueError, match="colour distortion needs RGB"):
        SelfAugmentation(1, color=True)
    with pytest.raises(ValueError, match="1 or 3 channels"):
        SelfAugmentation(2, color=False)
    aug = SelfAugmentation(1, color=False)
    with pytest.raises(ValueError, match="expected images"):
        aug(torch.zeros(2, 3, 28, 28, dtype=torch.uint8), torch.Generator())


# ----------------------------------------------------------------------------
# augment: sample_one (one transform sampled per image and view) against compose
# ----------------------------------------------------------------------------
def test_sample_one_applies_exactly_one_transform_per_view():
    aug = SelfAugmentation(1, flip=True, rotation=25.0, color=False, mode="sample_one")
    assert list(aug.transforms) == ["flip", "rotation"] and aug.settings["mode"] == "sample_one"
    x = _grey_batch(64)
    views, chosen = aug.views(x, torch.Generator().manual_seed(3), n_views=2)
    unit = aug.to_unit(x).repeat(2, 1, 1, 1)
    assert views.shape == unit.shape and chosen.shape == (128,)
    flipped, rotated = chosen == 0, chosen == 1
    assert 30 < int(flipped.sum()) < 98 and bool((flipped | rotated).all())  # each sampled, one per row
    # a flip alone: the exact mirror image; never a rotation on top (composed, a flip always rotates too)
    assert torch.equal(views[flipped], unit[flipped].flip(-1))
    # a rotation alone: never mirrored (the bar stays on the left half), never the unchanged image
    for v, u in zip(views[rotated], unit[rotated]):
        assert not torch.equal(v, u) and v[..., :14].sum() > v[..., 14:].sum()
    # reproducible from the generator, as compose
    again, chosen2 = aug.views(x, torch.Generator().manual_seed(3), n_views=2)
    assert torch.equal(views, again) and torch.equal(chosen, chosen2)


def test_compose_applies_every_transform_and_reports_no_choice():
    aug = SelfAugmentation(1, flip=True, rotation=25.0, color=False)
    x = _grey_batch(64)
    views, chosen = aug.views(x, torch.Generator().manual_seed(3))
    unit = aug.to_unit(x)
    assert chosen is None and "mode" not in aug.settings  # the records of compose runs as before
    # composed, every view is rotated (p = 1): none is the plain mirror image or the image itself
    assert not any(torch.equal(v, u.flip(-1)) or torch.equal(v, u) for v, u in zip(views, unit))


def test_sample_one_with_colour_on_rgb_keeps_the_geometry_when_colour_is_chosen():
    aug = SelfAugmentation(3, flip=True, rotation=25.0, color=True, mode="sample_one")
    x = _rgb_batch(48)
    views, chosen = aug.views(x, torch.Generator().manual_seed(9))
    assert set(chosen.tolist()) == {0, 1, 2}
    unit = aug.to_unit(x)
    # a colour jitter alone changes the values; a flip alone is the exact mirror image (no jitter on top)
    assert not torch.equal(views[chosen == 2], unit[chosen == 2])
    assert torch.equal(views[chosen == 0], unit[chosen == 0].flip(-1))


def test_unknown_augment_mode_is_refused():
    with pytest.raises(ValueError, match="augment must be one of"):
        SelfAugmentation(1, flip=False, color=False, mode="randaugment")
