"""Probe the ELECTRA-tiny discriminator during pretraining (benchmarks/NOTES.md, "A recipe that learns").

Usage: python benchmarks/electra_disc_probe.py [OVERRIDES_JSON] [STEPS] [EVERY]
  OVERRIDES_JSON: `section.key` overrides of `configs/electra.py:size=tiny` (e.g. '{"optim.learning_rate": 5e-4}'),
    plus the probe's own keys: "synthetic": "uniform" | "unigram" (replacements drawn from the uniform or the
    training unigram distribution instead of the generator: does the discriminator learn when the task is easy?),
    "bias_init": a starting logit for the discriminator's output bias (e.g. the prior's, -1.8), "head_glorot": 1
    (google-research/electra's TF-default Glorot-uniform init of the 1-logit layer instead of normal(0.02)),
    "tie_encoders": 1 (§3.2 "tie all weights": with a generator of the discriminator's size, the generator runs on the
    discriminator's encoder params, so one trunk gets both losses' gradients; the generator's own copy is unused).
  STEPS: the schedule's length (warmup, then linear decay to 0 at STEPS); EVERY: evaluation period.

Every EVERY steps on 8 fixed held-out batches: the generator's MLM loss, the discriminator's loss against the
entropy of the constant prior, its accuracy, the AUC of its logits for "replaced", the spread of its logits, and the
per-feature standard deviation of its last hidden states across tokens (how token-dependent they are); and the
gradient norms of each parameter group (discriminator head, discriminator encoder, shared embeddings, generator,
MLM head) from the MLM loss and from λ·disc separately (one forward pass, two cotangents).
"""
import sys, time, pathlib, json
import jax, jax.numpy as jnp, numpy as np, optax
from llm_jax.config import from_dict, load_config_file
from llm_jax import models
from llm_jax.objectives.base import make_objective
from llm_jax.train.pipeline import load_data, fixed_eval_batches
from llm_jax.train.optim import make_optimizer
from llm_jax.data.loader import DeterministicLoader
import llm_jax.train.step as step_lib
from llm_jax import sharding

overrides = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
steps = int(sys.argv[2]) if len(sys.argv) > 2 else 300
every = int(sys.argv[3]) if len(sys.argv) > 3 else 50
synthetic = overrides.pop("synthetic", None)
bias_init = overrides.pop("bias_init", None)
head_glorot = overrides.pop("head_glorot", None)
tie_encoders = overrides.pop("tie_encoders", None)  # "uniform" / "unigram": replacements not from the generator
cfg = from_dict(load_config_file("configs/electra.py:size=tiny", {**overrides, "train.steps": steps}))
wd = pathlib.Path("runs/electra_disc_probe"); wd.mkdir(parents=True, exist_ok=True)
family = models.family_module(cfg.family)
data = load_data(cfg.data, family.TOKENIZER, wd)
mcfg = cfg.model.with_vocabulary(data.tokenizer.get_vocab_size(), data.special)
obj = make_objective(cfg.objective, data.special, mcfg.vocab_size, tokenizer=data.tokenizer)
tc = cfg.train
tr = obj.build_examples(data.train_docs_ids, cfg.data.seq_len, tc.seed, batch_size=tc.batch_size)
ev = obj.build_examples(data.eval_docs_ids, cfg.data.seq_len, tc.seed + 1, batch_size=tc.batch_size)
loader = DeterministicLoader(tr, tc.batch_size, seed=tc.seed, process_index=0, process_count=1, shuffle=True)
model = models.build(cfg.family, mcfg)
dummy = obj.dummy_batch(tc.batch_size, cfg.data.seq_len)
tx, schedule = make_optimizer(cfg.optim, steps)
mesh = sharding.make_mesh(cfg.mesh); rules = sharding.rules_for(cfg.mesh.rules)
state, shard = step_lib.create_state(model, obj, tx, dummy, mesh, rules, tc.seed)
params = state.params; opt_state = state.opt_state
if head_glorot:
    k = params["discriminator_predictions"]["dense_prediction"]["kernel"]
    params["discriminator_predictions"]["dense_prediction"]["kernel"] = jax.nn.initializers.glorot_uniform()(jax.random.key(7), k.shape, k.dtype)
    print("glorot head kernel std", float(jnp.std(params["discriminator_predictions"]["dense_prediction"]["kernel"])), k.shape)
if bias_init is not None:
    import flax
    pp = flax.core.unfreeze(params) if hasattr(params, "unfreeze") else jax.tree.map(lambda x: x, params)
    b = pp["discriminator_predictions"]["dense_prediction"]["bias"]
    if hasattr(b, "replace_boxed"):
        pp["discriminator_predictions"]["dense_prediction"]["bias"] = b.replace_boxed(jnp.full_like(b.unbox(), bias_init))
    else:
        pp["discriminator_predictions"]["dense_prediction"]["bias"] = jnp.full_like(b, bias_init)
    params = pp
evb = [jax.tree.map(jnp.asarray, b) for b in fixed_eval_batches(obj, ev, tc.batch_size, 8, tc.seed)]
# unigram frequencies of train tokens for synthetic replacements
counts = np.bincount(np.concatenate([np.concatenate(d) for d in data.train_docs_ids]), minlength=mcfg.vocab_size)
unigram = jnp.asarray(np.log(np.maximum(counts, 1e-9) / counts.sum()), jnp.float32)
lam = cfg.objective.disc_weight

def tied(p):
    """The params the generator reads: its encoder replaced by the discriminator's (experiment 17)."""
    if not tie_encoders:
        return p
    p = dict(p)
    p["generator"] = {**p["generator"], "stack": p["electra"]["encoder"]["stack"]}
    return p

def losses(p, batch, rng):
    p = tied(p)
    den = obj.loss_denominators(batch)
    g_rng, s_rng, d_rng = jax.random.split(rng, 3)
    mlm, acc, corrupted, replaced = obj.generate(model, p, batch, g_rng, den, False)
    if synthetic:
        from llm_jax.objectives.rtd import corrupt
        shape = batch["mlm_positions"].shape + (mcfg.vocab_size,)
        logits = jnp.zeros(shape) if synthetic == "uniform" else jnp.broadcast_to(unigram, shape)
        sampled = jnp.argmax(logits + jax.random.gumbel(s_rng, shape), -1).astype(jnp.int32)
        corrupted, replaced = corrupt(batch["inputs"], batch["mlm_positions"], batch["mlm_ids"], batch["mlm_weights"], sampled)
    out = model.apply({"params": p}, corrupted, **obj.model_inputs(batch), deterministic=True, method="run_discriminator")
    x = out.rtd_logits_BT; y = replaced.astype(jnp.float32); w = obj.disc_weights(batch)
    bce = jnp.maximum(x, 0) - x * y + jnp.log1p(jnp.exp(-jnp.abs(x)))
    disc = jnp.sum(bce * w) / jnp.maximum(den["tokens"], 1e-5)
    return (mlm, disc), (x, y, w, out.hidden_BTD)

def groups(tree):
    flat = {"/".join(str(getattr(k, "key", k)) for k in path): v for path, v in jax.tree_util.tree_leaves_with_path(tree)}
    out = {}
    for k, v in flat.items():
        parts = k.split("/")
        g = "/".join(parts[:2]) if parts[0] == "electra" else parts[0]
        out[g] = out.get(g, 0.0) + jnp.sum(jnp.square(v.astype(jnp.float32)))
    return {k: jnp.sqrt(v) for k, v in out.items()}

@jax.jit
def train(params, opt_state, batch, i):
    rng = jax.random.fold_in(jax.random.key(tc.seed), i)
    (mlm, disc), vjp, aux = jax.vjp(lambda p: losses(p, batch, rng), params, has_aux=True)
    g_m, = vjp((jnp.float32(cfg.objective.gen_weight), jnp.float32(0)))
    g_d, = vjp((jnp.float32(0), jnp.float32(lam)))
    g = jax.tree.map(jnp.add, g_m, g_d)
    upd, opt_state = tx.update(g, opt_state, params)
    return optax.apply_updates(params, upd), opt_state, mlm, disc, groups(g_m), groups(g_d), optax.tree.norm(g)

@jax.jit
def evaluate(params, batch):
    (mlm, disc), (x, y, w, h) = losses(params, batch, jax.random.key(123))
    return mlm, disc, x, y, w, h

def auc(s, y):
    order = np.argsort(s); r = np.empty(len(s)); r[order] = np.arange(1, len(s) + 1)
    npos = y.sum(); nneg = len(y) - npos
    return (r[y == 1].sum() - npos * (npos + 1) / 2) / max(npos * nneg, 1)

t0 = time.time()
for i in range(steps + 1):
    if i % every == 0:
        res = [evaluate(params, b) for b in evb]
        xs = np.concatenate([np.asarray(r[2])[np.asarray(r[4]) > 0] for r in res])
        ys = np.concatenate([np.asarray(r[3])[np.asarray(r[4]) > 0] for r in res])
        hs = np.concatenate([np.asarray(r[5])[np.asarray(r[4]) > 0] for r in res])
        p = ys.mean(); prior = -(p * np.log(p) + (1 - p) * np.log(1 - p))
        print(f"[eval {i}] mlm {np.mean([float(r[0]) for r in res]):.3f} disc {np.mean([float(r[1]) for r in res]):.4f} "
              f"prior {prior:.4f} rate {p:.4f} acc {((xs > 0) == ys).mean():.4f} AUC {auc(xs, ys):.3f} "
              f"logit mean {xs.mean():.3f} std {xs.std():.4f} [{xs.min():.2f},{xs.max():.2f}] "
              f"hidden std-over-tokens {hs.std(0).mean():.4f}  t={time.time()-t0:.0f}s", flush=True)
    if i == steps: break
    batch = jax.tree.map(jnp.asarray, obj.prepare(loader.local_batch(i), tc.seed))
    params, opt_state, mlm, disc, gm, gd, gn = train(params, opt_state, batch, i)
    if i % every == 0 or i < 3:
        print(f"  step {i} mlm {float(mlm):.3f} disc {float(disc):.4f} |g| {float(gn):.3f}  gradnorm mlm: "
              + " ".join(f"{k}={float(v):.2e}" for k, v in gm.items()) + " | lam*disc: "
              + " ".join(f"{k}={float(v):.2e}" for k, v in gd.items()), flush=True)
