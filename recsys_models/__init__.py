"""TorchRec rankers for QARM-Bench: feature specs, KeyedJaggedTensor builders, DLRM, DIN, SIM.

Uses torch and torchrec only; never imports `qarm`, `benchmark` or mlflow. Importing this package
loads nothing; import the modules you need:

- `features`     FeatureSpec -> EmbeddingBagConfig / EmbeddingConfig; FeatureSet (spec + lookup
                 arrays); build_kjt (vectorised) and build_kjt_reference (per row); RankBatch.
- `dlrm`         build_dlrm: torchrec DLRM / DLRM_DCN over an EmbeddingBagCollection.
- `din`          build_din: DIN target attention over the latest T history items.
- `sim`          build_sim: SIM with a code-prefix hard-search or inner-product soft-search GSU
                 and a multi-head target-attention ESU; hard_search, soft_search.
- `attention`    DinAttention, MultiHeadTargetAttention, masked_softmax.
- `item_encoder` SequenceItemEncoder (EmbeddingBagCollection over the distinct items, target + history), ContextEncoder;
                 Selection / select_items: the attended history items of each row, jagged.
- `batching`     SplitArrays, split_arrays, iter_batches; batch_rows / rank_rows / rank_batch (a rank's part).
- `optimizers`   table_optimizer: the tables' optimiser (adagrad, rowwise_adagrad, adam), one definition for
                 the plain torch path and the fused (fbgemm) sharded path.
- `sharding`     shard_model: DistributedModelParallel over every table of DLRM, DIN and SIM (planner:
                 auto, table-wise, row-wise or column-wise; fused optimiser; dense parts data-parallel).
- `train_wrapper` RankerTrain: a ranker with its loss inside, batch -> (loss, (loss, logits, labels)) as TorchRec's
                 DLRMTrain (what DistributedModelParallel wraps, and what TorchRec's train pipelines call); rank_loss.
- profiling      the models label their parts with torch.profiler.record_function: qarm.lookup, qarm.features,
                 qarm.attention, qarm.interaction, qarm.mlp (`qarm-bench perf rank` groups a profile by them).
  DIN and SIM's `forward` is the fast (jagged, distinct-item) path; `forward_reference` the padded one it
  replaced, kept as the slow reference (tests/recsys_models/test_fast_paths.py). Their `forward` calls the table
  collections first, on the batch's own fields, and the rest as one torch.fx-wrapped function (din_head,
  sim_head), so TorchRec's pipeline tracer sees every sharded collection's input.

Glossary:
    B   batch size (impressions)
    T   history length (positives before the impression, OLDEST FIRST, most recent last)
    U   distinct items of a batch (target and history); n  attended (row, item) pairs of a batch, jagged
    N   items (item_idx in 0..N-1; item_id is the raw source id, never used here)
    L   RQ levels; K codebook size; codes (N, L) int64 in [0, K)
    k   VQ codes per item; vq_codes (N, k) int64 item indices
    d   content-vector width; content (N, d) float32 (frozen or aligned encoder output)
    D   embedding dim of every table; D_i = item representation width in DIN/SIM
    p   SIM hard-search prefix depth (levels compared); K_sel SIM top-K selected (`top_k`)
    GSU / ESU   SIM's General / Exact Search Unit
"""
