"""Training parity: our whole train step equals transformers + `torch.optim.AdamW` on the same batches.

Forward parity (test_hf_parity.py) says the model computes the same function; this says a training run follows
the same path: BERT's MLM + NSP loss at the gathered positions, its gradients, global-norm clipping, AdamW with
the decay mask (no decay on biases and LayerNorm), bias correction and ε, and the warmup + linear-decay
schedule. Four steps from the same random weights (dropout 0: the two frameworks draw different masks), on
batches that change every step; the losses and then every weight after the last step must agree at the model
tolerance (1e-4).
"""

import dataclasses

import jax
import numpy as np

from llm_jax import models
from llm_jax.interop import load_hf, save_hf
from llm_jax.objectives import config_for, make_objective
from llm_jax.data.tokenizer import SpecialIds
from llm_jax.sharding import MeshConfig, make_mesh, rules_for
from llm_jax.train import step as step_lib
from llm_jax.train.optim import OptimConfig, make_optimizer

TOL = dict(rtol=1e-4, atol=1e-4)
VOCAB, B, T, P, STEPS = 211, 4, 16, 3, 4
# A decay far above BERT's 0.01 so that a wrong decay mask moves weights by more than the tolerance in 4 steps.
OPTIM = OptimConfig(learning_rate=1e-2, warmup_steps=2, weight_decay=1.0, clip_norm=1.0)


def _batches(objective):
    rng = np.random.default_rng(0)
    out = []
    for _ in range(STEPS):
        b = objective.dummy_batch(B, T)
        b["inputs"] = rng.integers(5, VOCAB, size=(B, T), dtype=np.int32)
        b["mask"] = np.arange(T)[None, :] < np.array([T, T, 11, 7])[:, None]
        b["segment_ids"] = (np.arange(T)[None, :] >= np.array([8, 6, 5, 3])[:, None]).astype(np.int32)
        b["mlm_positions"] = np.stack([np.sort(rng.choice(np.arange(1, 7), P, replace=False)) for _ in range(B)])
        b["mlm_positions"] = b["mlm_positions"].astype(np.int32)
        b["mlm_ids"] = rng.integers(5, VOCAB, size=(B, P), dtype=np.int32)
        b["mlm_weights"] = np.array([[1, 1, 1], [1, 1, 0], [1, 0, 0], [1, 1, 1]], np.float32)
        b["nsp_label"] = rng.integers(0, 2, size=(B,), dtype=np.int32)
        out.append(b)
    return out


def _ours(config, params, batches):
    model = models.build("bert", config)
    objective = make_objective(config_for("mlm_nsp", max_predictions=P), SpecialIds(pad=0, unk=1, cls=2, sep=3, mask=4), VOCAB)
    tx, schedule = make_optimizer(OPTIM, STEPS)
    mesh, rules = make_mesh(MeshConfig(data=1), jax.devices()[:1]), rules_for("dp")
    state, shardings = step_lib.create_state(model, objective, tx, batches[0], mesh, rules, seed=0, params=params)
    train_step = step_lib.jit_train_step(step_lib.make_train_step(objective.make_loss(model), tx, schedule, seed=0,
                                                                  denominators_fn=objective.loss_denominators),
                                         shardings, mesh, batches[0])
    losses = []
    with step_lib.mesh_context(mesh, rules):
        for b in batches:
            state, metrics = train_step(state, b)
            losses.append(float(metrics["loss"]))
    return losses, jax.device_get(state.params), schedule


def _theirs(torch, transformers, path, batches, schedule):
    model = transformers.BertForPreTraining.from_pretrained(path, attn_implementation="eager")
    model.train()
    no_decay = lambda name: name.endswith("bias") or "LayerNorm" in name
    groups = [{"params": [p for n, p in model.named_parameters() if not no_decay(n)], "weight_decay": OPTIM.weight_decay},
              {"params": [p for n, p in model.named_parameters() if no_decay(n)], "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=OPTIM.learning_rate, betas=(OPTIM.b1, OPTIM.b2), eps=OPTIM.eps)
    losses = []
    for step, b in enumerate(batches):
        t = {k: torch.from_numpy(np.asarray(v)) for k, v in b.items()}
        out = model(input_ids=t["inputs"].long(), attention_mask=t["mask"].long(), token_type_ids=t["segment_ids"].long())
        pos = t["mlm_positions"].long()
        logits_BPV = torch.gather(out.prediction_logits, 1, pos[..., None].expand(-1, -1, VOCAB))
        nll_BP = torch.nn.functional.cross_entropy(logits_BPV.transpose(1, 2), t["mlm_ids"].long(), reduction="none")
        w = t["mlm_weights"]
        loss = (nll_BP * w).sum() / w.sum() + torch.nn.functional.cross_entropy(out.seq_relationship_logits,
                                                                                t["nsp_label"].long())
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), OPTIM.clip_norm)
        for g in opt.param_groups:
            g["lr"] = float(schedule(step))
        opt.step()
        losses.append(loss.item())
    return losses, model


def test_four_train_steps_match_transformers_and_torch_adamw(tmp_path, torch, transformers, random_params):
    _, preset = models.get_preset("bert-tiny")
    config = dataclasses.replace(preset, vocab_size=VOCAB, hidden_size=32, num_heads=2, intermediate_size=64,
                                 max_position_embeddings=T, hidden_dropout=0.0, attention_dropout=0.0).validate()
    params = random_params("bert", config, seed=3)
    save_hf("bert", config, params, tmp_path / "start")
    batches = _batches(make_objective(config_for("mlm_nsp", max_predictions=P), SpecialIds(pad=0, unk=1, cls=2, sep=3, mask=4),
                                      VOCAB))

    our_losses, our_params, schedule = _ours(config, params, batches)
    their_losses, their_model = _theirs(torch, transformers, tmp_path / "start", batches, schedule)

    np.testing.assert_allclose(our_losses, their_losses, **TOL)
    assert our_losses[-1] != our_losses[0]  # the weights did move
    their_model.save_pretrained(tmp_path / "end")
    _, _, their_params = load_hf(tmp_path / "end")
    flat = lambda tree: {"/".join(str(getattr(k, "key", k)) for k in path): np.asarray(v)
                         for path, v in jax.tree_util.tree_flatten_with_path(tree)[0]}
    ours, theirs = flat(our_params), flat(their_params)
    assert ours.keys() == theirs.keys()
    moved = 0
    for name in ours:
        np.testing.assert_allclose(ours[name], theirs[name], **TOL, err_msg=name)
        moved += not np.allclose(ours[name], flat(params)[name] if name in flat(params) else ours[name])
    assert moved > len(ours) // 2
