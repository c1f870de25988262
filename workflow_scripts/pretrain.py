"""Rule `pretrain`: one pre-training run on a set's pseudo-labels, in the output's folder; one DDP process
per GPU of the job (resources gpu)."""
from pathlib import Path

from mutdet_core.engine.launch import launch
from mutdet_core.logs import stage
from mutdet_core.runs import pretrain_run

# overwrite: Snakemake reruns this job because an input or a setting changed, so a run folder of other
# inputs is stale: it is replaced (with a warning in the log); a run of the same identity still resumes.
# Guarded: the DDP processes are spawned and re-import this file as __mp_main__, where nothing may run.
if __name__ == "__main__":
    sm = snakemake  # noqa: F821 - injected by Snakemake
    run_dir = Path(sm.output[0]).parent
    with stage(f"pretrain {run_dir}", sm.log[0]):
        launch(pretrain_run, sm.resources.get("gpu", 1), list(sm.input.tiles), list(sm.input.pseudo_labels),
               sm.input.clusters, run_dir, log_file=sm.log[0], threads=sm.threads, method_cfg=sm.params.method,
               detector_cfg=sm.params.detector, train_cfg=sm.params.train, data_cfg=sm.params.data,
               overwrite=True)
