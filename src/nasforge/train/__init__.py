"""Training from scratch: the trainer, recipes, schedules, mixed precision."""
