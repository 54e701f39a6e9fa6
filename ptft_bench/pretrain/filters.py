"""Clean and filter pretraining documents; every dropped document is counted under one reason.

Order (a document is dropped for the first reason that applies):

1. normalise: Unicode NFKC, control / zero-width characters removed, runs of spaces collapsed per
   line, blank-line runs collapsed; ``empty`` when nothing is left;
2. ``duplicate``: exact duplicates (SHA-1 of the normalised text), first occurrence kept; done
   before boilerplate so that a repeated document in a line-per-document file is a duplicate, not
   boilerplate;
2b. ``eval_overlap``: documents whose word sequence (lower-cased letters and digits only, so
   "``Conan''" and "\" conan \"" agree) equals a text of a benchmark task's validation or test
   split (``exclude`` keys, see :func:`text_key`); pretraining on the evaluation texts would let
   a domain-adapted model see the test sentences, unlabelled but verbatim;
3. ``boilerplate``: lines (at least ``boilerplate_min_chars`` long) that recur in at least
   ``boilerplate_min_docs`` documents are removed from every document; a document left empty is
   dropped;
4. ``too_short`` / ``too_long`` (words), ``non_letter`` (share of non-whitespace characters that
   are not letters);
5. ``near_duplicate``: MinHash-LSH (datasketch) over word shingles, Jaccard >= ``near_dup_threshold``;
6. held-out split: a stable share of the survivors chosen by a hash of their text, so adding
   documents never moves an old one between train and held-out.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections import Counter
from dataclasses import asdict, dataclass, field

from ptft_bench.pretrain.corpus import Document

_SPACES = re.compile(r"[^\S\n]+")
# Zero-width characters survive NFKC and split words invisibly for the tokenizer.
_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff"), None)

REASONS = (
    "empty",
    "duplicate",
    "eval_overlap",
    "boilerplate",
    "too_short",
    "too_long",
    "non_letter",
    "near_duplicate",
)


@dataclass
class CleanConfig:
    """Cleaning thresholds; each validated in ``__post_init__``."""

    min_words: int = field(default=3, metadata={"help": "drop documents with fewer words"})
    max_words: int = field(default=100_000, metadata={"help": "drop documents with more words"})
    max_non_letter: float = field(
        default=0.5,
        metadata={"help": "drop documents whose non-whitespace chars are > this share non-letters"},
    )
    boilerplate_min_docs: int = field(
        default=10,
        metadata={"help": "a line in at least this many documents is boilerplate (0 = off)"},
    )
    boilerplate_min_chars: int = field(
        default=25,
        metadata={"help": "shorter lines are never boilerplate (speaker names, headings)"},
    )
    dedup: bool = field(default=True, metadata={"help": "drop exact duplicates"})
    near_dup_threshold: float = field(
        default=0.8, metadata={"help": "MinHash Jaccard threshold for near-duplicates (0 = off)"}
    )
    num_perm: int = field(default=64, metadata={"help": "MinHash permutations"})
    shingle_words: int = field(default=3, metadata={"help": "words per shingle for MinHash"})
    heldout: float = field(
        default=0.05, metadata={"help": "share of documents held out for evaluation"}
    )

    def __post_init__(self) -> None:
        if self.min_words < 0 or self.max_words < max(1, self.min_words):
            raise ValueError(
                f"need 0 <= min_words <= max_words, got {self.min_words}, {self.max_words}"
            )
        if not 0 < self.max_non_letter <= 1:
            raise ValueError(f"max_non_letter must be in (0, 1], got {self.max_non_letter}")
        if not 0 <= self.near_dup_threshold <= 1:
            raise ValueError(f"near_dup_threshold must be in [0, 1], got {self.near_dup_threshold}")
        if not 0 <= self.heldout < 1:
            raise ValueError(f"heldout must be in [0, 1), got {self.heldout}")
        if self.boilerplate_min_docs < 0:
            raise ValueError(f"boilerplate_min_docs must be >= 0, got {self.boilerplate_min_docs}")


@dataclass
class CleanResult:
    """Kept documents (train / held-out) and the counts behind the data report."""

    train: list[Document]
    heldout: list[Document]
    dropped: dict[str, int]
    dropped_words: dict[str, int]
    boilerplate_lines: list[str]
    lines_removed: int
    normalised_changed: int
    config: dict


def normalise_text(text: str) -> str:
    """NFKC, no control or zero-width characters, single spaces, at most one blank line in a row."""
    text = unicodedata.normalize("NFKC", text).translate(_INVISIBLE)
    text = "".join(c for c in text if c in "\n\t" or unicodedata.category(c) != "Cc")
    lines = [_SPACES.sub(" ", line).strip() for line in text.splitlines()]
    out: list[str] = []
    for line in lines:
        if line or (out and out[-1]):
            out.append(line)
    return "\n".join(out).strip()


def non_letter_share(text: str) -> float:
    """Share of non-whitespace characters that are not letters (0 for an empty text)."""
    chars = [c for c in text if not c.isspace()]
    if not chars:
        return 0.0
    return sum(1 for c in chars if not unicodedata.category(c).startswith("L")) / len(chars)


def find_boilerplate(texts: list[str], min_docs: int, min_chars: int) -> set[str]:
    """Lines that occur in at least ``min_docs`` different documents (and are long enough)."""
    if min_docs <= 0:
        return set()
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update({line for line in text.split("\n") if len(line) >= min_chars})
    return {line for line, n in counts.items() if n >= min_docs}


def _shingles(text: str, n: int) -> list[bytes]:
    words = re.findall(r"\w+", text.lower())
    n = max(1, min(n, len(words)))
    return [" ".join(words[i : i + n]).encode() for i in range(max(1, len(words) - n + 1))]


def near_duplicate_flags(
    texts: list[str], threshold: float, num_perm: int, shingle_words: int
) -> list[bool]:
    """True for each text that nearly duplicates an earlier kept one (MinHash-LSH, then verified)."""
    from datasketch import MinHash, MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    hashes = MinHash.bulk([_shingles(t, shingle_words) for t in texts], num_perm=num_perm, seed=1)
    flags = []
    for i, mh in enumerate(hashes):
        # LSH candidates are approximate; the MinHash estimate decides, so the threshold means
        # what it says rather than what the band layout happens to let through.
        dup = any(hashes[j].jaccard(mh) >= threshold for j in lsh.query(mh))
        flags.append(dup)
        if not dup:
            lsh.insert(i, mh)
    return flags


_WORD = re.compile(r"[^\W_]+")


def text_key(text: str) -> str:
    """Lower-cased letter/digit runs joined by spaces: equal for two tokenisations of one sentence."""
    return " ".join(_WORD.findall(unicodedata.normalize("NFKC", text).lower()))


def is_heldout(text: str, share: float) -> bool:
    """Stable held-out membership from a hash of the text (independent of order and seed)."""
    if share <= 0:
        return False
    h = int.from_bytes(hashlib.sha1(text.encode()).digest()[:8], "big")
    return h / 2**64 < share


@dataclass
class _Drops:
    """Documents and words dropped per reason (every reason present, zero when unused)."""

    docs: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REASONS, 0))
    words: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REASONS, 0))

    def add(self, reason: str, text: str) -> None:
        self.docs[reason] += 1
        self.words[reason] += len(text.split())


def _normalise_and_dedup(
    docs: list[Document], config: CleanConfig, exclude: set[str] | None, drops: _Drops
) -> tuple[list[Document], int]:
    """Steps 1, 2 and 2b: (normalised documents kept, how many normalisation changed)."""
    changed = 0
    kept: list[Document] = []
    seen: set[bytes] = set()
    for doc in docs:
        text = normalise_text(doc.text)
        changed += text != doc.text
        if not text:
            drops.add("empty", doc.text)
            continue
        if config.dedup:
            digest = hashlib.sha1(text.encode()).digest()
            if digest in seen:
                drops.add("duplicate", text)
                continue
            seen.add(digest)
        if exclude and text_key(text) in exclude:
            drops.add("eval_overlap", text)
            continue
        kept.append(Document(text, doc.source))
    return kept, changed


def _filter_documents(
    docs: list[Document], boiler: set[str], config: CleanConfig, drops: _Drops
) -> tuple[list[Document], int]:
    """Steps 3 and 4: (survivors, boilerplate lines removed)."""
    lines_removed = 0
    survivors: list[Document] = []
    for doc in docs:
        text = doc.text
        if boiler:
            lines = text.split("\n")
            rest = [line for line in lines if line not in boiler]
            lines_removed += len(lines) - len(rest)
            text = normalise_text("\n".join(rest))
            if not text:
                drops.add("boilerplate", doc.text)
                continue
        n_words = len(text.split())
        if n_words < config.min_words:
            drops.add("too_short", text)
        elif n_words > config.max_words:
            drops.add("too_long", text)
        elif non_letter_share(text) > config.max_non_letter:
            drops.add("non_letter", text)
        else:
            survivors.append(Document(text, doc.source))
    return survivors, lines_removed


def _drop_near_duplicates(
    docs: list[Document], config: CleanConfig, drops: _Drops
) -> list[Document]:
    """Step 5."""
    if config.near_dup_threshold <= 0 or not docs:
        return docs
    flags = near_duplicate_flags(
        [d.text for d in docs], config.near_dup_threshold, config.num_perm, config.shingle_words
    )
    for doc, flag in zip(docs, flags):
        if flag:
            drops.add("near_duplicate", doc.text)
    return [d for d, flag in zip(docs, flags) if not flag]


def clean_corpus(
    docs: list[Document], config: CleanConfig | None = None, exclude: set[str] | None = None
) -> CleanResult:
    """Normalise, filter and split ``docs``; see the module docstring for the order of filters.

    ``exclude``: :func:`text_key` values of texts that must not be trained on (``eval_overlap``).
    """
    config = config or CleanConfig()
    drops = _Drops()
    kept, changed = _normalise_and_dedup(docs, config, exclude, drops)
    boiler = find_boilerplate(
        [d.text for d in kept], config.boilerplate_min_docs, config.boilerplate_min_chars
    )
    survivors, lines_removed = _filter_documents(kept, boiler, config, drops)
    survivors = _drop_near_duplicates(survivors, config, drops)
    heldout = [d for d in survivors if is_heldout(d.text, config.heldout)]
    train = [d for d in survivors if not is_heldout(d.text, config.heldout)]
    return CleanResult(
        train=train,
        heldout=heldout,
        dropped=drops.docs,
        dropped_words=drops.words,
        boilerplate_lines=sorted(boiler)[:20],
        lines_removed=lines_removed,
        normalised_changed=changed,
        config=asdict(config),
    )
