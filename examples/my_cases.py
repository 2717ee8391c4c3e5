"""Example user cases for torchconform: two small models of the kind a service ships, declared in their owner's code.

    torchconform export --cases examples/my_cases.py --out my_corpus
    torchconform compile my_corpus          # AOTInductor packages for the torch.export programs (cached)
    torchconform verify my_corpus           # the C++ runner: TorchScript and exported programs, every input set

See examples/README.md for the walkthrough.
"""

from __future__ import annotations

import math

import torch
from torch import nn

import torchconform as tc

Dim = torch.export.Dim


class ResidualMLP(nn.Module):
    """Pre-norm residual MLP blocks, then a classifier head."""

    def __init__(self, dim: int = 32, hidden: int = 128, blocks: int = 3, classes: int = 10) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
            for _ in range(blocks))
        self.head = nn.Linear(dim, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = x + block(x)
        return self.head(x)


class AttentionBlock(nn.Module):
    """Single-head self-attention with an optional key padding mask, plus an exported `scores` method that returns
    the attention weights (what a service might log)."""

    def __init__(self, dim: int = 32) -> None:
        super().__init__()
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.scale = 1.0 / math.sqrt(dim)

    def _weights(self, x: torch.Tensor, pad: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        logits = torch.matmul(q, k.transpose(-2, -1)) * self.scale
        if pad is not None:
            logits = logits.masked_fill(pad.unsqueeze(1), float("-inf"))
        return torch.softmax(logits, dim=-1), v

    def forward(self, x: torch.Tensor, pad: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        w, v = self._weights(x, pad)
        return {"out": x + self.out(torch.matmul(w, v)), "pooled": x.mean(dim=1)}

    @torch.jit.export
    def scores(self, x: torch.Tensor) -> torch.Tensor:
        return self._weights(x, None)[0]


# Decorator form: the case is named after the factory. Traced, plus a torch.export program with a dynamic batch.
@tc.case(mode="trace",
         inputs=lambda g: {
             "b1": (torch.randn(1, 32, generator=g),),
             "b16": (torch.randn(16, 32, generator=g),),
             "b7_large": tc.Inputs((10 * torch.randn(7, 32, generator=g),), description="inputs 10x larger"),
         },
         example="b16",
         export=tc.Export(dynamic_shapes=({0: Dim("batch", min=1, max=256)},)),
         optimizations=True,
         description="residual MLP (3 pre-norm blocks), traced")
def residual_mlp() -> nn.Module:
    return ResidualMLP()


def _attention_inputs(g: torch.Generator) -> dict[str, object]:
    x = torch.randn(2, 9, 32, generator=g)
    pad = torch.zeros(2, 9, dtype=torch.bool)
    pad[1, 6:] = True  # the second sequence has 6 real tokens
    return {
        "no_mask": (x, None),
        "padded": tc.Inputs((x, pad), description="key padding mask: 3 padded positions in sequence 2"),
        "b3_s5": (torch.randn(3, 5, 32, generator=g), None),
        "scores": tc.Inputs((x,), method="scores", description="the exported scores method"),
    }


# Registry-call form. Scripted (Optional mask, a dict output, an extra method); its outputs are compared in ULPs.
tc.declare("attention_block", model=AttentionBlock, mode="script", inputs=_attention_inputs,
           tolerance={"default": {"mode": "allclose"}, "outputs": {"$['pooled']": {"mode": "exact"}}},
           description="single-head self-attention with a padding mask, scripted")

# A torch.export-only case: no TorchScript artifact at all, the exported program is what C++ runs.
tc.declare("attention_block_export", model=AttentionBlock, mode="export",
           inputs=lambda g: {"b2_s9": (torch.randn(2, 9, 32, generator=g), None),
                             "b5_s4": (torch.randn(5, 4, 32, generator=g), None)},
           export=tc.Export(dynamic_shapes=({0: Dim("batch", min=1, max=64), 1: Dim("seq", min=2, max=128)}, None)),
           description="the attention block through torch.export only (no pad mask)")
