"""Assigners of insplug registered in TASK_UTILS."""
