"""Training helpers: LR schedule, torchrun set-up, logs and curves, resumable state."""
