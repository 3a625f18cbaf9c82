"""Joint transforms: image and mask move together, masks keep their class indices."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader
from torchvision import tv_tensors
from torchvision.transforms.v2 import functional as F

from mslib.data import AUGMENTATIONS, RandomBatchResize, build_transforms
from mslib.data.transforms import JointResize, RandomRot90Flip


def _pattern(h=12, w=16, classes=3):
    """A non-symmetric pair whose image channel 0 encodes the mask: image[0] = mask / (classes - 1)."""
    y, x = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    mask = ((x + 2 * y) // 5 % classes).long()
    mask[0, 0] = classes - 1  # break every symmetry
    image = torch.stack([mask / (classes - 1), x / (w - 1), y / (h - 1)]).float()
    return tv_tensors.Image(image), tv_tensors.Mask(mask)


def test_hflip_and_vflip_move_image_and_mask_together():
    image, mask = _pattern()
    out_i, out_m = build_transforms(True, None, hflip=1.0)(image, mask)
    assert torch.equal(out_i, image.flip(-1)) and torch.equal(out_m, mask.flip(-1))
    assert not torch.equal(out_m, mask)
    # pixel correspondence: the mask can be read back from the image's first channel
    assert torch.equal((out_i[0] * 2).round().long(), out_m)
    out_i, out_m = build_transforms(True, None, hflip=0.0, vflip=1.0)(image, mask)
    assert torch.equal(out_i, image.flip(-2)) and torch.equal(out_m, mask.flip(-2))


def test_plain_tensor_pairs_are_wrapped_so_the_mask_is_transformed_too():
    image, mask = _pattern()
    out_i, out_m = build_transforms(True, None, hflip=1.0)(
        image.as_subclass(torch.Tensor), mask.as_subclass(torch.Tensor)
    )
    assert isinstance(out_m, tv_tensors.Mask) and torch.equal(out_m, mask.flip(-1))
    # uint8 images are scaled to float [0, 1]
    out_i, _ = build_transforms(False, None)(torch.full((3, 4, 4), 255, dtype=torch.uint8), torch.zeros(4, 4))
    assert out_i.dtype == torch.float32 and torch.all(out_i == 1.0)


@pytest.mark.parametrize("preset", ["m2snet", "pdcr"])
def test_rotation_and_affine_keep_mask_values_in_the_class_set(preset):
    image, mask = _pattern(32, 32)
    t = build_transforms(True, None, **AUGMENTATIONS[preset])
    torch.manual_seed(0)
    changed = 0
    for _ in range(8):
        out_i, out_m = t(image, mask)
        assert out_m.dtype == torch.int64 and set(out_m.unique().tolist()) <= {0, 1, 2}
        changed += int(not torch.equal(out_m, mask))
        # same geometry for both: away from class borders the image still encodes the mask
        agree = ((out_i[0] * 2).round().long() == out_m).float().mean()
        assert agree > 0.8
    assert changed >= 6


def test_rot90_flip_is_an_exact_dihedral_map_of_both():
    image, mask = _pattern(10, 10)
    dihedral = [torch.rot90(mask, k, (-2, -1)).flip(d) for k in range(4) for d in (-2, -1)]
    t = RandomRot90Flip()
    torch.manual_seed(1)
    seen = set()
    for _ in range(30):
        out_i, out_m = t(image, mask)
        idx = [i for i, m in enumerate(dihedral) if torch.equal(m, out_m)]
        assert idx and torch.equal((out_i[0] * 2).round().long(), out_m)
        seen.add(idx[0])
    # k * 90 degrees then a flip: always one of the 4 reflections, never a pure rotation (as in SSL4MIS)
    assert len(seen) == 4 and {i for i in range(8) if torch.equal(dihedral[i], mask)} == set()


def test_mcsc_exclusive_choice_probabilities():
    t = build_transforms(True, None, **AUGMENTATIONS["mcsc"])
    choice = t.transforms[-1]
    assert [type(c).__name__ for c in choice.transforms] == ["RandomRot90Flip", "RandomRotation", "Identity"]
    assert choice.p == pytest.approx([0.5, 0.25, 0.25])
    with pytest.raises(ValueError, match="rot90 \\+ rotation_p"):
        build_transforms(True, None, rot90=0.8, rotation=10, rotation_p=0.5, exclusive=True)


def test_resize_never_creates_new_mask_values():
    mask = tv_tensors.Mask(torch.tensor([[0, 3, 7, 7], [3, 3, 0, 7], [7, 0, 0, 3]]).repeat(3, 4))
    image = tv_tensors.Image(torch.rand(3, *mask.shape))
    for size in [(5, 7), (23, 31), 13]:
        out_i, out_m = build_transforms(False, size)(image, mask)
        assert set(out_m.unique().tolist()) <= {0, 3, 7}
        assert out_m.dtype == torch.int64 and out_i.shape[-2:] == out_m.shape[-2:]
    # the image, by contrast, is interpolated (so this test could see new values if masks were)
    assert not set(out_i.flatten().tolist()) <= set(image.flatten().tolist())


def test_soft_masks_are_bilinear_float_maps():
    mask = tv_tensors.Mask(torch.zeros(16, 16, dtype=torch.long))
    mask[4:12, 4:12] = 1
    image = tv_tensors.Image(torch.rand(3, 16, 16))
    _, hard = build_transforms(False, 6)(image, mask)
    _, soft = build_transforms(False, 6, soft_masks=True)(image, mask)
    assert hard.dtype == torch.int64 and set(hard.unique().tolist()) <= {0, 1}
    assert soft.dtype == torch.float32 and isinstance(soft, tv_tensors.Mask)
    assert 0 <= soft.min() and soft.max() <= 1 and ((soft > 0.01) & (soft < 0.99)).any()
    expected = F.resize_image(mask[None].float(), [6, 6], antialias=True)[0]
    torch.testing.assert_close(soft.as_subclass(torch.Tensor), expected)
    # the foreground fraction is kept by area averaging: 64 / 256 = 0.25
    assert soft.mean().item() == pytest.approx(0.25, abs=0.02)


def test_color_jitter_and_normalize_leave_masks_unchanged():
    image, mask = _pattern()
    torch.manual_seed(0)
    out_i, out_m = build_transforms(True, None, hflip=0.0, color_jitter=(0.4, 0.4, 0.4, 0.1))(image, mask)
    assert torch.equal(out_m, mask) and not torch.equal(out_i, image)
    assert 0 <= out_i.min() and out_i.max() <= 1
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.5)
    out_i, out_m = build_transforms(False, None, normalize=(mean, std))(image, mask)
    expected = (image - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]
    torch.testing.assert_close(out_i.as_subclass(torch.Tensor), expected.as_subclass(torch.Tensor))
    assert torch.equal(out_m, mask)
    # grayscale images accept colour jitter too
    g, m = build_transforms(True, None, color_jitter=(0.2, 0.2, 0.2, 0.02))(
        tv_tensors.Image(torch.rand(1, 8, 8)), tv_tensors.Mask(torch.zeros(8, 8))
    )
    assert g.shape == (1, 8, 8)


def test_determinism_under_manual_seed():
    image, mask = _pattern(24, 24)
    t = build_transforms(True, 20, **AUGMENTATIONS["pdcr"], color_jitter=(0.2, 0.2, 0.2, 0.02))
    runs = []
    for seed in (7, 7, 8):
        torch.manual_seed(seed)
        runs.append([t(image, mask) for _ in range(3)])
    for (a_i, a_m), (b_i, b_m) in zip(runs[0], runs[1]):
        assert torch.equal(a_i, b_i) and torch.equal(a_m, b_m)
    assert any(not torch.equal(a_i, c_i) for (a_i, _), (c_i, _) in zip(runs[0], runs[2]))


def test_eval_pipeline_is_deterministic_resize_only():
    image, mask = _pattern()
    t = build_transforms(False, (6, 8), **AUGMENTATIONS["pdcr"])
    a, b = t(image, mask), t(image, mask)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert torch.equal(a[1], F.resize(mask, [6, 8]))


def test_bad_arguments_name_the_argument():
    with pytest.raises(ValueError, match="hflip"):
        build_transforms(True, 32, hflip=1.5)
    with pytest.raises(ValueError, match="scale"):
        build_transforms(True, 32, scale=(1.2, 0.8))
    with pytest.raises(ValueError, match="color_jitter"):
        build_transforms(True, 32, color_jitter=(0.1, 0.1))
    with pytest.raises(ValueError, match="size"):
        build_transforms(True, (32, 0))
    with pytest.raises(TypeError, match="size"):
        JointResize("big")


# --------------------------------------------------------------------------------------
# RandomBatchResize (M2SNet multi-scale training)
# --------------------------------------------------------------------------------------
def test_random_batch_resize_sizes_and_masks():
    sizes = (8, 12, 16)
    r = RandomBatchResize(sizes, generator=torch.Generator().manual_seed(0))
    images = torch.rand(2, 3, 10, 10)
    masks = torch.randint(0, 4, (2, 10, 10)) * 2  # values {0, 2, 4, 6}
    seen = set()
    for _ in range(30):
        out_i, out_m = r(images, masks)
        s = out_i.shape[-1]
        seen.add(s)
        assert out_i.shape == (2, 3, s, s) and out_m.shape == (2, s, s) and r.last_size == (s, s)
        assert out_m.dtype == torch.int64 and set(out_m.unique().tolist()) <= set(masks.unique().tolist())
    assert seen == set(sizes)
    soft = torch.rand(2, 1, 10, 10)
    _, out = r(images, soft)
    assert out.dtype == torch.float32 and out.ndim == 4 and 0 <= out.min() and out.max() <= 1
    assert r(images).ndim == 4


def test_random_batch_resize_default_sizes_seeded_and_errors():
    r = RandomBatchResize()
    assert r.sizes == [(s, s) for s in (224, 256, 288, 320, 352)]
    small = RandomBatchResize([(6, 8), 10])
    torch.manual_seed(3)
    a = [small.draw() for _ in range(10)]
    torch.manual_seed(3)
    assert a == [small.draw() for _ in range(10)] and set(a) == {(6, 8), (10, 10)}
    with pytest.raises(ValueError, match="images"):
        small(torch.rand(3, 8, 8))
    with pytest.raises(ValueError, match="masks"):
        small(torch.rand(2, 3, 8, 8), torch.zeros(3, 8, 8))
    with pytest.raises(ValueError, match="sizes"):
        RandomBatchResize([])


def test_random_batch_resize_as_collate_fn():
    items = [
        (tv_tensors.Image(torch.rand(3, 10, 10)), tv_tensors.Mask(torch.randint(0, 2, (10, 10)))) for _ in range(4)
    ]
    loader = DataLoader(items, batch_size=2, collate_fn=RandomBatchResize((6, 7)).collate)
    for images, masks in loader:
        assert images.shape[0] == 2 and images.shape[-1] in (6, 7) and masks.shape[-1] == images.shape[-1]
