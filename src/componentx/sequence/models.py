"""Sequence classifiers over left-padded windows of readouts.

Every model takes ``x`` (batch, window, inputs), ``lengths`` (batch,) with the number of real
steps at the right end of each window, and ``specs`` (batch, n_specs) integer codes, and
returns logits (batch, classes). The last input channel is the readout's age before the
reference time (see ``componentx.sequence.dataset``); the transformer uses it as its position.

The shared pieces are written once: windows are first right-aligned (real steps first, zeros
after), an encoder turns them into per-step states, a pooling reads only the real steps, and
the pooled state joined with specification embeddings goes through an MLP head. Padding
never changes the result.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence


@dataclass
class ModelConfig:
    """Everything needed to rebuild a model; stored in checkpoints. ``params.model`` key for
    key (``params.yaml`` holds the defaults and their meaning), plus what the data decide:
    inputs per step, classes, and codes per specification column."""

    arch: str
    n_features: int
    num_classes: int
    spec_cardinalities: list[int]
    hidden_size: int
    num_layers: int
    bidirectional: bool
    dropout: float
    pooling: str
    spec_embedding_dim: int
    head_hidden: int
    conv_channels: int
    conv_layers: int
    kernel_size: int
    num_heads: int
    max_steps: int
    window: int

    @property
    def patch(self) -> int:
        """Readouts per encoder step: the recurrent and attention encoders read windows longer
        than ``max_steps`` as patches of this many consecutive readouts (:func:`to_patches`);
        the convolutional encoder (fcn) reads every readout."""
        return 1 if self.arch == "fcn" else -(-self.window // self.max_steps)

    def to_dict(self) -> dict:
        return asdict(self)


def to_patches(x: torch.Tensor, lengths: torch.Tensor, patch: int
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded windows (batch, window, inputs) as left-padded patches (batch,
    ceil(window / patch), patch * inputs) of ``patch`` consecutive readouts, counted back from
    the newest, and the number of real patches per window (batch,).

    A patch's readouts are concatenated oldest first, so its last channel is its newest
    readout's age; the padding in the oldest real patch is zeros, whatever the padding held,
    and the patches do not depend on the window's size: padding never changes a prediction.
    An LSTM's gradient fades over a few hundred recurrent steps (Bengio et al., 1994): patches
    keep the steps it runs over to ``max_steps`` whatever the window.
    """
    if patch == 1:
        return x, lengths
    window = x.shape[1]
    real = torch.arange(window, device=x.device)[None, :] >= (window - lengths)[:, None]
    x = nn.functional.pad(x * real[:, :, None], (0, 0, -window % patch, 0))
    return x.reshape(x.shape[0], -1, patch * x.shape[2]), torch.div(
        lengths + patch - 1, patch, rounding_mode="floor")


def left_to_right_aligned(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Move the real steps of left-padded sequences to the front, zeros after them."""
    window = x.shape[1]
    steps = torch.arange(window, device=x.device)
    lengths = lengths.to(x.device)
    source = (steps[None, :] + (window - lengths)[:, None]).clamp(max=window - 1)
    aligned = torch.gather(x, 1, source[:, :, None].expand(-1, -1, x.shape[2]))
    return aligned * (steps[None, :] < lengths[:, None])[:, :, None]


def reverse_real_steps(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse the real steps of right-aligned sequences in place; padding stays after them.

    Its own inverse. Running a forward LSTM over the result is the backward direction of a
    bidirectional LSTM, exactly as packed sequences would give it.
    """
    steps = torch.arange(x.shape[1], device=x.device)[None, :]
    lengths = lengths.to(x.device)[:, None]
    source = torch.where(steps < lengths, lengths - 1 - steps, steps)
    return torch.gather(x, 1, source[:, :, None].expand(-1, -1, x.shape[2]))


class LSTMEncoder(nn.Module):
    """LSTM over right-aligned windows with the dense (oneDNN / cuDNN) kernel.

    Real steps come first, so the forward direction's outputs at real steps never see the
    padding after them: no packing is needed. The backward direction of a bidirectional LSTM
    runs forward over each window's reversed real steps (:func:`reverse_real_steps`), layer
    by layer. Outputs at padded steps are zeroed.
    """

    def __init__(self, in_features: int, config: ModelConfig) -> None:
        super().__init__()
        dropout = config.dropout if config.num_layers > 1 else 0.0
        self.bidirectional = config.bidirectional
        if self.bidirectional:
            sizes = [in_features] + [2 * config.hidden_size] * (config.num_layers - 1)
            self.forward_layers = nn.ModuleList(
                nn.LSTM(size, config.hidden_size, batch_first=True) for size in sizes)
            self.backward_layers = nn.ModuleList(
                nn.LSTM(size, config.hidden_size, batch_first=True) for size in sizes)
            self.between_layers = nn.Dropout(dropout)
        else:
            self.lstm = nn.LSTM(in_features, config.hidden_size, config.num_layers,
                                batch_first=True, dropout=dropout)
        self.out_features = config.hidden_size * (2 if config.bidirectional else 1)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor, mask: torch.Tensor
                ) -> torch.Tensor:
        if not self.bidirectional:
            return self.lstm(x)[0] * mask[:, :, None]
        h = x
        for i, (forward, backward) in enumerate(zip(self.forward_layers, self.backward_layers,
                                                   strict=True)):
            if i:
                h = self.between_layers(h)
            reverse = reverse_real_steps(backward(reverse_real_steps(h, lengths))[0], lengths)
            h = torch.cat([forward(h)[0], reverse], dim=2) * mask[:, :, None]
        return h


def packed_lstm(lstm: nn.LSTM, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reference path: ``lstm`` over packed right-aligned sequences, zeros at padded steps.

    Slower than the dense kernel (a per-step loop); tests and the throughput benchmark use it
    to check and measure the dense path.
    """
    packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
    output, _ = lstm(packed)
    return pad_packed_sequence(output, batch_first=True, total_length=x.shape[1])[0]


class ConvLSTMEncoder(nn.Module):
    """1-D convolutions over time as a feature extractor, then the LSTM.

    Each convolution sees zeros beyond the real steps exactly as it would at the end of an
    unpadded sequence, and its output is re-masked, so padding never leaks in.
    """

    def __init__(self, in_features: int, config: ModelConfig) -> None:
        super().__init__()
        layers, channels = [], in_features
        for _ in range(config.conv_layers):
            layers.append(nn.Conv1d(channels, config.conv_channels, config.kernel_size,
                                    padding=config.kernel_size // 2))
            channels = config.conv_channels
        self.convs = nn.ModuleList(layers)
        self.activation = nn.GELU()
        self.lstm = LSTMEncoder(channels, config)
        self.out_features = self.lstm.out_features

    def forward(self, x: torch.Tensor, lengths: torch.Tensor, mask: torch.Tensor
                ) -> torch.Tensor:
        h = x.transpose(1, 2)
        for conv in self.convs:
            h = self.activation(conv(h)) * mask[:, None, :]
        return self.lstm(h.transpose(1, 2), lengths, mask)


class AttentionLSTMEncoder(nn.Module):
    """LSTM followed by multi-head self-attention over the real steps (key padding mask)."""

    def __init__(self, in_features: int, config: ModelConfig) -> None:
        super().__init__()
        self.lstm = LSTMEncoder(in_features, config)
        self.out_features = self.lstm.out_features
        self.attention = nn.MultiheadAttention(self.out_features, config.num_heads,
                                               dropout=config.dropout, batch_first=True)
        self.norm = nn.LayerNorm(self.out_features)
        self.weights: torch.Tensor | None = None

    def forward(self, x: torch.Tensor, lengths: torch.Tensor, mask: torch.Tensor
                ) -> torch.Tensor:
        h = self.lstm(x, lengths, mask)
        attended, self.weights = self.attention(h, h, h, key_padding_mask=~mask,
                                                need_weights=True)
        return self.norm(h + attended) * mask[:, :, None]


class TimeEncoding(nn.Module):
    """Sinusoidal features of each readout's age, so irregular gaps are seen."""

    def __init__(self, dim: int, scale: float = 48.0) -> None:
        super().__init__()
        periods = torch.exp(torch.linspace(math.log(0.5), math.log(1000.0), dim // 2))
        self.register_buffer("frequencies", 2 * math.pi / periods, persistent=False)
        self.scale = scale
        self.project = nn.Linear(2 * (dim // 2), dim)

    def forward(self, age: torch.Tensor) -> torch.Tensor:
        angles = (age * self.scale)[..., None] * self.frequencies
        return self.project(torch.cat([angles.sin(), angles.cos()], dim=-1))


class TransformerEncoder(nn.Module):
    """Transformer encoder; positions come from the readouts' ages, not their indices."""

    def __init__(self, in_features: int, config: ModelConfig) -> None:
        super().__init__()
        d = config.hidden_size
        self.input = nn.Linear(in_features, d)
        self.time = TimeEncoding(d)
        layer = nn.TransformerEncoderLayer(d, config.num_heads, 2 * d, config.dropout,
                                           activation="gelu", batch_first=True,
                                           norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, config.num_layers,
                                             enable_nested_tensor=False)
        self.out_features = d

    def forward(self, x: torch.Tensor, lengths: torch.Tensor, mask: torch.Tensor
                ) -> torch.Tensor:
        h = self.input(x) + self.time(x[..., -1])
        return self.encoder(h, src_key_padding_mask=~mask) * mask[:, :, None]


class FCNEncoder(nn.Module):
    """A fully convolutional network over time (the time-series classification reference of
    Wang et al., 2017): three blocks of convolution (``2c``, ``4c``, ``2c`` filters of widths
    8, 5 and 3, ``c`` = ``conv_channels``), normalisation and ReLU, pooled over the real steps
    (global average pooling unless ``pooling`` asks for attention).

    Each convolution sees zeros beyond the real steps exactly as at the end of an unpadded
    sequence, the normalisation is per step (layer norm over channels, not batch statistics
    that padding would enter), and every block's output is re-masked: padding never changes a
    prediction.
    """

    def __init__(self, in_features: int, config: ModelConfig) -> None:
        super().__init__()
        widths = (2 * config.conv_channels, 4 * config.conv_channels, 2 * config.conv_channels)
        self.convs = nn.ModuleList(nn.Conv1d(a, b, kernel, padding="same") for a, b, kernel in
                                   zip((in_features, *widths[:-1]), widths, (8, 5, 3),
                                       strict=True))
        self.norms = nn.ModuleList(nn.LayerNorm(width) for width in widths)
        self.out_features = widths[-1]

    def forward(self, x: torch.Tensor, lengths: torch.Tensor, mask: torch.Tensor
                ) -> torch.Tensor:
        h = x
        for conv, norm in zip(self.convs, self.norms, strict=True):
            h = torch.relu(norm(conv(h.transpose(1, 2)).transpose(1, 2))) * mask[:, :, None]
        return h


ENCODERS = {"lstm": LSTMEncoder, "cnn_lstm": ConvLSTMEncoder,  # one per params.ARCHS
            "attention_lstm": AttentionLSTMEncoder, "transformer": TransformerEncoder,
            "fcn": FCNEncoder}


class Pooling(nn.Module):
    """One vector per window from the real steps: last, mean, or learned attention."""

    def __init__(self, kind: str, features: int, bidirectional_lstm: bool) -> None:
        super().__init__()
        self.kind, self.bidirectional_lstm = kind, bidirectional_lstm
        self.score = nn.Linear(features, 1) if kind == "attention" else None
        self.weights: torch.Tensor | None = None

    def forward(self, steps: torch.Tensor, mask: torch.Tensor, lengths: torch.Tensor
                ) -> torch.Tensor:
        if self.kind == "last":
            last = steps.gather(1, (lengths - 1)[:, None, None].expand(-1, 1, steps.shape[-1]))
            last = last.squeeze(1)
            if self.bidirectional_lstm:  # the backward direction ends at the first step
                half = steps.shape[-1] // 2
                return torch.cat([last[:, :half], steps[:, 0, half:]], dim=1)
            return last
        if self.kind == "mean":
            return (steps * mask[:, :, None]).sum(dim=1) / lengths[:, None].to(steps.dtype)
        scores = self.score(steps).squeeze(-1).masked_fill(~mask, float("-inf"))
        self.weights = torch.softmax(scores, dim=1)
        return (self.weights[:, :, None] * steps).sum(dim=1)


class SpecEmbedding(nn.Module):
    """One learned embedding per specification column, concatenated."""

    def __init__(self, cardinalities: list[int], dim: int) -> None:
        super().__init__()
        self.tables = nn.ModuleList(nn.Embedding(n, dim) for n in cardinalities)
        self.out_features = dim * len(cardinalities)

    def forward(self, specs: torch.Tensor) -> torch.Tensor:
        if not self.tables:
            return torch.zeros((specs.shape[0], 0), device=specs.device)
        return torch.cat([table(specs[:, i]) for i, table in enumerate(self.tables)], dim=1)


class SequenceClassifier(nn.Module):
    """Encoder + pooling + specification embeddings + MLP head."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = ENCODERS[config.arch](config.patch * config.n_features, config)
        pooling = {"attention_lstm": "attention",  # an LSTM's states read by attention
                   "fcn": "mean" if config.pooling == "last" else config.pooling,  # global average
                   }.get(config.arch, config.pooling)
        self.pool = Pooling(pooling, self.encoder.out_features,
                            config.bidirectional and config.arch in ("lstm", "cnn_lstm"))
        self.specs = SpecEmbedding(config.spec_cardinalities, config.spec_embedding_dim)
        self.head = nn.Sequential(
            nn.Linear(self.encoder.out_features + self.specs.out_features, config.head_hidden),
            nn.GELU(), nn.Dropout(config.dropout), nn.Linear(config.head_hidden,
                                                             config.num_classes))

    def steps(self, x: torch.Tensor, lengths: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-step encoder states of the right-aligned windows (of their patches, where
        ``config.patch`` > 1), and their real-step mask."""
        x, lengths = to_patches(x, lengths.to(x.device), self.config.patch)
        mask = torch.arange(x.shape[1], device=x.device)[None, :] < lengths[:, None]
        return self.encoder(left_to_right_aligned(x, lengths), lengths, mask), mask

    def forward(self, x: torch.Tensor, lengths: torch.Tensor, specs: torch.Tensor
                ) -> torch.Tensor:
        steps, mask = self.steps(x, lengths)
        pooled = self.pool(steps, mask, mask.sum(dim=1))
        return self.head(torch.cat([pooled, self.specs(specs)], dim=1))

    def attention(self) -> dict[str, torch.Tensor]:
        """Attention weights of the last forward pass (right-aligned steps), where the model
        has them: ``self`` (batch, window, window) and ``pooling`` (batch, window)."""
        weights = {}
        if getattr(self.encoder, "weights", None) is not None:
            weights["self"] = self.encoder.weights
        if self.pool.weights is not None:
            weights["pooling"] = self.pool.weights
        return weights


def build_model(config: ModelConfig) -> SequenceClassifier:
    return SequenceClassifier(config)

