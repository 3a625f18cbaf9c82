"""Res2Net-50 v1b 26w x 4s and the pretrained-weights mechanism (torch hub cache, local files, offline)."""

from __future__ import annotations

import functools
import hashlib
import http.server
import threading

import pytest
import torch
from torch import nn

from mslib.models import pretrained as P
from mslib.models.res2net import Bottle2neck, Res2Net, res2net50_v1b_26w_4s


@pytest.fixture(autouse=True)
def _offline_hub(monkeypatch, tmp_path):
    """An empty torch hub cache and no downloads, unless a test allows them."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("MSLIB_OFFLINE", "1")


def nparams(m):
    return sum(p.numel() for p in m.parameters())


@pytest.fixture(scope="module")
def r50():
    return res2net50_v1b_26w_4s(pretrained=False).eval()


def test_levels_channels_and_strides(r50):
    with torch.no_grad():
        feats = r50(torch.randn(1, 3, 64, 96))
    assert [f.shape[1] for f in feats] == [64, 256, 512, 1024, 2048] == list(r50.channels)
    assert [tuple(f.shape[-2:]) for f in feats] == [(16, 24), (16, 24), (8, 12), (4, 6), (2, 3)]
    assert all(torch.all(f >= 0) for f in feats)  # every level is ReLU-activated (M2SNet Sec. III-A)


def test_v1b_deep_stem_and_avgpool_shortcut(r50):
    convs = [m for m in r50.conv1 if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.stride) for c in convs] == [
        (3, 32, (3, 3), (2, 2)),
        (32, 32, (3, 3), (1, 1)),
        (32, 64, (3, 3), (1, 1)),
    ]
    ds = r50.layer2[0].downsample
    assert isinstance(ds[0], nn.AvgPool2d) and ds[0].kernel_size == 2 and ds[1].stride == (1, 1)
    blk = r50.layer1[1]
    assert isinstance(blk, Bottle2neck) and blk.width == 26 and blk.scale == 4 and len(blk.convs) == 3
    assert [len(getattr(r50, f"layer{i}")) for i in range(1, 5)] == [3, 4, 6, 3]


def test_parameter_count_without_classifier(r50):
    # 23,669,352 = MSNet's 27,692,329 (official measurement) minus the head we add on top:
    # 4 reducers (256/512/1024/2048 -> 64) + a second 2048 -> 64 reducer, 17 Conv3x3(64->64)+BN blocks, the 64 -> 1 head
    cbr = lambda cin: cin * 64 * 9 + 64 + 2 * 64  # noqa: E731
    head = sum(cbr(c) for c in (256, 512, 1024, 2048, 2048)) + 17 * cbr(64) + 64 * 9 + 1
    assert nparams(r50) == 27_692_329 - head == 23_669_352


def test_hierarchical_groups_feed_each_other():
    """In a "normal" block group i is convolved after adding group i-1's output: perturbing group 0 changes group 3."""
    torch.manual_seed(0)
    blk = Bottle2neck(32, 8, base_width=26, scale=4).eval()  # width 3, groups of 3 channels
    x = torch.rand(1, 32, 5, 5)
    with torch.no_grad():
        base = blk.relu(blk.bn1(blk.conv1(x)))
        captured = {}
        blk.convs[2].register_forward_hook(lambda m, i, o: captured.__setitem__("in", i[0].clone()))
        blk(x)
        first = captured["in"]
        blk.conv1.weight[:3] += 1.0  # change only group 0
        blk(x)
    assert not torch.allclose(first, captured["in"])
    assert base.shape[1] == 12


def test_narrow_variant_for_quick_profile():
    m = Res2Net(layers=(1, 1, 1, 1), width_mult=0.25)
    feats = m(torch.randn(2, 3, 32, 32))
    assert [f.shape[1] for f in feats] == list(m.channels) == [16, 64, 128, 256, 512]
    assert nparams(m) < nparams(res2net50_v1b_26w_4s()) / 20


def test_bad_arguments():
    with pytest.raises(ValueError, match="layers"):
        Res2Net(layers=(3, 4, 6))
    with pytest.raises(ValueError, match="only fit"):
        res2net50_v1b_26w_4s(pretrained=True, width_mult=0.5)
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        res2net50_v1b_26w_4s()(torch.zeros(3, 8, 8))
    with pytest.raises(TypeError, match="pretrained"):
        res2net50_v1b_26w_4s(pretrained=1)
    with pytest.raises(FileNotFoundError, match="no such file"):
        res2net50_v1b_26w_4s(pretrained="missing-weights.pth")


# ----------------------------------------------------------------- pretrained mechanism
def test_pretrained_true_offline_fails_fast_and_says_what_to_do():
    with pytest.raises(P.PretrainedWeightsUnavailable) as err:
        res2net50_v1b_26w_4s(pretrained=True)
    msg = str(err.value)
    assert P.WEIGHTS["res2net50_v1b_26w_4s"].url in msg
    assert str(P.cache_path(P.WEIGHTS["res2net50_v1b_26w_4s"])) in msg
    assert "res2net50_v1b_26w_4s-3cf99910.pth" in msg


def test_pretrained_auto_offline_warns_and_stays_random():
    with pytest.warns(UserWarning, match="RANDOMLY INITIALISED"):
        m = res2net50_v1b_26w_4s(pretrained="auto")
    assert isinstance(m, Res2Net)


@pytest.mark.slow
def test_local_file_and_hub_cache_load_the_official_key_layout(r50, tmp_path):
    state = {k: torch.randn_like(v) if v.is_floating_point() else v for k, v in r50.state_dict().items()}
    state["fc.weight"], state["fc.bias"] = (
        torch.zeros(1000, 2048),
        torch.zeros(1000),
    )  # the released file has a classifier
    path = tmp_path / "res2net.pth"
    torch.save(state, path)
    m = res2net50_v1b_26w_4s(pretrained=path)
    torch.testing.assert_close(m.layer3[2].convs[1].weight, state["layer3.2.convs.1.weight"])
    # the same file in the torch hub cache is found by pretrained=True and "auto"
    cached = P.cache_path(P.WEIGHTS["res2net50_v1b_26w_4s"])
    cached.parent.mkdir(parents=True)
    path.rename(cached)
    for flag in (True, "auto"):
        m = res2net50_v1b_26w_4s(pretrained=flag)
        torch.testing.assert_close(m.conv1[0].weight, state["conv1.0.weight"])


def test_mismatching_file_is_an_error_naming_keys(tmp_path):
    path = tmp_path / "wrong.pth"
    torch.save({"conv1.0.weight": torch.zeros(1)}, path)
    with pytest.raises(RuntimeError, match="missing"):
        res2net50_v1b_26w_4s(pretrained=path)


def _serve(directory):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(directory))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_download_into_hub_cache_with_hash_check(monkeypatch, tmp_path):
    """The real path: URL -> temp file -> SHA-256 prefix check -> torch hub cache -> state dict."""
    monkeypatch.delenv("MSLIB_OFFLINE")
    served = tmp_path / "www"
    served.mkdir()
    torch.save({"w": torch.arange(3.0)}, served / "tiny.pth")
    digest = hashlib.sha256((served / "tiny.pth").read_bytes()).hexdigest()
    server = _serve(served)
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/tiny.pth"
        good = P.WeightSpec("tiny", url, "tiny-good.pth", digest[:8])
        state = P.load_weights(good, True)
        torch.testing.assert_close(state["w"], torch.arange(3.0))
        assert P.cache_path(good).is_file()
        bad = P.WeightSpec("tiny", url, "tiny-bad.pth", "00000000" if not digest.startswith("0") else "ffffffff")
        with pytest.raises(P.PretrainedWeightsUnavailable, match="could not be downloaded"):
            P.load_weights(bad, True)
        assert not P.cache_path(bad).exists()  # a file failing the check never enters the cache
        with pytest.warns(UserWarning, match="RANDOMLY"):
            assert P.load_weights(bad, "auto") is None
    finally:
        server.shutdown()


def test_pretrained_false_reads_nothing():
    assert P.load_weights("vgg16", False) is None
    with pytest.raises(ValueError, match="unknown weights"):
        P.load_weights("resnet9000", True)
