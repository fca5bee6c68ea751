# %% [markdown]
# # Deep RL and the deadly triad: the study's hypotheses, tables and figures
#
# van Hasselt et al. (2018), "Deep Reinforcement Learning and the Deadly Triad", at laptop
# scale: for the latest run of a DQN grid over the environment, the bootstrap target, the
# n-step return, the network width and the priority exponent, this notebook tests the
# paper's six hypotheses, tabulates soft divergence per knob value and per cell, and draws
# three figures. Every rate is a mean over cells (grid points) with a 95% stratified
# bootstrap interval that resamples seeds within each cell; no interval pools seeds of
# different cells. All logic lives in `rlharness.analysis` (`hypotheses`, `cells`, `study`,
# `study_figures`); `rlharness hypotheses` prints the same verdicts.
#
# Inputs (environment variables):
# - `RLHARNESS_RESULTS`: the results root (default `results`);
# - `RLHARNESS_EXPERIMENT`: the experiment (default `deadly_triad_minatar`);
# - `RLHARNESS_FIGURES`: where figures are saved as PNG (200 dpi) and SVG
#   (default `<results>/figures/deadly_triad_study`).

# %%
import os
from pathlib import Path

from IPython.display import Image, display

from rlharness.analysis.inputs import open_results
from rlharness.analysis.study import open_study, study_tables
from rlharness.analysis.study_figures import PAPER_DPI, study_figures
from rlharness.analysis.style import save_figures

results = Path(os.environ.get("RLHARNESS_RESULTS", "results"))
experiment = os.environ.get("RLHARNESS_EXPERIMENT", "deadly_triad_minatar")
figures_dir = Path(os.environ.get("RLHARNESS_FIGURES", results / "figures" / "deadly_triad_study"))

# %% [markdown]
# If the next cell raises `ResultsError`, there is no run of the experiment under the
# results root: the message names the `rlharness run ...` command that produces one.

# %%
study = open_study(open_results(results, [experiment]), experiment)
tables = study_tables(study)
print(f"latest run of {experiment}: {study.run}; cells are combinations of {study.knobs}")

# %% [markdown]
# ## The hypotheses
#
# One row per test. H1's statistic is the hard-divergence rate averaged over cells; the
# others are matched-cell differences (treatment minus control, averaged over every
# combination of the other knobs) of the soft-divergence rate and, for each primary
# contrast, of log10 peak max |Q| and of the calibrated over-estimation (the `metric`
# column). The verdict rule is in the docstring of `rlharness.analysis.hypotheses`: a
# verdict needs 5 seeds per cell; an interval wholly on the hypothesised side of 0 supports
# it; wholly on the other side, or (soft divergence) within +-0.10, does not; a reduction
# asked of a control that diverges less than 10% of the time is a floor effect, and that or
# anything else is inconclusive at this scale. The paper's numbers are given only where
# certain (H3: 0.33 vs 0.61).

# %%
tables["hypotheses"]

# %% [markdown]
# ## Soft divergence per knob value
#
# For each value of each knob: the fraction of seeds diverged averaged over the cells with
# that value, with its 95% stratified bootstrap interval.

# %%
tables["knob_rates"]

# %% [markdown]
# ## Every cell
#
# Seeds, the fractions of seeds that soft- and hard-diverged, the median final return and
# the mean final over-estimation (greedy Q minus the discounted return obtained).

# %%
tables["cells"]

# %% [markdown]
# ## Figures
#
# Soft divergence per bootstrap target and n (the paper's Figure 2 layout), each member's
# peak max |Q| against its final return, and over-estimation against n; one panel per
# environment, each with a caption saying what its points and bars are.

# %%
saved = save_figures(study_figures(study), figures_dir, dpi=PAPER_DPI)
for files in saved.values():
    display(Image(filename=str(files[0])))
