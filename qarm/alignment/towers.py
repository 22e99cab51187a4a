"""Trainable item towers for alignment: the fusion head over per-modality features, each modality fed either
by its cached frozen features or by a tower, a text or image encoder whose top blocks (or all of it) are
fine-tuned by the same contrastive loss.

Partial fine-tuning (anchors §1.10 item 1 leaves the trainable part open): with k trainable blocks the
frozen lower blocks run once, their output (the input of block n-k) is cached per item, and training
only re-runs the top k blocks over the cache, so fine-tuning the top of MiniLM or of an image backbone is
cheap on a CPU. Towers compute on their own device and hand features back on the device of the rows asked
for, so the fusion head and the loss run wherever the training loop keeps them.

Shapes: N items, B batch, T tokens, H hidden size, D_m width of modality m, d output dim.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from qarm.alignment.config import AlignConfig
from qarm.encoders.fusion import ItemEncoder, ItemFeatures
from qarm.encoders.image import ImageEncoder
from qarm.encoders.text import TextEncoder, collate, mean_pool, transformer_layers
from qarm.errors import QarmError


def _pad_cache(states: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-item (T_i, H) states -> (N, T, H) float32 and mask (N, T) int64."""
    t = max(s.shape[0] for s in states)
    out = torch.zeros(len(states), t, states[0].shape[1])
    mask = torch.zeros(len(states), t, dtype=torch.long)
    for i, s in enumerate(states):
        out[i, : len(s)] = s
        mask[i, : len(s)] = 1
    return out, mask


def freeze_unused(tower: nn.Module, rows: torch.Tensor) -> tuple[str, ...]:
    """Freeze the trainable parameters of `tower` that its forward over rows (R,) int64 item_idx never reaches
    (no gradient path: e.g. a checkpoint's pooler that mean pooling does not read); returns their names.

    DistributedDataParallel needs every trainable parameter to get a gradient each step: one that never does
    makes the second step fail ("Expected to have finished reduction in the prior iteration")."""
    named = [(n, p) for n, p in tower.named_parameters() if p.requires_grad]
    if not named or not len(rows):
        return ()
    with torch.enable_grad():
        grads = torch.autograd.grad(tower(rows).sum(), [p for _, p in named], allow_unused=True)
    unused = tuple(n for (n, _), g in zip(named, grads) if g is None)
    for n, p in named:
        if n in unused:
            p.requires_grad_(False)
    return unused


class TextTower(nn.Module):
    """Text features (B, H), L2-normalised, from a partly or fully trainable HF encoder.

    trainable: k top blocks over cached lower-layer states (1 <= k <= n_layers), or "all" (the whole
    model, embeddings included, from token ids). Dropout stays off (eval mode): deterministic training
    on small pair sets. device: where the tower computes (default: the CPU).
    """

    def __init__(self, encoder: TextEncoder, texts: list[str], trainable: int | str, progress: bool = False,
                 device: str | torch.device | None = None) -> None:
        super().__init__()
        self.device = torch.device(device or "cpu")
        self.model = copy.deepcopy(encoder.model).to(self.device).eval()  # never change the caller's encoder
        n_layers = encoder.num_layers
        self.full = trainable == "all"
        self.unused: tuple[str, ...] = ()  # "all": parameters the forward never reaches, frozen (freeze_unused)
        if not self.full and not (isinstance(trainable, int) and 1 <= trainable <= n_layers):
            raise QarmError(f"AlignConfig.trainable_layers must be 0..{n_layers} or 'all', got {trainable!r}")
        for p in self.model.parameters():
            p.requires_grad_(self.full)
        if self.full:
            ids, mask = collate(encoder.tokenize(texts), encoder.pad_id)
            self.register_buffer("ids", ids, persistent=False)
            self.register_buffer("mask", mask, persistent=False)
            self.top = nn.ModuleList()
            self.unused = freeze_unused(self, torch.arange(min(len(texts), 2), device=self.device))
            return
        assert isinstance(trainable, int)
        first = n_layers - trainable
        self.top = nn.ModuleList(list(transformer_layers(self.model))[first:])
        for p in self.top.parameters():
            p.requires_grad_(True)
        cache, mask = _pad_cache(encoder.hidden_states(texts, first, progress=progress))
        self.register_buffer("cache", cache.to(self.device), persistent=False)
        self.register_buffer("mask", mask.to(self.device), persistent=False)

    chunk = 64  # rows per length-sorted chunk in `forward`

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        """rows: (B,) int64 item_idx -> (B, H) L2-normalised text features, on the device of rows. More than
        `chunk` rows run in length-sorted chunks, each padded only to its own longest text (mean pooling is per
        item, so the result is the same; the transformer cost falls about twofold)."""
        out_device, rows = rows.device, rows.to(self.device)
        if len(rows) <= self.chunk:
            return self._rows(rows).to(out_device)
        order = torch.argsort(self.mask[rows].sum(1), stable=True)
        out = torch.cat([self._rows(rows[order[s : s + self.chunk]]) for s in range(0, len(rows), self.chunk)])
        return out[torch.argsort(order)].to(out_device)

    def _rows(self, rows: torch.Tensor) -> torch.Tensor:
        """One padded pass over rows (B,) on the tower's device -> (B, H)."""
        from transformers.masking_utils import create_bidirectional_mask

        mask = self.mask[rows]
        t = int(mask.sum(1).max())  # trim padding beyond the batch's longest item
        mask = mask[:, :t]
        if self.full:
            h = self.model(input_ids=self.ids[rows, :t], attention_mask=mask).last_hidden_state
        else:
            h = self.cache[rows, :t]
            attn = create_bidirectional_mask(config=self.model.config, inputs_embeds=h, attention_mask=mask)
            for layer in self.top:
                out = layer(h, attention_mask=attn)
                h = out[0] if isinstance(out, tuple) else out
        return F.normalize(mean_pool(h, mask), dim=-1)

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """The weights training changes (for saving): the top blocks, or the whole model."""
        mod = self.model if self.full else self.top
        return {k: v.detach().cpu().clone() for k, v in mod.state_dict().items()}


class ImageTower(nn.Module):
    """Image features (B, D), L2-normalised, from a partly or fully trainable vision backbone.

    paths: (N,) image file per item_idx, None where an item has no image (its row is zeros; the fusion head
    uses the missing-modality vector there). trainable: k top blocks (1 <= k <= the backbone's block count, see
    qarm.encoders.vision) and the layers above them, over the cached input of block n-k; or "all" (the whole
    backbone from pixels; each batch's images are read and preprocessed again). Eval mode throughout (batch
    norm statistics and dropout fixed). device: where the tower computes (default: the CPU).
    """

    def __init__(self, encoder: ImageEncoder, paths: Sequence[str | Path | None], trainable: int | str,
                 progress: bool = False, device: str | torch.device | None = None) -> None:
        super().__init__()
        self.device = torch.device(device or "cpu")
        self.backbone = copy.deepcopy(encoder.backbone).to(self.device).eval()  # never change the caller's
        n_blocks = len(self.backbone.blocks())
        self.full = trainable == "all"
        self.unused: tuple[str, ...] = ()  # "all": parameters the forward never reaches, frozen (freeze_unused)
        if not self.full and not (isinstance(trainable, int) and 1 <= trainable <= n_blocks):
            hint = (f"this {encoder.family} model has no block structure for partial fine-tuning; use 0 or 'all'"
                    if n_blocks == 0 else f"use 0..{n_blocks} or 'all'")
            raise QarmError(f"AlignConfig.trainable_layers.image: got {trainable!r}; {hint}")
        for p in self.backbone.parameters():
            p.requires_grad_(self.full)
        self.paths = [None if p is None else str(p) for p in paths]
        self.register_buffer("present", torch.tensor([p is not None for p in self.paths], dtype=torch.bool,
                                                     device=self.device), persistent=False)
        self.dim = encoder.dim
        self._preprocess = encoder.preprocess
        if self.full:
            self.first = 0
            self.top = nn.ModuleList()
            self.unused = freeze_unused(self, torch.nonzero(self.present).flatten()[:1])
            return
        assert isinstance(trainable, int)
        self.first = n_blocks - trainable
        self.top = nn.ModuleList(self.backbone.blocks()[self.first:] + self.backbone.head_modules())
        for p in self.top.parameters():
            p.requires_grad_(True)
        rows = torch.nonzero(self.present).flatten().tolist()
        lower = encoder.block_inputs([self.paths[i] for i in rows], self.first, progress=progress)  # type: ignore[misc]
        cache = torch.zeros((len(self.paths), *lower.shape[1:]), dtype=torch.float32)
        cache[rows] = lower
        self.register_buffer("cache", cache.to(self.device), persistent=False)

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        """rows: (B,) int64 item_idx -> (B, D) L2-normalised image features (zeros where no image), on the device
        of rows."""
        out_device, rows = rows.device, rows.to(self.device)
        has = self.present[rows]
        if self.full:
            f = torch.zeros((len(rows), self.dim), device=self.device)
            idx = torch.nonzero(has).flatten()
            if len(idx):  # a batch without images keeps zeros: every row takes the missing-modality vector
                x = self._preprocess([self.paths[int(rows[i])] for i in idx.tolist()]).to(self.device)
                f = f.index_copy(0, idx, self.backbone(x).float())
        else:
            f = self.backbone.upper(self.cache[rows], self.first) * has[:, None]
        return F.normalize(f.float(), dim=-1).to(out_device)

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """The weights training changes (for saving): the top blocks and the layers above, or the whole backbone."""
        mod = self.backbone if self.full else self.top
        return {k: v.detach().cpu().clone() for k, v in mod.state_dict().items()}


class AlignModel(nn.Module):
    """item_idx (B,) -> aligned embedding (B, d): per modality its frozen features or its tower, into the fusion
    head.

    feats: modality -> (N, D_m) float32 frozen features (modalities with a tower may be left out); present:
    modality -> (N,) bool; towers: modality -> a TextTower / ImageTower computing that modality's features.
    """

    def __init__(
        self,
        feats: dict[str, torch.Tensor],
        present: dict[str, torch.Tensor],
        head: ItemEncoder,
        towers: nn.ModuleDict | None = None,
    ) -> None:
        super().__init__()
        self.head = head
        self.towers = towers if towers is not None else nn.ModuleDict()
        self.feats = {m: f for m, f in feats.items() if m not in self.towers}
        self.present = present

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        """rows: (B,) int64 item_idx -> (B, d) aligned embeddings."""
        feats = {m: f[rows] for m, f in self.feats.items()}
        for m, tower in self.towers.items():
            feats[m] = tower(rows)
        return self.head(feats, {m: p[rows] for m, p in self.present.items()})

    def trained_state(self) -> dict[str, torch.Tensor]:
        """The weights alignment trained: the fusion head, and each tower's trained blocks
        ("text_tower.*", "image_tower.*")."""
        state = {f"head.{k}": v.detach().cpu().clone() for k, v in self.head.state_dict().items()}
        for m, tower in self.towers.items():
            state |= {f"{m}_tower.{k}": v for k, v in tower.trainable_state().items()}
        return state

    @torch.no_grad()
    def embed_all(self, n_items: int, batch_size: int = 1024) -> torch.Tensor:
        """(N, d) float32 CPU embeddings of every item (computed on the model's device)."""
        from qarm.alignment.distributed import embed_items

        return embed_items(self, n_items, batch_size)


def check_tower(modality: str, tower: nn.Module, frozen: torch.Tensor, present: torch.Tensor) -> None:
    """Before training a tower must reproduce its frozen encoder's features (guards architectures whose blocks
    cannot be re-run from cached states). frozen: (N, D_m) float32; present: (N,) bool."""
    rows = torch.nonzero(present).flatten()[:8]
    if len(rows) == 0:
        return
    with torch.no_grad():
        diff = float((tower(rows) - frozen[rows]).abs().max())
    if diff > 1e-3:
        raise QarmError(
            f"align: this {modality} model's blocks cannot be re-run from cached states (max |diff| {diff:.2e}); "
            f"use trainable_layers.{modality} = 0 or 'all'"
        )


def build_align_model(
    feats: ItemFeatures,
    config: AlignConfig,
    *,
    texts: Sequence[str] | None = None,
    text_encoder: TextEncoder | None = None,
    image_paths: Sequence[str | Path | None] | None = None,
    image_encoder: ImageEncoder | None = None,
    device: str | torch.device | None = None,
    progress: bool = False,
) -> tuple[AlignModel, list[dict[str, object]]]:
    """The model alignment trains and its optimizer parameter groups (head at config.lr, tower blocks at
    config.encoder_lr). A tower is built for each modality of `feats` whose config.towers setting is not 0; it
    needs that modality's raw items (texts / image_paths, (N,) by item_idx) and encoder."""
    for name, raw in (("texts", texts), ("image_paths", image_paths)):
        if raw is not None and len(raw) != feats.n_items:
            raise QarmError(f"align: {len(raw)} {name} for {feats.n_items} items (one per item_idx, ALL items)")
    dev = torch.device(device or "cpu")
    ft = {m: torch.from_numpy(v).to(dev) for m, v in feats.features.items()}
    pr = {m: torch.from_numpy(v).to(dev) for m, v in feats.present.items()}
    head = ItemEncoder(feats.dims, d=config.dim, hidden=config.hidden, fusion=config.fusion)
    towers = nn.ModuleDict()
    for m in sorted(feats.features):
        layers = config.towers.of(m)
        if layers == 0:
            continue
        if m == "text":
            if texts is None or text_encoder is None:
                raise QarmError("align: trainable_layers.text != 0 needs texts (and a text encoder), not only "
                                "precomputed features")
            towers[m] = TextTower(text_encoder, list(texts), layers, progress=progress, device=device)
        else:
            if image_paths is None or image_encoder is None:
                raise QarmError("align: trainable_layers.image != 0 needs image_paths (and an image encoder), not "
                                "only precomputed features")
            towers[m] = ImageTower(image_encoder, list(image_paths), layers, progress=progress, device=device)
        check_tower(m, towers[m], ft[m], pr[m])
    model = AlignModel(ft, pr, head, towers).to(dev)  # one device throughout (DistributedDataParallel needs it)
    groups: list[dict[str, object]] = [{"params": list(head.parameters()), "lr": config.lr}]
    tower_params = [p for p in towers.parameters() if p.requires_grad]
    if tower_params:
        groups.append({"params": tower_params, "lr": config.encoder_lr})
    return model, groups
