"""Test session set-up: 8 fake CPU devices (set before JAX loads) and shared tiny fixtures."""

import os

# Why here: XLA reads the flag once, when the CPU backend starts; every test module sees the same 8 devices
# and single-device tests simply use a 1-device mesh of the first one.
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
