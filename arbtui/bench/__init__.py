"""``arbtui bench``: the performance figures, measured on this machine, each with the command that
reproduces it. One module per figure; each exposes ``run(quick: bool) -> Figure``."""
