# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # NN. Chapter title
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/mslib-book/mslib/blob/main/book/NN_name.ipynb)
#
# One paragraph: what this chapter builds, from which equation of which paper, and what the
# reader will see at the end.

# %% tags=["colab-setup", "remove-cell"]
# Colab only: install mslib from the repository (torch and numpy are already there).
import importlib.util
import sys

if "google.colab" in sys.modules and importlib.util.find_spec("mslib") is None:
    %pip install -q "mslib @ git+https://github.com/mslib-book/mslib@main"

# %% tags=["parameters"]
PROFILE = "quick"  # "quick": CPU, synthetic data, about a minute; "paper": the paper's setting on a GPU
DATA = "synthetic"  # "synthetic" or a prepared dataset name (see the appendix "Getting the real datasets")
DEVICE = "auto"  # "auto" picks cuda, then mps, then cpu
SEED = 0

# %%
# Values derived from the parameters live here (papermill does not re-run the cell above).
from mslib.configs import check_profile
from mslib.utils import get_device, record, seed_everything

check_profile(PROFILE)
device = get_device(DEVICE)
seed_everything(SEED)
print(f"profile={PROFILE} data={DATA} device={device}")

# %% [markdown]
# ## The equation
#
# $$ \text{...} \tag{1} $$

# %%
# NBVAL_CHECK_OUTPUT
# deterministic prints only in a cell marked like this (shapes, parameter counts, equation checks);
# the marker line is hidden in the HTML book (tools/book.py), nbval and the tests still see it
print("shape check: ok")

# %%
# record() is quiet: the value goes into the notebook for tests/test_notebooks.py, the reader
# sees nothing (no "recorded ..." box). Figures: plt.show(), never MPLBACKEND=Agg.
record("example_metric", 0.0)

# %% [markdown]
# Widgets: `mslib.viz.interactive(fn, **controls)` is a live ipywidgets control in Jupyter or
# Colab; in the book's executions (MSLIB_STATIC_WIDGETS=1) it draws `fn` once at the starting
# values, so the HTML shows a picture, never a dead widget. Say so in the text above it.

# %% [markdown]
# ## Summary
#
# - What the component does, where it lives in `mslib`, what the paper reports.
#
# ## Exercises
#
# 1. Change a scale and predict what happens before running the cell.
#
# ```{dropdown} Solution
# ...
# ```
