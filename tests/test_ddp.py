"""DDP through the engine: two Gloo processes on the CPU end with identical weights, and learn."""

import os

import pytest
import torch
import torch.multiprocessing as mp

from tests.ddp_helpers import become_rank, free_port

pytestmark = pytest.mark.slow


def _worker(rank: int, world: int, port: int, out_dir: str) -> None:
    become_rank(rank, world, port)
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset

    from mslib.configs import TrainConfig
    from mslib.train import distributed as D
    from mslib.train.engine import fit

    g = torch.Generator().manual_seed(0)
    x = torch.rand(24, 1, 8, 8, generator=g)
    y = (x[:, 0] > 0.5).long()
    torch.manual_seed(rank)  # different initial weights per rank: DDP must broadcast rank 0's
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 1, 1))

    def loss_fn(logits, masks):
        return nn.functional.binary_cross_entropy_with_logits(logits[:, 0], masks.float())

    loader = DataLoader(TensorDataset(x, y), batch_size=4, shuffle=True)
    val = DataLoader(TensorDataset(x[:10], y[:10]), batch_size=4)
    cfg = TrainConfig(epochs=4, lr=0.05, optimizer="adam", schedule="constant", weight_decay=0.0, seed=0)
    h = fit(model, loader, val, loss_fn=loss_fn, config=cfg, out_dir=os.path.join(out_dir, "run"), progress=False)
    assert D.get_world_size() == 1  # fit started the process group, so it also closed it
    torch.save(
        {"state": model.state_dict(), "records": h.records, "steps": h.last["step"]},
        os.path.join(out_dir, f"rank{rank}.pt"),
    )


def test_two_process_gloo_ddp(tmp_path):
    mp.spawn(_worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True)
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    for k, v in r0["state"].items():
        assert torch.equal(v, r1["state"][k]), k  # parameters and BN buffers identical on both ranks
    # each rank saw half of the 24 images per epoch: 3 steps of 4
    assert r0["steps"] == 4 * 3
    losses = [r["train_loss"] for r in r0["records"]]
    assert losses[-1] < losses[0]
    # metrics are reduced over ranks, so both ranks record the same validation values
    assert [r["val_dice"] for r in r0["records"]] == [r["val_dice"] for r in r1["records"]]
    assert [r["train_loss"] for r in r0["records"]] == [r["train_loss"] for r in r1["records"]]
    assert r0["records"][-1]["val_dice"] > 0.6
    # only rank 0 wrote the checkpoint, and it holds one RNG state per rank
    ckpt = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert len(ckpt["rng"]) == 2 and ckpt["epoch"] == 4
