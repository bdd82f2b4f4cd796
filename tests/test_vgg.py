"""VGG loss network: layouts, input conventions, taps, frozen state, and one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from mambast.nets.vgg import (
    CAFFE_BGR_MEAN,
    IMAGENET_MEAN,
    IMAGENET_STD,
    VGGEncoder,
    VGGWeightsError,
    detect_layout,
    load_vgg,
    save_vgg,
)


@pytest.fixture(scope="module")
def synthetic_vgg_path(synthetic_1234) -> Path:
    return synthetic_1234 / "vgg_normalised.pth"


def _random_sd(layout: str, prefix: str = "") -> dict[str, torch.Tensor]:
    torch.manual_seed(3)
    enc = VGGEncoder(layout)
    for p in enc.parameters():
        p.data.normal_(0, 0.1)
    return {prefix + k: v.clone() for k, v in enc.features.state_dict().items()}


def test_vgg_normalised_first_tap_by_hand(synthetic_vgg_path):
    sd = torch.load(synthetic_vgg_path, weights_only=True)
    vgg = load_vgg(synthetic_vgg_path)
    assert vgg.layout == "vgg_normalised" and vgg.input_norm == "none"
    x = torch.rand(2, 3, 24, 40, generator=torch.Generator().manual_seed(0))
    h = F.conv2d(x, sd["0.weight"], sd["0.bias"])
    relu1_1 = F.relu(F.conv2d(F.pad(h, (1, 1, 1, 1), mode="reflect"), sd["2.weight"], sd["2.bias"]))
    feats = vgg(x)
    torch.testing.assert_close(feats[0], relu1_1, rtol=1e-5, atol=1e-5)
    assert [tuple(f.shape[1:]) for f in feats] == [
        (64, 24, 40), (128, 12, 20), (256, 6, 10), (512, 3, 5), (512, 2, 3)  # ceil_mode pools
    ]
    torch.testing.assert_close(vgg.relu3_1(x), feats[2], rtol=0, atol=0)
    with pytest.raises(ValueError, match="too small to reach relu5_1"):
        vgg(torch.rand(1, 3, 16, 16))
    assert vgg.relu3_1(torch.rand(1, 3, 16, 16)).shape == (1, 256, 4, 4)


def test_vgg_normalised_full_file_ignores_layers_past_relu5_1(synthetic_vgg_path):
    sd = torch.load(synthetic_vgg_path, weights_only=True)
    assert "51.weight" in sd  # the published file goes beyond relu5_1
    vgg = load_vgg(synthetic_vgg_path, layout="vgg_normalised")
    torch.testing.assert_close(vgg.features[42].weight, sd["42.weight"])
    assert len(vgg.features) == 44


@pytest.mark.parametrize("layout,n_convs", [("vgg19", 13), ("vgg16", 11)])
def test_torchvision_layouts(tmp_path, layout, n_convs):
    sd = _random_sd(layout, "features.")
    sd["classifier.0.weight"] = torch.zeros(4, 4)  # full torchvision files carry the classifier
    path = tmp_path / f"{layout}.pth"
    torch.save(sd, path)
    vgg = load_vgg(path)
    assert vgg.layout == layout and vgg.input_norm == "imagenet"
    assert sum(isinstance(m, torch.nn.Conv2d) for m in vgg.features) == n_convs
    x = torch.rand(1, 3, 33, 33, generator=torch.Generator().manual_seed(1))
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    expect = F.relu(F.conv2d((x - mean) / std, sd["features.0.weight"], sd["features.0.bias"], padding=1))
    feats = vgg(x)
    torch.testing.assert_close(feats[0], expect, rtol=1e-5, atol=1e-5)
    assert [f.shape[-1] for f in feats] == [33, 16, 8, 4, 2]  # floor-mode pools


def test_native_caffe_bgr_file(tmp_path):
    sd = _random_sd("vgg16", "features.")
    path = tmp_path / "vgg16_caffe.pth"
    save_vgg(path, sd, "vgg16", "caffe_bgr")
    raw = torch.load(path, weights_only=True)
    assert raw["layout"] == "vgg16" and raw["input"] == "caffe_bgr"
    vgg = load_vgg(path)
    assert vgg.input_norm == "caffe_bgr"
    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    bgr = x[:, [2, 1, 0]] * 255 - torch.tensor(CAFFE_BGR_MEAN).view(1, 3, 1, 1)
    expect = F.relu(F.conv2d(bgr, sd["features.0.weight"], sd["features.0.bias"], padding=1))
    torch.testing.assert_close(vgg(x)[0], expect, rtol=1e-4, atol=1e-3)
    with pytest.raises(VGGWeightsError, match="holds a 'vgg16' VGG"):
        load_vgg(path, layout="vgg19")


def test_frozen_eval_but_passes_input_gradients(synthetic_vgg_path):
    vgg = load_vgg(synthetic_vgg_path)
    vgg.train()
    assert not vgg.training and all(not p.requires_grad for p in vgg.parameters())
    x = torch.rand(1, 3, 32, 32, requires_grad=True)
    sum(f.mean() for f in vgg(x)).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_detect_layout():
    assert detect_layout(_random_sd("vgg_normalised")) == "vgg_normalised"
    assert detect_layout(_random_sd("vgg19", "features.")) == "vgg19"
    assert detect_layout(_random_sd("vgg16", "features.")) == "vgg16"
    with pytest.raises(VGGWeightsError, match="cannot tell"):
        detect_layout({"foo.weight": torch.zeros(1)})


def test_key_errors_are_listed(tmp_path):
    sd = _random_sd("vgg_normalised")
    del sd["5.bias"]
    sd["9.weight"] = torch.zeros(128, 64, 1, 1)
    sd["bogus"] = torch.zeros(1)
    path = tmp_path / "bad.pth"
    torch.save(sd, path)
    with pytest.raises(VGGWeightsError) as err:
        load_vgg(path, layout="vgg_normalised")
    msg = str(err.value)
    assert "missing 5.bias" in msg and "mis-shaped 9.weight" in msg and "unexpected bogus" in msg
    assert "\n" not in msg


def test_missing_weights_messages(tmp_path):
    with pytest.raises(VGGWeightsError, match="vgg_normalised.pth"):
        load_vgg(None)
    with pytest.raises(VGGWeightsError, match="not found"):
        load_vgg(tmp_path / "nope.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a torch file")
    with pytest.raises(VGGWeightsError, match="cannot read"):
        load_vgg(tmp_path / "junk.pth")
    a, b = load_vgg(None, allow_random=True), load_vgg(None, allow_random=True)
    torch.testing.assert_close(a.features[2].weight, b.features[2].weight)  # deterministic random weights
