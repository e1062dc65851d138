"""A large SYNTHETIC workspace for the Studio's benchmarks and tests, written without model time.

    python -m benchmarks.synth_workspace DIR --samples N [--proposals P] [--seed S] [--clusters K]
                                             [--embedding-dim D] [--reuse]

Benchmark data only, never a product feature: every text is generated from a small vocabulary,
every signal is drawn from a distribution, no model ever saw a sample. The workspace says so in
its name (`synthetic-N (benchmark data)`), in every sample's instruction ("[synthetic]"), and in
the model names it records (`synthetic (no model)`).

What it writes, each through the store's own write path, so every Studio page has data:
- N records imported from a Parquet file by the product's importer (`import_file`), in clusters
  of topics with Alpaca-like lengths (instruction ~60 characters, 40% with an input, responses
  lognormal around ~350 characters);
- the signals of D(0) (`write_signals`): losses before and after training (gamma, longer and
  harder topics higher), diversity from how far a sample lies from its cluster's centre, the six
  0-10 quality ratings and their mean, and two stored neighbours from the same cluster;
- a UMAP-like map with one cluster per topic (`put_projection`);
- the selection at the config's m's (`save_selection`), P pending proposals on flagged samples
  (`put_proposals`, rewrites made by editing the source text), the iteration's record as a
  diagnosed and refined iteration, and held-out scores for M(0) (`put_metrics`).

With --embedding-dim D it also writes D-dimensional float32 embeddings of D(0), clustered by the
same topics (a point lies as far from its topic's centre as on the synthetic map), into the vector
cache with the record a diagnosis leaves (artifacts/embeddings/iter_0.json), so the Map page and
the projection job have real work. --reuse adds them to a workspace this script already built
(same --samples, --seed and --clusters) instead of writing it again.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from middo_core.sample import content_hash
from middo_core.workspace import Workspace

CHUNK = 100_000  # records generated and written per Parquet row group (flat memory)
MODEL = "synthetic (no model)"
TOPICS = ["rivers", "algebra", "cooking", "poetry", "python", "history", "biology", "finance",
          "chess", "music", "physics", "travel", "law", "gardening", "astronomy", "medicine",
          "grammar", "geography", "economics", "painting", "sql", "chemistry", "football",
          "philosophy", "weather", "marketing", "networks", "nutrition", "architecture",
          "statistics", "oceans", "mythology", "robotics", "linguistics", "ecology", "opera",
          "taxes", "volcanoes", "typography", "genetics", "sailing", "databases", "baking",
          "climbing", "cryptography", "insects", "theatre", "trains"]
VERBS = ["Explain", "Describe", "List three facts about", "Write a short note on", "Summarise",
         "Compare two ideas in", "Give an example from", "What is the key idea of",
         "Classify the following item from", "Rewrite the sentence about"]
WORDS = ["the", "a", "of", "and", "to", "in", "is", "it", "that", "for", "on", "with", "as", "by",
         "this", "be", "are", "from", "at", "or", "an", "which", "first", "second", "method",
         "result", "answer", "value", "example", "step", "process", "simple", "clear", "detail",
         "important", "often", "every", "small", "large", "early", "later", "common", "rare",
         "useful", "known", "usual", "because", "therefore", "however", "while", "since", "then",
         "also", "only", "more", "most", "less", "each"]


def _sentence_pool(rng: np.random.Generator, topic: str, size: int = 300) -> np.ndarray:
    """Sentences about one topic: 6-16 words from the vocabulary with the topic's word in them."""
    out = []
    for _ in range(size):
        words = list(rng.choice(WORDS, rng.integers(6, 17)))
        words.insert(int(rng.integers(0, len(words))), topic)
        out.append(" ".join(words).capitalize() + ".")
    return np.array(out, dtype=object)


def _texts(rng: np.random.Generator, start: int, topic: np.ndarray, n_sent: np.ndarray,
           has_input: np.ndarray, pools: list[np.ndarray]) -> pd.DataFrame:
    """The instruction, input and output of records start .. start + len(topic) - 1."""
    n = len(topic)
    verbs = np.array(VERBS, dtype=object)[rng.integers(0, len(VERBS), n)]
    names = np.array(TOPICS, dtype=object)[topic]
    instruction = [f"[synthetic] {v} {t} (record {start + i})."
                   for i, (v, t) in enumerate(zip(verbs, names, strict=True))]
    picks = rng.integers(0, pools[0].size, (n, int(n_sent.max())))
    output = [" ".join(pools[t][picks[i, :k]]) for i, (t, k) in enumerate(zip(topic, n_sent, strict=True))]
    first = rng.integers(0, pools[0].size, n)
    inp = [pools[t][j] if h else "" for t, j, h in zip(topic, first, has_input, strict=True)]
    return pd.DataFrame({"instruction": instruction, "input": inp, "output": output})


def _write_records(path: Path, rng: np.random.Generator, topic: np.ndarray,
                   n_sent: np.ndarray) -> list[str]:
    """The records as one Parquet file (a row group per chunk); returns their content-hash ids."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    pools = [_sentence_pool(rng, t) for t in TOPICS]
    has_input = rng.random(len(topic)) < 0.4
    ids: list[str] = []
    writer = None
    try:
        for start in range(0, len(topic), CHUNK):
            end = min(start + CHUNK, len(topic))
            frame = _texts(rng, start, topic[start:end], n_sent[start:end], has_input[start:end], pools)
            ids.extend(content_hash("", [], a, b, c) for a, b, c in
                       zip(frame["instruction"], frame["input"], frame["output"], strict=True))
            table = pa.Table.from_pandas(frame, preserve_index=False)
            if writer is None:
                writer = pq.ParquetWriter(path, table.schema)
            writer.write_table(table)
    finally:
        if writer is not None:
            writer.close()
    return ids


def _layout(rng: np.random.Generator, n: int, clusters: int) -> dict[str, np.ndarray]:
    """Topic per sample (uneven cluster sizes), map coordinates, and each one's distance from its
    cluster's centre in cluster widths."""
    clusters = min(clusters, len(TOPICS))
    weights = rng.dirichlet(np.full(clusters, 2.0))
    topic = rng.choice(clusters, n, p=weights)
    centres = rng.uniform(-12, 12, (clusters, 2))
    width = rng.uniform(0.6, 1.8, clusters)
    offset = rng.standard_t(5, (n, 2)) * width[topic, None]  # heavier tails than a normal: outliers
    r = np.hypot(offset[:, 0], offset[:, 1]) / width[topic]
    return {"topic": topic, "xy": centres[topic] + offset, "r": r}


def _signals(rng: np.random.Generator, ids: list[str], layout: dict[str, np.ndarray],
             n_sent: np.ndarray) -> pd.DataFrame:
    """Signal rows shaped like a diagnosis's: losses, diversity, six ratings, two neighbours."""
    n, topic, r = len(ids), layout["topic"], layout["r"]
    difficulty = rng.uniform(0.7, 1.4, len(TOPICS))[topic]
    loss_pre = rng.gamma(6.0, 0.3, n) * difficulty * (1 + 0.03 * np.sqrt(n_sent))
    loss_post = np.maximum(0.02, loss_pre * rng.uniform(0.45, 0.75, n) + rng.normal(0, 0.15, n))
    diversity = np.clip(0.93 - 0.035 * r ** 1.5 + rng.normal(0, 0.025, n), -0.2, 0.999)
    base = rng.normal(7.2, 1.1, n)[:, None] - 0.4 * (loss_post[:, None] - loss_post.mean())
    ratings = np.clip(np.round((base + rng.normal(0, 0.8, (n, 6))) * 2) / 2, 0, 10)  # half points
    frame = pd.DataFrame({"sample_id": ids, "loss_pre": loss_pre, "loss_post": loss_post,
                          "diversity": diversity})
    from middo_core.store.signals import QUALITY_COLUMNS

    for j, col in enumerate(QUALITY_COLUMNS[:-1]):
        frame[col] = ratings[:, j]
    frame["quality"] = ratings.mean(axis=1)
    # neighbours: two other samples of the same cluster, similarity a little above the mean
    id_arr = np.asarray(ids, dtype=object)
    order = np.argsort(topic, kind="stable")
    bounds = np.searchsorted(topic[order], np.arange(topic.max() + 2))
    size = (bounds[topic + 1] - bounds[topic])
    picks = [order[bounds[topic] + rng.integers(0, np.maximum(size, 1))] for _ in range(2)]
    ida, idb = pd.Series(id_arr[picks[0]]), pd.Series(id_arr[picks[1]])
    frame["neighbours"] = ('["' + ida + '","' + idb + '"]').to_numpy()
    sims = np.clip(diversity[:, None] + np.abs(rng.normal(0, 0.01, (n, 2))) * [1, -1], -1, 1)
    frame["neighbour_sims"] = [f"[{a:.4f},{b:.4f}]" for a, b in sims]
    frame["truncated"] = False
    frame["empty_response"] = False
    return frame


def _proposals(rng: np.random.Generator, ws: Workspace, flagged: dict[str, list[str]],
               count: int, neighbours: pd.Series) -> list[dict]:
    """`count` pending proposals on flagged samples, axes in proportion to their flags; the
    rewrite is the source with its sentences reordered and a clause added (so a diff shows)."""
    from middo_core.store.samples import get_samples

    pairs = [(axis, sid) for axis, ids in flagged.items() for sid in ids]
    if not pairs:
        return []
    chosen = rng.choice(len(pairs), min(count, len(pairs)), replace=False)
    pairs = [pairs[i] for i in np.sort(chosen)]
    with ws.store.read() as con:
        sources = get_samples(con, sorted({sid for _, sid in pairs})).set_index("id")
    rows = []
    for axis, sid in pairs:
        src = sources.loc[sid]
        sentences = src["output"].split(". ")
        rng.shuffle(sentences)
        output = ". ".join(sentences).rstrip(".") + ". In short, the first step matters most."
        instruction = src["instruction"].replace("[synthetic] ", "[synthetic] Carefully: ", 1)
        if axis == "diversity":
            instruction = f"[synthetic] A new question near record {sid}."
        request = hashlib.sha256(f"0|{axis}|{sid}|synthetic".encode()).hexdigest()[:16]
        rows.append({"id": request, "iteration": 0, "axis": axis, "source_id": sid,
                     "neighbour_ids": json.loads(neighbours.get(sid, "[]")) if axis == "diversity" else [],
                     "template_hash": "synthetic", "model": MODEL, "params": {"synthetic": True},
                     "raw_text": None, "raw_response": None, "instruction": instruction,
                     "input": src["input"], "output": output, "status": "pending", "reason": None,
                     "usage": {}})
    return rows


EMBEDDING_KEY = "synthetic-embeddings"  # the vector cache key of the synthetic embeddings


def write_embeddings(ws: Workspace, layout: dict[str, np.ndarray], ids: list[str], dim: int,
                     seed: int = 0) -> None:
    """Clustered unit-norm embeddings of D(0): per topic a random centre and a handful of
    directions it varies along (a low-rank cluster, as text embeddings are), plus a little noise."""
    from middo_core.signals.diversity import save_embeddings
    from middo_core.store.vectors import vector_cache

    rng = np.random.default_rng(seed + 1)
    topics = int(layout["topic"].max()) + 1
    centres = rng.standard_normal((topics, dim)).astype(np.float32)
    axes = rng.standard_normal((topics * 8, dim)).astype(np.float32) / np.sqrt(8)  # 8 per topic
    cache = vector_cache(ws, EMBEDDING_KEY)
    for start in range(0, len(ids), CHUNK):
        topic = layout["topic"][start:start + CHUNK]
        spread = 0.35 * layout["r"][start:start + CHUNK, None].astype(np.float32)
        coef = np.zeros((topic.size, topics * 8), dtype=np.float32)  # each row: its topic's 8
        cols = topic[:, None] * 8 + np.arange(8)
        np.put_along_axis(coef, cols, rng.standard_normal((topic.size, 8)).astype(np.float32) * spread, 1)
        v = centres[topic] + coef @ axes
        v += 0.15 * rng.standard_normal(v.shape, dtype=np.float32)
        cache.put(ids[start:start + CHUNK], v / np.linalg.norm(v, axis=1, keepdims=True))
    cache.compact()
    save_embeddings(ws, 0, ids, EMBEDDING_KEY, dim, {"model": MODEL, "synthetic": True})


def _record_ids(ws: Workspace, samples: int) -> list[str]:
    """The sample ids of a workspace this script built, in record order (from "(record i)")."""
    with ws.store.read() as con:
        rows = con.execute(r"""SELECT id, CAST(regexp_extract(instruction, '\(record (\d+)\)', 1) AS BIGINT)
                               FROM samples WHERE instruction LIKE '[synthetic]%'""").fetchall()
    ids = [""] * samples
    for sid, i in rows:
        if i is not None and i < samples:
            ids[i] = sid
    if len(rows) != samples or not all(ids):
        raise RuntimeError(f"{ws.root}: not a synthetic workspace of {samples:,} records (--reuse)")
    return ids


def add_embeddings(root: Path, samples: int, dim: int, seed: int = 0, clusters: int = 40,
                   progress=print) -> Workspace:
    """Embeddings for a synthetic workspace already built with the same samples, seed, clusters."""
    from middo_core.workspace import open_workspace

    started = time.perf_counter()
    ws = open_workspace(Path(root))
    layout = _layout(np.random.default_rng(seed), samples, clusters)  # the build's first draw
    write_embeddings(ws, layout, _record_ids(ws, samples), dim, seed)
    if progress:
        progress(f"{time.perf_counter() - started:7.1f} s  {samples:,} embeddings of {dim} dimensions written")
    return ws


def build_synthetic_workspace(root: Path, samples: int, proposals: int = 0, seed: int = 0,
                              clusters: int = 40, progress=print,
                              embedding_dim: int = 0) -> Workspace:
    """Write a synthetic workspace of `samples` records at `root` (replacing what is there)."""
    from middo_core.config import WorkspaceConfig
    from middo_core.data import import_file
    from middo_core.selection import SignalTable, save_selection
    from middo_core.store.iterations import put_metrics, upsert_iteration
    from middo_core.store.projections import put_projection
    from middo_core.store.proposals import put_proposals
    from middo_core.store.signals import load_signals, write_signals
    from middo_core.workspace import init_workspace

    started = time.perf_counter()

    def step(what: str) -> None:
        if progress:
            progress(f"{time.perf_counter() - started:7.1f} s  {what}")

    root = Path(root)
    shutil.rmtree(root, ignore_errors=True)
    ws = init_workspace(root, WorkspaceConfig(name=f"synthetic-{samples} (benchmark data)"))
    rng = np.random.default_rng(seed)
    layout = _layout(rng, samples, clusters)
    n_sent = np.clip(np.round(rng.lognormal(1.6, 0.6, samples)), 1, 40).astype(int)
    stage = ws.artifact_dir("tmp") / "synthetic-records.parquet"
    ids = _write_records(stage, rng, layout["topic"], n_sent)
    step(f"{samples:,} records generated")
    try:
        report = import_file(ws, stage, format="parquet")
    finally:
        stage.unlink(missing_ok=True)
    if report.n_imported != samples:
        raise RuntimeError(f"imported {report.n_imported:,} of {samples:,} synthetic records")
    step(f"imported ({report.format})")
    signals = _signals(rng, ids, layout, n_sent)
    with ws.store.write() as con:
        found = con.execute("SELECT count(*) FROM samples WHERE id IN (SELECT unnest(?::VARCHAR[]))",
                            [ids[:1000]]).fetchall()[0][0]
        if found != min(1000, samples):  # the importer hashed other text than was generated
            raise RuntimeError("the imported sample ids differ from the generated records' ids")
        write_signals(con, 0, signals)
        put_projection(con, 0, "umap", ids, layout["xy"])
        upsert_iteration(con, 0, status="diagnosed", model=MODEL, base_model=MODEL,
                         k=ws.config.signals.k,
                         counts={"diagnosed_with": MODEL, "synthetic": True,
                                 "diagnosis": {"quality": {"mode": "synthetic",
                                                           "reason": "synthetic benchmark data"}}})
        put_metrics(con, 0, [("heldout", "loss", 1.42, 500), ("demo_exact", "accuracy", 0.31, 50)])
    step("signals, map and iteration record written")
    if embedding_dim:
        write_embeddings(ws, layout, ids, embedding_dim, seed)
        step(f"embeddings of {embedding_dim} dimensions written")
    with ws.store.read() as con:
        table = SignalTable(load_signals(con, 0))
    cfg = ws.config.selection
    selection = table.select(cfg.m_complexity, cfg.m_diversity, cfg.m_quality)
    save_selection(ws, 0, selection)
    step(f"selection saved: {selection.counts()['union']:,} flagged")
    if proposals:
        rows = _proposals(rng, ws, selection.flagged(), proposals,
                          signals.set_index("sample_id")["neighbours"])
        with ws.store.write() as con:
            for i in range(0, len(rows), 10_000):
                put_proposals(con, rows[i:i + 10_000])
            upsert_iteration(con, 0, status="refined",
                             counts={"refine": {"proposals": len(rows), "synthetic": True}})
        step(f"{len(rows):,} pending proposals written")
    return ws


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dir", type=Path)
    parser.add_argument("--samples", type=int, required=True)
    parser.add_argument("--proposals", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--clusters", type=int, default=40)
    parser.add_argument("--embedding-dim", type=int, default=0,
                        help="also write float32 embeddings of this width (576 is the paper's size)")
    parser.add_argument("--reuse", action="store_true",
                        help="add the embeddings to the workspace already at DIR instead of building it")
    args = parser.parse_args(argv)
    if args.samples < 10:
        sys.exit("--samples: at least 10")
    if args.reuse:
        if not args.embedding_dim:
            sys.exit("--reuse adds embeddings: give --embedding-dim")
        add_embeddings(args.dir, args.samples, args.embedding_dim, args.seed, args.clusters)
        return
    build_synthetic_workspace(args.dir, args.samples, args.proposals, args.seed, args.clusters,
                              embedding_dim=args.embedding_dim)


if __name__ == "__main__":
    main()
