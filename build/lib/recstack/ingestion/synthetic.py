"""A synthetic short-video platform: catalogue, users and behaviour drawn from a latent-taste model.

Why: tests, demos and benchmarks need data at any scale that behaves like a real platform — popularity
skew, category structure, heavy users, sessions, skips — and in which personalisation measurably pays
(a personalised model beats global popularity on a held-out split), without shipping or downloading data.

The model, all of it reproducible from `SyntheticConfig.seed`:

- categories have a centroid on the unit sphere in R^d, Zipf-like sizes, a typical duration and a
  vocabulary whose words also have latent vectors (so titles carry signal beyond the category);
- items sit near their category's centroid, with a log-normal duration, a power-law popularity prior, a
  creation time, and a title, tags and description drawn from words close to the item's vector;
- users have a taste near one to three category centroids, a heavy-tailed activity level (which fixes
  how many interaction rows each user gets), a signup time and attributes (country, age band, device);
- behaviour is sessions of impressions: an item is picked with probability ∝ popularity^a ·
  exp(affinity / temperature) among items that exist at that time; an impression becomes `watch` (value:
  seconds watched, a fraction of the duration that grows with affinity) or `skip` (value: the few seconds
  seen before swiping away, likely when affinity is low), followed sometimes by `like` and `share`
  (value 1, likelier with affinity).

Output contract (the ingestion layer reads these names):

- users: user_id ("u000123"), country, age_band, device, created_at
- items: item_id ("v000042"), title, category, tags, description, duration_s (float), created_at
- interactions: event_id (unique, deterministic), user_id, item_id, event_type (watch|like|skip|share),
  value (float), timestamp

Times are ISO-8601 UTC strings with milliseconds and a trailing Z in CSV and timestamp[ms, UTC] in
Parquet; tags are "|"-joined in CSV and list<string> in Parquet. Interactions come grouped by user (users
in id order), each user's rows strictly increasing in time, every row after the user's signup and the
item's creation. They are not globally sorted by time. The same config gives byte-identical files,
whatever the chunk size (Parquet row groups follow the chunk size; their content does not).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from recstack.errors import ConfigurationError

logger = logging.getLogger(__name__)

OutputFormat = Literal["csv", "parquet"]
Progress = Callable[[int], None]

DAY_MS: Final = 86_400_000
SKIP_MAX_S: Final = 10.0
"""A skip's value (seconds seen before swiping away) never exceeds this, nor half the video."""
MIN_DURATION_S: Final = 5.0
MAX_DURATION_S: Final = 600.0

USER_SCHEMA: Final = pa.schema([
    ("user_id", pa.string()), ("country", pa.string()), ("age_band", pa.string()), ("device", pa.string()),
    ("created_at", pa.timestamp("ms", tz="UTC")),
])
ITEM_SCHEMA: Final = pa.schema([
    ("item_id", pa.string()), ("title", pa.string()), ("category", pa.string()),
    ("tags", pa.list_(pa.string())), ("description", pa.string()), ("duration_s", pa.float64()),
    ("created_at", pa.timestamp("ms", tz="UTC")),
])
INTERACTION_SCHEMA: Final = pa.schema([
    ("event_id", pa.string()), ("user_id", pa.string()), ("item_id", pa.string()),
    ("event_type", pa.string()), ("value", pa.float64()), ("timestamp", pa.timestamp("ms", tz="UTC")),
])

_WATCH, _LIKE, _SKIP, _SHARE = 0, 1, 2, 3
_EVENT_NAMES: Final = pa.array(["watch", "like", "skip", "share"])

# Category vocabularies: words unique across categories, so a bag-of-words model can recover categories.
_VOCABULARY: Final[dict[str, tuple[str, ...]]] = {
    "comedy": ("prank", "sketch", "standup", "parody", "bloopers", "roast", "meme", "impression"),
    "cooking": ("recipe", "pasta", "ramen", "baking", "grill", "dessert", "streetfood", "airfryer"),
    "gaming": ("speedrun", "minecraft", "boss", "walkthrough", "esports", "clutch", "loot", "retro"),
    "music": ("cover", "guitar", "piano", "remix", "acoustic", "drums", "karaoke", "beat"),
    "dance": ("choreo", "kpop", "hiphop", "ballet", "salsa", "shuffle", "routine", "freestyle"),
    "fitness": ("workout", "hiit", "yoga", "abs", "squat", "cardio", "stretch", "gains"),
    "travel": ("roadtrip", "beach", "hostel", "backpacking", "island", "cityguide", "hike", "flight"),
    "pets": ("puppy", "kitten", "parrot", "rescue", "zoomies", "grooming", "hamster", "corgi"),
    "beauty": ("makeup", "skincare", "nails", "contour", "lipstick", "grwm", "haircut", "glow"),
    "fashion": ("outfit", "thrift", "haul", "streetwear", "sneakers", "lookbook", "styling", "vintage"),
    "diy": ("woodwork", "crafts", "upcycle", "repair", "knitting", "resin", "garden", "tools"),
    "science": ("experiment", "physics", "chemistry", "space", "biology", "telescope", "rocket", "atoms"),
    "tech": ("unboxing", "smartphone", "laptop", "setup", "gadget", "coding", "review", "keyboard"),
    "sports": ("football", "basketball", "highlights", "goal", "dunk", "tennis", "skate", "surf"),
    "cars": ("supercar", "drift", "detailing", "engine", "restoration", "offroad", "dashcam", "ev"),
    "education": ("history", "math", "language", "explainer", "studytips", "geography", "quiz", "facts"),
    "news": ("breaking", "election", "weather", "economy", "interview", "report", "update", "debate"),
    "art": ("painting", "sketchbook", "watercolor", "pottery", "animation", "lettering", "mural", "portrait"),
    "nature": ("wildlife", "ocean", "forest", "birds", "storm", "volcano", "sunset", "mountains"),
    "parenting": ("toddler", "baby", "momlife", "dadjokes", "bedtime", "school", "family", "lunchbox"),
    "finance": ("investing", "budget", "crypto", "stocks", "savings", "sidehustle", "taxes", "realestate"),
    "movies": ("trailer", "recap", "theory", "bts", "anime", "horror", "scifi", "marvel"),
    "asmr": ("whisper", "tapping", "slime", "satisfying", "soap", "crunchy", "relaxing", "sleep"),
    "food": ("mukbang", "tasting", "burger", "sushi", "spicy", "snack", "foodie", "brunch"),
}
_GLOBAL_WORDS: Final = (
    "best", "new", "epic", "daily", "quick", "ultimate", "live", "full", "top", "my", "first", "crazy",
    "easy", "real", "pov", "vlog", "story", "challenge", "tips", "insane", "day", "ever", "how", "why",
    "secret", "perfect", "weekend", "tonight", "honest", "simple",
)
_GLOBAL_TAGS: Final = ("fyp", "viral", "trending", "foryou", "shorts")
_COUNTRIES: Final = ("US", "IN", "BR", "ID", "MX", "GB", "DE", "FR", "JP", "PH", "NG", "TR", "VN", "KR", "ES")
_AGE_BANDS: Final = ("13-17", "18-24", "25-34", "35-44", "45-54", "55+")
_DEVICES: Final = ("android", "ios", "web", "tv")
_DEVICE_SHARE: Final = (0.55, 0.33, 0.08, 0.04)

# Random streams, so that e.g. the item catalogue does not change when only `users` changes.
_CATEGORY_STREAM, _ITEM_STREAM, _USER_STREAM, _BEHAVIOUR_STREAM = 1, 2, 3, 4
# A block of users shares one candidate pool; its size bounds memory whatever the configured scale.
_BLOCK_EVENTS: Final = 100_000
_BLOCK_USERS: Final = 512
# Items created during the window become visible at the start of the next of these slices.
_TIME_SLICES: Final = 12
_SESSION_GAP_MS: Final = 10 * 60_000


@dataclass(frozen=True)
class SyntheticConfig:
    """Everything that shapes a synthetic data set; the same config always gives the same data.

    `interactions` is the exact number of interaction rows (all event types together). Interactions fall
    in `[start, start + time_span_days]` (a very heavy user's last session may run past the end); users
    sign up and items are created from `backlog_days` before `start` on. `start` must be tz-aware or is
    taken as UTC; keep the whole window in the past, since ingestion rejects future timestamps.
    """

    users: int
    items: int
    interactions: int
    seed: int = 42
    categories: int = 20
    latent_dim: int = 16
    popularity_skew: float = 1.0
    """Zipf exponent of the item popularity prior (item of popularity rank r has prior r^-skew)."""
    popularity_weight: float = 0.9
    """`a` in popularity^a · exp(affinity / temperature): how much the crowd steers what users see."""
    temperature: float = 0.2
    """Lower → users stick to their taste; affinity is a cosine in [-1, 1]."""
    taste_concentration: float = 3.0
    """How tightly a user's taste sits on their categories' centroids (noise scale 1 / concentration)."""
    item_spread: float = 0.5
    """How far items stray from their category's centroid (noise scale, centroids have norm 1)."""
    session_length: float = 8.0
    """Mean impressions per session (geometric)."""
    start: datetime = datetime(2026, 1, 1, tzinfo=UTC)
    time_span_days: float = 90.0
    backlog_days: float = 365.0
    candidate_pool: int = 1024
    """Candidates drawn by popularity^a per block of users and time slice, then reweighted by affinity;
    catalogues up to twice this size are used whole."""

    def __post_init__(self) -> None:
        if self.start.tzinfo is None:
            object.__setattr__(self, "start", self.start.replace(tzinfo=UTC))
        problems = [
            f"{name} must be at least {low}"
            for name, low in (("users", 1), ("items", 1), ("interactions", 0), ("categories", 1),
                              ("latent_dim", 2), ("candidate_pool", 1))
            if getattr(self, name) < low
        ]
        problems += [
            f"{name} must be positive"
            for name in ("temperature", "taste_concentration", "time_span_days", "session_length")
            if not getattr(self, name) > 0
        ]
        problems += [
            f"{name} must not be negative"
            for name in ("popularity_skew", "popularity_weight", "item_spread", "backlog_days")
            if getattr(self, name) < 0
        ]
        if self.session_length < 1:
            problems.append("session_length must be at least 1")
        if problems:
            raise ConfigurationError("invalid synthetic config: " + "; ".join(problems))

    @property
    def start_ms(self) -> int:
        return int(self.start.timestamp() * 1000)

    @property
    def end_ms(self) -> int:
        return self.start_ms + int(self.time_span_days * DAY_MS)

    def digest(self) -> str:
        """Eight hex characters naming this config; prefixes event ids so two data sets never collide."""
        fields = {**asdict(self), "start": self.start.isoformat()}
        text = json.dumps(fields, sort_keys=True)
        return hashlib.blake2b(text.encode(), digest_size=4).hexdigest()


@dataclass(frozen=True)
class _Categories:
    names: list[str]
    words: np.ndarray  # (K, W) str
    centroids: np.ndarray  # (K, d), unit rows
    share: np.ndarray  # (K,) share of items and of tastes, sums to 1
    word_vectors: np.ndarray  # (K, W, d), unit
    median_duration: np.ndarray  # (K,) seconds
    age_mix: np.ndarray  # (K, len(_AGE_BANDS)) age-band distribution of the category's fans


@dataclass(frozen=True)
class _World:
    """The catalogue plus the hidden state that behaviour is drawn from."""

    users: pa.Table
    items: pa.Table
    user_vectors: np.ndarray  # (U, d) float32
    item_vectors: np.ndarray  # (I, d) float32
    popularity: np.ndarray  # (I,) prior
    duration_s: np.ndarray  # (I,)
    created_ms: np.ndarray  # (I,) int64
    signup_ms: np.ndarray  # (U,) int64
    budget: np.ndarray  # (U,) interaction rows per user, sums to config.interactions
    oldest_item: int
    pool_cdf: np.ndarray | None  # cumulative popularity^a when candidate pools are sampled, else None


def _rng(config: SyntheticConfig, *stream: int) -> np.random.Generator:
    return np.random.default_rng([config.seed, *stream])


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _ids(prefix: str, n: int) -> pa.Array:
    width = max(6, len(str(n - 1)))
    return pc.binary_join_element_wise(
        prefix, pc.utf8_lpad(pc.cast(pa.array(np.arange(n)), pa.string()), width, "0"), ""
    )


def _categories(config: SyntheticConfig) -> _Categories:
    rng = _rng(config, _CATEGORY_STREAM)
    k, d = config.categories, config.latent_dim
    base = list(_VOCABULARY.items())
    names, words = [], []
    for c in range(k):
        name, vocab = base[c % len(base)]
        suffix = "" if c < len(base) else str(c // len(base) + 1)
        names.append(name + suffix)
        words.append([w + suffix for w in vocab])
    share = 1.0 / np.arange(1, k + 1) ** 0.8
    share = rng.permutation(share / share.sum())
    centroids = _unit(rng.standard_normal((k, d)))
    word_noise = 0.6 * rng.standard_normal((k, len(words[0]), d)) / np.sqrt(d)
    return _Categories(
        names=names,
        words=np.array(words),
        centroids=centroids,
        share=share,
        word_vectors=_unit(centroids[:, None, :] + word_noise),
        median_duration=np.exp(rng.uniform(np.log(20.0), np.log(200.0), k)),
        age_mix=rng.dirichlet(np.full(len(_AGE_BANDS), 0.8), k),
    )


def _item_text(
    cats: _Categories, category: np.ndarray, vectors: np.ndarray, duration: np.ndarray,
    rng: np.random.Generator,
) -> tuple[list[str], list[list[str]], list[str]]:
    """Titles, tags and descriptions whose category words are drawn by closeness to the item's vector."""
    n, n_words = len(category), cats.words.shape[1]
    sims = np.empty((n, n_words))
    for c in range(len(cats.names)):
        members = category == c
        sims[members] = vectors[members] @ cats.word_vectors[c].T
    # Gumbel-top-k draws words without replacement with probability ∝ exp(similarity / 0.1).
    order = np.argsort(-(sims / 0.1 + rng.gumbel(size=sims.shape)), axis=1)
    ranked = cats.words[category[:, None], order].tolist()
    n_tags = rng.integers(2, 5, n).tolist()
    lead = rng.integers(len(_GLOBAL_WORDS), size=n).tolist()
    tail = np.where(rng.random(n) < 0.4, rng.integers(len(_GLOBAL_WORDS), size=n), -1).tolist()
    part = np.where(rng.random(n) < 0.15, rng.integers(2, 10, n), 0).tolist()
    extra_tag = np.where(rng.random(n) < 0.3, rng.integers(len(_GLOBAL_TAGS), size=n), -1).tolist()
    length = np.select([duration < 60, duration < 240], ["quick", "short"], "long").tolist()
    titles, tags, descriptions = [], [], []
    for i, w in enumerate(ranked):
        words = [_GLOBAL_WORDS[lead[i]], w[0], w[1]]
        if tail[i] >= 0:
            words.append(_GLOBAL_WORDS[tail[i]])
        if part[i]:
            words += ["part", str(part[i])]
        title = " ".join(words)
        titles.append(title[0].upper() + title[1:])
        tags.append(w[: n_tags[i]] + ([_GLOBAL_TAGS[extra_tag[i]]] if extra_tag[i] >= 0 else []))
        descriptions.append(f"A {length[i]} {cats.names[category[i]]} video about {w[0]}, {w[1]} and {w[2]}.")
    return titles, tags, descriptions


def _items(config: SyntheticConfig, cats: _Categories) -> tuple[pa.Table, dict[str, np.ndarray]]:
    rng = _rng(config, _ITEM_STREAM)
    n, d = config.items, config.latent_dim
    category = rng.choice(len(cats.names), size=n, p=cats.share)
    vectors = _unit(cats.centroids[category] + config.item_spread * rng.standard_normal((n, d)) / np.sqrt(d))
    popularity = (rng.permutation(n) + 1.0) ** -config.popularity_skew
    duration = rng.lognormal(np.log(cats.median_duration[category]), 0.6)
    duration = np.clip(np.round(duration, 1), MIN_DURATION_S, MAX_DURATION_S)
    created = rng.integers(config.start_ms - int(config.backlog_days * DAY_MS), config.end_ms, n)
    oldest = int(np.argmin(created))
    # Something must be watchable from the first moment, so the oldest item predates the window.
    created[oldest] = min(created[oldest], config.start_ms - DAY_MS)
    titles, tags, descriptions = _item_text(cats, category, vectors, duration, rng)
    table = pa.table(
        [
            _ids("v", n), pa.array(titles, pa.string()),
            pa.array(np.array(cats.names)[category], pa.string()), pa.array(tags, pa.list_(pa.string())),
            pa.array(descriptions, pa.string()), pa.array(duration),
            pa.array(created, pa.timestamp("ms", tz="UTC")),
        ],
        schema=ITEM_SCHEMA,
    )
    hidden = {"vectors": vectors.astype(np.float32), "popularity": popularity, "duration": duration,
              "created": created, "oldest": np.array(oldest)}
    return table, hidden


def _pick_categorical(probabilities: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One draw per row of a (n, k) probability matrix."""
    return (np.cumsum(probabilities, axis=1) < rng.random((len(probabilities), 1))).sum(axis=1)


def _users(config: SyntheticConfig, cats: _Categories) -> tuple[pa.Table, dict[str, np.ndarray]]:
    rng = _rng(config, _USER_STREAM)
    n, d = config.users, config.latent_dim
    n_tastes = rng.choice(3, size=n, p=(0.5, 0.35, 0.15)) + 1
    picks = rng.choice(len(cats.names), size=(n, 3), p=cats.share)
    mix = rng.dirichlet(np.full(3, 2.0), n) * (np.arange(3) < n_tastes[:, None])
    mix /= mix.sum(axis=1, keepdims=True)
    taste = rng.standard_normal((n, d)) / (np.sqrt(d) * config.taste_concentration)
    for j in range(3):
        taste += mix[:, j : j + 1] * cats.centroids[picks[:, j]]
    activity = rng.lognormal(0.0, 1.1, n)
    budget = rng.multinomial(config.interactions, activity / activity.sum())
    span = config.end_ms - config.start_ms
    signup = rng.integers(config.start_ms - int(config.backlog_days * DAY_MS), config.end_ms - span // 10, n)
    country_share = 1.0 / np.arange(1, len(_COUNTRIES) + 1)
    country = rng.choice(len(_COUNTRIES), size=n, p=country_share / country_share.sum())
    age = _pick_categorical(cats.age_mix[picks[:, 0]], rng)
    device = rng.choice(len(_DEVICES), size=n, p=_DEVICE_SHARE)
    table = pa.table(
        [
            _ids("u", n), pa.array(np.array(_COUNTRIES)[country]), pa.array(np.array(_AGE_BANDS)[age]),
            pa.array(np.array(_DEVICES)[device]), pa.array(signup, pa.timestamp("ms", tz="UTC")),
        ],
        schema=USER_SCHEMA,
    )
    return table, {"vectors": _unit(taste).astype(np.float32), "budget": budget, "signup": signup}


def _world(config: SyntheticConfig) -> _World:
    cats = _categories(config)
    items, item_state = _items(config, cats)
    users, user_state = _users(config, cats)
    return _World(
        users=users, items=items, user_vectors=user_state["vectors"], item_vectors=item_state["vectors"],
        popularity=item_state["popularity"], duration_s=item_state["duration"],
        created_ms=item_state["created"], signup_ms=user_state["signup"], budget=user_state["budget"],
        oldest_item=int(item_state["oldest"]),
        pool_cdf=(
            np.cumsum(item_state["popularity"] ** config.popularity_weight)
            if config.items > 2 * config.candidate_pool else None
        ),
    )


def make_catalog(config: SyntheticConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Users and items frames: columns as in the module docstring, times datetime64[ms, UTC], tags lists."""
    world = _world(config)
    items = world.items.to_pandas()
    items["tags"] = items["tags"].map(list)
    return world.users.to_pandas(), items


def _blocks(budget: np.ndarray) -> list[tuple[int, int]]:
    """Contiguous user ranges of about _BLOCK_EVENTS rows and at most _BLOCK_USERS users.

    Depends only on the config (never on the output chunk size), so the data are the same however
    they are chunked.
    """
    n = len(budget)
    before = np.cumsum(budget) - budget
    key = (before // _BLOCK_EVENTS) * (n // _BLOCK_USERS + 1) + np.arange(n) // _BLOCK_USERS
    edges = [0, *(np.flatnonzero(np.diff(key)) + 1).tolist(), n]
    return list(itertools.pairwise(edges))


def _candidate_pool(
    world: _World, config: SyntheticConfig, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Candidate items and their log prior weight.

    Large catalogues use sampling-importance-resampling: the pool is drawn ∝ popularity^a, so only the
    affinity term remains to weight it by. The oldest item is always in the pool so that every time slice
    has something to show.
    """
    n = len(world.popularity)
    if world.pool_cdf is None:
        return np.arange(n), config.popularity_weight * np.log(world.popularity)
    cdf = world.pool_cdf
    pool = np.minimum(np.searchsorted(cdf, rng.random(config.candidate_pool) * cdf[-1], side="right"), n - 1)
    pool[0] = world.oldest_item
    return pool, np.zeros(len(pool))


def _choose_items(
    world: _World, config: SyntheticConfig, lo: int, hi: int, imp_user: np.ndarray, imp_slice: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """An item per impression, ∝ popularity^a · exp(affinity / T) among items created before its slice.

    Each time slice draws its own candidate pool, so users of one block do not all share one menu.
    """
    slice_ms = (config.end_ms - config.start_ms) / _TIME_SLICES
    chosen = np.empty(len(imp_user), dtype=np.int64)
    for s in np.unique(imp_slice):
        pool, log_prior = _candidate_pool(world, config, rng)
        created = world.created_ms[pool]
        sel = np.flatnonzero(imp_slice == s)
        rows = np.unique(imp_user[sel])
        visible = created <= config.start_ms + s * slice_ms
        # einsum rather than `@`: these products are small and many, and a multithreaded BLAS spends far
        # more on waking its threads than on the arithmetic (40× slower on a busy machine).
        logits = np.einsum("ud,id->ui", world.user_vectors[lo + rows], world.item_vectors[pool[visible]])
        logits /= config.temperature
        logits += log_prior[visible]
        weights = np.exp(logits - logits.max(axis=1, keepdims=True))
        cum = np.cumsum(weights, axis=1)
        # One searchsorted for all rows: row r's normalised CDF is shifted into (r, r + 1].
        flat = (cum / cum[:, -1:] + np.arange(len(rows))[:, None]).ravel()
        row = np.searchsorted(rows, imp_user[sel])
        n_visible = int(visible.sum())
        pos = np.searchsorted(flat, row + rng.random(len(sel)), side="right")
        # row + u can round up to row + 1 for large rows; keep such a draw on its row's last item.
        chosen[sel] = pool[visible][np.minimum(pos - row * n_visible, n_visible - 1)]
    return chosen


def _sessions(
    config: SyntheticConfig, signup: np.ndarray, budget: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Split each user's impressions into sessions with provisional start times, in time order per user.

    Returns (impression → user, impression → session, session → user, session → provisional start ms).
    """
    n_imp = int(budget.sum())
    imp_user = np.repeat(np.arange(len(budget)), budget)
    new_session = rng.random(n_imp) < 1.0 / config.session_length
    new_session[(np.cumsum(budget) - budget)[budget > 0]] = True
    session = np.cumsum(new_session) - 1
    session_user = imp_user[new_session]
    earliest = np.maximum(signup, config.start_ms)[session_user]
    start = earliest + (rng.random(len(session_user)) * (config.end_ms - earliest)).astype(np.int64)
    return imp_user, session, session_user, start[np.lexsort((start, session_user))]


def _without_overlap(start: np.ndarray, length: np.ndarray, group: np.ndarray) -> np.ndarray:
    """Shift sessions later where needed so that a user's sessions never overlap.

    s_k = max(start_k, s_(k-1) + length_(k-1)) within a group, computed as c_k + cummax(start_j - c_j)
    where c is the exclusive cumulative length; adding group · 2^45 keeps the running max per group.
    """
    before = np.cumsum(length) - length
    c = before - before[np.searchsorted(group, group)]
    offset = group.astype(np.int64) << 45
    return c + np.maximum.accumulate(start - c + offset) - offset


@dataclass(frozen=True)
class _Reactions:
    """What each impression turned into."""

    skip: np.ndarray
    value: np.ndarray  # seconds watched (watch) or seen before swiping away (skip)
    like: np.ndarray
    share: np.ndarray


def _react(affinity: np.ndarray, duration: np.ndarray, rng: np.random.Generator) -> _Reactions:
    """Viewers' reactions; the thresholds give about a quarter skips, a median watched fraction of about
    three quarters, and likes and shares on a few percent of impressions, mostly on high-affinity videos.
    """
    n = len(affinity)
    interest = affinity + rng.normal(0.0, 0.1, n)
    skip = rng.random(n) < _sigmoid((0.4 - interest) / 0.1)
    fraction = np.clip(_sigmoid((interest - 0.6) / 0.15 + rng.normal(0.0, 0.8, n)), 0.05, 1.0)
    fraction[fraction > 0.97] = 1.0
    watched = np.minimum(np.maximum(np.round(fraction * duration, 1), 0.5), duration)
    seen = np.round(np.minimum(0.3 + rng.exponential(1.5, n), np.minimum(SKIP_MAX_S, 0.5 * duration)), 1)
    like = ~skip & (rng.random(n) < 0.003 + 0.2 * fraction * _sigmoid((interest - 0.8) / 0.06))
    share = ~skip & (rng.random(n) < 0.0005 + 0.03 * _sigmoid((interest - 0.85) / 0.05))
    return _Reactions(skip=skip, value=np.where(skip, seen, watched), like=like, share=share)


def _block_table(world: _World, config: SyntheticConfig, lo: int, hi: int, block: int) -> pa.Table:
    """All interaction rows of users [lo, hi), exactly budget[u] rows per user."""
    rng = _rng(config, _BEHAVIOUR_STREAM, block)
    budget = world.budget[lo:hi]
    # At least one row per impression, so as many impressions as rows always suffice; the surplus of each
    # user's last impressions is cut below.
    imp_user, session, session_user, provisional = _sessions(config, world.signup_ms[lo:hi], budget, rng)
    n = len(imp_user)
    span = config.end_ms - config.start_ms
    session_slice = np.minimum((provisional - config.start_ms) * _TIME_SLICES // span, _TIME_SLICES - 1)
    item = _choose_items(world, config, lo, hi, imp_user, session_slice[session], rng)
    affinity = np.einsum("nd,nd->n", world.user_vectors[lo + imp_user], world.item_vectors[item])
    r = _react(affinity, world.duration_s[item], rng)

    # Within a session: watch (ends after `value`), like, share, swipe to the next video.
    value_ms = np.round(r.value * 1000).astype(np.int64)
    like_gap = np.where(r.like, 200 + rng.exponential(1500.0, n).astype(np.int64), 0)
    share_gap = np.where(r.share, 500 + rng.exponential(3000.0, n).astype(np.int64), 0)
    elapsed = value_ms + like_gap + share_gap + 300 + rng.exponential(1500.0, n).astype(np.int64)
    before = np.cumsum(elapsed) - elapsed
    first = np.flatnonzero(np.diff(session, prepend=-1))
    session_ms = np.add.reduceat(elapsed, first) + _SESSION_GAP_MS
    session_start = _without_overlap(provisional, session_ms, session_user)
    watch_at = session_start[session] + before - before[first][session] + value_ms

    count = 1 + r.like.astype(np.int64) + r.share
    imp = np.repeat(np.arange(n), count)
    k = np.arange(len(imp)) - np.repeat(np.cumsum(count) - count, count)
    is_share = (k == 2) | ((k == 1) & ~r.like[imp])
    kind = np.where(k == 0, np.where(r.skip[imp], _SKIP, _WATCH), np.where(is_share, _SHARE, _LIKE))
    at = watch_at[imp] + np.where(k > 0, like_gap[imp], 0) + np.where(is_share, share_gap[imp], 0)
    row_value = np.where(k == 0, r.value[imp], 1.0)

    user = imp_user[imp]
    keep = np.arange(len(imp)) - np.searchsorted(user, user) < budget[user]
    user, imp, kind, at, row_value = user[keep], imp[keep], kind[keep], at[keep], row_value[keep]
    first_row = int(np.sum(world.budget[:lo]))
    numbers = pc.cast(pa.array(np.arange(first_row, first_row + len(imp))), pa.string())
    width = max(9, len(str(config.interactions)))
    event_ids = pc.binary_join_element_wise(config.digest() + "-", pc.utf8_lpad(numbers, width, "0"), "")
    return pa.table(
        [
            event_ids, world.users.column("user_id").take(pa.array(lo + user)),
            world.items.column("item_id").take(pa.array(item[imp])), _EVENT_NAMES.take(pa.array(kind)),
            pa.array(row_value, pa.float64()), pa.array(at, pa.timestamp("ms", tz="UTC")),
        ],
        schema=INTERACTION_SCHEMA,
    )


def _interaction_tables(world: _World, config: SyntheticConfig, chunk_size: int) -> Iterator[pa.Table]:
    """Interaction rows in chunks of exactly `chunk_size` rows (the last may be shorter)."""
    if chunk_size < 1:
        raise ConfigurationError(f"chunk_size must be at least 1, not {chunk_size}")
    pending: list[pa.Table] = []
    n_pending = 0
    for block, (lo, hi) in enumerate(_blocks(world.budget)):
        if not world.budget[lo:hi].any():
            continue
        table = _block_table(world, config, lo, hi, block)
        pending.append(table)
        n_pending += table.num_rows
        while n_pending >= chunk_size:
            whole = pa.concat_tables(pending)
            yield whole.slice(0, chunk_size)
            pending, n_pending = [whole.slice(chunk_size)], n_pending - chunk_size
    if n_pending:
        yield pa.concat_tables(pending)


def iter_interactions(config: SyntheticConfig, chunk_size: int = 100_000) -> Iterator[pd.DataFrame]:
    """Interactions as DataFrames of `chunk_size` rows (timestamp: datetime64[ms, UTC]), for in-process use.

    The concatenation equals the `interactions` file of `generate` with the same config.
    """
    world = _world(config)
    for table in _interaction_tables(world, config, chunk_size):
        yield table.to_pandas()


_ISO_TEMPLATE: Final = np.frombuffer(b"0000-00-00T00:00:00.000Z", dtype=np.uint8)


def iso_timestamps(ms: np.ndarray) -> pa.Array:
    """Epoch milliseconds → "YYYY-MM-DDTHH:MM:SS.mmmZ" strings (years 1000–9999).

    Written digit by digit into one buffer: about 10× faster than Arrow's strftime, which matters at
    tens of millions of rows.
    """
    ms = np.asarray(ms, dtype=np.int64)
    n = len(ms)
    moment = ms.astype("datetime64[ms]")
    day = moment.astype("datetime64[D]")
    month = day.astype("datetime64[M]")
    of_day = (moment - day).astype(np.int64)
    fields = [
        (0, 4, month.astype("datetime64[Y]").astype(np.int64) + 1970),
        (5, 2, month.astype(np.int64) % 12 + 1),
        (8, 2, (day - month).astype(np.int64) + 1),
        (11, 2, of_day // 3_600_000),
        (14, 2, of_day // 60_000 % 60),
        (17, 2, of_day // 1000 % 60),
        (20, 3, of_day % 1000),
    ]
    text = np.empty((n, len(_ISO_TEMPLATE)), dtype=np.uint8)
    text[:] = _ISO_TEMPLATE
    for column, width, number in fields:
        for digit in range(width - 1, -1, -1):
            text[:, column + digit] = 48 + number % 10
            number = number // 10
    offsets = np.arange(0, len(_ISO_TEMPLATE) * (n + 1), len(_ISO_TEMPLATE), dtype=np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(text))


def _for_csv(table: pa.Table) -> pa.Table:
    """Timestamps as ISO-8601 Z strings and tag lists "|"-joined: what the CSV contract says."""
    for i, field in enumerate(table.schema):
        if pa.types.is_timestamp(field.type):
            column = table.column(i).combine_chunks()
            ms = column.cast(pa.int64()).to_numpy(zero_copy_only=False)
            table = table.set_column(i, field.name, iso_timestamps(ms))
        elif pa.types.is_list(field.type):
            table = table.set_column(i, field.name, pc.binary_join(table.column(i), "|"))
    return table


def _write(
    path: Path, fmt: OutputFormat, schema: pa.Schema, tables: Iterator[pa.Table], progress: Progress | None
) -> int:
    """Stream tables into one file via a temporary name, so a crash never leaves a complete-looking file."""
    partial = path.with_name(path.name + ".partial")
    rows = 0
    writer: pacsv.CSVWriter | pq.ParquetWriter
    if fmt == "csv":
        options = pacsv.WriteOptions(quoting_style="needed")
        writer = pacsv.CSVWriter(partial, _for_csv(schema.empty_table()).schema, write_options=options)
    else:
        # The first column is the file's unique id, where a dictionary only costs time.
        writer = pq.ParquetWriter(partial, schema, use_dictionary=schema.names[1:])
    try:
        for table in tables:
            writer.write_table(_for_csv(table) if fmt == "csv" else table)
            rows += table.num_rows
            if progress is not None:
                progress(table.num_rows)
    finally:
        writer.close()
    partial.replace(path)
    return rows


def generate(
    config: SyntheticConfig,
    out_dir: str | Path,
    fmt: OutputFormat = "csv",
    chunk_size: int = 200_000,
    progress: Progress | None = None,
) -> dict[str, Path]:
    """Write users, items and interactions files (`<kind>.csv` or `<kind>.parquet`) into `out_dir`.

    Interactions are generated and written `chunk_size` rows at a time, so memory stays bounded by the
    catalogue plus a few chunks whatever `config.interactions` is. `progress` receives the number of
    interaction rows just written. Returns {"users": path, "items": path, "interactions": path}.
    """
    if fmt not in ("csv", "parquet"):
        raise ConfigurationError(f"unsupported synthetic output format {fmt!r}; use csv or parquet")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    world = _world(config)
    paths = {kind: out / f"{kind}.{fmt}" for kind in ("users", "items", "interactions")}
    _write(paths["users"], fmt, USER_SCHEMA, iter([world.users]), None)
    _write(paths["items"], fmt, ITEM_SCHEMA, iter([world.items]), None)
    logger.info("synthetic catalogue: %d users, %d items in %.1f s", config.users, config.items,
                time.perf_counter() - began)
    rows = _write(paths["interactions"], fmt, INTERACTION_SCHEMA,
                  _interaction_tables(world, config, chunk_size), progress)
    elapsed = time.perf_counter() - began
    logger.info("synthetic interactions: %d rows in %.1f s (%.0f rows/s) → %s", rows, elapsed,
                rows / max(elapsed, 1e-9), out)
    return paths
