"""The models of the spec (shared/spec/torchscript-deep-dive.txt), re-implemented layer for layer.

These are the *eager* definitions: the expected outputs of the corpus are computed from them, never from the exported
artifact. Where the spec builds something in a way that is wrong or fragile (FullModel traces its Encoder inside
``__init__``, in training mode), the model takes its parts as arguments instead and its case builds the artifact the
right way; the deviation is recorded in the case manifest (see ``builtin/full_model.py``).
"""

from __future__ import annotations

from typing import List, Optional, Tuple

import torch
from torch import nn


class ConvBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.bn = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.conv(x)))


class SimpleCNN(nn.Module):
    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            ConvBlock(3, 32),
            nn.MaxPool2d(2),
            ConvBlock(32, 64),
            nn.AdaptiveAvgPool2d(1),
        )
        self.classifier = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = x.flatten(1)
        return self.classifier(x)


class DynamicRouter(nn.Module):
    """Model with data-dependent control flow: must be scripted."""

    def __init__(self, d_model: int, num_experts: int) -> None:
        super().__init__()
        self.gate = nn.Linear(d_model, num_experts)
        self.experts = nn.ModuleList([nn.Linear(d_model, d_model) for _ in range(num_experts)])
        # Kept from the spec although forward never reads it (routing is pure argmax).
        self.threshold = 0.5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scores = torch.softmax(self.gate(x), dim=-1)
        max_score, expert_idx = scores.max(dim=-1)

        outputs = torch.zeros_like(x)
        for i, expert in enumerate(self.experts):
            mask = expert_idx == i
            if mask.any():
                outputs[mask] = expert(x[mask])

        return outputs


class MaskedRouter(DynamicRouter):
    """DynamicRouter rewritten for torch.export (not in the spec): every expert runs on every row and ``torch.where``
    keeps the rows routed to it, so neither the control flow nor any shape depends on the data. Same parameters as
    DynamicRouter (load its state_dict); costs ``num_experts`` times the expert compute."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scores = torch.softmax(self.gate(x), dim=-1)
        max_score, expert_idx = scores.max(dim=-1)

        outputs = torch.zeros_like(x)
        for i, expert in enumerate(self.experts):
            outputs = torch.where((expert_idx == i).unsqueeze(-1), expert(x), outputs)

        return outputs


def process_outputs(
    logits: torch.Tensor,
    labels: Optional[torch.Tensor] = None,
    top_k: int = 5,
) -> Tuple[torch.Tensor, List[int]]:
    """The spec's typed function. Both branches of the ``labels`` test return the same thing (as in the spec)."""
    probs = torch.softmax(logits, dim=-1)
    values, indices = probs.topk(top_k, dim=-1)

    # Build list of top predictions for first sample
    top_classes: List[int] = []
    for i in range(top_k):
        top_classes.append(indices[0, i].item())

    if labels is not None:
        return probs, top_classes
    else:
        return probs, top_classes


class ProcessOutputs(nn.Module):
    """``process_outputs`` as a module: torch.export captures modules, not free functions."""

    def forward(self, logits: torch.Tensor, labels: Optional[torch.Tensor],
                top_k: int) -> Tuple[torch.Tensor, List[int]]:
        return process_outputs(logits, labels, top_k)


class Encoder(nn.Module):
    """Simple encoder, no control flow: traced."""

    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.layers = nn.TransformerEncoder(
            nn.TransformerEncoderLayer(d_model, 8, batch_first=True),
            num_layers=6,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class ConditionalDecoder(nn.Module):
    """Decoder with control flow: scripted, with an exported ``set_temperature``."""

    def __init__(self, d_model: int, vocab_size: int) -> None:
        super().__init__()
        self.proj = nn.Linear(d_model, vocab_size)
        self.temperature: float = 1.0

    @torch.jit.export
    def set_temperature(self, t: float) -> None:
        self.temperature = t

    def forward(self, x: torch.Tensor, greedy: bool = True) -> torch.Tensor:
        logits = self.proj(x) / self.temperature
        if greedy:
            return logits.argmax(dim=-1)
        else:
            probs = torch.softmax(logits, dim=-1)
            return torch.multinomial(probs.view(-1, probs.size(-1)), 1).view(probs.size(0), probs.size(1))


class FullModel(nn.Module):
    """Encoder + decoder. The spec traces/scripts the parts inside ``__init__`` (tracing the Encoder in training
    mode); here the parts are given, so the same class serves as the eager reference (plain modules) and as the
    hybrid artifact (traced encoder, scripted decoder; see ``exporters.hybrid``)."""

    def __init__(self, encoder: nn.Module, decoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder

    def forward(self, x: torch.Tensor, greedy: bool = True) -> torch.Tensor:
        encoded = self.encoder(x)
        return self.decoder(encoded, greedy)
