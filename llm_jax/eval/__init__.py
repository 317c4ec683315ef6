"""Evaluation: task metrics, predictions of fine-tuned models, zero-shot cloze scoring."""
