"""Model shapes and padding invariance."""

from __future__ import annotations

import pytest
import torch

from componentx.models import ModelConfig, build_model, left_to_right_aligned

FEATURES, CLASSES = 6, 5


def model(**overrides):
    torch.manual_seed(0)
    config = ModelConfig(arch="lstm", n_features=FEATURES, num_classes=CLASSES,
                         spec_cardinalities=[3, 4], hidden_size=16, head_hidden=8, dropout=0.0,
                         **overrides)
    return build_model(config).eval()


def left_pad(sequences, window):
    x = torch.zeros(len(sequences), window, FEATURES)
    for i, sequence in enumerate(sequences):
        x[i, window - len(sequence):] = sequence
    return x, torch.tensor([len(s) for s in sequences])


@pytest.mark.parametrize("overrides", [
    {}, {"pooling": "mean"}, {"bidirectional": True}, {"num_layers": 2},
    {"bidirectional": True, "pooling": "mean", "num_layers": 2},
])
def test_shapes_and_padding_invariance(overrides):
    net = model(**overrides)
    torch.manual_seed(1)
    sequences = [torch.randn(n, FEATURES) for n in (1, 4, 9)]
    specs = torch.tensor([[0, 1], [2, 3], [1, 0]])
    x_short, lengths = left_pad(sequences, 9)
    x_long, _ = left_pad(sequences, 20)
    with torch.no_grad():
        short = net(x_short, lengths, specs)
        long = net(x_long, lengths, specs)
    assert short.shape == (3, CLASSES)
    assert torch.allclose(short, long, atol=1e-6)
    # The padding's content is never read either.
    x_noisy = x_long.clone()
    x_noisy[1, : 20 - 4] = 1e3
    with torch.no_grad():
        assert torch.allclose(net(x_noisy, lengths, specs), long, atol=1e-6)


def test_specifications_change_the_output_and_may_be_absent():
    net = model()
    x, lengths = left_pad([torch.randn(5, FEATURES)] * 2, 8)
    with torch.no_grad():
        out = net(x, lengths, torch.tensor([[0, 0], [2, 3]]))
    assert not torch.allclose(out[0], out[1])
    bare = build_model(ModelConfig(arch="lstm", n_features=FEATURES, num_classes=CLASSES))
    assert bare(x, lengths, torch.zeros((2, 0), dtype=torch.long)).shape == (2, CLASSES)


def test_alignment_moves_real_steps_to_the_front():
    x = torch.arange(1.0, 5.0).reshape(1, 4, 1).repeat(2, 1, 1)
    aligned = left_to_right_aligned(x, torch.tensor([2, 4]))
    assert aligned[..., 0].tolist() == [[3.0, 4.0, 0.0, 0.0], [1.0, 2.0, 3.0, 4.0]]


def test_unknown_architecture_and_pooling():
    with pytest.raises(ValueError, match="model.arch"):
        build_model(ModelConfig(arch="gru", n_features=2, num_classes=2))
    with pytest.raises(ValueError, match="model.pooling"):
        build_model(ModelConfig(arch="lstm", n_features=2, num_classes=2, pooling="max"))
