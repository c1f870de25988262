"""The paper's Tables 1-9: published numbers (``paper/``), layouts and run keys, and rendering ours beside them.

    from mutdet_core.tables import cells_for_table, runs_for_tables, render_table
"""
from .._lazy import lazy_exports

_EXPORTS = {
    "LAYOUTS": ".layout", "TableLayout": ".layout", "cells_for_table": ".layout",
    "evaluations_for_tables": ".layout", "get_layout": ".layout", "pretrain_runs_for_tables": ".layout",
    "runs_for_tables": ".layout", "load_all_paper_tables": ".published", "load_paper_table": ".published",
    "paper_value": ".published", "compare_table": ".render", "render_small_scale_table5": ".render",
    "render_table": ".render", "evaluation_rows": ".results", "per_seed_results": ".results",
    "read_results_csv": ".results", "small_scale_results": ".results", "RESULT_COLUMNS": ".vocabulary",
    "Cell": ".vocabulary", "PretrainKey": ".vocabulary", "RunKey": ".vocabulary", "canonical_method": ".vocabulary",
    "method_config": ".vocabulary",
}

__all__ = ["LAYOUTS", "TableLayout", "cells_for_table", "evaluations_for_tables", "get_layout",
           "pretrain_runs_for_tables", "runs_for_tables", "load_all_paper_tables", "load_paper_table",
           "paper_value", "compare_table", "evaluation_rows", "read_results_csv", "render_small_scale_table5",
           "small_scale_results", "per_seed_results",
           "render_table", "RESULT_COLUMNS", "Cell", "PretrainKey", "RunKey", "canonical_method", "method_config"]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
