"""The model zoo (ci/zoo.sh): real torchvision, timm and transformers models, random weights, small inputs, exported
the way a user would declare them. Needs torch 2.14.1 + torchvision 0.29.1 + transformers + timm (ci/zoo.sh sets them
up); nothing is downloaded (weights=None, weights_backbone=None, pretrained=False, configs built here).

What a model cannot do in PyTorch is declared as a strict expected failure with PyTorch's reason, so that the zoo's
report has no result that is torchconform's fault."""

from __future__ import annotations

from typing import Dict, List

import torch
from torchvision import models as tvm

import torchconform as tc


def images(g: torch.Generator, *shapes: tuple[int, ...]) -> list[torch.Tensor]:
    return [torch.rand(*s, generator=g) for s in shapes]


def batches(g: torch.Generator, size: int, batch_sizes: tuple[int, ...] = (1, 2)) -> dict[str, tuple]:
    return {f"b{b}_{size}": (torch.rand(b, 3, size, size, generator=g),) for b in batch_sizes}


def resolutions(g: torch.Generator, size: int, other: tuple[int, int]) -> dict[str, tuple]:
    """Batches 1 and 2 at ``size`` (the programs' sets: their height and width are static) and batch 2 at another,
    non-square resolution (the TorchScript artifacts, traced at ``size``, take any)."""
    h, w = other
    return {**batches(g, size), f"b2_{h}x{w}": (torch.rand(2, 3, h, w, generator=g),)}


batch = torch.export.Dim("batch", min=1, max=8)
DYN_BATCH = ({0: batch},)

# ---- classification: trace, the TorchScript optimizations, torch.export with a dynamic batch (captured on batch 2:
# an example of batch 1 specializes the batch to 1) --------------------------------------------------------------------
CONVNETS = {
    "resnet18": lambda: tvm.resnet18(weights=None),
    "mobilenet_v3_small": lambda: tvm.mobilenet_v3_small(weights=None),
    "efficientnet_b0": lambda: tvm.efficientnet_b0(weights=None),
    "regnet_y_400mf": lambda: tvm.regnet_y_400mf(weights=None),
    "shufflenet_v2_x0_5": lambda: tvm.shufflenet_v2_x0_5(weights=None),
    "squeezenet1_1": lambda: tvm.squeezenet1_1(weights=None),
    "mnasnet0_5": lambda: tvm.mnasnet0_5(weights=None),
    "densenet121": lambda: tvm.densenet121(weights=None),
}
for name, factory in CONVNETS.items():
    tc.declare(name, model=factory, mode="trace", inputs=lambda g: resolutions(g, 64, (96, 80)), example="b2_64",
               export=tc.Export(dynamic_shapes=DYN_BATCH, input_sets=["b1_64", "b2_64"]),
               optimizations=tc.Optimizations(xfail={
                   "optimized": "torch.jit.optimize_for_inference on CPU folds conv weights into MKLDNN tensors, "
                                "which TorchScript cannot serialize: the saved module does not load again"}))

# Scripted as well (the other TorchScript path): a model torch.jit.script compiles from its source.
tc.declare("resnet18_script", model=lambda: tvm.resnet18(weights=None), mode="script",
           inputs=lambda g: batches(g, 64, (1, 3)))


def small_vit() -> torch.nn.Module:
    model = tvm.VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64,
                                  num_classes=10)
    torch.nn.init.normal_(model.heads.head.weight, std=0.02)  # torchvision zero-initialises the head
    return model


tc.declare("vit_tiny", model=small_vit, mode="trace", inputs=lambda g: batches(g, 32), example="b2_32",
           export=tc.Export(dynamic_shapes=DYN_BATCH))

# ---- timm (if it imports): a ConvNeXt, a DeiT at 64x64, a MobileViT --------------------------------------------------
try:
    import timm
except ImportError:  # (ci/zoo.sh installs it; the rest of the zoo runs without)
    timm = None

if timm is not None:
    TIMM = {
        "timm_convnext_atto": lambda: timm.create_model("convnext_atto", pretrained=False, num_classes=10),
        "timm_deit_tiny": lambda: timm.create_model("deit_tiny_patch16_224", pretrained=False, num_classes=10,
                                                     img_size=64),
        "timm_mobilevitv2_050": lambda: timm.create_model("mobilevitv2_050", pretrained=False, num_classes=10),
    }
    def mobilevit_sets(g: torch.Generator) -> dict[str, object]:
        sets: dict[str, object] = dict(resolutions(g, 64, (96, 80)))
        sets["b2_96x80"] = tc.Inputs(sets["b2_96x80"], xfail=(
            "torch.jit.trace records MobileViT's patch-grid arithmetic (Python ints from the input's shape) as "
            "constants: the traced artifact runs at the traced resolution only (reshape to [2, 64, 4, 2, 4, 2] fails "
            "at 96x80)"))
        return sets

    for name, factory in TIMM.items():
        # (the DeiT's position embeddings fix its resolution: only its 64x64 sets)
        inputs = ((lambda g: batches(g, 64)) if "deit" in name else mobilevit_sets if "mobilevit" in name
                  else (lambda g: resolutions(g, 64, (96, 80))))
        tc.declare(name, model=factory, mode="trace", example="b2_64", inputs=inputs,
                   export=tc.Export(dynamic_shapes=DYN_BATCH, input_sets=["b1_64", "b2_64"]))

# ---- segmentation: OrderedDict outputs ------------------------------------------------------------------------------
SEGMENTATION = {
    "deeplabv3_mobilenet_v3_large": lambda: tvm.segmentation.deeplabv3_mobilenet_v3_large(
        weights=None, weights_backbone=None, num_classes=5),
    "lraspp_mobilenet_v3_large": lambda: tvm.segmentation.lraspp_mobilenet_v3_large(
        weights=None, weights_backbone=None, num_classes=5),
}
for name, factory in SEGMENTATION.items():
    tc.declare(name, model=factory, mode="trace", trace_strict=False, inputs=lambda g: batches(g, 64), example="b2_64",
               export=tc.Export(dynamic_shapes=DYN_BATCH))

# ---- detection: List[Tensor] inputs, torchvision::nms / roi_align, scripted -------------------------------------
DETECTION = {
    "fasterrcnn_mobilenet_v3_large_320_fpn": lambda: tvm.detection.fasterrcnn_mobilenet_v3_large_320_fpn(
        weights=None, weights_backbone=None, num_classes=5, box_score_thresh=0.0),
    "ssdlite320_mobilenet_v3_large": lambda: tvm.detection.ssdlite320_mobilenet_v3_large(
        weights=None, weights_backbone=None, num_classes=5, score_thresh=0.0),
}


class Detections(torch.nn.Module):
    """torchvision's detection models return their detections in eager mode but a (losses, detections) tuple when
    scripted (a documented API difference, with a warning): compare the detections in both."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: List[torch.Tensor]) -> List[Dict[str, torch.Tensor]]:
        if torch.jit.is_scripting():
            return self.model(images)[1]
        return self.model(images)


for name, factory in DETECTION.items():
    tc.declare(name, model=lambda factory=factory: Detections(factory()), mode="script",
               inputs=lambda g: {"one": (images(g, (3, 96, 128)),), "two": (images(g, (3, 96, 128), (3, 80, 80)),)})

# ---- transformers: small configs, keyword inputs (attention_mask) ----------------------------------------------------
try:
    import transformers
except ImportError:  # (ci/zoo.sh installs it; the torchvision half still runs without)
    transformers = None

if transformers is not None:
    def tokens(g: torch.Generator, b: int, n: int, vocab: int = 100) -> torch.Tensor:
        return torch.randint(1, vocab, (b, n), generator=g)

    def text_sets(g: torch.Generator) -> dict[str, tc.Inputs]:
        ids, ids2 = tokens(g, 2, 12), tokens(g, 1, 12)
        mask = torch.ones(2, 12, dtype=torch.long)
        mask[1, 8:] = 0  # padding in the second row
        return {"padded": tc.Inputs((ids,), kwargs={"attention_mask": mask}),
                "single": tc.Inputs((ids2,), kwargs={"attention_mask": torch.ones(1, 12, dtype=torch.long)})}

    def encoder(cls: type, config: type, return_dict: bool = False, **kw: object):
        def make() -> torch.nn.Module:
            return cls(config(**kw, return_dict=return_dict))
        return make

    small = dict(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                 max_position_embeddings=64)
    TEXT = {
        "bert_tiny": encoder(transformers.BertModel, transformers.BertConfig, **small),
        "distilbert_tiny": encoder(transformers.DistilBertModel, transformers.DistilBertConfig, vocab_size=100,
                                   dim=32, n_layers=2, n_heads=2, hidden_dim=64, max_position_embeddings=64),
        # (use_cache=False: the key/value cache object it returns otherwise is not a tensor the tracer can type)
        "gpt2_tiny": encoder(transformers.GPT2Model, transformers.GPT2Config, vocab_size=100, n_embd=32, n_layer=2,
                             n_head=2, n_positions=64, use_cache=False),
        # return_dict=True: transformers' ModelOutput (a registered OrderedDict subclass) out of the program
        "bert_tiny_dict": encoder(transformers.BertModel, transformers.BertConfig, return_dict=True, **small),
        "roberta_tiny": encoder(transformers.RobertaModel, transformers.RobertaConfig, **{**small,
                                                                                         "pad_token_id": 0}),
    }
    for name, factory in TEXT.items():
        # (static shapes: the program is checked on the set it was captured with; the runner refuses the other)
        tc.declare(name, model=factory, mode="trace", trace_strict=False, inputs=text_sets,
                   export=tc.Export(input_sets=["padded"]))

    def t5_tiny() -> torch.nn.Module:
        # (return_dict=False fails inside transformers 5.24's T5 itself: "'tuple' object has no attribute
        # 'last_hidden_state'"; its ModelOutput comes out of the trace as a dict and out of the program as a mapping)
        cfg = transformers.T5Config(vocab_size=100, d_model=32, d_kv=16, d_ff=64, num_layers=2, num_heads=2,
                                    decoder_start_token_id=0, use_cache=False)
        return transformers.T5Model(cfg)

    def seq2seq_sets(g: torch.Generator) -> dict[str, tc.Inputs]:
        return {"enc8_dec4": tc.Inputs((tokens(g, 2, 8),), kwargs={"decoder_input_ids": tokens(g, 2, 4)})}

    tc.declare("t5_tiny", model=t5_tiny, mode="trace", trace_strict=False, inputs=seq2seq_sets, export=tc.Export())

    def bart_tiny() -> torch.nn.Module:
        # (return_dict=False fails inside transformers 5.24's BART as in T5: its ModelOutput, a mapping, it is)
        cfg = transformers.BartConfig(vocab_size=100, d_model=32, encoder_layers=2, decoder_layers=2,
                                      encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64,
                                      decoder_ffn_dim=64, max_position_embeddings=64, use_cache=False,
                                      pad_token_id=0)
        return transformers.BartModel(cfg)

    tc.declare("bart_tiny", model=bart_tiny, mode="trace", trace_strict=False, inputs=seq2seq_sets,
               export=tc.Export())

    def vit_hf() -> torch.nn.Module:
        cfg = transformers.ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2,
                                     num_attention_heads=2, intermediate_size=64, return_dict=False)
        return transformers.ViTModel(cfg)

    tc.declare("vit_hf_tiny", model=vit_hf, mode="trace", trace_strict=False,
               inputs=lambda g: {"b2": (torch.rand(2, 3, 32, 32, generator=g),)}, export=tc.Export())

    # ---- shapes real models showed torchconform (issue 31): a KV cache out of the program, a bf16 decoder with
    # AOTInductor's precision option, a seeded random model, a head whose outputs are all near zero --------------------
    def llama_config(**kw: object) -> object:
        return transformers.LlamaConfig(vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64,
                                        **kw)

    # transformers' own registration of DynamicCache as a pytree node for torch.export (what a user exporting a model
    # with its cache calls; transformers 5 no longer registers it on import).
    from transformers.integrations.executorch import register_dynamic_cache_export_support

    register_dynamic_cache_export_support()

    class CausalLMWithCache(torch.nn.Module):
        """A causal LM's logits and its key/value cache (transformers' DynamicCache, which transformers registers as
        a pytree node for torch.export): the cache comes out of the program as its leaves, named from its context."""

        def __init__(self) -> None:
            super().__init__()
            self.lm = transformers.LlamaForCausalLM(llama_config(use_cache=True))

        def forward(self, input_ids: torch.Tensor) -> dict[str, object]:
            out = self.lm(input_ids=input_ids, use_cache=True, return_dict=True)
            return {"logits": out.logits, "cache": out.past_key_values}

    tc.declare("llama_kv_cache", model=CausalLMWithCache, mode="export",
               inputs=lambda g: {"b2_s6": (tokens(g, 2, 6),)})

    class Bf16Decoder(torch.nn.Module):
        """A bf16 LLaMA's logits. AOTInductor fuses bf16 arithmetic in float32 unless emulate_precision_casts rounds
        each intermediate to bf16 as eager does (without it, hundreds of logits differ from eager's)."""

        def __init__(self) -> None:
            super().__init__()
            self.lm = transformers.LlamaForCausalLM(llama_config(use_cache=False)).to(torch.bfloat16)

        def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
            return self.lm(input_ids=input_ids, use_cache=False, return_dict=True).logits

    tc.declare("llama_bf16", model=Bf16Decoder, mode="export",
               export=tc.Export(aoti_options={"emulate_precision_casts": True}),
               inputs=lambda g: {"b2_s8": (tokens(g, 2, 8),)})

    def vit_mae() -> torch.nn.Module:
        cfg = transformers.ViTMAEConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2,
                                        num_attention_heads=2, intermediate_size=64, mask_ratio=0.5,
                                        return_dict=False)
        return transformers.ViTMAEModel(cfg)

    # Random masking: the set is seeded (the runner seeds the generator before the call), and AOTInductor draws the
    # same numbers as eager only with fallback_random.
    tc.declare("vit_mae_seeded", model=vit_mae, mode="export",
               export=tc.Export(aoti_options={"fallback_random": True}),
               inputs=lambda g: {"seeded": tc.Inputs((torch.rand(2, 3, 32, 32, generator=g),), seed=7)})


# ---- a head whose outputs are all near zero: a golden the default atol would accept anything against. It is judged
# relative to its scale instead (the export warns about the default tolerance; docs/corpus-format.md) -----------------
def near_zero_head() -> torch.nn.Module:
    model = tvm.resnet18(weights=None, num_classes=10)
    torch.nn.init.normal_(model.fc.weight, std=1e-7)
    torch.nn.init.zeros_(model.fc.bias)
    return model


tc.declare("resnet18_near_zero_head", model=near_zero_head, mode="trace", example="b2_64",
           inputs=lambda g: batches(g, 64),
           tolerance={"default": {"mode": "allclose", "rtol": 1e-4, "atol": 1e-12}, "outputs": {}})
