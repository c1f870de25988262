"""The paper's Tables 1-9: published numbers (``paper/``), layouts and run keys, and rendering ours beside them.

    from mutdet_core.tables import cells_for_table, runs_for_tables, render_table
"""
from .layout import LAYOUTS, TableLayout, cells_for_table, evaluations_for_tables, get_layout, \
    pretrain_runs_for_tables, runs_for_tables
from .published import load_all_paper_tables, load_paper_table, paper_value
from .render import compare_table, render_small_scale_table5, render_table
from .results import evaluation_rows, per_seed_results, read_results_csv, small_scale_results
from .vocabulary import RESULT_COLUMNS, Cell, PretrainKey, RunKey, canonical_method, method_config

__all__ = ["LAYOUTS", "TableLayout", "cells_for_table", "evaluations_for_tables", "get_layout",
           "pretrain_runs_for_tables", "runs_for_tables", "load_all_paper_tables", "load_paper_table",
           "paper_value", "compare_table", "evaluation_rows", "read_results_csv", "render_small_scale_table5",
           "small_scale_results", "per_seed_results",
           "render_table", "RESULT_COLUMNS", "Cell", "PretrainKey", "RunKey", "canonical_method", "method_config"]
