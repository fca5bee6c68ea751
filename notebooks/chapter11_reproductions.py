# %% [markdown]
# # Sutton & Barto, chapter 11, reproduced
#
# The book's statements about off-policy divergence (Sutton & Barto, *Reinforcement
# Learning: An Introduction*, 2nd ed., chapter 11) beside what the latest run of each
# chapter-11 experiment measured, and whether the two agree; then each experiment's figure
# redrawn from the run. Only the experiments present are shown. The statements and checks
# live in `rlharness.analysis.chapter11`, the figures in
# `rlharness.analysis.chapter11_figures`.
#
# Inputs (environment variables):
# - `RLHARNESS_RESULTS`: the results root (default `results`);
# - `RLHARNESS_FIGURES`: where figures are saved
#   (default `<results>/figures/chapter11_reproductions`).

# %%
import os
from pathlib import Path

import pandas as pd
from IPython.display import Image, display

from rlharness.analysis.chapter11 import CHECKS, reproductions
from rlharness.analysis.chapter11_figures import FIGURE_NAMES, reproduction_figures
from rlharness.analysis.inputs import open_results
from rlharness.analysis.style import save_figures

results = Path(os.environ.get("RLHARNESS_RESULTS", "results"))
figures_dir = Path(
    os.environ.get("RLHARNESS_FIGURES", results / "figures" / "chapter11_reproductions")
)
pd.set_option("display.max_colwidth", None)

# %% [markdown]
# If the next cell raises `ResultsError`, no chapter-11 experiment has a run under the
# results root: the message lists the `rlharness run ...` commands that produce them.
#
# Figure 11.6 (expected emphatic TD, the emphasis starting at 0) is checked on its whole
# trajectory, not only its end: sqrt(VE) rises from 5.32 to a peak of 10.66 at sweep 26,
# the weights reverse (w8 is highest at sweep 22, negative from 52 and lowest at 102;
# w1..w6 are highest at 48; w7 falls from 10 to its lowest at 71), and sqrt(VE) falls below
# 1 at sweep 99 and to about 5e-13 by sweep 1000. These sweeps are read at the logged
# steps, so that run must be logged at least every 5 sweeps
# (`experiments/baird_emphatic_td.yaml` logs every 2).

# %%
catalog = open_results(results, list(CHECKS))
table = reproductions(catalog)
print(f"{int(table['agrees'].sum())} of {len(table)} statements agree")
display(table[["experiment", "source", "book", "measured", "agrees"]])

# %% [markdown]
# ## Side by side: each statement and its figure

# %%
saved = save_figures(reproduction_figures(catalog), figures_dir)
for experiment, rows in table.groupby("experiment", sort=False):
    display(rows[["source", "book", "measured", "agrees"]])
    display(Image(filename=str(saved[FIGURE_NAMES[experiment]][0])))
