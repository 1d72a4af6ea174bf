"""Sequence classifiers over left-padded windows of readouts.

Every model takes ``x`` (batch, window, features), ``lengths`` (batch,) with the number of
real (right-aligned) steps, and ``specs`` (batch, n_specs) integer codes, and returns logits
(batch, classes). Padding never changes the result: the recurrent layers run on packed
sequences and pooling only looks at real steps.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

ARCHS = ("lstm",)
POOLINGS = ("last", "mean")


@dataclass
class ModelConfig:
    """Everything needed to rebuild a model; stored in checkpoints."""

    arch: str
    n_features: int
    num_classes: int
    spec_cardinalities: list[int] = field(default_factory=list)
    hidden_size: int = 64
    num_layers: int = 1
    bidirectional: bool = False
    dropout: float = 0.1
    pooling: str = "last"
    spec_embedding_dim: int = 4
    head_hidden: int = 64

    def to_dict(self) -> dict:
        return asdict(self)


def left_to_right_aligned(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Move the real steps of left-padded sequences to the front (for packing)."""
    window = x.shape[1]
    steps = torch.arange(window, device=x.device)
    source = (steps[None, :] + (window - lengths)[:, None]).clamp(max=window - 1)
    aligned = torch.gather(x, 1, source[:, :, None].expand(-1, -1, x.shape[2]))
    return aligned * (steps[None, :] < lengths[:, None])[:, :, None]


class SpecEmbedding(nn.Module):
    """One learned embedding per specification column, concatenated."""

    def __init__(self, cardinalities: list[int], dim: int) -> None:
        super().__init__()
        self.tables = nn.ModuleList(nn.Embedding(n, dim) for n in cardinalities)
        self.out_features = dim * len(cardinalities)

    def forward(self, specs: torch.Tensor) -> torch.Tensor:
        if not self.tables:
            return specs.new_zeros((specs.shape[0], 0), dtype=torch.float32)
        return torch.cat([table(specs[:, i]) for i, table in enumerate(self.tables)], dim=1)


class Head(nn.Module):
    """MLP from the pooled sequence and the specification embeddings to class logits."""

    def __init__(self, in_features: int, hidden: int, num_classes: int, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_features, hidden), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(hidden, num_classes))

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.net(pooled)


class LSTMClassifier(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if config.pooling not in POOLINGS:
            raise ValueError(f"model.pooling must be one of {POOLINGS}, got {config.pooling!r}")
        self.config = config
        self.lstm = nn.LSTM(config.n_features, config.hidden_size, config.num_layers,
                            batch_first=True, bidirectional=config.bidirectional,
                            dropout=config.dropout if config.num_layers > 1 else 0.0)
        directions = 2 if config.bidirectional else 1
        self.specs = SpecEmbedding(config.spec_cardinalities, config.spec_embedding_dim)
        self.head = Head(config.hidden_size * directions + self.specs.out_features,
                         config.head_hidden, config.num_classes, config.dropout)

    def encode(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Pooled sequence representation (batch, hidden * directions)."""
        packed = pack_padded_sequence(left_to_right_aligned(x, lengths), lengths.cpu(),
                                      batch_first=True, enforce_sorted=False)
        output, (h_n, _) = self.lstm(packed)
        if self.config.pooling == "last":
            directions = 2 if self.config.bidirectional else 1
            return torch.cat(list(h_n[-directions:]), dim=1)
        padded, _ = pad_packed_sequence(output, batch_first=True, total_length=x.shape[1])
        return padded.sum(dim=1) / lengths[:, None].to(padded.dtype)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor, specs: torch.Tensor
                ) -> torch.Tensor:
        pooled = torch.cat([self.encode(x, lengths), self.specs(specs)], dim=1)
        return self.head(pooled)


def build_model(config: ModelConfig) -> nn.Module:
    if config.arch == "lstm":
        return LSTMClassifier(config)
    raise ValueError(f"model.arch must be one of {ARCHS}, got {config.arch!r}")
