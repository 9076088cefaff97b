"""LARS against an independent step-by-step reference, and the warmup + cosine schedule."""

from __future__ import annotations

import io
import math

import pytest
import torch
import torch.nn as nn

from trainers.vicreg import LARS, exclude_bias_and_norm
from trainers.vicreg.optim import learning_rate


def reference_lars(params, grads, mus, *, lr, wd, momentum, eta, excluded):
    """LARS as PROTOCOLS.md states it, in float64 Python arithmetic on the norms."""
    new_params, new_mus = [], []
    for p, g, mu, skip in zip(params, grads, mus, excluded):
        d = g.clone()
        if not skip:
            d = d + wd * p
            pn = math.sqrt(float((p.double() ** 2).sum()))
            dn = math.sqrt(float((d.double() ** 2).sum()))
            q = eta * pn / dn if pn > 0 and dn > 0 else 1.0
            d = d * q
        mu = momentum * mu + d
        new_params.append(p - lr * mu)
        new_mus.append(mu)
    return new_params, new_mus


def small_net() -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 4, bias=False), nn.Linear(4, 3))
    with torch.no_grad():
        net[4].weight.zero_()  # a zero-norm parameter: trust ratio falls back to 1
    return net


def grads_for(net: nn.Module, step: int) -> None:
    g = torch.Generator().manual_seed(100 + step)
    x = torch.randn(16, 6, generator=g)
    net.zero_grad(set_to_none=True)
    net(x).pow(2).mean().backward()


@pytest.mark.parametrize("foreach", [True, False])
def test_lars_matches_reference_step_for_step(foreach):
    net = small_net()
    opt = LARS(net.parameters(), lr=0.0, weight_decay=1e-2, momentum=0.9, eta=0.02,
               weight_decay_filter=exclude_bias_and_norm, lars_adaptation_filter=exclude_bias_and_norm, foreach=foreach)
    params = [p.detach().clone() for p in net.parameters()]
    mus = [torch.zeros_like(p) for p in params]
    excluded = [p.ndim == 1 for p in params]
    for step, lr in enumerate([0.0, 0.5, 1.0, 0.7, 0.3]):
        grads_for(net, step)
        grads = [p.grad.detach().clone() for p in net.parameters()]
        for group in opt.param_groups:
            group["lr"] = lr
        opt.step()
        params, mus = reference_lars(params, grads, mus, lr=lr, wd=1e-2, momentum=0.9, eta=0.02, excluded=excluded)
        for ours, ref in zip(net.parameters(), params):
            torch.testing.assert_close(ours.detach(), ref, rtol=1e-6, atol=1e-7)
        with torch.no_grad():  # keep the reference on exactly our parameters (no drift from rounding)
            params = [p.detach().clone() for p in net.parameters()]
            mus = [opt.state[p]["mu"].clone() for p in net.parameters()]


def test_foreach_and_loop_paths_are_identical():
    nets = [small_net(), small_net()]
    opts = [LARS(n.parameters(), lr=0.8, weight_decay=1e-6, weight_decay_filter=exclude_bias_and_norm,
                 lars_adaptation_filter=exclude_bias_and_norm, foreach=f) for n, f in zip(nets, (True, False))]
    for step in range(4):
        for n, o in zip(nets, opts):
            grads_for(n, step)
            o.step()
    for a, b in zip(*(n.parameters() for n in nets)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_without_filters_every_parameter_is_decayed_and_adapted():
    p = nn.Parameter(torch.tensor([3.0, 4.0]))
    p.grad = torch.tensor([0.0, 1.0])
    opt = LARS([p], lr=1.0, weight_decay=0.5, momentum=0.9, eta=0.1)
    opt.step()
    d = torch.tensor([0.0, 1.0]) + 0.5 * torch.tensor([3.0, 4.0])  # [1.5, 3.0]
    q = 0.1 * 5.0 / float(d.norm())
    torch.testing.assert_close(p.detach(), torch.tensor([3.0, 4.0]) - q * d)


def test_excluded_parameters_get_plain_momentum_sgd():
    b = nn.Parameter(torch.tensor([1.0, -1.0]))  # 1-d: a bias
    opt = LARS([b], lr=0.1, weight_decay=0.5, momentum=0.9, weight_decay_filter=exclude_bias_and_norm,
               lars_adaptation_filter=exclude_bias_and_norm)
    for _ in range(2):
        b.grad = torch.tensor([1.0, 2.0])
        opt.step()
    # mu1 = g, mu2 = 0.9 g + g = 1.9 g; p = p0 - 0.1 g - 0.1 * 1.9 g
    torch.testing.assert_close(b.detach(), torch.tensor([1.0, -1.0]) - 0.29 * torch.tensor([1.0, 2.0]))
    assert exclude_bias_and_norm(torch.zeros(3)) and not exclude_bias_and_norm(torch.zeros(3, 3))


def test_state_dict_round_trip_is_weights_only_and_resumes_exactly():
    def make(net):
        return LARS(net.parameters(), lr=0.5, weight_decay=1e-4, weight_decay_filter=exclude_bias_and_norm,
                    lars_adaptation_filter=exclude_bias_and_norm)

    ref_net = small_net()
    ref_opt = make(ref_net)
    for step in range(4):
        grads_for(ref_net, step)
        ref_opt.step()

    net = small_net()
    opt = make(net)
    for step in range(2):
        grads_for(net, step)
        opt.step()
    buf = io.BytesIO()
    torch.save({"model": net.state_dict(), "optimizer": opt.state_dict()}, buf)
    buf.seek(0)
    saved = torch.load(buf, weights_only=True)  # no callables in the state dict
    assert saved["optimizer"]["param_groups"][0]["weight_decay_filter"] == "exclude_bias_and_norm"

    net2 = small_net()
    net2.load_state_dict(saved["model"])
    opt2 = make(net2)
    opt2.load_state_dict(saved["optimizer"])
    assert opt2.param_groups[0]["weight_decay_filter"] is exclude_bias_and_norm
    for step in range(2, 4):
        grads_for(net2, step)
        opt2.step()
    for a, b in zip(net2.parameters(), ref_net.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def official_schedule(step, base_lr, batch, epochs, spe, warmup=10):
    """The official adjust_learning_rate, re-derived from its description."""
    peak = base_lr * batch / 256
    if step < warmup * spe:
        return peak * step / (warmup * spe)
    t = (step - warmup * spe) / (epochs * spe - warmup * spe)
    q = 0.5 * (1 + math.cos(math.pi * t))
    return peak * q + 0.001 * peak * (1 - q)


def test_schedule_warmup_cosine_and_end_value():
    kw = dict(base_lr=0.2, batch_size=2048, epochs=100, steps_per_epoch=50)
    peak = 0.2 * 2048 / 256
    assert learning_rate(0, **kw) == 0.0
    assert learning_rate(250, **kw) == pytest.approx(peak / 2)
    assert learning_rate(500, **kw) == pytest.approx(peak)
    end = 100 * 50
    # The official end value is 0.001 x the scaled peak (0.0016 here), not 0.001 x base_lr.
    assert learning_rate(end, **kw) == pytest.approx(0.001 * peak)
    mid = 500 + (end - 500) // 2
    assert learning_rate(mid, **kw) == pytest.approx(0.5 * peak + 0.5 * 0.001 * peak)
    values = [learning_rate(s, **kw) for s in range(500, end)]
    assert all(a >= b for a, b in zip(values, values[1:]))
    for s in (0, 1, 123, 499, 500, 501, 2222, 4999):
        assert learning_rate(s, **kw) == pytest.approx(official_schedule(s, 0.2, 2048, 100, 50), rel=1e-12)


def test_schedule_edge_cases():
    assert learning_rate(0, base_lr=0.3, batch_size=256, epochs=1, steps_per_epoch=4, warmup_epochs=0) == pytest.approx(0.3)
    # all-warmup runs never divide by zero
    assert learning_rate(3, base_lr=0.3, batch_size=256, epochs=2, steps_per_epoch=2, warmup_epochs=10) == pytest.approx(0.3 * 3 / 20)
    assert learning_rate(7, base_lr=1.0, batch_size=256, epochs=1, steps_per_epoch=4, warmup_epochs=1, end_factor=0.5) == pytest.approx(0.5)
