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
