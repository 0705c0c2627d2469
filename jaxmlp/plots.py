"""Placeholder plots."""


def plot_run(run_dir):
    return []
