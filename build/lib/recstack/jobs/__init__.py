"""Batch jobs as library functions: training (train → evaluate → register → promote) and the feedback loop."""
