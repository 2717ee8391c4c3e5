"""The built-in cases: every TorchScript model of the spec, exported the right way, with its hazards recorded.

Common rules (see docs/corpus-format.md): ``build(seed)`` runs after ``torch.manual_seed(seed)`` (parameter init draws
from the global generator) and draws its inputs from ``torch.Generator().manual_seed(seed + 1)``; models are in eval
mode; tracing runs under ``torch.no_grad()``; every case is checked on input sets other than its trace example.
"""

from __future__ import annotations

import copy
from typing import Any

import torch

from . import models
from .registry import Built, Call, Case, InputSet, register
from .variants import HAS_EXPORT, capture, torchscript_variants
from .warn import collect_warnings

# Without torch.export (PyTorch < 2.1) the dims only name themselves in the recorded transform; see variants.capture.
Dim = torch.export.Dim if HAS_EXPORT else (lambda name, **bounds: name)

# optimize_for_inference converts a frozen CPU module to MKLDNN ops whose weights are prim::ConstantMKLDNNTensor
# nodes; TorchScript serialization does not write those constants, so the saved file cannot be loaded again.
OPTIMIZED_UNLOADABLE = ("torch.jit.optimize_for_inference on CPU bakes weights in as prim::ConstantMKLDNNTensor, "
                        "which torch.jit.save does not serialize: loading the saved module fails with \"required "
                        "keyword attribute 'value' is undefined\"")

# ---------------------------------------------------------------------------------------------------------------
# simple_cnn: traced


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


# ---------------------------------------------------------------------------------------------------------------
# dynamic_router: scripted, data-dependent routing

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


# ---------------------------------------------------------------------------------------------------------------
# full_model: hybrid (traced Encoder + scripted ConditionalDecoder), scripted as a whole

FULL_D_MODEL, FULL_VOCAB = 32, 50  # small so the corpus stays small; 8 heads need d_model % 8 == 0
SAMPLE_SEED = 1234
LOW_TEMPERATURE = 0.25


def _probe(fn) -> dict[str, Any]:
    """Run one of the spec's fragile recipes and record what happens, whatever it is."""
    with collect_warnings() as caught:
        try:
            result: dict[str, Any] = {"outcome": "completed", **(fn() or {})}
        except Exception as e:  # noqa: BLE001 - the failure *is* the finding
            result = {"outcome": "raised", "error": f"{type(e).__name__}: {str(e).splitlines()[0]}"}
    result["warnings"] = caught.records()
    return result


def _full_model_hazards(encoder: models.Encoder, example: torch.Tensor) -> list[dict[str, Any]]:
    def spec_recipe():
        # The spec: `torch.jit.trace(Encoder(d_model), torch.randn(1, 16, d_model))` -- a fresh module, training mode.
        enc = copy.deepcopy(encoder).train()
        traced = torch.jit.trace(enc, example)
        traced.eval()  # what a C++ service does after torch::jit::load
        with torch.no_grad():
            diff = (traced(example) - encoder(example)).abs().max().item()
        return {"max_abs_diff_vs_eval_model": diff,
                "finding": "dropout is traced with train=True and stays on after .eval(): outputs are random"}

    def eval_with_grad():
        torch.jit.trace(copy.deepcopy(encoder).eval(), example)

    hazards = [
        {"name": "spec_trace_in_training_mode",
         "recipe": "torch.jit.trace(Encoder(d_model), torch.randn(1, 16, d_model)) without .eval()",
         **_probe(spec_recipe)},
        {"name": "trace_eval_with_grad_enabled",
         "recipe": "encoder.eval(); torch.jit.trace(encoder, example) with grad enabled",
         **_probe(eval_with_grad)},
    ]
    return hazards


def build_full_model(seed: int) -> Built:
    gen = torch.Generator().manual_seed(seed + 1)
    encoder = models.Encoder(FULL_D_MODEL).eval()
    decoder = models.ConditionalDecoder(FULL_D_MODEL, FULL_VOCAB).eval()
    eager = models.FullModel(encoder, decoder).eval()
    example = torch.randn(1, 16, FULL_D_MODEL, generator=gen)

    hazards = _full_model_hazards(encoder, example)
    with torch.no_grad():
        traced_encoder = torch.jit.trace(encoder, example)
    hybrid = torch.jit.script(models.FullModel(traced_encoder, torch.jit.script(decoder)))
    hybrid.eval()

    def x(b: int, s: int) -> torch.Tensor:
        return torch.randn(b, s, FULL_D_MODEL, generator=gen)

    low_t = Call("decoder.set_temperature", (LOW_TEMPERATURE,))
    sample_x = x(2, 12)
    sets = [
        InputSet("greedy_trace_example", (example, True), "greedy on the encoder's trace example, 1x16"),
        InputSet("greedy_b3_s10", (x(3, 10), True), "greedy, batch 3, shorter sequence (10)"),
        InputSet("greedy_b2_s24", (x(2, 24), True), "greedy, batch 2, longer sequence (24)"),
        InputSet("sample_b2_s12", (sample_x, False), f"sampling (multinomial), seed {SAMPLE_SEED}",
                 seed=SAMPLE_SEED),
        InputSet("sample_b2_s12_t025", (sample_x, False),
                 f"decoder.set_temperature({LOW_TEMPERATURE}) called on the loaded module, then sampling with the "
                 f"same seed and input as sample_b2_s12", seed=SAMPLE_SEED, prelude=(low_t,)),
        InputSet("greedy_b2_s12_t025", (sample_x, True),
                 f"decoder.set_temperature({LOW_TEMPERATURE}), then greedy (argmax is temperature-invariant)",
                 prelude=(low_t,)),
    ]
    # The temperature check must be able to fail: the low-temperature draw has to differ from the default one,
    # otherwise a runner that ignored set_temperature would pass.
    with torch.no_grad():
        torch.manual_seed(SAMPLE_SEED)
        at_default = eager(sample_x, False)
        cooled = copy.deepcopy(eager)
        cooled.decoder.set_temperature(LOW_TEMPERATURE)
        torch.manual_seed(SAMPLE_SEED)
        at_low = cooled(sample_x, False)
    changed = int((at_default != at_low).sum())
    assert changed > 0, "full_model: set_temperature does not change the seeded draw; the check could not fail"
    sets[4].facts["positions_differing_from_default_temperature"] = changed

    greedy_sets = ["greedy_trace_example", "greedy_b3_s10", "greedy_b2_s24"]
    variants = [capture(
        "export_greedy", eager, (sample_x, True),
        ({0: Dim("batch", min=1, max=64), 1: Dim("seq", min=2, max=512)}, None),
        description="torch.export of the encoder and the greedy decoding path (greedy=True), dynamic batch and "
                    "sequence length", input_sets=greedy_sets,
        findings=["`greedy` is a Python bool: torch.export specializes the program on greedy=True; calling it with "
                  "False fails a guard. Sampling would be its own program (torch.multinomial).",
                  "set_temperature is not part of the program (an exported program has one entry point): the sets "
                  "that call it before the checked call are TorchScript-only."])]
    return Built(
        eager=eager,
        artifact=hybrid,
        input_sets=sets,
        variants=variants,
        model=f"FullModel(Encoder(d_model={FULL_D_MODEL}: TransformerEncoder, 8 heads, 6 layers, "
              f"dim_feedforward=2048), ConditionalDecoder(d_model={FULL_D_MODEL}, vocab_size={FULL_VOCAB}))",
        trace_example=(example,),
        hazards=hazards,
        spec_deviations=[
            "The spec traces Encoder inside FullModel.__init__ on a fresh module, i.e. in training mode: dropout is "
            "recorded as active and stays active after .eval() (see hazard spec_trace_in_training_mode). Here the "
            "Encoder is traced in eval mode under torch.no_grad().",
            "Tracing in eval mode with grad enabled fails the tracer's own check on this version "
            "(see hazard trace_eval_with_grad_enabled); tracing under no_grad records the inference fast path "
            "(aten::_transformer_encoder_layer_fwd), the same path eager takes under no_grad.",
            "FullModel takes its encoder and decoder as arguments so the same class is the eager reference and the "
            "hybrid artifact; the artifact is the spec's: traced Encoder + scripted ConditionalDecoder, scripted.",
        ],
        notes=["set_temperature lives on the decoder submodule; the prelude calls it as decoder.set_temperature."],
    )


# ---------------------------------------------------------------------------------------------------------------
# process_outputs: a scripted free function


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


# ---------------------------------------------------------------------------------------------------------------

register(Case("simple_cnn", "trace", "SimpleCNN traced with the spec's 1x3x32x32 example", build_simple_cnn, 101))
register(Case("dynamic_router", "script", "DynamicRouter(256, 4) scripted: data-dependent routing to experts",
              build_dynamic_router, 202))
register(Case("dynamic_router_masked", "script",
              "DynamicRouter rewritten with mask arithmetic so torch.export can capture it; checked against the "
              "scripted original", build_dynamic_router_masked, 505))
register(Case("full_model", "hybrid", "FullModel: traced Encoder + scripted ConditionalDecoder, scripted as a whole",
              build_full_model, 303))
register(Case("process_outputs", "script_function", "process_outputs scripted as a free function",
              build_process_outputs, 404))
