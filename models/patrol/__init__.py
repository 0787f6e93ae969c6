"""Patrol and evaluation: patrol points and tasks, check-ins, video patrols, callbacks, scores and reports."""
