"""Model lightening (issue #21): magnitude and neuron pruning (`pruning`), fp16/bf16 casts and int8 quantization
through qwix (`quantize`). Each is a real transformation of a model directory that every other verb loads."""
