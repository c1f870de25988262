"""ARS-DETR detector family: backbone, transformer, heads, matcher, criterion, denoising, angle coders."""
