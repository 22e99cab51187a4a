"""qarm: the item side of QARM (Kuaishou, arXiv 2411.11739), usable without the benchmark.

    train positives ─ qarm.pairs ─► (trigger_idx, target_idx) pairs: U2I triggers + Swing I2I
    item texts/images ─ qarm.encoders ─► frozen features (N, D)
    pairs + encoder ─ qarm.alignment ─► aligned embeddings (N, d), trained weights
    aligned embeddings ─ qarm.quantize ─► RQ-Kmeans codes (N, L), VQ codes (N, k), RQ-VAE codes
    codes ─ qarm.diagnostics ─► collision rate, utilisation, neighbour preservation

Importing `qarm` loads nothing heavy; import the submodule you need.

Glossary (shapes at every boundary use these letters):
    N   items (rows item_idx 0..N-1; `item_id` is the raw source id)
    P   pairs (trigger_idx, target_idx)
    B   batch size
    T   history length (the latest positives, QARM: 50) or tokens per text
    D   frozen encoder width (384 for all-MiniLM-L6-v2, 1280 for EfficientNet-Lite0)
    d   aligned embedding dim (QARM: 64)
    L   code levels;  K  codebook size per level;  k  VQ neighbours (QARM: 25)
    tau InfoNCE temperature
"""

from __future__ import annotations
