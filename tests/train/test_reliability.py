"""Failure modes as tested behaviour: SIGKILL + restart, SIGTERM preemption, damaged checkpoints, NaN losses."""

import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

from llm_jax.train.metrics import read_metrics

ROOT = pathlib.Path(__file__).resolve().parents[2]
ARGS = ["--config", str(ROOT / "configs" / "bert.py:size=tiny"), "--config.data.max_documents=300",
        "--config.data.max_eval_documents=30", "--config.data.seq_len=64", "--config.data.vocab_size=1000",
        "--config.train.batch_size=8", "--config.train.progress=False", "--config.objective.max_predictions=8",
        "--config.train.eval_every=0", "--config.train.log_every=1", "--config.optim.warmup_steps=2"]


def _cmd(workdir, *extra):
    return [sys.executable, "-m", "llm_jax.cli", "pretrain", *ARGS, "--workdir", str(workdir), *extra]


def _run(workdir, *extra, check=True):
    proc = subprocess.run(_cmd(workdir, *extra), capture_output=True, text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def _losses(workdir):
    return {r["step"]: r["loss"] for r in read_metrics(workdir) if "loss" in r}


def _wait_for_step(workdir, proc, step, timeout=300):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            raise AssertionError(f"the run ended before step {step}: {proc.stderr.read()[-3000:]}")
        if any(s >= step for s in _losses(workdir)):
            return
        time.sleep(0.2)
    raise AssertionError(f"step {step} not reached in {timeout}s")


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("straight")
    _run(workdir, "--config.train.steps=16", "--config.train.checkpoint_every=4")
    return _losses(workdir)


def test_sigkill_then_restart_reproduces_the_uninterrupted_run(tmp_path, straight):
    proc = subprocess.Popen(_cmd(tmp_path, "--config.train.steps=16", "--config.train.checkpoint_every=4"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for_step(tmp_path, proc, 10)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    _run(tmp_path, "--config.train.steps=16", "--config.train.checkpoint_every=4")
    steps_logged = [r["step"] for r in read_metrics(tmp_path) if "loss" in r]
    assert len(steps_logged) > len(set(steps_logged))  # steps after the last checkpoint ran twice
    resumed = _losses(tmp_path)  # the later (re-run) row of a step wins
    for step in range(1, 17):
        assert resumed[step] == straight[step], step


def test_sigterm_checkpoints_and_exits_cleanly(tmp_path, straight):
    proc = subprocess.Popen(_cmd(tmp_path, "--config.train.steps=16", "--config.train.checkpoint_every=100"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for_step(tmp_path, proc, 5)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-3000:]
    assert "interrupted" in out and "run the same command again" in out
    stopped = max(_losses(tmp_path))
    assert stopped < 16
    assert (tmp_path / "checkpoints" / str(stopped)).is_dir()
    _run(tmp_path, "--config.train.steps=16", "--config.train.checkpoint_every=100")
    resumed = _losses(tmp_path)
    assert all(resumed[s] == straight[s] for s in range(1, 17))


def test_damaged_newest_checkpoint_falls_back_to_the_previous_good_one(tmp_path, straight):
    _run(tmp_path, "--config.train.steps=16", "--config.train.checkpoint_every=4", "--config.train.stop_after=8")
    newest = tmp_path / "checkpoints" / "8" / "state"
    damaged = 0
    for path in newest.rglob("*"):
        if path.is_file() and path.stat().st_size > 0 and "metadata" not in path.name:
            path.write_bytes(b"\0garbage")
            damaged += 1
    assert damaged
    proc = _run(tmp_path, "--config.train.steps=16", "--config.train.checkpoint_every=4")
    assert "could not be restored" in proc.stderr and "Resumed from checkpoint step 4" in proc.stderr
    resumed = _losses(tmp_path)
    assert all(resumed[s] == straight[s] for s in range(1, 17))


def test_nonfinite_losses_are_skipped_then_stop_the_run(tmp_path):
    # A learning rate of 1e30 makes the first update overflow; every later step is non-finite.
    proc = _run(tmp_path, "--config.train.steps=40", "--config.train.checkpoint_every=2",
                "--config.optim.learning_rate=1e30", "--config.optim.clip_norm=0", "--config.optim.warmup_steps=0",
                "--config.train.max_consecutive_skips=3", check=False)
    assert proc.returncode == 1
    assert "non-finite" in proc.stderr and "intact" in proc.stderr
    rows = [r for r in read_metrics(tmp_path) if "skipped" in r]
    assert sum(r["skipped"] for r in rows) >= 3


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_match_one_process_with_the_same_device_count(tmp_path, straight):
    """2 processes × 4 CPU devices (jax.distributed over localhost, gloo collectives), each loading only its
    half of every global batch, give the losses of 1 process × 8 devices."""
    port = _free_port()
    procs = []
    for pid in range(2):
        env = dict(os.environ, JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}", JAX_NUM_PROCESSES="2",
                   JAX_PROCESS_ID=str(pid), XLA_FLAGS="--xla_force_host_platform_device_count=4")
        procs.append(subprocess.Popen(_cmd(tmp_path, "--config.train.steps=16", "--config.train.stop_after=6",
                                           "--config.train.checkpoint_every=4"),
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env))
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    assert "mesh {'data': 8" in outs[0][0]
    two = _losses(tmp_path)
    assert sorted(two) == list(range(1, 7))
    for step in range(1, 7):
        assert two[step] == pytest.approx(straight[step], rel=1e-5), step
    assert (tmp_path / "checkpoints" / "6").is_dir()
