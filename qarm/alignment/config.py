"""Settings and records of the alignment stage (QARM §3; the paper leaves these choices open, anchors §1.10).
Imports no torch, so a suite config is read and checked without loading it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from qarm.alignment.records import AlignReferences
from qarm.errors import require

Layers = int | Literal["all"]
Fusion = Literal["concat", "gated"]
_LAYERS_EXPECTED = "0 (head only), a block count k >= 1, or 'all' (-1 also means all)"


def _layers_ok(v: object) -> bool:
    return v == "all" or (isinstance(v, int) and not isinstance(v, bool) and v >= -1)


@dataclass(frozen=True)
class TrainableLayers:
    """What alignment trains of each modality's encoder tower: 0 = nothing (the fusion head reads that
    modality's cached frozen features), k = the top k blocks as the model defines them (transformer layers;
    ResNet/ConvNeXt stages; Lite0 MBConv blocks) and the layers above them, over cached lower-block outputs,
    "all" (or -1) = the whole encoder from its raw input. A modality missing from `encoder.modalities` has no
    tower, and its entry is ignored."""

    text: Layers = 0
    image: Layers = 0

    def __post_init__(self) -> None:
        require(self, "text", _layers_ok(self.text), _LAYERS_EXPECTED)
        require(self, "image", _layers_ok(self.image), _LAYERS_EXPECTED)

    def of(self, modality: str) -> Layers:
        """The setting of one modality ("text" or "image"), -1 spelled "all"; 0 for any other modality."""
        v = getattr(self, modality, 0) if modality in ("text", "image") else 0
        return "all" if v == -1 else v


@dataclass(frozen=True)
class AlignConfig:
    """dim: aligned embedding width d (QARM: 64); temperature: InfoNCE tau; batch_size: pairs per step (the
    in-batch negatives); epochs: at most; lr: head learning rate; encoder_lr: learning rate of trainable
    encoder blocks; weight_decay: AdamW; warmup_frac: share of the planned steps with a linear warm-up;
    trainable_layers: a number = the text tower's setting (0 = projection head only over cached frozen
    features, k = the top k transformer blocks too, "all" or -1 = the whole encoder), or a table per modality
    `{text = k, image = k}` (TrainableLayers); hidden: 0 = linear head, > 0 = an MLP of that width;
    fusion: how the head combines modalities, "concat" (one projection of the concatenated features) or
    "gated" (softmax-gated sum of per-modality projections), both with learned missing-modality vectors;
    val_frac: share held out for early stopping (0 = none: the last epoch is kept); recall_k, patience: early
    stopping on validation pair recall@k; mask_duplicates: mask in-batch duplicate items out of the negatives;
    max_val_pairs: cap on the validation pairs and on the test pairs (a seeded sample);
    split: how held-out pairs are drawn: "item" holds out a seeded share of the items in pairs, with every
    pair that touches one (those items never reach training, as cold items never do), "pair" a share of the
    pairs (both items usually seen in training: interpolation only); test_frac: share held out for the
    reported recall figures (never used for any choice; 0 = none); popularity_correction: strength a of the
    sampling-bias correction, logits - a * log q(item) (0 = plain in-batch InfoNCE; see qarm.losses);
    refit: after the epoch count is chosen on the validation pairs, retrain the model from its seeded
    initialisation on all pairs (the train + validation + test pairs of the held-out split) for that many
    epochs, and return the refit's embeddings (deployment-faithful: nothing a deployment knows is held back); the held-out figures
    stay those of the validation-selected model on the test pairs, measured before the refit. False = the
    embeddings of the validation-selected model (the behaviour before issue 20).

    Defaults come from docs/alignment.md: a linear head with the correction generalises to held-out items,
    an MLP head or the plain loss memorises the training items (validation recall peaks at epoch 1-2)."""

    dim: int = 64
    temperature: float = 0.07
    batch_size: int = 256
    epochs: int = 20
    lr: float = 2e-3
    encoder_lr: float = 2e-5
    weight_decay: float = 0.01
    warmup_frac: float = 0.1
    trainable_layers: int | Literal["all"] | TrainableLayers = 0
    hidden: int = 0
    fusion: Fusion = "concat"
    val_frac: float = 0.1
    recall_k: int = 10
    patience: int = 5
    mask_duplicates: bool = True
    max_val_pairs: int = 10000
    split: Literal["item", "pair"] = "item"
    test_frac: float = 0.1
    popularity_correction: float = 1.0
    refit: bool = True

    def __post_init__(self) -> None:
        require(self, "dim", self.dim >= 1, "an integer >= 1")
        require(self, "temperature", self.temperature > 0, "a number > 0")
        require(self, "batch_size", self.batch_size >= 2, "an integer >= 2 (in-batch negatives need a pair)")
        require(self, "epochs", self.epochs >= 1, "an integer >= 1")
        require(self, "lr", self.lr > 0, "a number > 0")
        require(self, "encoder_lr", self.encoder_lr > 0, "a number > 0")
        require(self, "weight_decay", self.weight_decay >= 0, "a number >= 0")
        require(self, "warmup_frac", 0 <= self.warmup_frac <= 1, "a fraction in [0, 1]")
        layers = self.trainable_layers
        require(self, "trainable_layers", isinstance(layers, TrainableLayers) or _layers_ok(layers),
                f"{_LAYERS_EXPECTED}, or a table {{text = k, image = k}}")
        require(self, "fusion", self.fusion in ("concat", "gated"), "'concat' or 'gated'")
        require(self, "hidden", self.hidden >= 0, "an integer >= 0 (0 = linear head)")
        require(self, "val_frac", 0 <= self.val_frac < 1, "a fraction in [0, 1)")
        require(self, "recall_k", self.recall_k >= 1, "an integer >= 1")
        require(self, "patience", self.patience >= 1, "an integer >= 1 (epochs without a better held-out recall)")
        require(self, "max_val_pairs", self.max_val_pairs >= 1, "an integer >= 1")
        require(self, "split", self.split in ("item", "pair"), "one of 'item', 'pair'")
        require(self, "test_frac", 0 <= self.test_frac < 1 and self.val_frac + self.test_frac < 1,
                "a fraction in [0, 1) with val_frac + test_frac < 1")
        require(self, "popularity_correction", self.popularity_correction >= 0, "a number >= 0 (0 = none)")

    @property
    def towers(self) -> TrainableLayers:
        """trainable_layers per modality (a bare number is the text tower's setting; the image tower stays 0)."""
        layers = self.trainable_layers
        return layers if isinstance(layers, TrainableLayers) else TrainableLayers(text=layers)

    @property
    def layers(self) -> Layers:
        """The text tower's setting, -1 spelled "all" (what trainable_layers meant before per-modality tables)."""
        return self.towers.of("text")

    def trains_encoder(self, modalities: tuple[str, ...] | list[str] = ("text", "image")) -> bool:
        """Whether any tower of the given modalities is (partly) trained, i.e. raw item content is needed."""
        return any(self.towers.of(m) != 0 for m in modalities)

    def describe(self, modalities: tuple[str, ...] | list[str] = ("text",)) -> str:
        """What alignment trains, in words, for these item modalities (the report and AlignSummary say it)."""
        mods = sorted(modalities)
        head = "projection head" if len(mods) == 1 else f"{self.fusion} fusion head ({' + '.join(mods)})"
        parts = []
        for m in mods:
            v = self.towers.of(m)
            if v == "all":
                parts.append(f"the whole {m} encoder")
            elif v:
                parts.append(f"the top {v} {m} encoder block(s)")
        if not parts:
            return f"{head} over frozen encoder features"
        return f"{head} + {' + '.join(parts)} (fine-tuned)"


@dataclass(frozen=True)
class AlignEpoch:
    """One epoch of alignment: mean InfoNCE loss over its steps, held-out pair recall@k after it (None
    without held-out pairs)."""

    epoch: int
    loss: float
    val_recall: float | None


@dataclass(frozen=True)
class AlignSummary:
    """What the alignment stage reports: TEST pair recall@k of the frozen and the aligned embedding (None
    without test pairs; never used for a choice), the epoch whose weights were kept (by validation recall),
    the per-epoch history (validation recall), pair counts, what was trained ("projection head over frozen
    encoder features", ... : AlignConfig.describe) and the item modalities that fed the aligned embedding (and
    so the codes quantized from it).

    trained_short: "aligned head" or "aligned encoder (...)" (describe_trained's short form; "" in records
    written before it existed); split: how held-out pairs were drawn ("item" | "pair"); val_recall: the kept epoch's validation recall;
    n_test_pairs: test pairs evaluated; references: frozen / aligned / U2I / popularity recall on the test
    pairs, overall and per source (None without test pairs).

    refit: whether the returned embeddings come from a refit on every pair (AlignConfig.refit; the figures above
    are the validation-selected model's, measured before it); n_refit_pairs: the pairs it trained on;
    refit_epochs: its epochs (= best_epoch)."""

    k: int
    frozen_recall: float | None
    aligned_recall: float | None
    best_epoch: int
    history: tuple[AlignEpoch, ...]
    n_train_pairs: int
    n_val_pairs: int
    trained: str
    modalities: tuple[str, ...] = ()
    trained_short: str = ""
    split: str = "pair"
    val_recall: float | None = None
    n_test_pairs: int = 0
    references: AlignReferences | None = None
    refit: bool = False
    n_refit_pairs: int = 0
    refit_epochs: int = 0
