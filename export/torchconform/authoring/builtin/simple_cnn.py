"""simple_cnn: SimpleCNN traced with the spec's example, in eval mode, under no_grad; its TorchScript optimizations
and a torch.export program with dynamic batch and image size."""

from __future__ import annotations

import torch

from .. import models
from ..case import Built, Case, InputSet
from ..variants import capture, torchscript_variants
from .common import Dim

# optimize_for_inference converts a frozen CPU module to MKLDNN ops whose weights are prim::ConstantMKLDNNTensor
# nodes; TorchScript serialization does not write those constants, so the saved file cannot be loaded again.
OPTIMIZED_UNLOADABLE = ("torch.jit.optimize_for_inference on CPU bakes weights in as prim::ConstantMKLDNNTensor, "
                        "which torch.jit.save does not serialize: loading the saved module fails with \"required "
                        "keyword attribute 'value' is undefined\"")


def _randomize_batchnorm(module: torch.nn.Module, gen: torch.Generator) -> None:
    """Fresh BatchNorm layers have mean 0 / var 1 / weight 1 / bias 0, which makes them almost the identity and lets
    a broken BN (or a wrong BN fold) go unnoticed. Give them trained-looking statistics instead."""
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            with torch.no_grad():
                m.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
                m.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(n, generator=gen) * 0.1)


def build_simple_cnn(seed: int) -> Built:
    gen = torch.Generator().manual_seed(seed + 1)
    model = models.SimpleCNN(num_classes=10)
    _randomize_batchnorm(model, gen)
    model.eval()
    example = torch.randn(1, 3, 32, 32, generator=gen)
    with torch.no_grad():
        traced = torch.jit.trace(model, example)
    sets = [
        InputSet("trace_example", (example,), "the spec's trace example itself, 1x3x32x32"),
        InputSet("b4_32x32", (torch.randn(4, 3, 32, 32, generator=gen),), "batch 4 at the traced resolution"),
        InputSet("b2_48x40", (torch.randn(2, 3, 48, 40, generator=gen),), "batch 2, non-square 48x40 input"),
        InputSet("b1_33x33", (torch.randn(1, 3, 33, 33, generator=gen),), "odd size: MaxPool2d(2) floors 33 to 16"),
    ]
    variants = torchscript_variants(traced, xfail={"optimized": OPTIMIZED_UNLOADABLE})
    variants.append(capture(
        "export", model, sets[2].args,  # batch 2: an example of batch 1 would specialize the batch to 1
        ({0: Dim("batch", min=1, max=64), 2: Dim("height", min=8, max=512), 3: Dim("width", min=8, max=512)},),
        description="torch.export with dynamic batch, height and width"))
    return Built(
        eager=model,
        artifact=traced,
        input_sets=sets,
        variants=variants,
        model="SimpleCNN(num_classes=10)",
        trace_example=(example,),
        notes=["BatchNorm running statistics and affine parameters are randomized (seeded) so BN is not an identity."],
    )


CASES = [
    Case("simple_cnn", "trace", "SimpleCNN traced with the spec's 1x3x32x32 example", build_simple_cnn, 101),
]
