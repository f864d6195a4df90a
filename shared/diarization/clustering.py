"""Who is who across a whole job: one clustering of every local speaker's embedding.

    local speakers (every window of every micro chunk: independent nodes)
      -> those with `min_strong_sec` of clean speech: hierarchical clustering of their
         embeddings (average linkage of cosine distances), cut at a threshold adapted to how
         alike each voice's embeddings are in this recording (or where the speaker counts
         asked for say)
      -> clusters with less speech than `min_cluster_sec` (scaled with the file: 8 s of a
         5 min file, 30 s of a 2 h one) join the big one whose centroid is nearest; a
         cluster's speech counts the weak embeddings that would join it (a voice heard in
         short turns), up to as much as its strong ones, unless it is big only with them and
         nearer to a big cluster than two big ones are to each other
      -> weaker embeddings join the nearest centroid, missing ones the cluster nearest in
         time; neither may take a cluster heard in their own window
      -> known speakers matched to clusters (Hungarian, similarity floor) and named
      -> the rest labelled A, B, ... in order of first speech
      -> SpeakerTimeline: each label's turns merged; different labels may overlap

Short embeddings are noisy (CAM++ on 1 s of speech is ~0.74 cosine from its voice's centroid,
on 3-5 s ~0.91), so only the strong ones shape the clusters. Counts: `num_speakers` cuts the
tree where exactly that many *big* clusters (enough speech) appear, so a stray embedding
cannot take a speaker's place; `min_speakers`/`max_speakers` move the threshold's cut only
when it falls outside them.

Size: the linkage needs every pairwise distance (n^2/2 doubles, and scipy copies them). A job
with more than `max_linkage_nodes` strong local speakers (a ~10 h file) clusters its
`max_linkage_nodes` longest ones and gives the others the cluster of the nearest centroid,
so memory stays bounded (~150 MB at 4,000) however long the file; 7,000 embeddings take
~0.8 s.

While a job streams, `ProvisionalLabels` labels each micro chunk's voices at once (nearest
running centroid, or a new label); at the end `final_map` says which final label each
provisional one became (the one that holds most of its speech).
"""

from __future__ import annotations

import string
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from itertools import count, product
from typing import Literal

import numpy as np

from shared.schemas import EMBEDDING_DIM, LocalSpeaker


@dataclass(frozen=True)
class SpeakerConstraints:
    num_speakers: int | None = None
    min_speakers: int | None = None
    max_speakers: int | None = None


@dataclass(frozen=True)
class KnownSpeaker:
    name: str
    embedding: np.ndarray
    """L2-normalised, 192 floats (the same model as the local speakers')."""


@dataclass
class SpeakerTimeline:
    turns: list[tuple[float, float, str]] = field(default_factory=list)
    """(start_sec, end_sec, label), sorted; turns of different labels may overlap."""
    speakers: list[str] = field(default_factory=list)
    """Labels in order of first speech."""
    local_labels: list[str] = field(default_factory=list)
    """The label of each local speaker clustered, in the order given (for `final_map`)."""


@dataclass(frozen=True)
class ClusteringOptions:
    method: Literal["centroid", "average"] = "average"
    """Linkage: `average` (mean pairwise cosine distance; a cluster's distance to others does
    not shrink as it grows) or `centroid` (Euclidean distance between the means of unit
    vectors, as pyannote: a big cluster's mean is short, so it pulls others in)."""
    threshold: float = 0.4
    """Mean cosine distance at which the tree is cut for tight voices (those whose embeddings
    are as alike as generated voices'). Generated conversations (2 and 4 voices, 10 min) are
    right from 0.3 to 0.4 (0.5 merges two of four voices); a real two-speaker call from 0.3 to
    0.6."""
    tight_similarity: float = 0.9
    """Median nearest-neighbour cosine of strong embeddings at or above which `threshold`
    applies as it is (generated voices: 0.89-0.92)."""
    adapt_slope: float = 1.0
    """The cut rises by this much per unit the median nearest-neighbour cosine falls below
    `tight_similarity`: real voices are less alike within themselves (and further apart) than
    generated ones. On 7 min of real meeting speech (27 speakers) a fixed 0.4 gives 32.5% DER,
    the adapted cut 26.0%; the generated files and the call stay as they were."""
    max_threshold: float = 0.55
    """The adapted cut's ceiling: the real call's two speakers are 0.3-0.44 alike (cosine), so
    at 0.6 they merge (its embeddings are few: where its own spread asks for more, the cut
    stays here; the meeting's would go to 0.6, for 21.6%)."""
    adapt_nodes: int = 2000
    """Strong embeddings whose nearest neighbour is looked up (bounded work on long files)."""
    min_cluster_sec: float = 8.0
    """A cluster with less speech than this (its strong local speakers' and the weak ones'
    that join it by voice) is no speaker of its own: it joins the big one whose centroid is
    nearest. Scaled with the file, see below. Counting only the strong ones' speech, the AMI
    excerpts (27 speakers, most heard for a few seconds, often in short turns) came out as 6
    speakers and 27.1-27.5% DER (scale-out over seven placements of the macro chunks; whole
    file 22.8-28.3%, 6-8 speakers); counting the weak ones too (`_join_small`), 10 speakers
    and 19.7-20.1% (whole file 19.4-24.7%, 8-10); the generated conversations (2, 3, 4 and 6
    voices, 5 min to 2 h) and the call came out as they were."""
    min_cluster_share: float = 0.1
    """Short files: at most this share of all the speech is asked (a 20 s clip's second voice
    may say 3 s)."""
    long_file_share: float = 0.005
    """Long files: at least this share of all the speech is asked, up to `long_file_max_sec`
    (a 2 h meeting: 30 s; a voice's odd minute there formed a fifth speaker at 8 s)."""
    long_file_max_sec: float = 60.0
    lone_join_similarity: float = 0.7
    """A cluster of one local speaker (however long) this similar to a cluster of several
    joins it: one window's embedding a little off is no new speaker (cosine 0.79 to its own
    voice, 0.51 to the other, in a 2-voice conversation), a second voice heard once is."""
    known_floor: float = 0.6
    """Cosine similarity a cluster needs to a known speaker's reference to take its name."""
    min_strong_sec: float = 2.0
    """Clean (not overlapped) speech a local speaker needs for its embedding to enter the
    linkage; embedded ones with less join the nearest cluster afterwards."""
    join_gap_sec: float = 0.1
    """One label's turns closer than this merge into one."""
    max_linkage_nodes: int = 4000
    """The most local speakers that enter the linkage; the others join the nearest cluster."""


def cluster_speakers(
    local: Sequence[LocalSpeaker],
    constraints: SpeakerConstraints | None = None,
    known: Sequence[KnownSpeaker] = (),
    options: ClusteringOptions | None = None,
) -> SpeakerTimeline:
    """One global clustering over every local speaker of a job. Labels 'A', 'B', ... in order
    of first speech, or a known speaker's name. No local speakers: an empty timeline."""
    constraints = constraints or SpeakerConstraints()
    options = options or ClusteringOptions()
    if not local:
        return SpeakerTimeline()
    speech = np.array([_speech_sec(speaker) for speaker in local])
    options = replace(options, min_cluster_sec=_min_cluster_sec(float(speech.sum()), options))
    clean = speech - np.array([_overlap_sec(speaker) for speaker in local])
    embedded = np.array([speaker.embedding is not None for speaker in local])
    strong = embedded & (clean >= options.min_strong_sec)
    if not strong.any():
        strong = embedded
    clusters = np.full(len(local), -1)
    if strong.any():
        vectors = _normalised(
            np.array([s.embedding for s in local if s.embedding is not None], np.float32)
        )
        rows = np.cumsum(embedded) - 1  # local index -> row of `vectors`
        weak = embedded & ~strong
        clusters[strong], merge_small = _cluster(
            vectors[rows[strong]], speech[strong], constraints, options
        )
        if merge_small:
            provisional = clusters.copy()
            if weak.any():
                _place_by_voice(
                    local, provisional, vectors[rows[weak]], np.flatnonzero(weak), speech
                )
            k = int(clusters.max()) + 1
            clusters[strong] = _join_small(
                vectors[rows[strong]],
                clusters[strong],
                np.bincount(clusters[strong], weights=speech[strong], minlength=k),
                np.bincount(provisional[weak], weights=speech[weak], minlength=k),
                options,
                most=constraints.num_speakers or constraints.max_speakers,
            )
        if weak.any():
            _place_by_voice(local, clusters, vectors[rows[weak]], np.flatnonzero(weak), speech)
    else:
        clusters[:] = 0
    _place_by_time(local, clusters)
    names = _names(local, clusters, speech, known, options)
    labels = [names[int(c)] for c in clusters]
    turns = _timeline_turns(local, labels, options.join_gap_sec)
    speakers = list(dict.fromkeys(label for _, _, label in turns))
    return SpeakerTimeline(turns=turns, speakers=speakers, local_labels=labels)


def _min_cluster_sec(total_speech_sec: float, options: ClusteringOptions) -> float:
    scaled = max(options.min_cluster_sec, options.long_file_share * total_speech_sec)
    scaled = min(scaled, max(options.long_file_max_sec, options.min_cluster_sec))
    return min(scaled, options.min_cluster_share * total_speech_sec)


def _speech_sec(speaker: LocalSpeaker) -> float:
    return sum(turn.end_sec - turn.start_sec for turn in speaker.turns)


def _overlap_sec(speaker: LocalSpeaker) -> float:
    return sum(span.end_sec - span.start_sec for span in speaker.overlap)


def _normalised(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    normalised: np.ndarray = vectors / np.maximum(norms, 1e-12)
    return normalised


def _cluster(
    vectors: np.ndarray,
    speech: np.ndarray,
    constraints: SpeakerConstraints,
    options: ClusteringOptions,
) -> tuple[np.ndarray, bool]:
    """Cluster index (0..k-1) of each embedding, and whether small clusters may join big ones
    (`_cut`)."""
    n = len(vectors)
    if n == 1:
        return np.zeros(1, dtype=int), False
    core = np.arange(n)
    if n > options.max_linkage_nodes:
        core = np.sort(np.argsort(-speech, kind="stable")[: options.max_linkage_nodes])
    distances = cosine_distances(vectors[core])
    if options.method == "centroid":  # Euclidean between unit vectors: sqrt(2 cosine distance)
        np.sqrt(2 * distances, out=distances)
    # Imported here: scipy's clustering and optimisation take ~0.5 s to import, and an
    # orchestrator needs them only at the end of a diarized job, not at every start.
    from scipy.cluster.hierarchy import linkage

    tree = linkage(distances, method=options.method)
    clusters = np.full(n, -1)
    threshold = adapted_threshold(vectors[core], options)
    clusters[core], merge_small = _cut(
        tree, speech[core], constraints, replace(options, threshold=threshold)
    )
    if len(core) < n:
        centroids = _centroids(vectors[core], clusters[core])
        rest = clusters < 0
        clusters[rest] = (vectors[rest] @ centroids.T).argmax(axis=1)
    return _renumber(clusters), merge_small


def adapted_threshold(vectors: np.ndarray, options: ClusteringOptions) -> float:
    """The tree's cut for this recording: `threshold` where a voice's embeddings are as alike
    as generated voices' (median nearest-neighbour cosine `tight_similarity`), higher where
    they are more spread out, as real voices over a phone line are."""
    if len(vectors) < 3:
        return options.threshold
    sample = vectors[: options.adapt_nodes]
    similarity = sample @ vectors.T
    similarity[np.arange(len(sample)), np.arange(len(sample))] = -1.0
    nearest = float(np.median(similarity.max(axis=1)))
    spread = max(0.0, options.tight_similarity - nearest)
    return min(options.threshold + options.adapt_slope * spread, options.max_threshold)


def cosine_distances(vectors: np.ndarray) -> np.ndarray:
    """Condensed (scipy `pdist` layout) cosine distances of L2-normalised rows, computed in
    float32 blocks: faster than `pdist` and without its float64 temporaries."""
    n = len(vectors)
    out = np.empty(n * (n - 1) // 2, dtype=np.float64)
    position = 0
    for first in range(0, n, 512):
        block = vectors[first : first + 512] @ vectors.T
        for row, similarities in enumerate(block):
            i = first + row
            out[position : position + n - i - 1] = 1.0 - similarities[i + 1 :]
            position += n - i - 1
    np.clip(out, 0.0, 2.0, out=out)
    return out


def _cut(
    tree: np.ndarray,
    speech: np.ndarray,
    constraints: SpeakerConstraints,
    options: ClusteringOptions,
) -> tuple[np.ndarray, bool]:
    """Cut the tree at the threshold, or, where the constraints say otherwise, where the number
    of big clusters they ask for appears. Returns the cluster of each leaf and whether small
    clusters may join big ones (not when the count asked for needs them)."""
    n = len(speech)
    node_speech = np.concatenate([speech, np.zeros(n - 1)])
    for i, (a, b) in enumerate(tree[:, :2].astype(int)):
        node_speech[n + i] = node_speech[a] + node_speech[b]
    big = node_speech >= options.min_cluster_sec
    nodes, num_big = _undo(tree, big, lambda i, _: tree[i, 2] > options.threshold)
    wanted = _wanted(num_big, constraints)
    if wanted is not None:
        nodes, num_big = _undo(tree, big, lambda _, num_big: num_big < wanted)
        if num_big < wanted:  # too little speech for that many big clusters: all count
            nodes, _ = _undo(tree, big, lambda i, _: n - 1 - i < wanted)
            return _leaf_clusters(tree, n, nodes), False
    return _leaf_clusters(tree, n, nodes), True


def _undo(
    tree: np.ndarray, big: np.ndarray, go_on: Callable[[int, int], bool]
) -> tuple[set[int], int]:
    """Undo the tree's merges from the root down (latest first) while `go_on(merge index,
    big clusters so far)`: the clusters (tree nodes) left, and how many are big."""
    n = len(tree) + 1
    nodes, num_big = {2 * n - 2}, int(big[2 * n - 2])
    for i in range(n - 2, -1, -1):
        if not go_on(i, num_big):
            break
        a, b = int(tree[i, 0]), int(tree[i, 1])
        nodes.remove(n + i)
        nodes.update((a, b))
        num_big += int(big[a]) + int(big[b]) - int(big[n + i])
    return nodes, num_big


def _wanted(num_big: int, constraints: SpeakerConstraints) -> int | None:
    """How many big clusters the constraints ask for, given the threshold's count."""
    if constraints.num_speakers is not None:
        return constraints.num_speakers
    if constraints.min_speakers is not None and num_big < constraints.min_speakers:
        return constraints.min_speakers
    if constraints.max_speakers is not None and num_big > constraints.max_speakers:
        return constraints.max_speakers
    return None


def _leaf_clusters(tree: np.ndarray, n: int, nodes: set[int]) -> np.ndarray:
    """Cluster index of each leaf: the position of its ancestor in sorted `nodes`."""
    clusters = np.full(n, -1)
    for index, node in enumerate(sorted(nodes)):
        stack = [node]
        while stack:
            current = stack.pop()
            if current < n:
                clusters[current] = index
            else:
                stack.extend(int(child) for child in tree[current - n, :2])
    return clusters


def _join_small(
    vectors: np.ndarray,
    clusters: np.ndarray,
    strong_speech: np.ndarray,
    weak_speech: np.ndarray,
    options: ClusteringOptions,
    most: int | None = None,
) -> np.ndarray:
    """Clusters with less than `min_cluster_sec` of speech join the big cluster whose centroid
    is nearest to theirs; so does a big cluster of one local speaker alone that is as near as
    `lone_join_similarity` to a big cluster of several.

    A cluster's speech is its strong local speakers' (`strong_speech`) and the weak ones' that
    would join it by voice (`weak_speech`): a real voice heard in short turns has most of its
    speech in them. Weak embeddings are noisy, so they count for at most as much as the strong
    ones (a lone strong embedding between voices draws weak ones from all of them: in a 2 h
    meeting one of 2.1 s drew 40 s), and a cluster big only with them must be no nearer to a
    big one of strong speech than any two of those are to each other (nor nearer than
    `lone_join_similarity`): a stray at the edge of a voice draws that voice's weak ones.
    With `most` (the speaker count or maximum asked for), those big only with weak speech fill
    what room the others leave, the most speech first."""
    heard = strong_speech + np.minimum(weak_speech, strong_speech)
    k = int(clusters.max()) + 1
    big = heard >= options.min_cluster_sec
    if not big.any():
        return clusters
    centroids = _centroids(vectors, clusters)
    lone = np.bincount(clusters, minlength=k) == 1
    several = big & ~lone
    if several.any():
        nearest = (centroids @ centroids[several].T).max(axis=1)
        big &= ~(lone & (nearest >= options.lone_join_similarity))
    established = big & (strong_speech >= options.min_cluster_sec)
    if established.any():
        limit = options.lone_join_similarity
        if established.sum() >= 2:
            apart = centroids[established] @ centroids[established].T
            np.fill_diagonal(apart, -1.0)
            limit = min(limit, float(apart.max()))
        nearest = (centroids @ centroids[established].T).max(axis=1)
        big &= established | (nearest <= limit)
    if most is not None:
        promoted = np.flatnonzero(big & ~established)
        room = max(0, most - int(established.sum()))
        big &= established
        big[promoted[np.argsort(-heard[promoted], kind="stable")][:room]] = True
    similarity = centroids @ centroids[big].T
    target = np.flatnonzero(big)[similarity.argmax(axis=1)]
    return np.where(big[clusters], clusters, target[clusters])


def _centroids(vectors: np.ndarray, clusters: np.ndarray) -> np.ndarray:
    k = int(clusters.max()) + 1
    sums = np.zeros((k, vectors.shape[1]), dtype=np.float64)
    np.add.at(sums, clusters, vectors)
    return _normalised(sums).astype(np.float32)


def _renumber(clusters: np.ndarray) -> np.ndarray:
    renumbered: np.ndarray = np.unique(clusters, return_inverse=True)[1]
    return renumbered.reshape(-1)


# -- local speakers without an embedding ------------------------------------------------------


def _extents(local: Sequence[LocalSpeaker]) -> np.ndarray:
    """[n, 2]: each local speaker's first start and last end."""
    return np.array(
        [
            (min(t.start_sec for t in s.turns), max(t.end_sec for t in s.turns))
            if s.turns
            else (0.0, 0.0)
            for s in local
        ]
    )


def _place_by_voice(
    local: Sequence[LocalSpeaker],
    clusters: np.ndarray,
    vectors: np.ndarray,
    indices: np.ndarray,
    speech: np.ndarray,
) -> None:
    """Local speakers with a weak embedding (little clean speech) join the cluster whose
    centroid is nearest, but not one heard in their own window."""
    placed = np.flatnonzero(clusters >= 0)
    extents = _extents(local)
    strong_vectors = np.array([local[int(i)].embedding for i in placed], np.float32)
    centroids = _centroids(_normalised(strong_vectors) * speech[placed, None], clusters[placed])
    for vector, i in zip(vectors, indices, strict=True):
        similarity = centroids @ vector
        rivals = clusters[placed][_overlapping(extents, i, placed)]
        if len(rivals) < len(centroids):
            similarity[rivals] = -np.inf
        clusters[i] = int(similarity.argmax())


def _overlapping(extents: np.ndarray, i: int, others: np.ndarray) -> np.ndarray:
    start, end = extents[i]
    return np.asarray((extents[others, 0] < end) & (start < extents[others, 1]))


def _place_by_time(local: Sequence[LocalSpeaker], clusters: np.ndarray) -> None:
    """Local speakers without an embedding (too little clean speech: a backchannel, a word in
    overlap) take the cluster of the nearest embedded one in time, skipping the clusters heard
    in their own window (those whose extents overlap theirs: voices of one window are
    distinct, and windows' cores do not overlap)."""
    missing = np.flatnonzero(clusters < 0)
    placed = np.flatnonzero(clusters >= 0)
    if not len(missing) or not len(placed):
        return
    extents = _extents(local)
    starts, ends = extents[placed, 0], extents[placed, 1]
    for i in missing:
        start, end = extents[i]
        gap = np.maximum(starts - end, start - ends)
        rival = np.isin(clusters[placed], clusters[placed][gap < 0])
        choice = np.where(rival, np.inf, np.maximum(gap, 0.0))
        nearest = int(choice.argmin()) if np.isfinite(choice).any() else int(gap.argmin())
        clusters[i] = clusters[placed[nearest]]


# -- names and the timeline ------------------------------------------------------------------


def letter_labels() -> Iterator[str]:
    """A, B, ..., Z, AA, AB, ...: OpenAI's style, endless."""
    for size in count(1):
        for letters in product(string.ascii_uppercase, repeat=size):
            yield "".join(letters)


def _names(
    local: Sequence[LocalSpeaker],
    clusters: np.ndarray,
    speech: np.ndarray,
    known: Sequence[KnownSpeaker],
    options: ClusteringOptions,
) -> dict[int, str]:
    """Known names for the clusters that match a reference (one each, Hungarian, above the
    floor); letters in order of first speech for the rest."""
    names: dict[int, str] = {}
    embedded = [i for i, s in enumerate(local) if s.embedding is not None]
    if known and embedded:
        vectors = _normalised(np.array([local[i].embedding for i in embedded], np.float32))
        k = int(clusters.max()) + 1
        sums = np.zeros((k, vectors.shape[1]))
        np.add.at(sums, clusters[embedded], vectors * speech[embedded, None])
        present = np.flatnonzero(np.linalg.norm(sums, axis=1) > 0)
        references = _normalised(np.array([s.embedding for s in known], np.float32))
        similarity = _normalised(sums[present]) @ references.T
        from scipy.optimize import linear_sum_assignment  # at first use: see `_cluster`

        rows, columns = linear_sum_assignment(-similarity)
        for row, column in zip(rows, columns, strict=True):
            if similarity[row, column] >= options.known_floor:
                names[int(present[row])] = known[column].name
    extents = _extents(local)
    first: dict[int, float] = {}
    for i in np.argsort(extents[:, 0], kind="stable"):
        first.setdefault(int(clusters[i]), float(extents[i, 0]))
    taken = set(names.values())
    letters = (label for label in letter_labels() if label not in taken)
    for cluster in sorted(first, key=first.__getitem__):
        if cluster not in names:
            names[cluster] = next(letters)
    return names


def _timeline_turns(
    local: Sequence[LocalSpeaker], labels: list[str], join_gap_sec: float
) -> list[tuple[float, float, str]]:
    by_label: dict[str, list[tuple[float, float]]] = {}
    for speaker, label in zip(local, labels, strict=True):
        by_label.setdefault(label, []).extend((t.start_sec, t.end_sec) for t in speaker.turns)
    turns: list[tuple[float, float, str]] = []
    for label, spans in by_label.items():
        merged: list[tuple[float, float]] = []
        for start, end in sorted(spans):
            if merged and start - merged[-1][1] < join_gap_sec:
                merged[-1] = (merged[-1][0], max(merged[-1][1], end))
            else:
                merged.append((start, end))
        turns.extend((start, end, label) for start, end in merged)
    turns.sort()
    return turns


# -- while a job streams ---------------------------------------------------------------------


class ProvisionalLabels:
    """Online labels while a job streams: each micro chunk's local speakers take the label of
    the nearest running centroid (never a label already heard in the same window). Only a
    local speaker with `min_strong_sec` of clean speech, further than `threshold` (cosine
    similarity) from every centroid, starts a new label; weaker ones take the nearest, and
    those without an embedding the label nearest in time. Known speakers start as centroids
    under their names. `final_map` then maps every provisional label to the final label that
    holds most of its speech. Deterministic: replaying a job's local speakers in order
    rebuilds it (a resumed job)."""

    RECENT = 64
    """Embedded local speakers remembered (with their time) to place unembedded ones."""
    KNOWN_WEIGHT_SEC = 5.0
    """A known speaker's reference counts as this much speech in its running centroid."""

    def __init__(
        self,
        constraints: SpeakerConstraints | None = None,
        known: Sequence[KnownSpeaker] = (),
        threshold: float = 0.6,
        min_strong_sec: float = 2.0,
    ) -> None:
        constraints = constraints or SpeakerConstraints()
        self._cap = constraints.num_speakers or constraints.max_speakers
        self._threshold = threshold
        self._min_strong_sec = min_strong_sec
        self._labels = [speaker.name for speaker in known]
        self._sums = [
            _normalised(np.asarray(s.embedding, np.float64)) * self.KNOWN_WEIGHT_SEC for s in known
        ]
        taken = set(self._labels)
        self._letters = (label for label in letter_labels() if label not in taken)
        self._given: list[str] = []
        self._recent: list[tuple[float, float, str]] = []

    def add(self, speakers: Sequence[LocalSpeaker]) -> list[str]:
        """The provisional label of each of one micro chunk's local speakers."""
        extents = _extents(speakers)
        labels: list[str | None] = [None] * len(speakers)
        clean = [_speech_sec(s) - _overlap_sec(s) for s in speakers]

        def rivals(i: int) -> set[str | None]:
            return {
                labels[j]
                for j in range(len(speakers))
                if j != i and labels[j] and _overlaps(extents[i], extents[j])
            }

        for strong in (True, False):
            for i, speaker in enumerate(speakers):
                if speaker.embedding is None or (clean[i] >= self._min_strong_sec) != strong:
                    continue
                vector = _normalised(np.asarray(speaker.embedding, np.float64))
                label = self._nearest(vector, rivals(i), may_start=strong or not self._labels)
                if label is None:
                    label = next(self._letters)
                    self._labels.append(label)
                    self._sums.append(np.zeros_like(vector))
                self._sums[self._labels.index(label)] += vector * max(clean[i], 0.5)
                labels[i] = label
                self._recent.append((*extents[i], label))
        for i in range(len(speakers)):
            if labels[i] is None:
                labels[i] = self._by_time(extents[i], rivals(i))
        del self._recent[: -self.RECENT]
        given = [label for label in labels if label is not None]
        self._given.extend(given)
        return given

    def _nearest(self, vector: np.ndarray, rivals: set[str | None], may_start: bool) -> str | None:
        """The label whose centroid is nearest, or None for a new one."""
        if not self._labels:
            return None
        similarity = _normalised(np.array(self._sums)) @ vector
        for index, label in enumerate(self._labels):
            if label in rivals:
                similarity[index] = -np.inf
        best = int(similarity.argmax())
        if not np.isfinite(similarity[best]):
            return None
        full = self._cap is not None and len(self._labels) >= self._cap
        if similarity[best] >= self._threshold or full or not may_start:
            return self._labels[best]
        return None

    def _by_time(self, extent: np.ndarray, rivals: set[str | None]) -> str:
        start, end = extent
        candidates = [
            (max(s - end, start - e, 0.0), label)
            for s, e, label in self._recent
            if label not in rivals
        ]
        if candidates:
            return min(candidates)[1]
        free = [label for label in self._labels if label not in rivals] or self._labels
        if free:
            return free[-1]
        self._labels.append(next(self._letters))
        self._sums.append(np.zeros(EMBEDDING_DIM))
        return self._labels[-1]

    def final_map(self, local: Sequence[LocalSpeaker], final: SpeakerTimeline) -> dict[str, str]:
        """{provisional label: final label}: each provisional label goes to the final label that
        holds most of its speech. `local`: every local speaker given to `add`, in the same
        order, and clustered into `final`."""
        if not len(local) == len(self._given) == len(final.local_labels):
            raise ValueError(
                f"final_map needs the {len(self._given)} local speakers given to add, in order, "
                f"and their final timeline (got {len(local)} and {len(final.local_labels)})"
            )
        speech: dict[str, dict[str, float]] = {}
        for speaker, provisional, label in zip(local, self._given, final.local_labels, strict=True):
            held = speech.setdefault(provisional, {})
            held[label] = held.get(label, 0.0) + _speech_sec(speaker) + 1e-6
        return {
            provisional: max(held, key=held.__getitem__) for provisional, held in speech.items()
        }


def _overlaps(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(a[0] < b[1] and b[0] < a[1])
