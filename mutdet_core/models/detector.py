"""ARS-DETR family detector (reference A.1-A.7) and its ``build_detector`` factory.

``build_detector(cfg)`` returns ``(model, criterion, postprocessor)`` (the DETR ``build`` pattern). The
variants of Table 9 differ only in the switches below; everything else is shared:

| variant         | angle coder          | DN | rotated attn | ARW/ARM | decoder style | box loss   |
|-----------------|----------------------|----|--------------|---------|---------------|------------|
| ``ars_detr``      | AR-CSL (normalised)  | on | on           | on      | dino          | giou_hbb   |
| ``arcsl_ddetr``   | AR-CSL (normalised)  | -  | -            | -       | deformable    | giou_hbb   |
| ``csl_ddetr``     | Gaussian CSL, sigma 6| -  | -            | -       | deformable    | giou_hbb   |
| ``rotated_ddetr`` | 5-param regression   | -  | -            | -       | deformable    | rotated_iou|

Config dict (every key optional; defaults = the paper / released ResNet-50 DOTA model):
    variant: 'ars_detr' | 'arcsl_ddetr' | 'csl_ddetr' | 'rotated_ddetr'       ('ars_detr')
    num_classes: int                                                         (15)
    backbone: {name: 'resnet50'|'swin_t'|'tiny', weights: path|None, frozen_stages: int, freeze_all: bool,
               width: int (tiny only)}                                       (resnet50, None, 1, False)
    d_model 256, n_heads 8, n_levels 4, n_points 4, ffn_dim 1024, dropout 0.1,
    num_encoder_layers 6, num_decoder_layers 6, num_queries 300 (= two-stage top-k),
    num_dn_queries 100, dn_label_noise 0.5, dn_box_noise 0.4, dn_angle_noise 0.02,
    csl_sigma 6.0 (csl_ddetr), loss_weights {loss_cls 2, loss_bbox 2, loss_iou 5, loss_angle 2},
    released_l1_cost_quirk False (matcher), num_select 300 (postprocess top-k),
    released_attention_init False: True leaves the rotated MSDA's ``sampling_offsets`` / ``attention_weights``
        weights Xavier-initialised as the release does (docs/detector_decisions.md decision 19); False gives
        every MSDA mmcv's zero init,
    mask_invalid_proposals True: padded / out-of-range proposal tokens get -inf before the two-stage top-K
        (decision 7); False ranks them by their logit as the release does,
    overrides of the variant table: denoising, rotated_attention, aspect_ratio_weighting (bool).

Model input: images (B, 3, H, W) normalised by the data pipeline, optional padding_mask (B, H, W) bool
(True on padding), optional targets (training, for DN). Output: the dict of docs/DETECTOR_CONTRACT.md.
All boxes are normalised to the padded input (H, W).

Pre-training methods reuse the pieces: ``encode`` (backbone, neck, encoder) and ``detect_from_memory``
(two-stage selection, decoder, heads), which accepts another memory (MutDet's enhanced memory), other
features for the encoder-stage head, and other top-K scores, with the same DN queries (``prepare_denoising``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .angle_coder import build_angle_coder
from .backbone import build_backbone
from .criterion import build_criterion
from .decoder import DeformableDecoder, build_decoder
from .deformable_attention import MultiScaleDeformableAttention
from .denoising import DenoisingGenerator, split_dn_outputs
from .detector_config import CONFIG_KEYS
from .encoder import DeformableEncoder, build_encoder
from .heads import PredictionHeads
from .neck import build_neck
from .position_encoding import PositionEmbeddingSine, build_position_encoding
from .postprocess import PostProcess
from .rotated_deformable_attention import RotatedMultiScaleDeformableAttention
from .two_stage import TwoStageProposals, gen_encoder_output_proposals, select_topk

PRED_KEYS = ("pred_logits", "pred_boxes", "pred_angle_logits", "pred_angles")

VARIANTS = {
    "ars_detr": dict(angle_coder="arcsl", denoising=True, rotated_attention=True, aspect_ratio_weighting=True,
                     box_loss="giou_hbb"),
    "arcsl_ddetr": dict(angle_coder="arcsl", denoising=False, rotated_attention=False,
                        aspect_ratio_weighting=False, box_loss="giou_hbb"),
    "csl_ddetr": dict(angle_coder="csl", denoising=False, rotated_attention=False, aspect_ratio_weighting=False,
                      box_loss="giou_hbb"),
    "rotated_ddetr": dict(angle_coder="regression", denoising=False, rotated_attention=False,
                          aspect_ratio_weighting=False, box_loss="rotated_iou"),
}


class ARSDETR(nn.Module):
    """Two-stage deformable DETR for oriented boxes (ARS-DETR and its Table 9 ablations).

    Submodules (their names are the checkpoint prefixes, see docs/checkpoints.md): ``backbone``, ``neck``,
    ``position_encoding`` (no parameters), ``encoder`` (with ``level_embed``), ``two_stage``, ``decoder``,
    ``heads``, ``angle_coder`` (no parameters), ``query_embedding`` (dino style) and ``denoising`` (DN).
    """

    def __init__(self, backbone: nn.Module, neck: nn.Module, position_encoding: PositionEmbeddingSine,
                 encoder: DeformableEncoder, two_stage: TwoStageProposals, decoder: DeformableDecoder,
                 heads: PredictionHeads, angle_coder: nn.Module, num_queries: int = 300,
                 denoising: DenoisingGenerator | None = None, released_attention_init: bool = False,
                 mask_invalid_proposals: bool = True):
        super().__init__()
        self.backbone = backbone
        self.neck = neck
        self.position_encoding = position_encoding
        self.encoder = encoder
        self.two_stage = two_stage
        self.decoder = decoder
        self.heads = heads
        self.angle_coder = angle_coder
        self.num_queries = num_queries
        self.denoising = denoising
        self.released_attention_init = released_attention_init
        self.mask_invalid_proposals = mask_invalid_proposals
        d_model = encoder.level_embed.shape[1]
        if decoder.style == "dino":
            # Learned content queries, the same for every image (DN variant, A.1 "Queries").
            self.query_embedding = nn.Embedding(num_queries, d_model)
        self._reset_transformer_parameters()

    def _reset_transformer_parameters(self) -> None:
        """Released init: Xavier-uniform for every >1-d transformer parameter, then each deformable
        attention's own init, the level embedding and query embedding normal(0, 1).

        The release re-initialises only mmcv's plain MSDA after the Xavier pass, so the rotated attention's
        ``sampling_offsets.weight`` and ``attention_weights.weight`` stay Xavier (its biases keep the mmcv
        init of its constructor): ``released_attention_init=True``. By default (False) every (rotated) MSDA
        gets the zero-weight mmcv init (docs/detector_decisions.md decision 19, docs/fidelity.md).
        """
        for module in (self.encoder, self.two_stage, self.decoder):
            for p in module.parameters():
                if p.dim() > 1:
                    nn.init.xavier_uniform_(p)
            for m in module.modules():
                if isinstance(m, MultiScaleDeformableAttention):
                    if self.released_attention_init and isinstance(m, RotatedMultiScaleDeformableAttention):
                        continue  # constructor init, then the Xavier pass: the released state
                    m.reset_parameters()
        nn.init.normal_(self.encoder.level_embed)
        if hasattr(self, "query_embedding"):
            nn.init.normal_(self.query_embedding.weight)

    # ------------------------------------------------------------------------------------------ encoder
    def encode(self, images: Tensor, padding_mask: Tensor | None = None) -> dict:
        """Backbone, neck and encoder.

        Args:
            images: (B, 3, H, W); padding_mask: (B, H, W) bool, True on padding (None: no padding).
        Returns:
            dict ``memory`` (B, S, D), ``memory_padding_mask`` (B, S), ``spatial_shapes`` (n_levels, 2) long,
            ``level_start_index`` (n_levels,), ``valid_ratios`` (B, n_levels, 2) (w, h), ``image_size`` (H, W).
        """
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be (B, 3, H, W), got {tuple(images.shape)}")
        batch, _, height, width = images.shape
        if padding_mask is None:
            padding_mask = torch.zeros(batch, height, width, dtype=torch.bool, device=images.device)
        elif padding_mask.shape != (batch, height, width):
            raise ValueError(f"padding_mask must be {(batch, height, width)}, got {tuple(padding_mask.shape)}")
        maps = self.neck(self.backbone(images))
        srcs, masks, poses, shapes = [], [], [], []
        for feature in maps:
            mask = F.interpolate(padding_mask[None].float(), size=feature.shape[-2:])[0].bool()
            srcs.append(feature.flatten(2).transpose(1, 2))
            masks.append(mask)
            poses.append(self.position_encoding(mask).to(feature.dtype).flatten(2).transpose(1, 2))
            shapes.append(feature.shape[-2:])
        spatial_shapes = torch.as_tensor(shapes, dtype=torch.long, device=images.device)
        sizes = spatial_shapes.prod(1)
        level_start_index = torch.cat([sizes.new_zeros(1), sizes.cumsum(0)[:-1]])
        level_index = torch.repeat_interleave(torch.arange(len(maps), device=images.device), sizes)
        memory_padding_mask = torch.cat([m.flatten(1) for m in masks], 1)
        valid_ratios = torch.stack([torch.stack([(~m[:, 0, :]).sum(1) / m.shape[2], (~m[:, :, 0]).sum(1) / m.shape[1]],
                                                -1) for m in masks], 1).to(images.dtype)
        memory = self.encoder(torch.cat(srcs, 1), torch.cat(poses, 1), level_index, spatial_shapes,
                              memory_padding_mask)
        return {"memory": memory, "memory_padding_mask": memory_padding_mask, "spatial_shapes": spatial_shapes,
                "level_start_index": level_start_index, "valid_ratios": valid_ratios, "image_size": (height, width)}

    def prepare_denoising(self, targets: list[dict] | None, num_matching_queries: int) -> dict | None:
        """DN queries for this batch (training with targets and a DN variant only), else None."""
        if self.denoising is None or targets is None or not self.training:
            return None
        return self.denoising(targets, num_matching_queries)

    # ------------------------------------------------------------------------------------------ decoder
    def detect_from_memory(self, enc: dict, dn: dict | None = None, memory: Tensor | None = None,
                           proposal_features: Tensor | None = None, selection_scores: Tensor | None = None) -> dict:
        """Two-stage selection, decoder and heads on an encoded batch.

        Args:
            enc: the dict of ``encode``.
            dn: DN queries from ``prepare_denoising`` (or None).
            memory: (B, S, D) the decoder's values; default ``enc['memory']``.
            proposal_features: (B, S, D) input of the encoder-stage head; default
                ``LayerNorm(Linear(memory))`` (``two_stage``), as released.
            selection_scores: (B, S) top-K ranking; default the encoder-stage class-0 logit.
        Returns:
            the output dict of docs/DETECTOR_CONTRACT.md.
        """
        memory = enc["memory"] if memory is None else memory
        mask, shapes = enc["memory_padding_mask"], enc["spatial_shapes"]
        if proposal_features is None:
            output_memory, proposals, valid = self.two_stage(memory, mask, shapes)
        else:
            proposals, valid = gen_encoder_output_proposals(mask, shapes, self.two_stage.box_dim, memory.dtype)
            output_memory = proposal_features
        num_stages = self.decoder.num_layers
        enc_outputs, enc_box_unact = self.heads(num_stages, output_memory, proposals, self.angle_coder)
        scores = enc_outputs["pred_logits"][..., 0] if selection_scores is None else selection_scores
        # released: no masking, an invalid token competes with the logit of its zeroed memory (decision 7)
        topk = select_topk(scores, valid if self.mask_invalid_proposals else torch.ones_like(valid),
                           self.num_queries)
        enc_outputs["topk_indices"] = topk
        num_queries = topk.shape[1]

        reference_unact = torch.gather(enc_box_unact, 1, topk[..., None].expand(-1, -1, enc_box_unact.shape[-1]))
        reference_unact = reference_unact.detach()
        topk_angle_logits = torch.gather(enc_outputs["pred_angle_logits"], 1,
                                         topk[..., None].expand(-1, -1, enc_outputs["pred_angle_logits"].shape[-1]))
        reference_angles = self.angle_coder.decode(topk_angle_logits.detach())
        if self.decoder.style == "dino":
            tgt = self.query_embedding.weight[None, :num_queries].expand(memory.shape[0], -1, -1)
            query_pos = None
        else:
            query_pos, tgt = self.two_stage.make_queries(reference_unact)
        reference = reference_unact.sigmoid()
        attn_mask = None
        if dn is not None:
            tgt = torch.cat([dn["query_content"], tgt], 1)
            dn_reference = dn["reference_boxes_unact"].sigmoid()
            if reference.shape[-1] == 5:  # 5-d references: the DN angle in sigmoid space
                dn_reference = torch.cat([dn_reference, dn["reference_angles"][..., None] / torch.pi + 0.5], -1)
            reference = torch.cat([dn_reference, reference], 1)
            reference_angles = torch.cat([dn["reference_angles"], reference_angles], 1)
            attn_mask = dn["attn_mask"]
        height, width = enc["image_size"]
        hs, references = self.decoder(tgt, reference, memory, shapes, mask, self.heads, self.angle_coder,
                                      query_pos=query_pos, reference_angles=reference_angles,
                                      self_attn_mask=attn_mask, aspect_ratio=width / height)
        if self.training and self.denoising is not None and dn is None:
            # Keep the DN label embedding in the graph when a batch has no targets (DDP needs every
            # parameter to receive a gradient; the released head does the same).
            hs = hs + 0.0 * self.denoising.label_embedding.weight.sum()

        layers = [self.heads.decoder_stage(lid, hs[lid], references[lid], self.angle_coder)
                  for lid in range(num_stages)]
        stacked = {k: torch.stack([layer[k] for layer in layers]) for k in PRED_KEYS}
        stacked["hs"] = hs
        dn_outputs = None
        if dn is not None:
            stacked, dn_part = split_dn_outputs(stacked, dn["dn_meta"]["pad_size"], dim=2)
            dn_outputs = dict(dn_part, dn_meta=dn["dn_meta"])
        out = {k: stacked[k][-1] for k in PRED_KEYS}
        out["aux_outputs"] = [{k: stacked[k][i] for k in PRED_KEYS} for i in range(num_stages - 1)]
        out["enc_outputs"] = enc_outputs
        out["dn_outputs"] = dn_outputs
        out["hs"] = stacked["hs"]
        out.update({k: enc[k] for k in ("spatial_shapes", "level_start_index", "valid_ratios")})
        out["memory"] = memory
        out["memory_padding_mask"] = mask
        return out

    def forward(self, images: Tensor, padding_mask: Tensor | None = None, targets: list[dict] | None = None) -> dict:
        """images (B, 3, H, W), padding_mask (B, H, W) bool or None, targets (training, DN) -> output dict.

        Output (docs/DETECTOR_CONTRACT.md): ``pred_logits`` (B, Q, C), ``pred_boxes`` (B, Q, 4) cxcywh in
        [0, 1], ``pred_angle_logits`` (B, Q, A), ``pred_angles`` (B, Q) le90 radians, ``aux_outputs``
        (L - 1 dicts), ``enc_outputs`` (all S tokens + ``topk_indices`` (B, Q)), ``dn_outputs`` (None or
        (L, B, P, ...) tensors + ``dn_meta``, plus ``hs`` (L, B, P, D)), ``hs`` (L, B, Q, D), ``memory``,
        ``memory_padding_mask``, ``spatial_shapes``, ``level_start_index``, ``valid_ratios``.
        Q = min(num_queries, S).
        """
        enc = self.encode(images, padding_mask)
        num_matching = min(self.num_queries, enc["memory"].shape[1])
        return self.detect_from_memory(enc, self.prepare_denoising(targets, num_matching))


def build_detector(cfg: dict | None = None) -> tuple[ARSDETR, nn.Module, PostProcess]:
    """(model, criterion, postprocessor) for the config dict documented in the module docstring."""
    cfg = dict(cfg or {})
    unknown = sorted(set(cfg) - CONFIG_KEYS)
    if unknown:
        raise ValueError(f"unknown detector config keys {unknown}; known keys: {sorted(CONFIG_KEYS)}")
    variant = cfg.get("variant", "ars_detr")
    if variant not in VARIANTS:
        raise ValueError(f"unknown detector variant {variant!r}; expected one of {sorted(VARIANTS)}")
    switches = dict(VARIANTS[variant])
    for key in ("denoising", "rotated_attention", "aspect_ratio_weighting"):
        if key in cfg:
            switches[key] = bool(cfg[key])
    num_classes = int(cfg.get("num_classes", 15))
    d_model = int(cfg.get("d_model", 256))
    n_heads, n_levels, n_points = int(cfg.get("n_heads", 8)), int(cfg.get("n_levels", 4)), int(cfg.get("n_points", 4))
    ffn_dim, dropout = int(cfg.get("ffn_dim", 1024)), float(cfg.get("dropout", 0.1))
    num_dec = int(cfg.get("num_decoder_layers", 6))
    num_queries = int(cfg.get("num_queries", 300))
    if num_dec < 1 or num_queries < 1:
        raise ValueError(f"need num_decoder_layers >= 1 and num_queries >= 1, got {num_dec}, {num_queries}")

    coder_kwargs = {"sigma": float(cfg.get("csl_sigma", 6.0))} if switches["angle_coder"] == "csl" else {}
    angle_coder = build_angle_coder(switches["angle_coder"], **coder_kwargs)
    box_dim = 5 if switches["angle_coder"] == "regression" else 4
    style = "dino" if switches["denoising"] else "deformable"

    backbone = build_backbone(cfg.get("backbone", {"name": "resnet50", "frozen_stages": 1}))
    neck = build_neck(backbone.num_channels, d_model, n_levels)
    encoder = build_encoder(d_model, int(cfg.get("num_encoder_layers", 6)), ffn_dim, dropout, n_levels, n_heads,
                            n_points)
    decoder = build_decoder(d_model, num_dec, ffn_dim, dropout, n_levels, n_heads, n_points, style,
                            switches["rotated_attention"])
    two_stage = TwoStageProposals(d_model, box_dim, queries_from_proposals=(style == "deformable"))
    heads = PredictionHeads(d_model, num_classes, num_dec + 1, box_dim,
                            num_angle_bins=angle_coder.num_bins if box_dim == 4 else 0)
    denoising = None
    if switches["denoising"]:
        denoising = DenoisingGenerator(num_classes, d_model, float(cfg.get("dn_label_noise", 0.5)),
                                       float(cfg.get("dn_box_noise", 0.4)), float(cfg.get("dn_angle_noise", 0.02)),
                                       int(cfg.get("num_dn_queries", 100)))
    model = ARSDETR(backbone, neck, build_position_encoding(d_model), encoder, two_stage, decoder, heads,
                    angle_coder, num_queries, denoising,
                    released_attention_init=bool(cfg.get("released_attention_init", False)),
                    mask_invalid_proposals=bool(cfg.get("mask_invalid_proposals", True)))
    criterion = build_criterion(num_classes, angle_coder, switches["aspect_ratio_weighting"], switches["box_loss"],
                                cfg.get("loss_weights"), num_decoder_layers=num_dec,
                                released_l1_cost_quirk=bool(cfg.get("released_l1_cost_quirk", False)))
    return model, criterion, PostProcess(int(cfg.get("num_select", 300)))
