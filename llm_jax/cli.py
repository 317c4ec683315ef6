"""`llm-jax <verb> ...`: the command line.

    llm-jax pretrain --config bert:size=tiny --workdir runs/x [--config.train.steps=100 ...]
    llm-jax pretrain --config my_recipe.py:size=tiny --workdir runs/x        (a recipe file of your own)
    llm-jax finetune --config finetune:model=runs/x,task=wordnet-supersense --workdir runs/y
    llm-jax recipes [NAME]
    llm-jax describe [bert-base]
    llm-jax convert --from-hf DIR --out DIR | --to-hf RUN_OR_CKPT --out DIR
    llm-jax flops --config bert:size=base --convention electra --batch 256 --seq 512 --steps 1000000
    llm-jax generate --model runs/gpt2-tiny --prompt "The cat" [--num-beams 4 | --temperature 0.8 --top-p 0.9] [--json]
    llm-jax evaluate --model runs/gpt2-tiny --task perplexity --data text.txt [--stride 256] [--json]
    llm-jax evaluate --model runs/gpt2-tiny --task wordnet-wic --shots 4 [--seed 1] [--json]
    llm-jax compress --model DIR --out DIR [--quantize fp16|bf16|int8-weight|int8-dynamic] [--prune SPEC]
    llm-jax bias --model runs/bert-tiny [--tests weat1,weat2] [--level static|word|sentence] [--std sample] [--json]
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import pathlib
import sys

VERBS = {
    "pretrain": "Pretrain a model with its family's original objective (--config RECIPE[:ARG] --workdir DIR).",
    "finetune": "Fine-tune and evaluate on a task; writes results.json (--config finetune:model=M,task=T --workdir D).",
    "recipes": "List the recipes (--config NAME[:ARG], e.g. bert:size=tiny) with their arguments; NAME shows one.",
    "describe": "Print a preset's architecture and parameter count (counted abstractly); no preset: every preset.",
    "convert": "Convert checkpoints: --from-hf HF_DIR --out DIR, or --to-hf RUN_OR_CKPT --out DIR.",
    "flops": "Training FLOPs of one step and of N steps (--config RECIPE[:ARG] [--convention ours|electra|palm]).",
    "generate": "Continue a prompt with a model (--model RUN_OR_DIR --prompt TEXT): greedy, sampling or beam search.",
    "evaluate": "Perplexity of a text (--task perplexity --data FILE) or a task in context with K demonstrations "
                "(--task T --shots K), no training.",
    "compress": "Quantize (fp16, bf16, int8 weight-only or dynamic) and/or prune a model (--model DIR --out DIR).",
    "bias": "Social-bias association tests (WEAT 1-10, SEAT) on a model's word or sentence vectors (--model DIR).",
}
CONFIG_HELP = ("A recipe by name (`llm-jax recipes`: bert, roberta, ..., finetune) or a recipe file, then optionally "
               ":ARG (e.g. bert:size=tiny, my_recipe.py:size=tiny).")


def _usage() -> str:
    lines = ["usage: llm-jax <verb> [options]", "", "verbs:"]
    lines += [f"  {verb:<10} {text}" for verb, text in VERBS.items()]
    lines += ["", "--config takes a recipe by name (bert:size=tiny; `llm-jax recipes`) or a file (PATH.py:ARG).",
              "Run `llm-jax <verb> --help` for a verb's options."]
    return "\n".join(lines)


def _resolve_config(argv: list[str]) -> list[str]:
    """`argv` with the `--config` value turned into a file (`bert:size=tiny` → `.../configs/bert.py:size=tiny`).

    Raises:
      FileNotFoundError: the value is neither a file nor a recipe name.
    """
    from llm_jax.recipe_files import resolve

    out = list(argv)
    for i, a in enumerate(out):
        if a == "--config" and i + 1 < len(out):
            out[i + 1] = resolve(out[i + 1])
        elif a.startswith("--config="):
            out[i] = "--config=" + resolve(a.removeprefix("--config="))
    return out


def _pretrain(argv: list[str]) -> int:
    from absl import flags
    from ml_collections import config_flags

    if any(a in ("-h", "--help") for a in argv):
        print("usage: llm-jax pretrain --config RECIPE[:size=SIZE] --workdir DIR [--config.SECTION.KEY=VALUE ...]\n\n"
              "RECIPE: a name from `llm-jax recipes` (bert, roberta, albert, electra, ...) or a recipe file PATH.py\n"
              "        (e.g. a copy of one, from `llm-jax recipes NAME`).\n"
              "Sections: model, objective, data, optim, mesh, train. Examples:\n"
              "  --config.train.steps=200 --config.train.batch_size=16 --config.data.seq_len=64\n"
              "  --config.mesh.data=2 --config.mesh.fsdp=2 --config.mesh.tensor=2 --config.mesh.rules=fsdp_tp\n"
              "  --config.model.init_from=DIR   (start from a Hugging Face checkpoint, or a run/model directory of ours)\n"
              "  --resume      continue the run in --workdir although its config differs\n"
              "  --overwrite   move the run in --workdir aside and start afresh")
        return 0
    fv = flags.FlagValues()
    argv = ["llm-jax pretrain", *_resolve_config(argv)]
    # Why sys_argv: config_flags finds the `--config.a.b=v` overrides in sys.argv unless told the real argv.
    config_flags.DEFINE_config_file("config", None, CONFIG_HELP, lock_config=True,
                                    flag_values=fv, sys_argv=argv)
    flags.DEFINE_string("workdir", None, "Run directory (checkpoints, metrics, tokenizer).", flag_values=fv)
    flags.DEFINE_bool("resume", False, "Continue the run in --workdir even though its config differs.", flag_values=fv)
    flags.DEFINE_bool("overwrite", False, "Move the run in --workdir aside (to <workdir>.replaced-<time>) and start "
                      "afresh.", flag_values=fv)
    try:
        fv(argv)
    except (flags.Error, KeyError, AttributeError, ValueError, TypeError) as e:
        # config_flags reports an unknown `--config.a.b` as KeyError/AttributeError, a bad value as ValueError.
        print(f"llm-jax pretrain: bad flag or config override: {str(e).strip(chr(39))}\n(use --help for the options)",
              file=sys.stderr)
        return 2
    if fv.config is None or not fv.workdir:
        print("llm-jax pretrain: both --config and --workdir are required (use --help).", file=sys.stderr)
        return 2
    from llm_jax.config import from_dict
    from llm_jax.train.loop import pretrain

    if fv.resume and fv.overwrite:
        print("llm-jax pretrain: --resume and --overwrite exclude each other.", file=sys.stderr)
        return 2
    cfg = from_dict(fv.config.to_dict())
    summary = pretrain(cfg, fv.workdir, existing="overwrite" if fv.overwrite else "resume" if fv.resume else "refuse")
    if summary.get("preempted"):
        print(f"\n[llm-jax] interrupted: stopped after step {summary['end_step']} with a checkpoint in "
              f"{summary['checkpoint_dir']}; run the same command again to resume.")
        return 0
    first, last = summary.get("first_logged"), summary.get("last_logged")
    print(f"\n[llm-jax] done: steps {summary['start_step']}→{summary['end_step']} in {summary['seconds']:.1f}s")
    if first and last:
        print(f"[llm-jax] loss {first['loss']:.4f} (step {first['step']}) → {last['loss']:.4f} (step {last['step']}), "
              f"{last['tokens_per_s']:.0f} tokens/s")
    if summary.get("eval"):
        print("[llm-jax] eval: " + " ".join(f"{k}={v:.4f}" for k, v in summary["eval"].items()))
    print(f"[llm-jax] run files: {summary['workdir']} (metrics.jsonl, tensorboard/, checkpoints/, tokenizer.json, "
          "config.json, summary.json)")
    return 0


def _parse_config(verb: str, argv: list[str], extra=None, need_workdir: bool = True):
    """`(config_dict, workdir)` from `--config RECIPE[:ARG] --workdir DIR [--config.a.b=v ...]`, or an exit code.

    `extra(flags, flag_values)` defines further flags; then `(config_dict, workdir, flag_values)` is returned.
    """
    from absl import flags
    from ml_collections import config_flags

    fv = flags.FlagValues()
    argv = [f"llm-jax {verb}", *_resolve_config(argv)]
    # Why sys_argv: config_flags finds the `--config.a.b=v` overrides in sys.argv unless told the real argv.
    config_flags.DEFINE_config_file("config", None, CONFIG_HELP, lock_config=True,
                                    flag_values=fv, sys_argv=argv)
    flags.DEFINE_string("workdir", None, "Run directory.", flag_values=fv)
    if extra is not None:
        extra(flags, fv)
    try:
        fv(argv)
    except (flags.Error, KeyError, AttributeError, ValueError, TypeError) as e:
        # config_flags reports an unknown `--config.a.b` as KeyError/AttributeError, a bad value as ValueError.
        print(f"llm-jax {verb}: bad flag or config override: {str(e).strip(chr(39))}\n(use --help for the options)",
              file=sys.stderr)
        return 2
    if fv.config is None or (need_workdir and not fv.workdir):
        print(f"llm-jax {verb}: both --config and --workdir are required (use --help).", file=sys.stderr)
        return 2
    if extra is not None:
        return fv.config.to_dict(), fv.workdir, fv
    return fv.config.to_dict(), fv.workdir


def _flops(argv: list[str]) -> int:
    if any(a in ("-h", "--help") for a in argv):
        print("usage: llm-jax flops --config RECIPE[:size=SIZE] [--convention ours|electra|palm] "
              "[--batch B] [--seq T] [--steps N] [--config.SECTION.KEY=VALUE ...]\n\n"
              "Training FLOPs of one step of the config's model and objective (batch, sequence length and steps\n"
              "default to the config's train.batch_size, data.seq_len, train.steps), then `total:` for N steps.\n"
              "Conventions (llm_jax/flops.py):\n"
              "  ours     what our step computes: backward = 2x forward, lookups are gathers, AdamW's update\n"
              "  electra  ELECTRA's flops_computation.py: training = 2x forward, one-hot lookups (the paper's numbers)\n"
              "  palm     PaLM's model FLOPs 6N + 12·L·H·Q·T per token (the numerator of MFU)")
        return 0

    def extra(flags, fv):
        from llm_jax.flops import CONVENTIONS

        flags.DEFINE_enum("convention", "ours", list(CONVENTIONS), "Which count.", flag_values=fv)
        flags.DEFINE_integer("batch", None, "Sequences per step (default train.batch_size).", flag_values=fv)
        flags.DEFINE_integer("seq", None, "Sequence length (default data.seq_len).", flag_values=fv)
        flags.DEFINE_float("steps", None, "Steps (default train.steps).", flag_values=fv)

    parsed = _parse_config("flops", argv, extra=extra, need_workdir=False)
    if isinstance(parsed, int):
        return parsed
    config_dict, _, fv = parsed
    from llm_jax import flops, models, objectives
    from llm_jax.config import from_dict
    from llm_jax.train.step import abstract_params, count_params

    cfg = from_dict(config_dict)
    batch = fv.batch or cfg.train.batch_size
    seq = fv.seq or cfg.data.seq_len
    steps = cfg.train.steps if fv.steps is None else fv.steps
    if batch < 1 or seq < 1 or steps < 0:
        raise ValueError(f"--batch={batch} and --seq={seq} must be ≥ 1 and --steps={steps} ≥ 0.")
    objective_cls = objectives.objective_class(cfg.objective.name)
    frozen = {}
    if objective_cls.required_models:  # a teacher: its shape comes from its directory
        from llm_jax.interop.native import load_pretrained

        for name in objective_cls.required_models:
            family, model_cfg, _, _ = load_pretrained(getattr(cfg.objective, name))
            frozen[name] = (family, model_cfg)
    towers = flops.towers_for(cfg.family, cfg.model, cfg.objective, seq, frozen_configs=frozen)
    shape_objective = objectives.shape_only_objective(cfg.objective.name, cfg.model.vocab_size)
    n_params = count_params(abstract_params(models.build(cfg.family, cfg.model), shape_objective,
                                            shape_objective.dummy_batch(1, min(seq, 8))))
    print(f"{cfg.family} ({cfg.objective.name}): {n_params:,} trained parameters, {len(towers)} tower(s), batch {batch} "
          f"x seq {seq}, convention {fv.convention}")
    step = flops.step_flops_by_convention(fv.convention, towers, batch, seq, num_params=n_params)
    print(f"step: {step:.4e} FLOPs ({step / (batch * seq):.4e} per token)")
    print(f"total: {step * steps:.4e}")
    return 0


def format_results(results: dict) -> str:
    """results.json as an aligned table: one row per split, one column per metric."""
    splits = [s for s in ("validation", "test") if s in results]
    metrics = []
    for s in splits:
        metrics += [m for m in results[s] if m not in metrics]
    lines = [f"  {'split':<12}" + "".join(f"{m:>20}" for m in metrics)]
    for s in splits:
        cells = "".join(f"{results[s][m]:>20.4f}" if m in results[s] else f"{'—':>20}" for m in metrics)
        lines.append(f"  {s:<12}{cells}")
    return "\n".join(lines)


def _finetune(argv: list[str]) -> int:
    if any(a in ("-h", "--help") for a in argv):
        print("usage: llm-jax finetune --config finetune:model=MODEL,task=TASK --workdir DIR "
              "[--config.SECTION.KEY=VALUE ...]\n\n"
              "MODEL: a preset (random init, e.g. bert-tiny), a run / checkpoint / model directory of ours, or a\n"
              "       Hugging Face checkpoint directory.\n"
              "TASK:  wordnet-supersense, wordnet-gloss, wordnet-wic (bundled); cola, sst2, mrpc, qqp, stsb, mnli,\n"
              "       mnli_mismatched, qnli, rte, wnli (GLUE, from the Hub); squad, squad_v2 (local SQuAD JSON via\n"
              "       --config.task.train_file/validation_file, or the Hub); local (--config.task.train_file=...,\n"
              "       task.kind, task.text_fields, task.label_field, task.metrics).\n"
              "Sections: model, task, data, optim, mesh, train. Examples:\n"
              "  --config.data.train_examples=64     a class-balanced 64-example subset (0 = zero-shot cloze)\n"
              "  --config.optim.layer_decay=0.8      layer-wise learning-rate decay (ELECTRA)\n"
              "  --config.train.patience=3 --config.train.eval_every=100    early stopping on the dev metric\n"
              "  --config.data.balance=class_weights  imbalanced labels\n"
              "  --config.model.random_init=True     same architecture and tokenizer, random weights\n"
              "Writes DIR/results.json, DIR/predictions/{validation,test}.jsonl, DIR/best/, DIR/summary.json.")
        return 0
    parsed = _parse_config("finetune", argv)
    if isinstance(parsed, int):
        return parsed
    config_dict, workdir = parsed
    from llm_jax.data.tasks import DatasetUnavailable
    from llm_jax.train.finetune import config_from_dict, finetune

    cfg = config_from_dict(config_dict)
    try:
        results = finetune(cfg, workdir)
    except DatasetUnavailable as e:
        print(f"llm-jax finetune: error: {e}", file=sys.stderr)
        return 1
    if results.get("preempted"):
        print(f"\n[llm-jax] interrupted after step {results['end_step']} with a checkpoint in {workdir}; run the "
              "same command again to resume.")
        return 0
    print(f"\n[llm-jax] {cfg.task.name}: results ({workdir}/results.json)\n{format_results(results)}")
    return 0


def _abstract_preset(name: str):
    """`(family, Config, module, abstract params)` of a preset: shapes only, no weights allocated."""
    from llm_jax import models, objectives
    from llm_jax.train.step import abstract_params

    family, cfg = models.get_preset(name)
    model = models.build(family, cfg)
    objective = objectives.shape_only_objective(models.family_module(family).DEFAULT_OBJECTIVE, cfg.vocab_size)
    return family, cfg, model, abstract_params(model, objective, objective.dummy_batch(1, 8))


def _describe_all() -> int:
    """Every preset, by family in registry order, with its parameter count."""
    from llm_jax import models
    from llm_jax.train.step import count_params

    print("Presets by family, with their parameter counts (`llm-jax describe NAME` shows one's architecture):")
    for family, module in models.FAMILIES.items():
        print(f"\n{family}")
        for name in module.PRESETS:
            _, _, model, abstract = _abstract_preset(name)
            print(f"  {name:<24} {count_params(abstract):>15,}  {type(model).__name__}")
    return 0


def _describe(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="llm-jax describe", description=VERBS["describe"])
    parser.add_argument("preset", nargs="?", help="e.g. bert-base, bert-tiny, roberta-large; none: list every preset")
    args = parser.parse_args(argv)
    if args.preset is None:
        return _describe_all()
    from llm_jax.train.step import count_params

    family, cfg, model, abstract = _abstract_preset(args.preset)
    print(f"{args.preset} ({family}, {type(model).__name__})")
    for f in dataclasses.fields(cfg):
        print(f"  {f.name:<26} {getattr(cfg, f.name)}")
    print(f"parameters: {count_params(abstract)}")
    # A model published as several checkpoints (ELECTRA's discriminator and generator): each one's count, shared
    # params in each, as transformers counts them.
    import numpy as np
    from flax import traverse_util
    from flax.linen import meta

    from llm_jax.interop.state_dict import hf_views

    views = hf_views(family)
    if len(views) > 1:
        sizes = {k: int(np.prod(v.shape)) for k, v in
                 traverse_util.flatten_dict(meta.unbox(abstract), sep="/").items()}
        for name, view in views.items():
            print(f"  {name}: {sum(n for k, n in sizes.items() if k in view.name_map)} ({view.architecture})")
    return 0


def _recipes(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="llm-jax recipes", description=VERBS["recipes"])
    parser.add_argument("name", nargs="?", help="a recipe: print its file, arguments and description")
    parser.add_argument("--path", action="store_true", help="print only the recipe's file (to copy it: "
                        "cp \"$(llm-jax recipes --path bert)\" my_bert.py)")
    args = parser.parse_args(argv)
    from llm_jax import recipe_files

    if args.path and args.name is None:
        parser.error("--path needs a recipe name, e.g. llm-jax recipes --path bert")
    if args.name is not None:
        path = recipe_files.resolve(args.name).partition(":")[0]
        if args.path:
            print(path)
            return 0
        recipe = recipe_files.read(pathlib.Path(path))
        print(f"{recipe.name}: {recipe.path}")
        print(f"  --config {recipe.spec()}")
        for key, default in recipe.arguments:
            print(f"  {key:<12} {'(no default)' if default in (None, '') else 'default ' + default}")
        if recipe.doc:
            print("\n" + recipe.doc.strip())
        mine = f"my_{recipe.name}.py"
        print(f"\nTo change more than --config.SECTION.KEY=VALUE allows: "
              f"cp \"$(llm-jax recipes --path {recipe.name})\" {mine}, edit it, and pass --config {mine}:ARG.")
        return 0
    recipes = recipe_files.all_recipes()
    print(f"Recipes in {recipe_files.recipes_dir()} (--config NAME[:KEY=VALUE,...]; the defaults shown):")
    for recipe in recipes:
        print(f"\n  {recipe.spec()}")
        if recipe.summary:
            print(f"      {recipe.summary}")
    print("\n`llm-jax recipes NAME` prints one's file and description; a copy of it (or any file of your own that "
          "defines get_config(arg)) runs as --config PATH.py:ARG.")
    return 0


def _convert(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="llm-jax convert", description=VERBS["convert"])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--from-hf", metavar="HF_DIR", help="a Hugging Face checkpoint directory (config.json + "
                        "model.safetensors or pytorch_model.bin) → our model directory")
    source.add_argument("--to-hf", metavar="RUN_OR_CKPT", help="a run directory, checkpoint step directory or model "
                        "directory of ours → a Hugging Face directory that transformers loads")
    parser.add_argument("--out", required=True, help="output directory")
    args = parser.parse_args(argv)
    from llm_jax.interop import native

    if args.from_hf:
        out = native.convert_from_hf(args.from_hf, args.out)
    else:
        out = native.convert_to_hf(args.to_hf, args.out)
    print(f"[llm-jax] wrote {out}")
    return 0


def _generate(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="llm-jax generate", description=VERBS["generate"],
        epilog="Greedy unless --temperature/--top-k/--top-p (sampling) or --num-beams N > 1 (beam search) is given. "
               "Each --prompt is one row of a batch (rows of different lengths are left-padded). Prints each "
               "continuation, or with --json one line per prompt: {\"prompt_ids\", \"output_ids\", \"text\"} "
               "(output_ids: the generated ids, a final end-of-text token included; text: they decoded).")
    parser.add_argument("--model", required=True, help="a run / checkpoint / model directory of ours, or a Hugging "
                        "Face checkpoint directory (with its tokenizer)")
    parser.add_argument("--prompt", action="append", required=True, help="the text to continue; repeat for a batch")
    parser.add_argument("--max-new-tokens", type=int, default=32, help="tokens to generate at most (default 32)")
    parser.add_argument("--greedy", action="store_true", help="the most likely token at each step (the default)")
    parser.add_argument("--temperature", type=float, help="sample, dividing the logits by T")
    parser.add_argument("--top-k", type=int, help="sample among the K most likely tokens")
    parser.add_argument("--top-p", type=float, help="sample from the nucleus of probability mass P")
    parser.add_argument("--num-beams", type=int, default=1, help="beam search with N beams")
    parser.add_argument("--length-penalty", type=float, default=1.0,
                        help="beam search: score = log-probability / length ** this (default 1.0)")
    parser.add_argument("--early-stopping", choices=("false", "true", "never"), default="false",
                        help="beam search: when a prompt's search ends (default false, as transformers)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    parser.add_argument("--json", action="store_true", help="one JSON line per prompt")
    args = parser.parse_args(argv)
    sampling = any(v is not None for v in (args.temperature, args.top_k, args.top_p))
    if sum((args.greedy, sampling, args.num_beams > 1)) > 1:
        parser.error("choose one strategy: --greedy, sampling (--temperature/--top-k/--top-p) or --num-beams N > 1")
    import json

    from llm_jax.generate import GenerationConfig, decoder_for, generate
    from llm_jax.interop.native import load_pretrained

    config = GenerationConfig(
        max_new_tokens=args.max_new_tokens, do_sample=sampling,
        temperature=1.0 if args.temperature is None else args.temperature,
        top_k=args.top_k or 0, top_p=1.0 if args.top_p is None else args.top_p, num_beams=args.num_beams,
        length_penalty=args.length_penalty,
        early_stopping={"false": False, "true": True}.get(args.early_stopping, args.early_stopping)).validate()
    family, model_cfg, params, tokenizer = load_pretrained(args.model)
    from llm_jax.compression import quantize

    # The family's decoder steps build their own modules: an int8 model generates with its dequantized weights.
    model_cfg, params = quantize.as_float(family, model_cfg, params, "generate")
    decoder = decoder_for(family, model_cfg)
    if tokenizer is None:
        raise FileNotFoundError(f"{args.model} has no tokenizer.json to encode the prompt with; export the model with "
                                "its tokenizer (llm-jax convert) or point at its run directory.")
    prompt_ids = [tokenizer.encode(text).ids for text in args.prompt]
    out = generate(decoder, params, prompt_ids, config, seed=args.seed)
    for ids, output_ids in zip(prompt_ids, out.sequences()):
        text = tokenizer.decode(output_ids)
        if args.json:
            print(json.dumps({"prompt_ids": ids, "output_ids": output_ids, "text": text}, ensure_ascii=False))
        else:
            print(text)
    return 0


def _evaluate(argv: list[str]) -> int:
    from llm_jax.eval.in_context import NORMALIZE, SCORERS

    parser = argparse.ArgumentParser(
        prog="llm-jax evaluate", description=VERBS["evaluate"],
        epilog="--task perplexity prints perplexity, nll_per_token (natural log) and tokens (the tokens predicted, "
               "counted as transformers' labels=input_ids loss counts them). Any other task: K demonstrations from its "
               "train split (seeded, class-balanced) in its template, then each query; prints the task's metrics, "
               "shots, n, the majority baseline and how many demonstrations did not fit the context.")
    parser.add_argument("--model", required=True, help="a run / checkpoint / model directory of ours, or a Hugging "
                        "Face checkpoint directory (with its tokenizer)")
    parser.add_argument("--task", required=True, help="perplexity, or a task: wordnet-supersense, wordnet-gloss, "
                        "wordnet-wic (bundled), a GLUE task, squad, local (with --task-option)")
    parser.add_argument("--data", help="perplexity: a UTF-8 text file")
    parser.add_argument("--window", type=int, help="perplexity: tokens per window (default: the model's positions)")
    parser.add_argument("--stride", type=int, help="perplexity: tokens between window starts (default: the window)")
    parser.add_argument("--mem-len", type=int, help="perplexity, segment-recurrent models (Transformer-XL): "
                        "memory positions per layer (default: the model's; 0 = none); --window is the segment")
    parser.add_argument("--clamp-len", type=int, help="perplexity, segment-recurrent models: the relative-distance "
                        "clamp (default: the model's)")
    parser.add_argument("--prepend-eos", action="store_true",
                        help="perplexity: put the end-of-text token before the text, so its first token is scored too")
    parser.add_argument("--shots", type=int, default=0, help="K demonstrations (default 0: zero-shot)")
    parser.add_argument("--seed", type=int, default=0, help="draws the demonstrations (default 0)")
    parser.add_argument("--template", default="", help="the in-context template over the record fields, ending in "
                        "{answer} (e.g. '{text_a}\\nAnswer: {answer}'); default: the task's")
    parser.add_argument("--normalize", choices=NORMALIZE, default="none",
                        help="rank candidates by total log-likelihood (none), per token, or per character")
    parser.add_argument("--scorer", choices=SCORERS, default="auto", help="auto: loglikelihood for causal and "
                        "encoder-decoder LMs, cloze for masked LMs; discriminator: ELECTRA's replaced-token detector")
    parser.add_argument("--split", default="validation", help="the split evaluated (default validation)")
    parser.add_argument("--limit", type=int, default=0, help="only the split's first N examples (default all)")
    parser.add_argument("--max-new-tokens", type=int, default=32, help="generative tasks: tokens per answer")
    parser.add_argument("--batch-size", type=int, default=8, help="rows per forward pass (default 8)")
    parser.add_argument("--task-option", action="append", default=[], metavar="KEY=VALUE",
                        help="a task setting (task.KEY of finetune), e.g. train_file=a.jsonl kind=multiple_choice")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    import json

    from llm_jax.interop.native import load_pretrained

    if args.task == "perplexity" and not args.data:
        parser.error("--task perplexity needs --data FILE (a text file)")
    if args.task == "perplexity":
        data = pathlib.Path(args.data)
        if not data.is_file():
            raise FileNotFoundError(f"--data {data} is not a file; give a UTF-8 text file.")
        text = data.read_text(encoding="utf-8")
    family, model_cfg, params, tokenizer = load_pretrained(args.model)
    if tokenizer is None:
        raise FileNotFoundError(f"{args.model} has no tokenizer.json to encode text with; export the model with its "
                                "tokenizer (llm-jax convert) or point at its run directory.")
    if args.task == "perplexity":
        from llm_jax.data.tokenizer import special_ids
        from llm_jax.eval.score import DEFAULT_SEGMENT, perplexity_function

        ids = tokenizer.encode(text, add_special_tokens=False).ids
        if args.prepend_eos:
            sp = special_ids(tokenizer)
            eos = sp.eod if sp.eod is not None else sp.eos
            if eos is None:
                raise ValueError("--prepend-eos: the tokenizer has no end-of-text token; drop the flag.")
            ids = [eos, *ids]
        evaluate = perplexity_function(family)
        memory = {}
        if hasattr(model_cfg, "init_memory"):  # segment-recurrent: --window is the segment, the memory the context
            memory = {"mem_len": model_cfg.mem_len if args.mem_len is None else args.mem_len,
                      "clamp_len": args.clamp_len}
            window = args.window or DEFAULT_SEGMENT
        elif args.mem_len is not None or args.clamp_len is not None:
            parser.error(f"--mem-len / --clamp-len apply to segment-recurrent models; {family} has no memory")
        else:
            window = args.window or model_cfg.max_seq_len
        stride = args.stride or window
        result = {**evaluate(family, model_cfg, params, ids, window=window, stride=stride,
                             batch_size=args.batch_size, **memory).as_dict(),
                  "window": window, "stride": stride, "prepend_eos": args.prepend_eos, **memory}
        if args.json:
            print(json.dumps(result))
        else:
            print(f"perplexity {result['perplexity']:.4f}  nll/token {result['nll_per_token']:.4f} nats  "
                  f"tokens {result['tokens']}  (window {window}, stride {stride}, {result['windows']} windows)")
        return 0
    from llm_jax.config import section
    from llm_jax.data.tasks import TaskConfig, load_task
    from llm_jax.eval.in_context import InContextConfig, evaluate_in_context

    options = {}
    for item in args.task_option:
        key, eq, value = item.partition("=")
        if not eq:
            parser.error(f"--task-option {item!r}: write KEY=VALUE")
        key = key.strip()
        default = {f.name: f.default for f in dataclasses.fields(TaskConfig)}.get(key)
        if isinstance(default, bool):
            if value.strip().lower() not in ("true", "false", "1", "0"):
                parser.error(f"--task-option {item!r}: {key} is true or false")
            options[key] = value.strip().lower() in ("true", "1")
        else:
            options[key] = value
    task_cfg = section(TaskConfig, {"name": args.task, **options}, "task")
    task = load_task(task_cfg)
    result = evaluate_in_context(family, model_cfg, params, tokenizer, task, InContextConfig(
        shots=args.shots, seed=args.seed,
        template=args.template.replace("\\n", "\n"), normalize=args.normalize, split=args.split, limit=args.limit,
        scorer=args.scorer, max_new_tokens=args.max_new_tokens, batch_size=args.batch_size))
    if args.json:
        print(json.dumps(result))
    else:
        main_metric = result["main_metric"]
        base = result["majority_baseline"]
        print(f"{result['task']} ({result['split']}, n={result['n']}): {args.shots}-shot {main_metric} "
              f"{result[main_metric]:.4f}" + (f"  (majority baseline {base:.4f})" if base is not None else ""))
        over = result["context_overflow"]
        print(f"  scorer {result['scorer']}, demonstrations used per query {result['demonstrations_used_mean']:.1f}, "
              f"dropped for context {over['demonstrations_dropped']} ({over['examples_with_dropped_demonstrations']} "
              f"queries), queries cut {over['queries_truncated']}")
    return 0


def _compress(argv: list[str]) -> int:
    from llm_jax.compression.quantize import MODES

    parser = argparse.ArgumentParser(
        prog="llm-jax compress", description=VERBS["compress"],
        epilog="Pruning runs first, then quantization. Prints the parameters, the size of the params directory on "
               "disk before and after (bytes) and their ratio, and writes a model directory that every verb loads "
               "(config.json records what was done under `compression`). int8 models run their projections in "
               "int8 where the model is built by llm_jax.models.build (evaluate's perplexity and scorers); "
               "fine-tuning, generation and --to-hf export use the dequantized float32 weights.")
    parser.add_argument("--model", required=True, help="a run / checkpoint / model directory of ours, or a Hugging "
                        "Face checkpoint directory")
    parser.add_argument("--out", required=True, help="the new model directory (must not exist)")
    parser.add_argument("--quantize", choices=MODES, help="fp16 / bf16: 16-bit params and compute; int8-weight: "
                        "int8 kernels + per-channel scales, float32 products; int8-dynamic: int8 kernels and "
                        "per-token int8 activations, int8 x int8 -> int32 products")
    parser.add_argument("--prune", metavar="SPEC", help="pruning (llm_jax.compression.pruning), e.g. "
                        "magnitude:0.5 or neurons:0.25")
    args = parser.parse_args(argv)
    if not args.quantize and args.prune is None:
        parser.error("give --quantize MODE and/or --prune SPEC: there is nothing to do")
    out = pathlib.Path(args.out).expanduser()
    if out.exists():
        raise FileExistsError(f"--out {out} already exists; choose a new directory (compress never overwrites).")
    from llm_jax.compression import pruning

    spec = pruning.parse_prune_spec(args.prune) if args.prune is not None else None  # a bad spec fails here
    import tempfile

    from llm_jax.compression import quantize
    from llm_jax.interop import native

    family, config, params, tokenizer = native.load_pretrained(args.model)
    if config.quantization != "none":
        raise ValueError(f"--model {args.model} is already quantized ({config.quantization}); compress its float "
                         "original.")
    before = quantize.param_stats(params)
    source_params = pathlib.Path(args.model).expanduser() / "params"
    if source_params.is_dir():
        size_before = quantize.dir_bytes(source_params)
    else:  # a run / checkpoint / Hugging Face directory: the size of its params saved as a model directory
        with tempfile.TemporaryDirectory() as tmp:
            size_before = quantize.dir_bytes(native.save_model_dir(family, config, params, tmp) / "params")
    # A model compressed before keeps what was done to it: the step this call replaces moves to `history`.
    record = {k: v for k, v in pruning.compression_record(args.model).items() if k in ("prune", "quantize", "history")}

    def replace(key: str, value) -> None:
        if key in record:
            record["history"] = [*record.get("history", []), {key: record[key]}]
        record[key] = value

    if spec is not None:
        config, params, report = pruning.prune(family, config, params, spec)
        replace("prune", report)  # what fine-tuning reads to keep a magnitude-pruned model's zeros
        done = (f"sparsity {report['sparsity']:.3f} of {report['pruned_group_size']:,} weights" if "sparsity" in report
                else ", ".join(f"{k} {a} -> {b}" for k, (a, b) in report["width"].items()))
        print(f"[llm-jax] pruned ({spec.text}): {done}; non-zero {report['nonzero_before']:,} -> "
              f"{report['nonzero']:,}")
        if report["nonzero"] == report["nonzero_before"]:
            print(f"[llm-jax] warning: --prune {spec.text} removed nothing (the weights are already that sparse, or the "
                  "threshold is below every weight).")
        elif report.get("sparsity", 0.0) >= 0.999:
            print(f"[llm-jax] warning: --prune {spec.text} zeroed all of the chosen weights: the layers compute "
                  "nothing; choose a lower sparsity or threshold.")
    if args.quantize:
        config, params, quant_record = quantize.compress(family, config, params, args.quantize)
        for key, value in quant_record.items():
            replace(key, value)
    written = native.save_model_dir(family, config, params, out, tokenizer=tokenizer, compression=record)
    after = quantize.param_stats(params)
    size_after = quantize.dir_bytes(written / "params")
    done = [f"prune {spec.text}"] if spec is not None else []
    done += [f"quantize {record['quantize']}"] if "quantize" in record else []
    print(f"[llm-jax] {family}: {', '.join(done)}")
    print(f"[llm-jax] parameters {before['parameters']:,} -> {after['parameters']:,}"
          + (f" (+ {after['scales']:,} int8 scales)" if after["scales"] else ""))
    print(f"[llm-jax] params on disk {size_before:,} B -> {size_after:,} B (ratio {size_after / size_before:.3f}); "
          f"in memory {before['bytes']:,} B -> {after['bytes']:,} B")
    print(f"[llm-jax] wrote {written}")
    return 0


def _bias(argv: list[str]) -> int:
    from llm_jax.eval import bias, embeddings

    parser = argparse.ArgumentParser(
        prog="llm-jax bias", description=VERBS["bias"],
        epilog="Prints one row per test: test, targets X vs Y, attributes A vs B, the effect size d (positive: X goes "
               "with A), the one-sided permutation p-value (* = from sampled partitions, else exact) and the set "
               "sizes (sentence level: sentences). With --json: a JSON list of objects with test, effect_size, "
               "p_value, std, level (and statistic, exact, partitions, n, targets, attributes).")
    parser.add_argument("--model", required=True, help="a run / checkpoint / model directory of ours, or a Hugging "
                        "Face checkpoint directory (with its tokenizer)")
    parser.add_argument("--tests", default=",".join(bias.WEAT_NAMES),
                        help="comma-separated: weat1 … weat10 (shipped) or paths to test files in the sent-bias "
                             "schema (default: all ten)")
    parser.add_argument("--level", choices=embeddings.LEVELS, default="word",
                        help="static input embeddings, the word alone through the model (default), or sentences "
                             "from bleached templates (SEAT)")
    parser.add_argument("--std", choices=bias.STDS, default="sample",
                        help="effect-size denominator: sample (ddof 1, Caliskan / sent-bias; default) or population "
                             "(ddof 0, WEFE)")
    parser.add_argument("--layer", type=int, help="word level / mean pooling: read layer L (1 … number of layers; "
                        "negative from the top) instead of the model's output")
    parser.add_argument("--piece", choices=embeddings.PIECE_POOLINGS, default="auto",
                        help="static / word level: a word's first piece, last piece or mean of its pieces (auto: "
                             "first; a causal model's contextual word: last)")
    parser.add_argument("--pooling", choices=embeddings.SENTENCE_POOLINGS, default=None,
                        help="sentence level: as the family's classifier pools (default) or the mean of the tokens")
    parser.add_argument("--samples", type=int, default=bias.EXACT_LIMIT,
                        help=f"partitions drawn when there are more than {bias.EXACT_LIMIT:,} (default "
                             f"{bias.EXACT_LIMIT:,})")
    parser.add_argument("--seed", type=int, default=0, help="seed of the drawn partitions (default 0)")
    parser.add_argument("--ties", choices=bias.TIES, default="sent-bias",
                        help="count partitions equal to the observed one (sent-bias, default) or not (caliskan)")
    parser.add_argument("--json", action="store_true", help="print a JSON list")
    args = parser.parse_args(argv)
    import json

    from llm_jax.interop.native import load_pretrained

    if args.pooling is not None and args.level != "sentence":
        parser.error("--pooling applies to --level sentence")
    tests = bias.resolve_tests([t.strip() for t in args.tests.split(",") if t.strip()])
    from llm_jax.compression import quantize

    family, model_cfg, params, tokenizer = load_pretrained(args.model)
    # The trunk the vectors come from is built by the family (`build_trunk`): an int8 model runs dequantized.
    model_cfg, params = quantize.as_float(family, model_cfg, params, "bias")
    encoder = embeddings.TextEncoder(family, model_cfg, params, tokenizer)
    rows = []
    for test in tests:
        vectors = [encoder.embed(s.examples, args.level, layer=args.layer, piece=args.piece,
                                 pooling=args.pooling or "classifier")[0] for s in test.sets()]
        result = bias.weat(*vectors, std=args.std, n_samples=args.samples, seed=args.seed, ties=args.ties)
        rows.append(bias.result_row(test, result, args.level))
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        print(f"{args.model}: level {args.level}, effect size d with the {args.std} std, one-sided p "
              f"({args.ties} ties; * sampled, {args.samples:,} partitions)")
        print(bias.format_table(rows))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("absl", "jax._src", "orbax", "datasets", "fsspec", "urllib3", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    verb, rest = argv[0], argv[1:]
    handlers = {"pretrain": _pretrain, "finetune": _finetune, "recipes": _recipes, "describe": _describe,
                "convert": _convert, "flops": _flops, "generate": _generate, "evaluate": _evaluate,
                "bias": _bias, "compress": _compress}
    if verb not in handlers:
        print(f"llm-jax: unknown verb {verb!r}.\n\n{_usage()}", file=sys.stderr)
        return 2
    try:
        return handlers[verb](rest)
    except (ValueError, FileNotFoundError, FileExistsError, NotADirectoryError, FloatingPointError, ImportError) as e:
        # ImportError: an optional dependency a path needs (torch for a .bin checkpoint) names itself.
        print(f"llm-jax {verb}: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
