from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import numpy as np
import pytest
import torch

from mslib import viz


def test_to_numpy_image_layouts():
    chw = torch.rand(3, 5, 7)
    assert viz.to_numpy_image(chw).shape == (5, 7, 3)
    assert np.allclose(viz.to_numpy_image(chw)[..., 1], chw[1].numpy())
    gray = np.full((4, 4), 255, np.uint8)
    out = viz.to_numpy_image(gray)
    assert out.shape == (4, 4, 3) and out.max() == 1.0
    with pytest.raises(ValueError, match="cannot show"):
        viz.to_numpy_image(np.zeros((2, 3, 4, 5)))


def test_colorize_uses_palette_and_keeps_background_black():
    m = np.array([[0, 1], [2, 3]])
    c = viz.colorize(m)
    assert c[0, 0].tolist() == [0, 0, 0]
    assert c[0, 1].tolist() == viz.PALETTE[1].tolist() and c[1, 1].tolist() == viz.PALETTE[3].tolist()


def test_figures_build():
    imgs = [torch.rand(3, 16, 16) for _ in range(3)]
    masks = [torch.randint(0, 2, (16, 16)) for _ in range(3)]
    fig = viz.show_samples(imgs, masks, masks, titles=["a", "b", "c"], ncols=2)
    assert len(fig.axes) == 4
    fig = viz.feature_grid(torch.randn(1, 10, 8, 8), n=6, ncols=3)
    assert len(fig.axes) == 6
    ax = viz.plot_history(
        [{"epoch": 1, "train_loss": 1.0, "val_dice": 0.2}, {"epoch": 2, "train_loss": 0.5, "val_dice": 0.6}]
    )
    assert {t.get_text() for t in ax.get_legend().get_texts()} == {"train_loss", "val_dice"}
    with pytest.raises(ValueError):
        viz.plot_history([])
