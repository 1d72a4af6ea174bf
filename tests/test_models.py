"""Every architecture: shapes, padding invariance, attention weights, and learning order."""

from __future__ import annotations

import pytest
import torch
from conftest import model_config

from componentx.params import ARCHS, MONITORS
from componentx.sequence.models import (
    ENCODERS,
    build_model,
    left_to_right_aligned,
    packed_lstm,
    reverse_real_steps,
)
from componentx.sequence.training import MONITOR_MODES

FEATURES, CLASSES = 6, 5
VARIANTS = [(arch, {}) for arch in ARCHS] + [
    ("lstm", {"pooling": "mean"}), ("lstm", {"bidirectional": True}),
    ("lstm", {"num_layers": 2, "bidirectional": True, "pooling": "attention"}),
    ("cnn_lstm", {"kernel_size": 5, "bidirectional": True}),
    ("transformer", {"pooling": "attention", "num_layers": 2}),
    # patches of readouts: windows of 20 read as 4 patches of 5, windows of 9 as 2
    ("lstm", {"max_steps": 4, "window": 20}), ("attention_lstm", {"max_steps": 4, "window": 20}),
    ("transformer", {"max_steps": 4, "window": 20}), ("cnn_lstm", {"max_steps": 4, "window": 20}),
]


def model(arch, **overrides):
    torch.manual_seed(0)
    config = model_config(**{"arch": arch, "n_features": FEATURES, "num_classes": CLASSES,
                             "spec_cardinalities": [3, 4], "hidden_size": 16, "head_hidden": 8,
                             "dropout": 0.0, "conv_channels": 8, "num_heads": 2, **overrides})
    return build_model(config).eval()


def left_pad(sequences, window):
    x = torch.zeros(len(sequences), window, sequences[0].shape[1])
    for i, sequence in enumerate(sequences):
        x[i, window - len(sequence):] = sequence
    return x, torch.tensor([len(s) for s in sequences])


@pytest.mark.parametrize(("arch", "overrides"), VARIANTS,
                         ids=[f"{a}-{'-'.join(f'{k}={v}' for k, v in o.items())}" for a, o in
                              VARIANTS])
def test_shapes_and_padding_invariance(arch, overrides):
    net = model(arch, **overrides)
    torch.manual_seed(1)
    sequences = [torch.randn(n, FEATURES) for n in (1, 4, 9)]
    specs = torch.tensor([[0, 1], [2, 3], [1, 0]])
    x_short, lengths = left_pad(sequences, 9)
    x_long, _ = left_pad(sequences, 20)
    with torch.no_grad():
        short = net(x_short, lengths, specs)
        long = net(x_long, lengths, specs)
        x_noisy = x_long.clone()
        x_noisy[1, : 20 - 4] = 1e3  # the padding's content is never read either
        noisy = net(x_noisy, lengths, specs)
    assert short.shape == (3, CLASSES)
    assert torch.allclose(short, long, atol=1e-5)
    assert torch.allclose(noisy, long, atol=1e-5)


def test_attention_weights_are_returned_and_ignore_padding():
    net = model("attention_lstm")
    x, lengths = left_pad([torch.randn(3, FEATURES), torch.randn(7, FEATURES)], 10)
    with torch.no_grad():
        net(x, lengths, torch.zeros((2, 2), dtype=torch.long))
    weights = net.attention()
    assert weights["self"].shape == (2, 10, 10) and weights["pooling"].shape == (2, 10)
    assert torch.allclose(weights["pooling"].sum(dim=1), torch.ones(2))
    assert (weights["pooling"][0, 3:] == 0).all()  # right-aligned: steps 3.. are padding
    assert (weights["self"][0, :3, 3:] == 0).all()
    assert model("lstm").attention() == {}


def test_specifications_change_the_output_and_may_be_absent():
    net = model("lstm")
    x, lengths = left_pad([torch.randn(5, FEATURES)] * 2, 8)
    with torch.no_grad():
        out = net(x, lengths, torch.tensor([[0, 0], [2, 3]]))
    assert not torch.allclose(out[0], out[1])
    bare = build_model(model_config(n_features=FEATURES, num_classes=CLASSES,
                                    spec_cardinalities=[]))
    assert bare(x, lengths, torch.zeros((2, 0), dtype=torch.long)).shape == (2, CLASSES)


def order_task(n=384, window=10, seed=0):
    """Label 1 when the first real value exceeds the last: invisible without order."""
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.randint(3, window + 1, (n,), generator=generator)
    sequences = []
    for length in lengths.tolist():
        values = torch.randn(length, 1, generator=generator)
        age = torch.arange(length - 1, -1, -1, dtype=torch.float32)[:, None] / 4
        sequences.append(torch.cat([values, torch.zeros(length, 1), age], dim=1))
    x, lengths = left_pad(sequences, window)
    first = x[torch.arange(n), window - lengths, 0]
    return x, lengths, (first > x[:, -1, 0]).long()


@pytest.mark.parametrize("arch", ARCHS)
def test_each_architecture_learns_a_task_that_needs_order(arch):
    torch.manual_seed(0)
    config = model_config(arch=arch, n_features=3, num_classes=2, spec_cardinalities=[],
                          hidden_size=32, head_hidden=16, dropout=0.0, conv_channels=16,
                          num_heads=2, pooling="mean" if arch == "transformer" else "last")
    net = build_model(config)
    x, lengths, y = order_task()
    specs = torch.zeros((len(y), 0), dtype=torch.long)
    optimizer = torch.optim.Adam(net.parameters(), lr=5e-3)
    for _ in range(150):
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(net(x, lengths, specs), y)
        loss.backward()
        optimizer.step()
    x_test, lengths_test, y_test = order_task(seed=1)
    with torch.no_grad():
        accuracy = (net.eval()(x_test, lengths_test, specs).argmax(1) == y_test).float().mean()
    assert accuracy > 0.85, f"{arch}: {accuracy:.2f}"


def test_alignment_moves_real_steps_to_the_front():
    x = torch.arange(1.0, 5.0).reshape(1, 4, 1).repeat(2, 1, 1)
    aligned = left_to_right_aligned(x, torch.tensor([2, 4]))
    assert aligned[..., 0].tolist() == [[3.0, 4.0, 0.0, 0.0], [1.0, 2.0, 3.0, 4.0]]


def right_aligned_batch(window=12, batch=16, features=FEATURES, seed=2):
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, window + 1, (batch,), generator=generator)
    lengths[0] = window
    mask = torch.arange(window)[None, :] < lengths[:, None]
    x = torch.randn(batch, window, features, generator=generator) * mask[:, :, None]
    return x, lengths, mask


@pytest.mark.parametrize("num_layers", [1, 2])
def test_dense_lstm_matches_the_packed_path(num_layers):
    """The dense kernel over right-aligned windows gives the packed outputs (to 1e-5)."""
    encoder = model("lstm", num_layers=num_layers).encoder
    x, lengths, mask = right_aligned_batch()
    with torch.no_grad():
        dense = encoder(x, lengths, mask)
        packed = packed_lstm(encoder.lstm, x, lengths)
    assert dense.shape == packed.shape
    assert (dense - packed).abs().max() <= 1e-5
    assert (dense[~mask] == 0).all()


@pytest.mark.parametrize("num_layers", [1, 2])
def test_bidirectional_by_reversal_matches_a_packed_bidirectional_lstm(num_layers):
    encoder = model("lstm", num_layers=num_layers, bidirectional=True).encoder
    reference = torch.nn.LSTM(FEATURES, 16, num_layers, batch_first=True, bidirectional=True)
    with torch.no_grad():
        for layer, (forward, backward) in enumerate(zip(encoder.forward_layers,
                                                        encoder.backward_layers, strict=True)):
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(reference, f"{name}_l{layer}").copy_(getattr(forward, f"{name}_l0"))
                getattr(reference, f"{name}_l{layer}_reverse").copy_(
                    getattr(backward, f"{name}_l0"))
        x, lengths, mask = right_aligned_batch()
        ours = encoder(x, lengths, mask)
        packed = packed_lstm(reference, x, lengths)
    assert (ours - packed).abs().max() <= 1e-5


def test_reversing_real_steps_keeps_padding_in_place():
    x = torch.arange(1.0, 5.0).reshape(1, 4, 1).repeat(2, 1, 1) * torch.tensor(
        [[1, 1, 0, 0], [1, 1, 1, 1]])[:, :, None]
    reversed_ = reverse_real_steps(x, torch.tensor([2, 4]))
    assert reversed_[..., 0].tolist() == [[2.0, 1.0, 0.0, 0.0], [4.0, 3.0, 2.0, 1.0]]
    assert torch.equal(reverse_real_steps(reversed_, torch.tensor([2, 4])), x)


def test_every_choice_of_params_has_its_implementation():
    assert set(ENCODERS) == set(ARCHS)
    assert set(MONITOR_MODES) == set(MONITORS)
