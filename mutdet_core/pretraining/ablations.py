"""The paper's MutDet ablations as method configs (``build_pretrainer`` keys), for the workflow's ablation runs.

Table 7 (component ablation; AP50 on DIOR-R after 12 / 24 / 36 fine-tuning epochs). Columns: contrastive
loss, enhanced embedding, enhanced feature, encoder loss, siamese head. The paper's text extraction keeps
each row's number of ticks but not their columns; rows 1-5, 7 and 8 follow from the ticks and the
paragraph ("upon the original DETReg, we introduce contrastive alignment loss and the enhanced
embeddings ... then feed the enhanced feature to the decoder ... next apply additional contrastive
alignment loss to the encoder ... siamese head also contributes"). Row 6 (three ticks, 64.4 / 66.7 / 69.1)
cannot be placed: ``TABLE7_ROW6_CANDIDATES`` lists the three-switch sets with the siamese head that the
switches allow (the siamese head needs the enhanced feature); no default is claimed.

Table 1 (calibration mechanism; on top of contrastive loss + enhanced embedding + enhanced feature +
encoder loss): rows ``none``, ``encoder_feature_distillation``, ``decoder_cross_distillation``,
``siamese_head`` (= full MutDet).
"""
from __future__ import annotations

_OFF = dict(contrastive_loss=False, enhanced_embedding=False, enhanced_feature=False, encoder_loss=False,
            calibration="none")
_ON = dict(contrastive_loss=True, enhanced_embedding=True, enhanced_feature=True, encoder_loss=True,
           calibration="siamese_head")

TABLE7_ROWS: dict[str, dict] = {
    "row1_detreg": dict(_OFF),
    "row2_contrastive": dict(_OFF, contrastive_loss=True),
    "row3_enhanced_embedding": dict(_OFF, contrastive_loss=True, enhanced_embedding=True),
    "row4_enhanced_feature": dict(_ON, encoder_loss=False, calibration="none"),
    "row5_encoder_loss": dict(_ON, calibration="none"),
    "row7_siamese_head": dict(_ON, encoder_loss=False),
    "row8_mutdet": dict(_ON),
}

TABLE7_ROW6_CANDIDATES: dict[str, dict] = {
    "contrastive_enhanced_feature_siamese": dict(_ON, enhanced_embedding=False, encoder_loss=False),
    "enhanced_embedding_feature_siamese": dict(_ON, contrastive_loss=False, encoder_loss=False),
}

TABLE1_ROWS: dict[str, dict] = {
    name: dict(_ON, calibration=name)
    for name in ("none", "encoder_feature_distillation", "decoder_cross_distillation", "siamese_head")
}


def ablation_config(table: str, row: str, **overrides) -> dict:
    """The ``method_cfg`` of one ablation row, e.g. ``ablation_config('table7', 'row4_enhanced_feature')``."""
    rows = {"table7": {**TABLE7_ROWS, **{f"row6_{k}": v for k, v in TABLE7_ROW6_CANDIDATES.items()}},
            "table1": TABLE1_ROWS}
    if table not in rows or row not in rows[table]:
        known = {t: sorted(r) for t, r in rows.items()}
        raise ValueError(f"unknown ablation {table}/{row}; known rows: {known}")
    return {"method": "mutdet", **rows[table][row], **overrides}
