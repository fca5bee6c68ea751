# %% [markdown]
# # Learning curves and value-magnitude curves with confidence bands
#
# For the latest run of an experiment: the learning curve (greedy return for DQN, sqrt(VE)
# for linear learners) and the largest value estimate (max |Q| over probe states, or
# max |v| over states, on a log scale with the absolute soft-divergence bound dashed where
# the runs have one: R_max / (1 - gamma), or the spec's; a linear learner on a zero-reward
# task is judged relative to its initial error instead, so has none), each as
# the IQM over seeds with a 95% percentile-bootstrap band; then a comparison of the groups'
# final values with stratified-bootstrap intervals and divergence rates (`compare`).
#
# Inputs (environment variables):
# - `RLHARNESS_RESULTS`: the results root (default `results`);
# - `RLHARNESS_EXPERIMENT`: the experiment (default `deadly_triad_dqn`);
# - `RLHARNESS_BY`: comma-separated outcome columns to pool seeds by, e.g.
#   `agent.bootstrap_target` (default: one curve per grid point, or the first grid field
#   when the grid has more than 8 points);
# - `RLHARNESS_FIGURES`: where figures are saved (default `<results>/figures/learning_curves`).

# %%
import os
from pathlib import Path

from IPython.display import Image, display

from rlharness.analysis.compare import compare
from rlharness.analysis.curves import (
    catalog_curves,
    curve_columns,
    default_grouping,
    plot_curves,
)
from rlharness.analysis.inputs import require_run
from rlharness.analysis.style import save_figures

results = Path(os.environ.get("RLHARNESS_RESULTS", "results"))
experiment = os.environ.get("RLHARNESS_EXPERIMENT", "deadly_triad_dqn")
by_text = os.environ.get("RLHARNESS_BY", "")
figures_dir = Path(os.environ.get("RLHARNESS_FIGURES", results / "figures" / "learning_curves"))

# %% [markdown]
# If the next cell raises `ResultsError`, there is no run of the experiment under the
# results root: the message names the `rlharness run ...` command that produces one.

# %%
catalog, run = require_run(results, experiment)
learning, magnitude = curve_columns(catalog, run)
by = [name.strip() for name in by_text.split(",") if name.strip()] or default_grouping(catalog, run)
print(f"latest run of {experiment}: {run}; curves of {learning} and {magnitude}; groups: {by}")

# %% [markdown]
# ## Curves

# %%
curves = {column: catalog_curves(catalog, [run], column, by=by) for column in (learning, magnitude)}
saved = save_figures({column: plot_curves(c) for column, c in curves.items()}, figures_dir)
for files in saved.values():
    display(Image(filename=str(files[0])))

# %% [markdown]
# The bands as a table (last logged step of each group).

# %%
curves[magnitude].bands.groupby("group", sort=False).tail(1)

# %% [markdown]
# ## Comparison of final values
# IQM, mean and median with 95% stratified-bootstrap intervals, and the fraction of seeds
# that diverged with its Wilson interval.

# %%
comparisons = {
    column: compare(catalog, [run], f"final_{column}", by=by) for column in (learning, magnitude)
}
comparisons[magnitude].table()

# %%
comparisons[learning].table()
