"""What the runner's CUDA run does not measure by itself, for docs/device-results.md (ci/device-check.sh runs it on
the GPU machine, after the runner):

* half precision: every TorchScript artifact cast to float16 and to bfloat16 on CUDA, called on its (cast) input
  sets, compared by the core's comparator with the golden rounded to that dtype under that dtype's default
  tolerance: max abs / rel / ULP per dtype, what a user who runs the model in half precision would have to allow;
* sampling: a seeded set (torch.multinomial) on CUDA draws from the CUDA generator (Philox), not the CPU's
  (mt19937), so the CPU golden cannot hold. What is checked instead: the same seed twice on CUDA gives the same
  draws (seeded reproducibility on the device), how many positions differ from the CPU golden, and whether the
  CUDA draws follow the CPU distribution: the input rows tiled 256 times and 8 seeds per device, the per-position
  token frequencies compared by total-variation distance, beside the distance between two CPU runs with other seeds
  (the sampling noise: the same distribution gives a distance of that size).

    python dev/device_measure.py CORPUS OUT.json

Numbers only, no verdicts of its own: the verdicts are the runner's (and the comparator's for half precision).
"""

from __future__ import annotations

import io
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "export"))
from torchconform import _core  # noqa: E402
from torchconform.writing import protocol  # noqa: E402

TILE, SEEDS = 256, 8


def convert(v: Any, device: str, dtype: torch.dtype | None = None, tile: int = 1) -> Any:
    if isinstance(v, torch.Tensor):
        if tile > 1 and v.dim() >= 1:
            v = v.repeat(tile, *([1] * (v.dim() - 1)))
        return v.to(device, dtype) if dtype is not None and v.is_floating_point() else v.to(device)
    if isinstance(v, (list, tuple)):
        out = [convert(x, device, dtype, tile) for x in v]
        return type(v)(out) if not hasattr(v, "_fields") else type(v)(*out)
    if isinstance(v, dict):
        return {k: convert(x, device, dtype, tile) for k, x in v.items()}
    return v


def case_sets(corpus: Path) -> list[tuple[Any, dict[str, Any], bytes, dict[str, Any]]]:
    """(case, manifest, artifact bytes, input set) for every TorchScript artifact's input sets, the bytes through the
    core's checked reader."""
    out = []
    opened = _core.Corpus.open(str(corpus))
    for c in opened.cases:
        m = json.loads(c.manifest_json) if not c.error else {}
        if c.error or not m.get("artifact"):
            continue
        data = _core.read_case_file(opened, c.name, m["artifact"]["file"])
        unreadable = _core.check_torchscript_code(data, f"{c.name}/{m['artifact']['file']}")
        if unreadable:
            raise ValueError(unreadable)
        for s in m["input_sets"]:
            out.append(((opened, c), m, data, s))
    return out


def call(data: bytes, s: dict[str, Any], device: str, dtype: torch.dtype | None, inputs: Any, seed: int | None,
         tile: int = 1) -> Any:
    module = torch.jit.load(io.BytesIO(data), map_location=device).eval()
    if dtype is not None:
        module = module.to(dtype)
    protocol.apply_prelude(module, [(p["method"], p["args"]) for p in s.get("prelude", [])])
    args, kwargs = protocol.split_keywords(convert(inputs, device, dtype, tile), s.get("keywords", []))
    with torch.inference_mode():
        out = protocol.call(module, s["method"], args, seed, kwargs)
    return convert(out, "cpu")


def files(case: Any, s: dict[str, Any]) -> tuple[Any, Any]:
    opened, c = case
    return _core.load_set(opened, c.name, s["name"])


def half_precision(corpus: Path) -> list[dict[str, Any]]:
    rows = []
    for (opened, c), _, data, s in case_sets(corpus):
        if s.get("seed") is not None:
            continue
        inputs, expected = files((opened, c), s)
        for dtype in (torch.float16, torch.bfloat16):
            row = {"case": c.name, "set": s["name"], "dtype": str(dtype).split(".")[1]}
            try:
                got = call(data, s, "cuda", dtype, inputs, None)
                cmp = _core.compare(convert(expected, "cpu", dtype), got)
                row.update(ok=bool(cmp), max_abs=cmp.max_abs, max_rel=cmp.max_rel, max_ulp=cmp.max_ulp,
                           mismatched=cmp.mismatched, total=cmp.total, summary=cmp.summary())
            except Exception as e:  # noqa: BLE001 - a model that does not run in this dtype is a finding
                row.update(ok=False, error=f"{type(e).__name__}: {str(e).strip().splitlines()[0][:300]}")
            rows.append(row)
    return rows


def frequencies(samples: torch.Tensor, rows: int, vocab: int) -> torch.Tensor:
    """[rows, positions, vocab] token frequencies of samples [tile * rows * seeds, positions] (row i % rows)."""
    s = samples.reshape(-1, rows, samples.shape[-1])  # [tile * seeds, rows, positions]
    return torch.nn.functional.one_hot(s, vocab).double().mean(0)


def sampling(corpus: Path) -> list[dict[str, Any]]:
    rows = []
    for (opened, c), _, data, s in case_sets(corpus):
        if s.get("seed") is None:
            continue
        inputs, expected = files((opened, c), s)
        row: dict[str, Any] = {"case": c.name, "set": s["name"], "seed": s["seed"]}
        try:
            first = call(data, s, "cuda", None, inputs, s["seed"])
            second = call(data, s, "cuda", None, inputs, s["seed"])
            row["cuda_same_seed_reproducible"] = bool(_core.compare(first, second, {"default": {"mode": "exact"},
                                                                                    "outputs": {}}))
            vs = _core.compare(expected, first)
            row.update(cuda_vs_cpu_golden_mismatched=vs.mismatched, total=vs.total)
            cpu_again = call(data, s, "cpu", None, inputs, s["seed"])
            row["cpu_matches_golden"] = bool(_core.compare(expected, cpu_again))
            if isinstance(first, torch.Tensor) and not first.is_floating_point():
                batch = first.shape[0]
                t0 = time.perf_counter()
                draws = {name: torch.cat([call(data, s, dev, None, inputs, base + k, TILE) for k in range(SEEDS)])
                         for name, dev, base in (("cuda", "cuda", 1), ("cpu", "cpu", 1), ("cpu_other", "cpu", 1001))}
                vocab = int(max(d.max() for d in draws.values())) + 1
                f = {k: frequencies(v, batch, vocab) for k, v in draws.items()}
                tv = {k: 0.5 * (f[k] - f["cpu"]).abs().sum(-1) for k in ("cuda", "cpu_other")}
                row.update(samples_per_position=TILE * SEEDS, vocab_seen=vocab,
                           tv_cuda_vs_cpu_max=float(tv["cuda"].max()), tv_cuda_vs_cpu_mean=float(tv["cuda"].mean()),
                           tv_cpu_vs_cpu_max=float(tv["cpu_other"].max()),
                           tv_cpu_vs_cpu_mean=float(tv["cpu_other"].mean()),
                           seconds=time.perf_counter() - t0)
        except Exception as e:  # noqa: BLE001
            row["error"] = f"{type(e).__name__}: {str(e).strip().splitlines()[0][:300]}"
        rows.append(row)
    return rows


def main() -> int:
    corpus, out = Path(sys.argv[1]), Path(sys.argv[2])
    if not torch.cuda.is_available():
        print("device_measure: CUDA is not available to this torch", file=sys.stderr)
        return 2
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch._C._jit_set_texpr_fuser_enabled(False)
    result = {"corpus": str(corpus), "torch": torch.__version__, "device": torch.cuda.get_device_name(0),
              "half_precision": half_precision(corpus), "sampling": sampling(corpus)}
    out.write_text(json.dumps(result, indent=1) + "\n")
    for r in result["half_precision"]:
        print("half", r["case"], r["set"], r["dtype"], r.get("summary") or r.get("error"))
    for r in result["sampling"]:
        print("sampling", json.dumps(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
