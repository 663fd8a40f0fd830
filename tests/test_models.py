"""The networks: parameter counts, every layer's output shape, initialisation, ablation options,
the LRN formula and torchvision equivalence. Parametrised over the registry, so a newly
registered model is tested automatically."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from alexnet import UserError, create_model, list_models, model_info
from alexnet.models._layers import CrossMapLRN, SpatialResponseNorm
from alexnet.models.lenet import C3_TABLE, digit_codes
from alexnet.models.summary import count_params, layer_table

PARAMS = {
    "alexnet": 60_965_224,
    "alexnet_tv": 61_100_840,
    "lenet5": 60_000,
    "cifar_18pct": 89_578,
    "cifar_80sec": 145_578,
}


def test_registry_lists_every_model() -> None:
    assert set(PARAMS) <= set(list_models())


@pytest.mark.parametrize("name", list_models())
def test_every_model_runs_and_has_its_parameter_count(name: str) -> None:
    info = model_info(name)
    m = create_model(name)
    assert count_params(m) == PARAMS[name]
    x = torch.randn(2, info.in_chans, info.input_size, info.input_size)
    assert m(x).shape == (2, info.num_classes)
    m2 = create_model(name, num_classes=7)
    assert m2(x).shape == (2, 7)


def test_alexnet_layer_shapes_are_the_papers() -> None:
    rows = {r.name.split(".")[-1]: r for r in layer_table(create_model("alexnet"), (3, 224, 224))}
    expect = {
        "conv1": (96, 55, 55),
        "pool1": (96, 27, 27),
        "conv2": (256, 27, 27),
        "pool2": (256, 13, 13),
        "conv3": (384, 13, 13),
        "conv4": (384, 13, 13),
        "conv5": (256, 13, 13),
        "pool5": (256, 6, 6),
        "fc6": (4096,),
        "fc7": (4096,),
        "fc8": (1000,),
    }
    for name, shape in expect.items():
        assert rows[name].output_shape == shape, name
    params = {n: rows[n].params for n in ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8")}
    assert params == {
        "conv1": 34_944,
        "conv2": 307_456,
        "conv3": 885_120,
        "conv4": 663_936,
        "conv5": 442_624,
        "fc6": 37_752_832,
        "fc7": 16_781_312,
        "fc8": 4_097_000,
    }


@pytest.mark.parametrize("side", [224, 227])
def test_alexnet_accepts_224_and_227(side: int) -> None:
    m = create_model("alexnet").eval()
    feats = m.features[:2](torch.zeros(1, 3, side, side))  # pad1 + conv1
    assert feats.shape == (1, 96, 55, 55)


def test_alexnet_224_is_227_with_zero_padding_right_and_bottom() -> None:
    m = create_model("alexnet").eval()
    x = torch.randn(1, 3, 224, 224)
    padded = torch.nn.functional.pad(x, (0, 3, 0, 3))
    with torch.no_grad():
        assert torch.equal(m(x), m(padded))


def test_lenet5_layer_shapes_and_counts() -> None:
    m = create_model("lenet5")
    rows = {r.name.split(".")[-1]: r for r in layer_table(m, (1, 32, 32))}
    assert rows["c1"].output_shape == (6, 28, 28) and rows["c1"].params == 156
    assert rows["s2"].output_shape == (6, 14, 14) and rows["s2"].params == 12
    assert rows["c3"].output_shape == (16, 10, 10) and rows["c3"].params == 1516
    assert rows["s4"].output_shape == (16, 5, 5) and rows["s4"].params == 32
    assert rows["c5"].output_shape == (120, 1, 1) and rows["c5"].params == 48120
    assert rows["f6"].output_shape == (84,) and rows["f6"].params == 10164
    assert rows["output"].params == 0  # fixed RBF codes


def test_lenet5_c3_connection_table() -> None:
    assert [len(t) for t in C3_TABLE] == [3] * 6 + [4] * 6 + [4] * 3 + [6]
    assert C3_TABLE[4] == (4, 5, 0) and C3_TABLE[12] == (0, 1, 3, 4) and C3_TABLE[14] == (0, 2, 3, 5)
    c3 = create_model("lenet5").features.c3
    w = c3.dense_weight()
    for o, ins in enumerate(C3_TABLE):
        connected = w[o].abs().sum((1, 2)) > 0
        assert connected.nonzero().flatten().tolist() == sorted(ins)
    # a disconnected input map has no influence on the output map
    x = torch.randn(1, 6, 14, 14)
    y0 = c3(x)
    x[:, 3] += 5.0  # map 3 feeds C3 maps 1, 2, 3, 6, 7, 8, 9, 11, 12, 14, 15 only
    changed = (c3(x) - y0).abs().sum((0, 2, 3)) > 1e-6
    assert changed.nonzero().flatten().tolist() == [o for o, ins in enumerate(C3_TABLE) if 3 in ins]


def test_lenet5_rbf_codes_are_plus_minus_one_digits() -> None:
    codes = digit_codes()
    assert codes.shape == (10, 84) and set(codes.unique().tolist()) == {-1.0, 1.0}
    assert len({tuple(c.tolist()) for c in codes}) == 10
    m = create_model("lenet5")
    f6 = torch.randn(3, 84)
    expect = -((f6[:, None, :] - codes[None]) ** 2).sum(-1)
    assert torch.allclose(m.classifier.output(f6), expect, atol=1e-4)


def test_lenet5_modern_simplification() -> None:
    m = create_model("lenet5", variant="modern")
    assert count_params(m) == 61_706
    assert any(isinstance(x, nn.MaxPool2d) for x in m.modules())
    assert any(isinstance(x, nn.ReLU) for x in m.modules())
    assert isinstance(m.classifier.output, nn.Linear)
    assert count_params(create_model("lenet5", output="linear")) == 60_000 + 850


def test_alexnet_paper_initialisation() -> None:
    torch.manual_seed(0)
    m = create_model("alexnet")
    layers = {**dict(m.features.named_children()), **dict(m.classifier.named_children())}
    for name in ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8"):
        w = layers[name].weight
        assert abs(w.mean().item()) < 1e-3 and abs(w.std().item() - 0.01) < 5e-4, name
        bias = 1.0 if name in ("conv2", "conv4", "conv5", "fc6", "fc7") else 0.0
        assert torch.all(layers[name].bias == bias), name
    caffe = create_model("alexnet", init="caffe")
    assert torch.all(caffe.features.conv2.bias == 0.1)


def test_lenet5_lecun_initialisation() -> None:
    m = create_model("lenet5")
    for layer, fan_in in ((m.features.c1, 25), (m.features.c5, 400), (m.classifier.f6, 120)):
        assert layer.weight.abs().max() <= 2.4 / fan_in + 1e-7
        assert layer.weight.abs().max() > 0.5 * 2.4 / fan_in
    c3 = m.features.c3
    assert torch.all(c3.weight.abs() <= 2.4 / c3.fan_in + 1e-7)


def test_cifar_init_follows_the_cuda_convnet_configs() -> None:
    torch.manual_seed(0)
    m = create_model("cifar_18pct")
    assert abs(m.features.conv1.weight.std().item() - 1e-4) < 1e-5
    assert abs(m.features.conv2.weight.std().item() - 1e-2) < 1e-3
    assert abs(m.classifier.fc10.weight.std().item() - 1e-2) < 1e-3


def test_ablation_options_change_what_they_should() -> None:
    base = create_model("alexnet")
    tanh = create_model("alexnet", activation="tanh")
    assert sum(isinstance(x, nn.Tanh) for x in tanh.modules()) == 7
    assert not any(isinstance(x, nn.ReLU) for x in tanh.modules())
    nolrn = create_model("alexnet", lrn=False)
    assert sum(isinstance(x, CrossMapLRN) for x in base.modules()) == 2
    assert not any(isinstance(x, CrossMapLRN) for x in nolrn.modules())
    assert count_params(nolrn) == count_params(base)
    nonoverlap = create_model("alexnet", pool="nonoverlap")
    pools = [x for x in nonoverlap.modules() if isinstance(x, nn.MaxPool2d)]
    assert [(p.kernel_size, p.stride) for p in pools] == [(2, 2)] * 3
    assert [(p.kernel_size, p.stride) for p in base.modules() if isinstance(p, nn.MaxPool2d)] == [(3, 2)] * 3
    x = torch.randn(1, 3, 224, 224)
    assert nonoverlap.features(x).shape == base.features(x).shape == (1, 256, 6, 6)
    one = create_model("alexnet", columns=1)
    assert all(c.groups == 1 for c in one.modules() if isinstance(c, nn.Conv2d))
    assert [c.groups for c in base.modules() if isinstance(c, nn.Conv2d)] == [1, 2, 1, 2, 2]
    assert count_params(one) > count_params(base)  # one column of the same width sees all maps
    half = create_model("alexnet", columns=1, width=0.5)
    assert half.features.conv1.out_channels == 48 and half.classifier.fc6.out_features == 4096
    nodrop = create_model("alexnet", dropout=0.0)
    assert all(d.p == 0.0 for d in nodrop.modules() if isinstance(d, nn.Dropout))
    assert [d.p for d in base.modules() if isinstance(d, nn.Dropout)] == [0.5, 0.5]
    # dropout is active in training mode only
    base.train()
    assert not torch.equal(base(x), base(x))
    base.eval()
    assert torch.equal(base(x), base(x))


def test_grouped_conv_keeps_the_columns_apart() -> None:
    conv2 = create_model("alexnet").features.conv2
    x = torch.randn(1, 96, 27, 27)
    y0 = conv2(x)
    x[:, :48] += 1.0  # change only the first column's input maps
    diff = (conv2(x) - y0).abs().sum((0, 2, 3))
    assert torch.all(diff[:128] > 0) and torch.all(diff[128:] == 0)


def test_cifar_options() -> None:
    assert sum(isinstance(x, SpatialResponseNorm) for x in create_model("cifar_18pct").modules()) == 2
    assert sum(isinstance(x, CrossMapLRN) for x in create_model("cifar_18pct", lrn="cross").modules()) == 2
    plain = create_model("cifar_18pct", lrn="none")
    assert not any(isinstance(x, (SpatialResponseNorm, CrossMapLRN)) for x in plain.modules())
    assert any(isinstance(x, nn.Tanh) for x in create_model("cifar_80sec", activation="tanh").modules())
    assert not any(isinstance(x, SpatialResponseNorm) for x in create_model("cifar_80sec").modules())


def test_cifar_ablation_options_for_the_experiments() -> None:
    x = torch.randn(2, 3, 32, 32)
    # non-overlapping 2x2 pools give the same sizes as the 3x3 stride-2 ones rounded up
    adj = create_model("cifar_18pct", pool="non-overlap")
    pools = [m for m in adj.features if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d))]
    assert all(p.kernel_size == 2 and p.stride == 2 for p in pools)
    assert adj(x).shape == (2, 10)
    # two columns: twice the conv1/conv2 kernels, conv2 grouped, the columns meet at conv3
    two = create_model("cifar_18pct", columns=2)
    assert two.features.conv1.out_channels == 64 and two.features.conv2.groups == 2
    assert two.features.conv3.groups == 1 and two.features.conv3.out_channels == 64
    assert two(x).shape == (2, 10)
    # dropout on the hidden FC layer's outputs (the paper's); forward_features skips it
    d = create_model("cifar_80sec", dropout=0.5, hidden=256)
    assert [type(m).__name__ for m in d.classifier] == ["Flatten", "Linear", "ReLU", "Dropout", "Linear"]
    assert d.forward_features(x).shape == (2, 256)
    d.train()
    assert torch.equal(d.forward_features(x), d.forward_features(x))  # no dropout in the features
    # 24x24 patches: the classifier's input follows
    assert create_model("cifar_18pct", input_size=24).classifier.fc10.in_features == 64 * 3 * 3
    # lrn_scale: N_alpha(s a) == s N_(alpha s^2)(a), exact with cuda-convnet's k = 1
    a = torch.rand(2, 32, 8, 8)
    scaled = create_model("cifar_18pct", lrn="cross", lrn_scale=8.0).features.norm1
    plain = create_model("cifar_18pct", lrn="cross").features.norm1
    torch.testing.assert_close(scaled(a), plain(8.0 * a) / 8.0)


@pytest.mark.parametrize("name", ["alexnet", "cifar_18pct", "cifar_80sec"])
def test_both_spellings_of_the_non_overlapping_pool(name: str) -> None:
    kinds = [
        [(p.kernel_size, p.stride) for p in create_model(name, pool=pool).modules() if isinstance(p, nn.MaxPool2d)]
        for pool in ("non-overlap", "nonoverlap")
    ]
    assert kinds[0] == kinds[1] and kinds[0][0] == (2, 2)
    with pytest.raises(UserError, match="pool must be 'overlap' .* or 'non-overlap'"):
        create_model(name, pool="nonoverlapping")


def test_unknown_option_names_it() -> None:
    with pytest.raises(UserError, match="no option 'lrm'.*lrn="):
        create_model("alexnet", lrm=False)
    with pytest.raises(UserError, match="activation"):
        create_model("alexnet", activation="gelu")
    with pytest.raises(UserError, match="unknown model 'alexnte'"):
        create_model("alexnte")


def test_cross_map_lrn_is_the_papers_formula() -> None:
    torch.manual_seed(0)
    a = torch.randn(2, 7, 3, 3) * 20
    lrn = CrossMapLRN(5, alpha=1e-4, beta=0.75, k=2.0)
    # b_i = a_i / (k + alpha * sum_{j=max(0,i-2)}^{min(N-1,i+2)} a_j^2)^beta, written out
    expect = torch.empty_like(a)
    for i in range(7):
        s = (a[:, max(0, i - 2) : min(7, i + 3)] ** 2).sum(1)
        expect[:, i] = a[:, i] / (2.0 + 1e-4 * s) ** 0.75
    assert torch.allclose(lrn(a), expect, rtol=1e-5, atol=1e-6)
    torch_lrn = nn.LocalResponseNorm(5, alpha=5e-4, beta=0.75, k=2.0)
    assert torch.allclose(lrn(a), torch_lrn(a), rtol=1e-5, atol=1e-6)
    caffe = CrossMapLRN(5, alpha=1e-4, beta=0.75, k=2.0, alpha_over_n=True)
    assert torch.allclose(caffe(a), nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0)(a), rtol=1e-5, atol=1e-6)


def test_alexnets_default_lrn_is_cuda_convnets_alpha_over_n() -> None:
    """cuda-convnet divides the cross-map scale by the window size (and Caffe's bvlc_alexnet uses
    alpha/n): AlexNet's default norm is b = a / (2 + 1e-4 / 5 * sum a^2)^0.75, known values."""
    norm = create_model("alexnet", columns=1).features.norm1
    a = torch.zeros(1, 96, 1, 1)
    a[0, :3, 0, 0] = torch.tensor([100.0, 200.0, -50.0])
    out = norm(a)[0, :, 0, 0]
    # map 0 sees maps 0-2 (zero-padded below): 100^2 + 200^2 + 50^2 = 52,500
    assert out[0].item() == pytest.approx(100.0 / (2 + 1e-4 / 5 * 52500) ** 0.75, rel=1e-5)
    assert out[1].item() == pytest.approx(200.0 / (2 + 1e-4 / 5 * 52500) ** 0.75, rel=1e-5)
    assert out[2].item() == pytest.approx(-50.0 / (2 + 1e-4 / 5 * 52500) ** 0.75, rel=1e-5)
    literal = create_model("alexnet", columns=1, lrn_alpha_over_n=False).features.norm1
    assert literal(a)[0, 0, 0, 0].item() == pytest.approx(100.0 / (2 + 1e-4 * 52500) ** 0.75, rel=1e-5)


def test_spatial_response_norm_is_cuda_convnets() -> None:
    torch.manual_seed(0)
    a = torch.randn(1, 2, 5, 5) * 50
    out = SpatialResponseNorm(3, 5e-5, 0.75)(a)
    i, j = 0, 2  # a border pixel: the window is clipped (zero-padded)
    window = a[0, 1, max(0, i - 1) : i + 2, j - 1 : j + 2]
    expect = a[0, 1, i, j] / (1 + 5e-5 / 9 * (window**2).sum()) ** 0.75
    assert torch.allclose(out[0, 1, i, j], expect, rtol=1e-5)


def test_torchvision_weights_load_and_give_the_same_outputs() -> None:
    from torchvision.models import alexnet as tv_alexnet

    torch.manual_seed(0)
    ref = tv_alexnet(weights=None).eval()
    ours = create_model("alexnet_tv").eval()
    sd = ref.state_dict()
    assert list(ours.state_dict().keys()) == list(sd.keys())
    assert all(ours.state_dict()[k].shape == v.shape for k, v in sd.items())
    ours.load_state_dict(sd, strict=True)
    x = torch.randn(3, 3, 224, 224)
    with torch.no_grad():
        assert torch.allclose(ours(x), ref(x), atol=1e-5, rtol=1e-4)


def test_one_gpu_net_of_section_3_2_keeps_conv5_and_the_fc_layers_full() -> None:
    """The paper's footnote: the one-GPU net has half the kernels in conv1-conv4 but the final conv
    layer and the FC layers at full size: 48-128-192-192-256, 4096-4096."""
    half = create_model("alexnet", columns=1, width=0.5)
    convs = [m for m in half.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [48, 128, 192, 192, 256]
    assert all(c.groups == 1 for c in convs)
    assert [m.out_features for m in half.modules() if isinstance(m, nn.Linear)] == [4096, 4096, 1000]
    expect = (
        (3 * 121 * 48 + 48)
        + (48 * 25 * 128 + 128)
        + (128 * 9 * 192 + 192)
        + (192 * 9 * 192 + 192)
        + (192 * 9 * 256 + 256)
        + (256 * 36 * 4096 + 4096)
        + (4096 * 4096 + 4096)
        + (4096 * 1000 + 1000)
    )
    assert count_params(half) == expect == 59_798_312
    assert half(torch.randn(1, 3, 224, 224)).shape == (1, 1000)
    tiny = create_model("alexnet", width=0.25, top_width=0.25)  # what the fast tests use
    assert tiny.classifier.fc6.out_features == 1024 and tiny.features.conv5.out_channels == 64


def test_alexnet_lrn_normalises_each_column_on_its_own() -> None:
    """cuda-convnet2's two-GPU config: rnorm1a/rnorm1b over 48 maps each. Map 47's output must not
    depend on map 48 (the other column's first), unless lrn_across_columns."""
    torch.manual_seed(0)
    for across, expect_dependence in ((False, False), (True, True)):
        norm = create_model("alexnet", lrn_across_columns=across).features.norm1
        x = torch.rand(1, 96, 5, 5) * 50
        y0 = norm(x)
        x2 = x.clone()
        x2[:, 48] *= 3.0
        changed = (norm(x2) - y0).abs().amax((0, 2, 3)) > 0
        assert bool(changed[47]) is expect_dependence and bool(changed[46]) is expect_dependence
        assert bool(changed[49]) and bool(changed[50])  # within its own column it acts as before
    one = create_model("alexnet", columns=1).features.norm1
    assert one.groups == 1


def test_cuda_convnet_average_pooling_divides_by_the_pixels_inside_the_map() -> None:
    """cuda-convnet's AvgPooler divides by regionSize, the window's pixels inside the map: an all-ones
    map pools to all ones, also in the last row and column, whose windows overhang the border."""
    for name in ("cifar_18pct", "cifar_80sec"):
        for size, pool in ((32, "pool2"), (16, "pool3")):
            p = getattr(create_model(name).features, pool)
            out = p(torch.ones(2, 3, size, size))
            assert out.shape == (2, 3, size // 2, size // 2)
            assert torch.equal(out, torch.ones_like(out))


def _avg_pool_loop(x: torch.Tensor, k: int, s: int) -> torch.Tensor:
    """Average pooling written as cuda-convnet's kernel does it: windows start every s pixels, the
    output size rounded up, each window's sum over the pixels inside the map divided by their count."""
    n, c, h, w = x.shape
    oh, ow = -(-(h - k) // s) + 1, -(-(w - k) // s) + 1
    out = torch.empty(n, c, oh, ow, dtype=torch.float64)
    for i in range(oh):
        for j in range(ow):
            y0, x0 = i * s, j * s
            y1, x1 = min(h, y0 + k), min(w, x0 + k)
            out[:, :, i, j] = x[:, :, y0:y1, x0:x1].double().sum((2, 3)) / ((y1 - y0) * (x1 - x0))
    return out


def test_average_pooling_matches_a_loop_over_in_map_pixels_forward_and_backward() -> None:
    torch.manual_seed(0)
    m = create_model("cifar_18pct")
    for size, pool in ((32, m.features.pool2), (16, m.features.pool3), (8, m.features.pool3)):
        x = torch.randn(2, 4, size, size, dtype=torch.float64, requires_grad=True)
        got = pool(x)
        want = _avg_pool_loop(x, 3, 2)
        assert torch.allclose(got, want, atol=1e-12)
        g = torch.randn_like(want)
        (gx,) = torch.autograd.grad((got * g).sum(), x)
        x2 = x.detach().clone().requires_grad_(True)
        (gx2,) = torch.autograd.grad((_avg_pool_loop(x2, 3, 2) * g).sum(), x2)
        assert torch.allclose(gx, gx2, atol=1e-12)


def test_weight_decay_applies_to_the_kernels_of_every_model() -> None:
    from alexnet.engine.optim import decayed_parameter_names
    from alexnet.models import list_models

    expect = {
        "alexnet": [f"features.conv{i}.weight" for i in range(1, 6)] + [f"classifier.fc{i}.weight" for i in (6, 7, 8)],
        "alexnet_tv": [f"features.{i}.weight" for i in (0, 3, 6, 8, 10)]
        + [f"classifier.{i}.weight" for i in (1, 4, 6)],
        "lenet5": ["features.c1.weight", "features.c3.weight", "features.c5.weight", "classifier.f6.weight"],
        "cifar_18pct": [
            "features.conv1.weight",
            "features.conv2.weight",
            "features.conv3.weight",
            "classifier.fc10.weight",
        ],
        "cifar_80sec": [
            "features.conv1.weight",
            "features.conv2.weight",
            "features.conv3.weight",
            "classifier.fc64.weight",
            "classifier.fc10.weight",
        ],
    }
    assert set(expect) == set(list_models())
    for name, names in expect.items():
        assert decayed_parameter_names(create_model(name)) == names, name
    # LeNet-5's C3 keeps its sparse kernels in a 1-D parameter: decayed all the same
    assert create_model("lenet5").features.c3.weight.ndim == 1


def test_cifar_dropout_drops_the_hidden_layers_outputs_only() -> None:
    m = create_model("cifar_80sec", dropout=0.5)
    names = [n for n, _ in m.classifier.named_children()]
    assert names == ["flatten", "fc64", "act4", "drop", "fc10"]  # after the hidden layer, not before it
    with pytest.raises(UserError, match="no hidden fully-connected layer"):
        create_model("cifar_18pct", dropout=0.5)


@pytest.mark.parametrize(
    "name,pool", [("cifar_18pct", "overlap"), ("cifar_80sec", "overlap"), ("cifar_18pct", "non-overlap")]
)
def test_max_pooling_before_the_relu_is_exact(name: str, pool: str) -> None:
    """The CIFAR nets with ReLU pool before their first activation (cheaper); the paper's order gives
    the same outputs and gradients, bit for bit, so no published figure moves."""
    activation = "relu"
    from collections import OrderedDict

    torch.manual_seed(0)
    fast = create_model(name, num_classes=10, activation=activation, pool=pool, init="torch")
    assert [n for n, _ in create_model(name, activation="tanh").features.named_children()][:3] == [
        "conv1",
        "act1",
        "pool1",
    ]  # a tanh keeps the paper's order
    literal = copy.deepcopy(fast)
    layers = dict(literal.features.named_children())
    order = ["conv1", "act1", "pool1"] + [n for n in layers if n not in ("conv1", "act1", "pool1")]
    literal.features = nn.Sequential(OrderedDict((n, layers[n]) for n in order))
    assert [n for n, _ in fast.features.named_children()][:3] == ["conv1", "pool1", "act1"]
    x = torch.randn(16, 3, 32, 32) * 3
    x[:, :, :4] = -5.0  # windows whose values are all negative (ties at zero after a ReLU)
    y = torch.randint(0, 10, (16,))
    grads = []
    for m in (fast, literal):
        out = m(x)
        torch.nn.functional.cross_entropy(out, y).backward()
        grads.append((out.detach(), [p.grad.clone() for p in m.parameters()]))
    assert torch.equal(grads[0][0], grads[1][0])
    assert all(torch.equal(a, b) for a, b in zip(grads[0][1], grads[1][1]))
