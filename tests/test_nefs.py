import math
from pathlib import Path

import pytest
import torch

from nefs import MLP, SIREN, FourierNet, GaborNet, RFFNet
from nefs.stack import ParamLayout, init_stacked, stacked_forward

# fit-a-nef's parameter counts per NeF at its default sizes, one output channel
COUNTS = {SIREN: 105, MLP: 541, RFFNet: 2177, FourierNet: 705, GaborNet: 3076}


@pytest.mark.parametrize("cls", list(COUNTS))
def test_parameter_counts_match_fit_a_nef(cls):
    assert sum(p.numel() for p in cls().parameters()) == COUNTS[cls]


@pytest.mark.parametrize("cls", list(COUNTS))
def test_init_is_keyed_by_generator(cls):
    a, b = cls(out_features=3), cls(out_features=3)
    a.reset_parameters(torch.Generator().manual_seed(7))
    b.reset_parameters(torch.Generator().manual_seed(7))
    for (n, p), (_, q) in zip(a.named_parameters(), b.named_parameters()):
        assert torch.equal(p, q), n
    b.reset_parameters(torch.Generator().manual_seed(8))
    assert not all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()) if p.abs().sum() > 0)
    assert a(torch.rand(10, 2)).shape == (10, 3)


def test_siren_init_bounds():
    m = SIREN(hidden_dim=64, num_layers=4, omega_0=30.0)
    m.reset_parameters(torch.Generator().manual_seed(0))
    w0, w1 = m.layers[0].weight, m.layers[1].weight
    assert w0.abs().max() <= 1 / 2 and w0.abs().max() > 0.4          # U(-1/fan_in, 1/fan_in), fan_in 2
    bound = math.sqrt(6 / 64) / 30
    assert w1.abs().max() <= bound and w1.abs().max() > 0.9 * bound
    assert torch.all(m.layers[0].bias == 0)


def test_siren_weight_scale_multiplies_sine_layers_only():
    a, b = SIREN(weight_scale=1.0), SIREN(weight_scale=2.5)
    a.reset_parameters(torch.Generator().manual_seed(3))
    b.reset_parameters(torch.Generator().manual_seed(3))
    assert torch.allclose(b.layers[1].weight, 2.5 * a.layers[1].weight)
    assert torch.equal(b.output.weight, a.output.weight)


def test_layout_roundtrip_and_stacked_forward_matches_modules():
    t = RFFNet(out_features=2)
    layout = ParamLayout.of(t)
    params = init_stacked(t, seeds=[0, 0, 1], indices=[0, 1, 2], fixed_init=False)
    rows = layout.flatten(params)
    assert rows.shape == (3, layout.size)
    back = layout.unflatten(rows)
    assert all(torch.equal(back[k], params[k]) for k in params)
    assert ParamLayout.from_json(layout.to_json()) == layout
    x = torch.rand(50, 2) * 2 - 1
    out = stacked_forward(t)(params, x)
    for i in range(3):
        m = RFFNet(out_features=2)
        m.load_state_dict(layout.unflatten(rows[i]))
        assert torch.allclose(out[i], m(x), atol=1e-6)


def test_fixed_init_shares_weights_within_a_seed_only():
    t = SIREN()
    p = init_stacked(t, seeds=[0, 0, 5], indices=[0, 9, 3], fixed_init=True)
    assert torch.equal(p["layers.0.weight"][0], p["layers.0.weight"][1])
    assert not torch.equal(p["layers.0.weight"][0], p["layers.0.weight"][2])
    q = init_stacked(t, seeds=[0, 0], indices=[0, 9], fixed_init=False)
    assert not torch.equal(q["layers.0.weight"][0], q["layers.0.weight"][1])
    # NeF 9's own draw does not depend on who else is in the chunk
    r = init_stacked(t, seeds=[0], indices=[9], fixed_init=False)
    assert torch.equal(r["layers.0.weight"][0], q["layers.0.weight"][1])


@pytest.mark.parametrize("cls,kw", [(SIREN, {"num_layers": 1}), (RFFNet, {"hidden_dim": 7}), (MLP, {"num_layers": 0})])
def test_bad_sizes_are_clear_errors(cls, kw):
    with pytest.raises(ValueError, match=list(kw)[0]):
        cls(**kw)


def _textbook_forward(m, x):
    """The point-major forward written with plain nn.Linear calls: the NeFs' feature-major
    forward must compute exactly this function."""
    if isinstance(m, SIREN):
        for layer in m.layers:
            x = torch.sin(m.omega_0 * layer(x))
        return m.output(x)
    if isinstance(m, MLP):
        for layer in m.layers:
            x = torch.relu(layer(x))
        return m.output(x)
    if isinstance(m, RFFNet):
        proj = m.std * ((2 * math.pi) * x) @ m.coefficients.T
        x = torch.cat([torch.sin(proj), torch.cos(proj)], dim=-1)
        for layer in m.layers:
            x = torch.relu(layer(x))
        return m.output(x)

    def filt(i, x):
        f = m.filters[i]
        if isinstance(m, FourierNet):
            return torch.sin(f(x))
        d = (x ** 2).sum(-1, keepdim=True) + (f.mu ** 2).sum(0) - 2 * x @ f.mu
        return torch.exp(-0.5 * d * f.gamma) * torch.sin(f.linear(x))

    z = filt(0, x)
    for i, layer in enumerate(m.linears, start=1):
        z = filt(i, x) * layer(z)
    return m.output(z)


@pytest.mark.parametrize("cls", list(COUNTS))
def test_forward_is_the_textbook_function(cls):
    m = cls(out_features=3)
    m.reset_parameters(torch.Generator().manual_seed(1))
    x = torch.rand(4, 7, 2) * 2 - 1
    out = m(x)
    assert out.shape == (4, 7, 3)
    assert torch.allclose(out, _textbook_forward(m, x), atol=1e-5)
    assert torch.allclose(m(x[0, 0]), out[0, 0], atol=1e-6)  # a single point works too


@pytest.mark.parametrize("name", sorted(p.stem for p in (Path(__file__).resolve().parents[1] / "conf" / "nef").glob("*.yaml")))
def test_every_nef_config_builds(compose, name):
    from tasks.plan import build_nef

    cfg = compose(f"nef={name}")
    model = build_nef(cfg.nef, 2, 1)
    assert sum(p.numel() for p in model.parameters()) > 0
    if name == "siren_scaled":  # the weight-scaled preset of docs/performance.md
        assert (model.weight_scale, sum(p.numel() for p in model.parameters())) == (2.5, 1185)
