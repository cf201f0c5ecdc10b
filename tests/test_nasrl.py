"""NAS-RL's CIFAR-10 macro space (issue 12) and the REINFORCE controller's anchor points: the
paper's merge rules (depth concatenation, zero padding, the image for a layer without inputs,
the unconnected outputs into the classifier), shapes on 28×28 and 32×32 inputs, round trips,
and P(layer j is an input to layer i) = sigmoid(vᵀ tanh(W_prev h_j + W_curr h_i)) — computed
here by hand from the controller's weights — in sampling and in the trained log-probability."""

import json

import numpy as np
import pytest
import torch

from nasforge.arch import Arch
from nasforge.errors import UserError
from nasforge.models.nasrl import join
from nasforge.spaces.nasrl import NASRLSpace
from nasforge.strategies.base import create_strategy
from nasforge.strategies.reinforce import Reinforce


def _layer(kh, kw, filters, inputs, stride=1):
    return {"kh": kh, "kw": kw, "filters": filters, "stride": stride, "inputs": inputs}


#: layer 2 takes nothing (the image); 3 takes 0 and 2; 1, 3, 4 … are unconnected
LAYERS = [_layer(3, 3, 24, []), _layer(1, 7, 36, [0]), _layer(5, 1, 48, []),
          _layer(7, 7, 64, [0, 2]), _layer(3, 5, 24, [1, 3]), _layer(1, 1, 36, [2])]


def test_join_zero_pads_smaller_maps_and_concatenates_in_depth():
    a, b = torch.ones(1, 2, 6, 5), torch.full((1, 3, 3, 2), 2.0)
    y = join([a, b])
    assert y.shape == (1, 5, 6, 5)
    assert torch.equal(y[:, :2], a)
    small = y[0, 2:]
    assert float(small.sum()) == 2.0 * 3 * 3 * 2  # b kept whole …
    assert int((small == 0).sum()) == 3 * (6 * 5 - 3 * 2)  # … and the rest is zeros
    assert torch.equal(small[:, 1:4, 1:3], b[0])  # padding split evenly (extra after)


@pytest.mark.parametrize("size,channels", [(28, 1), (32, 3)])
def test_network_follows_the_papers_merge_rules(size, channels):
    sp = NASRLSpace()
    model = sp.build(sp.arch(LAYERS), 10, channels)
    cins = [layer[0].in_channels for layer in model.layers]
    assert cins == [channels, 24, channels, 24 + 48, 36 + 64, 48]  # [] → the image
    assert model.outputs == [4, 5]  # nobody takes 4 and 5 (1 and 3 are taken by 4)
    assert model.classifier.in_features == 24 + 36
    assert [layer[0].kernel_size for layer in model.layers] == [
        (3, 3), (1, 7), (5, 1), (7, 7), (3, 5), (1, 1)]
    y = model(torch.randn(2, channels, size, size))
    assert y.shape == (2, 10)


@pytest.mark.parametrize("size,channels", [(28, 1), (32, 3)])
def test_strided_layers_are_padded_to_the_largest(size, channels):
    sp = NASRLSpace("nasrl-strided")
    layers = [_layer(3, 3, 24, [], 2), _layer(3, 3, 24, [0], 3), _layer(1, 1, 24, [], 1),
              _layer(3, 3, 24, [0, 1, 2], 1), _layer(3, 3, 24, [3], 2),
              _layer(1, 1, 24, [0, 4], 1)]
    model = sp.build(sp.arch(layers), 10, channels)
    seen = []
    for layer in model.layers:
        layer.register_forward_hook(lambda m, i, o: seen.append(tuple(o.shape[2:])))
    assert model(torch.randn(2, channels, size, size)).shape == (2, 10)
    h2 = (size - 1) // 2 + 1
    h6 = (h2 - 1) // 3 + 1
    # layer 3 takes 0 (h/2), 1 (h/6) and 2 (h): padded to h; layer 5: 0 and 4, both h/2
    assert seen == [(h2, h2), (h6, h6), (size, size), (size, size), (h2, h2), (h2, h2)]
    rng = np.random.default_rng(0)
    for _ in range(5):
        a = sp.sample(rng)
        assert sp.build(a, 10, channels)(torch.randn(1, channels, size, size)).shape == (1, 10)


def test_round_trips_and_decisions():
    for name in ("nasrl", "nasrl-strided"):
        sp = NASRLSpace(name)
        rng = np.random.default_rng(2)
        for _ in range(50):
            a = sp.sample(rng)
            assert Arch.from_json(a.to_json()) == a
            assert sp.decode(json.loads(a.to_json())["genes"]) == a
            assert sp.decode(sp.encode(a)) == a
            assert sp.to_arch(sp.from_arch(a)) == a
        per = 5 if name == "nasrl-strided" else 4
        kinds = [sp.actions(sp.from_arch(a)[:t])[0][0] for t in range(6 * per)]
        names = ["kh", "kw", "stride", "filters"] if per == 5 else ["kh", "kw", "filters"]
        assert kinds[:per] == names + ["inputs"]  # the paper's order, then the anchor point
        assert kinds[per - 1::per] == ["inputs"] * 6
        # the anchor of layer i offers every subset of 0 … i − 1
        assert [len(sp.actions(sp.from_arch(a)[:t])) for t in range(per - 1, 6 * per, per)] == \
            [1, 2, 4, 8, 16, 32]
    assert NASRLSpace().cardinality() == 64 ** 6 * 2 ** 15


def test_bad_layers_name_the_problem():
    sp = NASRLSpace()
    bad = json.loads(json.dumps(LAYERS))
    bad[3]["inputs"] = [3]
    with pytest.raises(UserError, match="layer 3.*earlier layers"):
        sp.validate(Arch("nasrl", bad))
    bad = json.loads(json.dumps(LAYERS))
    bad[1]["kh"] = 2
    with pytest.raises(UserError, match=r"layer 1: kh 2 is not one of \[1, 3, 5, 7\]"):
        sp.validate(Arch("nasrl", bad))
    bad = json.loads(json.dumps(LAYERS))
    bad[0]["stride"] = 2  # nasrl fixes strides to 1
    with pytest.raises(UserError, match="stride 2"):
        sp.validate(Arch("nasrl", bad))
    with pytest.raises(UserError, match="6 layers"):
        sp.validate(Arch("nasrl", LAYERS[:5]))


# -- the controller's anchor points --------------------------------------------------------------

def _lstm_by_hand(net, tokens):
    """Hidden states of the controller's one-layer LSTM, written out from its weights."""
    sd = {k: v.double().numpy() for k, v in net.state_dict().items()}
    hid = sd["lstm.weight_hh_l0"].shape[1]
    h, c, out = np.zeros(hid), np.zeros(hid), []
    for t in tokens:
        z = (sd["lstm.weight_ih_l0"] @ sd["embed.weight"][t] + sd["lstm.bias_ih_l0"]
             + sd["lstm.weight_hh_l0"] @ h + sd["lstm.bias_hh_l0"])
        i, f, g, o = (z[k * hid:(k + 1) * hid] for k in range(4))
        sg = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
        c = sg(f) * c + sg(i) * np.tanh(g)
        h = sg(o) * np.tanh(c)
        out.append(h)
    return out, sd


def _anchor_ps_by_hand(strategy, seq):
    """P(j → i) at every anchor point of the decisions ``seq`` (a whole architecture or a
    prefix ending at an anchor point): sigmoid(vᵀ tanh(W_prev h_j + W_curr h_i)), h the LSTM's
    hidden state at each anchor step. One list per anchor point."""
    sp = strategy.seq
    toks = [strategy.net.start] + [strategy._tok(a) for a in seq]
    hs, sd = _lstm_by_hand(strategy.net, toks)
    steps = [t for t in range(len(seq) + 1) if sp.anchor_sources(seq[:t]) is not None]
    out = []
    for t in steps:
        ps = []
        for j in sp.anchor_sources(seq[:t]):
            s = sd["anchor.v.weight"][0] @ np.tanh(sd["anchor.w_prev.weight"] @ hs[steps[j]]
                                                   + sd["anchor.w_curr.weight"] @ hs[t])
            ps.append(1 / (1 + np.exp(-s)))
        out.append(np.array(ps))
    return out


def _anchor_p_by_hand(strategy, prefix):
    """The probabilities at the anchor point right after ``prefix``."""
    return _anchor_ps_by_hand(strategy, prefix)[-1]


def _sharpen(strategy, seed=0):
    """Redraw the controller's weights from N(0, 0.5²): at NAS-RL's init (±0.1) the hidden
    states are tiny and every p is ≈ ½, where a wrong formula would pass unnoticed; here the
    probabilities spread over ~0.01–0.95."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in strategy.net.parameters():
            p.normal_(0.0, 0.5, generator=g)


def test_anchor_probability_is_the_attention_sigmoid():
    sp = NASRLSpace()
    s = Reinforce(sp, seed=3)
    _sharpen(s)
    arch = sp.arch(LAYERS)
    full = sp.from_arch(arch)
    seen = []
    for i in (1, 3, 5):
        prefix = full[:4 * i + 3]  # up to layer i's anchor point
        got = s.anchor_probabilities(prefix)
        want = _anchor_p_by_hand(s, prefix)
        assert got.shape == (i,)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
        seen += list(want)
    assert np.ptp(seen) > 0.3  # sharpened: the sources differ


def test_log_prob_of_one_connection_is_the_sigmoids():
    """The anchor token fed on is the same whatever the connections, so two architectures that
    differ in one connection j → i differ in log π by exactly log p − log(1 − p)."""
    sp = NASRLSpace()
    s = Reinforce(sp, seed=5)
    _sharpen(s)
    with_ = sp.arch(LAYERS)
    without = json.loads(json.dumps(LAYERS))
    without[3]["inputs"] = [2]  # drop 0 → 3
    without = sp.arch(without)
    p = _anchor_p_by_hand(s, sp.from_arch(with_)[:4 * 3 + 3])[0]
    lp_with, _ = s.log_prob(with_)
    lp_without, _ = s.log_prob(without)
    diff = float((lp_with - lp_without).detach())
    assert diff == pytest.approx(np.log(p) - np.log1p(-p), abs=1e-4)


N_ASKS = 200


def test_ask_samples_connections_with_those_probabilities():
    """ask's (numpy) sampler against the formula over 200 asks (3,000 connections, each with
    its hand-computed p given the tokens sampled before it): if y is drawn with probability p,
    every residual y − p has mean 0 whatever it is weighted by, so both Σ (y − p) and
    Σ (y − p)(p − ½) lie within 4.5 standard deviations of 0. A sampler drawing from another
    probability q fails the second (it sums (q − p)(p − ½), which a q unrelated to p makes
    ≈ −Σ (p − ½)²)."""
    sp = NASRLSpace()
    s = Reinforce(sp, seed=11)
    _sharpen(s)
    ys, ps = [], []
    for _ in range(N_ASKS):
        seq = sp.from_arch(s.ask())
        for i, p in enumerate(_anchor_ps_by_hand(s, seq)):
            conn = set(seq[4 * i + 3][1])
            ys += [float(j in conn) for j in range(i)]
            ps += list(p)
    y, p = np.array(ys), np.array(ps)
    assert len(y) == N_ASKS * 15
    var = p * (1 - p)
    assert abs((y - p).sum()) < 4.5 * np.sqrt(var.sum())
    g = p - 0.5
    assert abs(((y - p) * g).sum()) < 4.5 * np.sqrt((var * g * g).sum())
    assert var.mean() < 0.22  # p(1 − p) well below ¼: a sharp policy to check


def test_reinforce_learns_connections_from_the_reward():
    """Reward = the number of skip connections: the mean anchor probability rises."""
    sp = NASRLSpace()
    s = Reinforce(sp, seed=0)

    def mean_p():
        a = sp.arch(LAYERS)
        return float(np.mean([s.anchor_probabilities(sp.from_arch(a)[:4 * i + 3]).mean()
                              for i in range(1, 6)]))

    before = mean_p()
    for _ in range(60):
        a = s.ask()
        s.tell(a, float(sum(len(lay["inputs"]) for lay in a.genes)))
    assert mean_p() > before + 0.1, (before, mean_p())


def test_anchors_leave_other_spaces_alone():
    """No attention weights where the space has no anchor points (NAS-Bench-201 here): the
    controller's state is the one it always had."""
    from nasforge.spaces.nb201 import NB201Space
    s = create_strategy("reinforce", NB201Space(), seed=0)
    assert s.anchored is None and s.net.anchor is None
    assert sorted(s.net.state_dict()) == sorted(
        ["embed.weight", "lstm.weight_ih_l0", "lstm.weight_hh_l0", "lstm.bias_ih_l0",
         "lstm.bias_hh_l0", "head.weight", "head.bias"])
    with pytest.raises(UserError, match="not an anchor point"):
        s.anchor_probabilities([])


def test_state_round_trips_with_anchors():
    sp = NASRLSpace("nasrl-strided")
    s = Reinforce(sp, seed=2)
    for i in range(8):
        a = s.ask()
        s.tell(a, float(i % 3))
    state = json.loads(json.dumps(s.state_dict()))
    clone = Reinforce(sp, seed=99)
    clone.load_state_dict(state)
    for _ in range(5):
        a, b = s.ask(), clone.ask()
        assert a == b
        s.tell(a, 1.0)
        clone.tell(b, 1.0)
