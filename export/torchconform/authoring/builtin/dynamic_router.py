"""dynamic_router (scripted, data-dependent routing) and dynamic_router_masked (rewritten with mask arithmetic so
torch.export can capture it): every input set routes as it claims, asserted at export."""

from __future__ import annotations

import torch

from .. import models
from ..case import Built, Case, InputSet
from ..variants import capture, torchscript_variants
from .common import Dim

ROUTER_D, ROUTER_EXPERTS = 256, 4
# A sample whose top-2 gate scores are closer than this could route differently under a last-bit difference; such
# samples are never used, so the routing an input set claims is the routing every runtime sees.
ROUTER_MIN_MARGIN = 1e-3


def route(model: models.DynamicRouter, x: torch.Tensor) -> tuple[list[int], float]:
    """Per-expert sample counts for ``x`` and the smallest top-1/top-2 gate-score margin."""
    with torch.no_grad():
        scores = torch.softmax(model.gate(x), dim=-1)
        top = scores.topk(2, dim=-1).values
    idx = scores.argmax(dim=-1)
    counts = [int((idx == e).sum()) for e in range(model.gate.out_features)]
    return counts, float((top[..., 0] - top[..., 1]).min())


def _router_batch(model: models.DynamicRouter, pool: torch.Tensor, plan: list[int]) -> torch.Tensor:
    """Rows of ``pool`` routed to the experts listed in ``plan`` (one row per entry, in that order)."""
    with torch.no_grad():
        scores = torch.softmax(model.gate(pool), dim=-1)
        top = scores.topk(2, dim=-1)
    margin = top.values[:, 0] - top.values[:, 1]
    free = {e: [i for i in range(len(pool)) if int(top.indices[i, 0]) == e and margin[i] > ROUTER_MIN_MARGIN]
            for e in set(plan)}
    rows = []
    for e in plan:
        if not free[e]:
            raise AssertionError(f"dynamic_router: the input pool has too few samples routed to expert {e}")
        rows.append(free[e].pop(0))
    return pool[rows].clone()


def _router_set(model, pool, name: str, plan: list[int], description: str) -> InputSet:
    x = _router_batch(model, pool, plan)
    counts, margin = route(model, x)
    want = [plan.count(e) for e in range(ROUTER_EXPERTS)]
    # The routing is asserted, not hoped for.
    assert counts == want, f"dynamic_router/{name}: routed {counts}, planned {want}"
    return InputSet(name, (x,), description, facts={"expert_counts": counts, "min_top2_margin": margin})


def build_dynamic_router(seed: int) -> Built:
    gen = torch.Generator().manual_seed(seed + 1)
    model = models.DynamicRouter(ROUTER_D, ROUTER_EXPERTS).eval()
    pool = torch.randn(512, ROUTER_D, generator=gen)
    scripted = torch.jit.script(model)
    sets = [
        _router_set(model, pool, "all_experts", [0, 1, 2, 3, 3, 2, 1, 0],
                    "batch 8, every expert receives 2 samples"),
        _router_set(model, pool, "experts_1_3_empty", [0, 2, 0, 2, 0],
                    "batch 5 routed to experts 0 and 2 only: experts 1 and 3 take the `if mask.any()` skip"),
        _router_set(model, pool, "batch1", [3], "batch size 1, routed to expert 3"),
    ]
    variants = torchscript_variants(scripted)  # no convolution: optimize_for_inference leaves MKLDNN out
    variants.append(capture(
        "export", model, sets[0].args, ({0: Dim("batch", min=1, max=1024)},),
        description="torch.export with a dynamic batch",
        expect_failure="data-dependent control flow: `if mask.any()` needs the value of a tensor to pick a branch "
                       "(torch.export can only guard on shapes); see the dynamic_router_masked case for the rewrite",
        findings=["`outputs[mask] = expert(x[mask])` also gives data-dependent shapes (the number of rows routed to "
                  "each expert); the capture stops at the first of the two, the `if`."]))
    return Built(
        eager=model,
        artifact=scripted,
        input_sets=sets,
        variants=variants,
        model=f"DynamicRouter(d_model={ROUTER_D}, num_experts={ROUTER_EXPERTS})",
        notes=[f"Input rows are chosen from a seeded pool by their routing; rows whose top-2 gate scores differ by "
               f"less than {ROUTER_MIN_MARGIN} are excluded so the routing cannot flip on a last-bit difference.",
               "The spec's `threshold = 0.5` attribute is kept but never read by forward."],
    )


def build_dynamic_router_masked(seed: int) -> Built:
    """The router rewritten with mask arithmetic (models.MaskedRouter), with the parameters of a DynamicRouter. Its
    goldens are the *scripted original's* outputs, so every artifact of this case is checked against the model it
    replaces."""
    gen = torch.Generator().manual_seed(seed + 1)
    original = models.DynamicRouter(ROUTER_D, ROUTER_EXPERTS).eval()
    masked = models.MaskedRouter(ROUTER_D, ROUTER_EXPERTS).eval()
    masked.load_state_dict(original.state_dict())
    scripted_original = torch.jit.script(original).eval()
    pool = torch.randn(1024, ROUTER_D, generator=gen)
    sets = [
        _router_set(original, pool, "all_experts", [0, 1, 2, 3, 3, 2, 1, 0], "batch 8, every expert receives 2"),
        _router_set(original, pool, "experts_1_3_empty", [0, 2, 0, 2, 0], "batch 5 routed to experts 0 and 2 only"),
        _router_set(original, pool, "batch1", [3], "batch size 1, routed to expert 3"),
        _router_set(original, pool, "b64", [0, 1, 2, 3] * 16, "batch 64, 16 samples per expert"),
    ]
    with torch.no_grad():
        for st in sets:  # the rewrite is the same function: checked here, and by the runner on every artifact
            torch.testing.assert_close(masked(*st.args), scripted_original(*st.args))
    variants = [capture("export", masked, sets[0].args, ({0: Dim("batch", min=1, max=1024)},),
                        description="torch.export of the rewritten router with a dynamic batch")]
    return Built(
        eager=scripted_original,
        artifact=torch.jit.script(masked),
        input_sets=sets,
        variants=variants,
        model=f"MaskedRouter(d_model={ROUTER_D}, num_experts={ROUTER_EXPERTS}), parameters of a DynamicRouter",
        notes=["Goldens come from the scripted original DynamicRouter, not from MaskedRouter: the artifacts of this "
               "case (the scripted rewrite and its torch.export program) are checked against the model they replace.",
               "Each expert runs on the whole batch instead of its rows, so results can differ from the original in "
               "the last bits (another GEMM shape): allclose, not bitwise."],
    )


def traced_router_negative_control(seed: int) -> Built:
    """Not registered: a DynamicRouter *traced* on a batch routed to experts 0 and 2 only (3 and 2 samples), checked
    on a batch that also reaches experts 1 and 3. The tracer freezes `mask.any()`, so the rows of experts 1 and 3
    stay zero and the case must FAIL. (The per-expert row counts are kept equal, 3 and 2, because the trace also
    bakes the shapes of `expert(x[mask])` into views: other counts make the trace raise instead of mis-compute.)
    The tests use it to prove the runner catches a trace that does not generalize."""
    built = build_dynamic_router(seed)
    model = built.eager
    example = next(s for s in built.input_sets if s.name == "experts_1_3_empty")
    pool = torch.randn(512, ROUTER_D, generator=torch.Generator().manual_seed(seed + 2))
    check = _router_set(model, pool, "all_experts", [0, 1, 2, 3, 0, 2, 0],
                        "batch 7 reaching every expert (3, 1, 2, 1 samples)")
    with torch.no_grad():
        # The tracer warns that `mask.any()` becomes a constant; the exporter records that in the manifest.
        traced = torch.jit.trace(model, example.args, check_trace=False)
    built.artifact = traced
    built.trace_example = example.args
    built.input_sets = [check]
    return built


CASES = [
    Case("dynamic_router", "script", "DynamicRouter(256, 4) scripted: data-dependent routing to experts",
         build_dynamic_router, 202),
    Case("dynamic_router_masked", "script",
         "DynamicRouter rewritten with mask arithmetic so torch.export can capture it; checked against the "
         "scripted original", build_dynamic_router_masked, 505),
]
