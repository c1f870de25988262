"""Rule `predict`: one checkpoint of a fine-tuning run on every test tile, merged to full images (Task1 files
+ zip). The run's last checkpoint is the input (the run is finished); the epoch wildcard picks the one read."""
from pathlib import Path

from mutdet_core.logs import stage
from mutdet_core.runs import predict_run

sm = snakemake  # noqa: F821 - injected by Snakemake
checkpoint = Path(sm.input.last_checkpoint).with_name(f"epoch_{sm.params.epoch}.pth")
with stage(f"predict {checkpoint}", sm.log[0]):
    predict_run(checkpoint, sm.input.tiles, sm.output[0], data_cfg=sm.params.data, score_thr=sm.params.score_thr,
                threads=sm.threads)
