"""Run orchestration: run directories, result.json, trial store, executors."""
