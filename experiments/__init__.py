"""weblab experiments: one module per claim (experiments/claims/) plus the shared measuring helpers."""
