# %% [markdown]
# # The deadly triad: divergence heatmaps and the triad cube
#
# Which combinations of the three ingredients — function approximation, bootstrapping,
# off-policy training — diverge (Sutton & Barto, 2nd ed., section 11.3)? For the latest run
# of a grid experiment this notebook draws the triad cube (when the grid is one) and, for
# every pair of grid fields, a heatmap of the fraction of seeds that diverged, annotated
# `k/n`. All logic lives in `rlharness.analysis.divergence`.
#
# Inputs (environment variables):
# - `RLHARNESS_RESULTS`: the results root (default `results`);
# - `RLHARNESS_EXPERIMENT`: a grid experiment (default `triad_cube_baird`);
# - `RLHARNESS_FIGURES`: where figures are saved as PNG and SVG
#   (default `<results>/figures/triad_overview`).

# %%
import os
from pathlib import Path

from IPython.display import Image, display

from rlharness.analysis.divergence import divergence_by_knob, triad_overview
from rlharness.analysis.inputs import require_run
from rlharness.analysis.style import save_figures

results = Path(os.environ.get("RLHARNESS_RESULTS", "results"))
experiment = os.environ.get("RLHARNESS_EXPERIMENT", "triad_cube_baird")
figures_dir = Path(os.environ.get("RLHARNESS_FIGURES", results / "figures" / "triad_overview"))

# %% [markdown]
# If the next cell raises `ResultsError`, there is no run of the experiment under the
# results root: the message names the `rlharness run ...` command that produces one.

# %%
catalog, run = require_run(results, experiment)
print(f"latest run of {experiment}: {run}")

# %% [markdown]
# ## Divergence by knob value
# Seeds diverged for each value of each grid field: the fraction averaged over the grid
# points with that value, with a 95% stratified bootstrap interval (seeds resampled within
# each grid point).

# %%
divergence_by_knob(catalog, run)

# %% [markdown]
# ## The triad cube and the pairwise heatmaps

# %%
saved = save_figures(triad_overview(catalog, run), figures_dir)
for name, files in saved.items():
    print(name, "->", ", ".join(str(path) for path in files))
    display(Image(filename=str(files[0])))
