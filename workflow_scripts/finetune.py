"""Rule `finetune`: one fine-tuning run (dataset, model, init, fraction, schedule, seed) in the output's
folder; one DDP process per GPU of the job (resources gpu)."""
from pathlib import Path

from mutdet_core.engine.launch import launch
from mutdet_core.logs import stage
from mutdet_core.runs import finetune_run

# overwrite: as in pretrain.py, a run folder of other inputs or settings is stale and is replaced.
# Guarded: the DDP processes are spawned and re-import this file as __mp_main__, where nothing may run.
if __name__ == "__main__":
    sm = snakemake  # noqa: F821 - injected by Snakemake
    run_dir = Path(sm.output[0]).parent
    with stage(f"finetune {run_dir}", sm.log[0]):
        launch(finetune_run, sm.resources.get("gpu", 1), sm.input.train, run_dir, log_file=sm.log[0],
               threads=sm.threads, detector_cfg=sm.params.detector, train_cfg=sm.params.train, data_cfg=sm.params.data,
               fraction=float(sm.wildcards.fraction), fraction_seed=sm.params.fraction_seed,
               init_checkpoint=sm.input.init[0] if sm.input.init else None, overwrite=True)
