"""process_outputs: the spec's typed free function, scripted; and wrapped in a module for torch.export."""

from __future__ import annotations

import torch

from .. import models
from ..case import Built, Case, InputSet
from ..variants import capture
from .common import Dim


def build_process_outputs(seed: int) -> Built:
    gen = torch.Generator().manual_seed(seed + 1)
    fn = torch.jit.script(models.process_outputs)
    classes = 10

    def logits(b: int) -> torch.Tensor:
        t = torch.randn(b, classes, generator=gen)
        # topk order is only defined without ties; the first row drives the returned list.
        assert len(set(t[0].tolist())) == classes, "process_outputs: tie in the first row"
        return t

    sets = [
        InputSet("top1_no_labels", (logits(4), None, 1), "labels=None, top_k=1"),
        InputSet("top5_labels", (logits(4), torch.randint(0, classes, (4,), generator=gen), 5),
                 "labels tensor, top_k=5"),
        InputSet("top10_all_classes", (logits(3), torch.randint(0, classes, (3,), generator=gen), classes),
                 "top_k equal to the class count (10): the list is a full ranking"),
        InputSet("top5_b1_no_labels", (logits(1), None, 5), "batch 1, labels=None, top_k=5"),
        InputSet("top5_labels_b9", (logits(9), torch.randint(0, classes, (9,), generator=gen), 5),
                 "batch 9, labels tensor, top_k=5"),
    ]
    b = Dim("batch", min=1, max=1024)
    variants = [capture(
        "export", models.ProcessOutputs(), sets[1].args, ({0: b}, {0: b}, None),
        description="ProcessOutputs (the function wrapped in a module) through torch.export, dynamic batch",
        input_sets=["top5_labels", "top5_labels_b9"], int_outputs_as_tensors=True,
        findings=["top_k (a Python int) is specialized to 5: the `for i in range(top_k)` loop is unrolled into 5 "
                  "`.item()` calls; another top_k fails a guard (top_k == 5).",
                  "`labels is not None` is decided at capture: this program takes a labels tensor (and never reads "
                  "it); labels=None would be another program.",
                  "each `.item()` becomes an unbacked SymInt graph output: the List[int] flattens into 5 int outputs.",
                  "AOTInductor returns those ints as 0-dim int64 tensors; the runner turns them back into ints "
                  "(int_outputs_as_tensors) before comparing with the List[int] golden."])]
    return Built(
        eager=models.process_outputs,
        artifact=fn,
        input_sets=sets,
        variants=variants,
        model=f"process_outputs(logits: Tensor[B, {classes}], labels: Optional[Tensor], top_k: int)",
        notes=["Both branches of `if labels is not None` return the same value, as in the spec: labels only "
               "select a branch.",
               "`.item()` appended to List[int] compiles as aten::Int(aten::item(...)) under TorchScript."],
    )


CASES = [
    Case("process_outputs", "script_function", "process_outputs scripted as a free function",
         build_process_outputs, 404),
]
