"""The detector config's known keys, torch-free: the config checks at DAG time (``runs.plan``) read them
without importing the detector. ``detector.py`` (``build_detector``, the module docstring) is their user.
"""

CONFIG_KEYS = {
    "variant", "num_classes", "backbone", "d_model", "n_heads", "n_levels", "n_points", "ffn_dim", "dropout",
    "num_encoder_layers", "num_decoder_layers", "num_queries", "num_dn_queries", "dn_label_noise", "dn_box_noise",
    "dn_angle_noise", "csl_sigma", "loss_weights", "released_l1_cost_quirk", "num_select", "denoising",
    "rotated_attention", "aspect_ratio_weighting", "released_attention_init", "mask_invalid_proposals",
}
