"""data.synthetic.content: "null" keeps the interactions of "planted" and cuts the link between an item's text
and the cluster users prefer it by; the option stays out of the data key at its default."""

from __future__ import annotations

import dataclasses

import numpy as np

from benchmark.config.data import DataConfig, SyntheticConfig
from benchmark.data.preparation import fingerprint
from benchmark.data.synthetic import cluster_words, generate


def _named_share(sc: SyntheticConfig) -> float:
    """Share of items whose text has a theme word of their own cluster (category)."""
    raw = generate(sc)
    hits = [any(w in text.split() for w in cluster_words(int(cat.removeprefix("cluster-"))))
            for text, cat in zip(raw.items["text"], raw.items["category"])]
    return float(np.mean(hits))


def test_null_content_keeps_the_log_and_unlinks_the_text() -> None:
    planted = SyntheticConfig(n_items=200, n_users=50, n_interactions=500, n_clusters=8, text_noise=0.0)
    null = dataclasses.replace(planted, content="null")
    assert generate(planted).interactions.equals(generate(null).interactions)
    assert _named_share(planted) == 1.0
    assert _named_share(null) < 0.3  # about 1 / n_clusters: the named cluster is drawn independently


def test_content_enters_the_data_key_only_when_set() -> None:
    base = DataConfig(dataset="synthetic")
    same = DataConfig(dataset="synthetic", synthetic=SyntheticConfig(content="planted"))
    null = DataConfig(dataset="synthetic", synthetic=SyntheticConfig(content="null"))
    assert fingerprint(base, []) == fingerprint(same, []) != fingerprint(null, [])


def test_confounded_content_adds_a_nuisance_topic_of_its_own() -> None:
    planted = SyntheticConfig(n_items=200, n_users=50, n_interactions=500, n_clusters=8, text_noise=0.0)
    conf = dataclasses.replace(planted, content="confounded")
    raw = generate(conf)
    assert generate(planted).interactions.equals(raw.interactions)
    assert _named_share(conf) > 0.9  # the preferred cluster's theme is still there ...
    nuisance = {w for c in range(8, 16) for w in cluster_words(c)}
    with_nuisance = np.mean([bool(nuisance & set(t.split())) for t in raw.items["text"]])
    assert with_nuisance > 0.9  # ... beside a nuisance theme (themes 8-15, a vocabulary of its own)


def test_confounded_needs_a_nuisance_theme_per_cluster() -> None:
    import pytest

    from benchmark.core.errors import ConfigError

    with pytest.raises(ConfigError, match="content"):
        SyntheticConfig(n_items=200, n_users=50, n_interactions=500, n_clusters=9, content="confounded")
