# %% [markdown]
# # A sweep: parameter importances, slices, parallel coordinates and the trials
#
# Reads an Optuna study written by `rlharness sweep` and draws its figures
# (`rlharness.analysis.sweep_figures`): parameter importances (with two or more completed
# trials), the objective against each parameter, parallel coordinates and the optimisation
# history; then every trial as a table.
#
# Inputs (environment variables):
# - `RLHARNESS_RESULTS`: the results root (default `results`);
# - `RLHARNESS_EXPERIMENT`: the swept experiment (default `baird_tdc_sweep`);
# - `RLHARNESS_STUDY`: the study name (default: the experiment's name);
# - `RLHARNESS_STORAGE`: the Optuna storage URL (default: the SQLite file
#   `<results>/<experiment>/optuna.db` that `rlharness sweep` writes);
# - `RLHARNESS_FIGURES`: where figures are saved (default `<results>/figures/sweep_analysis`).

# %%
import os
from pathlib import Path

from IPython.display import Image, display

from rlharness.analysis.inputs import require_study, study_storage
from rlharness.analysis.style import save_figures
from rlharness.analysis.sweep_figures import sweep_figures
from rlharness.analysis.trials import trials_table

results = Path(os.environ.get("RLHARNESS_RESULTS", "results"))
experiment = os.environ.get("RLHARNESS_EXPERIMENT", "baird_tdc_sweep")
study_name = os.environ.get("RLHARNESS_STUDY", experiment)
storage = study_storage(results, experiment, os.environ.get("RLHARNESS_STORAGE"))
figures_dir = Path(os.environ.get("RLHARNESS_FIGURES", results / "figures" / "sweep_analysis"))

# %% [markdown]
# If the next cell raises `ResultsError`, the study is not in the storage: the message names
# the `rlharness sweep ...` command that runs it.

# %%
study = require_study(storage, study_name, experiment, results)
trials = trials_table(study)
print(f"study {study_name}: {len(trials)} trials")

# %% [markdown]
# ## Figures

# %%
saved = save_figures(sweep_figures(storage, study_name), figures_dir)
for files in saved.values():
    display(Image(filename=str(files[0])))

# %% [markdown]
# ## Trials

# %%
display(trials)
