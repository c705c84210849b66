"""Question sets made offline from a corpus, and how answers to them are scored.

`shakespeare_qa` reads the embedded Shakespeare (title lines, the PERSONS REPRESENTED lists, speaker headings,
scenes) and asks five kinds of question: who speaks a line, which play it is from, what line comes next, who a
character is, and a verse line on a theme word. `corpus_qa` asks "next line" and "fill the gap" of any text.
Every question belongs to a passage (a scene, a persons-list entry, a paragraph); whole passages go to train or
test by a seeded hash, and a test question's text never appears in train. Scoring is exact match after
`normalise` (a theme answer counts when it contains the theme word), with a Wilson 95% interval and the
majority-answer baseline. It renders no tokens (chat.py) and runs no model (assistant.py).
"""

from __future__ import annotations

import hashlib
import math
import random
import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from scratchllm.data import load_corpus

KINDS = ("speaker", "play", "next_line", "character", "theme")
CORPUS_KINDS = ("next_line", "fill_gap")
THEMES = ("love", "death", "night", "king", "blood", "heaven", "sea", "fortune", "honour", "war", "crown", "sleep",
          "grief", "beauty", "time", "moon", "sun", "fire", "gold", "tears", "heart", "rose", "winter", "storm",
          "dream", "music", "sword", "grave", "fool", "god", "earth", "eyes", "father", "friend", "soul", "world",
          "spring", "flowers", "light", "youth")
_PERSONS = re.compile(r"^\s*(persons represented|dramatis personae)\W*$", re.IGNORECASE)
_HEADING = re.compile(r"^[A-Z][A-Za-z'\-]*(?: [A-Za-z'\-]+){0,3}\.?$")
_NOT_SPEAKER = re.compile(r"^(ACT|Act|SCENE|Scene|PROLOGUE|EPILOGUE|INDUCTION|THE PROLOGUE|FINIS|THE END)\b")
_GROUP_WORDS = {"a", "an", "the", "two", "three", "four", "several", "other", "others", "some", "lords", "officers"}


@dataclass(frozen=True)
class Question:
    """One question: its kind, what the user asks, the reference answer, and the passage it came from."""

    kind: str
    question: str
    answer: str
    group: str
    word: str = ""
    """For "theme": the word a correct reply contains (any line with it will do)."""
    conversation: tuple[dict, ...] = field(default=(), compare=False)
    """A user's whole conversation (system turn, later turns) when the question was read from one: trained whole,
    while `question` and `answer` are its first exchange."""

    @property
    def gold(self) -> str:
        """What a normalised reply must equal (or, for "theme", contain as a word)."""
        return normalise(self.word or self.answer)

    def messages(self) -> list[dict]:
        if self.conversation:
            return list(self.conversation)
        return [{"role": "user", "content": self.question}, {"role": "assistant", "content": self.answer}]


@dataclass
class QASet:
    """Train and test questions from disjoint passages."""

    train: list[Question]
    test: list[Question]

    def counts(self) -> dict[str, dict[str, int]]:
        """{"train": {kind: n}, "test": {kind: n}}."""
        return {name: dict(Counter(q.kind for q in qs)) for name, qs in (("train", self.train), ("test", self.test))}


# ----------------------------------------------------------------------------- scoring


def normalise(text: str) -> str:
    """Lowercase, drop punctuation, squeeze spaces: " Romeo, sir! " -> "romeo sir"."""
    text = unicodedata.normalize("NFKC", text).lower()
    return " ".join("".join(c if c.isalnum() else " " for c in text).split())


def is_correct(question: Question, reply: str) -> bool:
    if question.kind == "theme":
        return question.gold in normalise(reply).split()
    return normalise(reply) == question.gold


def wilson_interval(correct: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% interval for a proportion (Wilson score): (3, 10) -> (0.108, 0.603); sound near 0 and 1 too."""
    if n == 0:
        return 0.0, 1.0
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    lo, hi = max(0.0, centre - half), min(1.0, centre + half)
    return (0.0 if correct == 0 else min(lo, p)), (1.0 if correct == n else max(hi, p))  # exact at the ends


def accuracy(questions: Sequence[Question], replies: Sequence[str]) -> dict:
    """{"n", "correct", "accuracy", "interval": [lo, hi]} of replies against questions (same order)."""
    correct = sum(is_correct(q, r) for q, r in zip(questions, replies, strict=True))
    n = len(questions)
    return {"n": n, "correct": correct, "accuracy": correct / n if n else 0.0,
            "interval": list(wilson_interval(correct, n))}


def accuracy_by_kind(questions: Sequence[Question], replies: Sequence[str]) -> dict[str, dict]:
    """accuracy() overall ("all") and for each question kind."""
    rows = {"all": accuracy(questions, replies)}
    for kind in dict.fromkeys(q.kind for q in questions):
        pairs = [(q, r) for q, r in zip(questions, replies, strict=True) if q.kind == kind]
        rows[kind] = accuracy([q for q, _ in pairs], [r for _, r in pairs])
    return rows


def majority_answers(train: Iterable[Question]) -> dict[str, str]:
    """Per kind, the commonest normalised training answer: the score of always saying it is the baseline."""
    counts: dict[str, Counter] = defaultdict(Counter)
    for q in train:
        counts[q.kind][q.gold] += 1
    return {kind: c.most_common(1)[0][0] for kind, c in counts.items()}


def majority_replies(train: Iterable[Question], test: Sequence[Question]) -> list[str]:
    """The majority baseline's reply to each test question."""
    majority = majority_answers(train)
    return [majority.get(q.kind, "") for q in test]


def few_shot_prompt(question: Question, examples: Sequence[Question], shots: int = 3) -> str:
    """Plain-text prompt for a base model: `shots` solved examples of the same kind, then the question.

    The base model's answer is its continuation up to the first newline (see `first_line`).
    """
    same = [e for e in examples if e.kind == question.kind and e.question != question.question][:shots]
    solved = "".join(f"Question: {e.question}\nAnswer: {e.answer}\n\n" for e in same)
    return f"{solved}Question: {question.question}\nAnswer:"


def first_line(text: str) -> str:
    """A base model's answer: its continuation up to the first newline, stripped."""
    return text.strip().split("\n", 1)[0].strip()


# ----------------------------------------------------------------------------- reading the plays


@dataclass
class Play:
    """What the question makers need from one play: title, persons list and speeches, each with its scene."""

    title: str
    persons: list[tuple[str, str]]  # (name, description)
    speeches: list[tuple[int, str, list[str]]]  # (scene number, speaker, verse lines)


def split_works(text: str) -> list[tuple[str, list[str]]]:
    """(title, lines) per work: a title is the last non-blank line before "by William Shakespeare"."""
    lines = text.splitlines()
    starts = []
    for i, line in enumerate(lines):
        if line.strip() == "by William Shakespeare":
            j = i - 1
            while j > 0 and not lines[j].strip():
                j -= 1
            starts.append(j)
    ends = starts[1:] + [len(lines)]
    return [(lines[s].strip(), lines[s + 1:e]) for s, e in zip(starts, ends, strict=True)]


def _title_case(text: str) -> str:
    small = {"of", "and", "the", "or", "to", "in", "a"}
    words = text.strip().rstrip(".").lower().split()
    return " ".join(w if k and w in small else w[:1].upper() + w[1:] for k, w in enumerate(words))


def parse_persons(lines: Sequence[str]) -> tuple[list[tuple[str, str]], int]:
    """The "NAME, description." entries after the persons header, and the index of the line after the list."""
    start = next((i + 1 for i, line in enumerate(lines) if _PERSONS.match(line)), None)
    if start is None:
        return [], 0
    persons, i = [], start
    while i < len(lines) and not _NOT_SPEAKER.match(lines[i].strip()):
        name, _, description = lines[i].partition(",")
        name, description = " ".join(name.split()), " ".join(description.split()).strip(" .")
        while i + 1 < len(lines) and lines[i + 1][:1] in (" ", "\t") and lines[i + 1].strip():
            i += 1
            description += " " + lines[i].strip().rstrip(".")
        if _is_role(description) and 0 < len(name.split()) <= 4 and name.split()[0].lower() not in _GROUP_WORDS:
            persons.append((_title_case(name), description.strip()))
        i += 1
    return persons, i


def _is_role(description: str) -> bool:
    """A description that says who someone is: not empty, and not the tail of an entry shared with the line above
    ("ANTIPHOLUS OF SYRACUSE, and Aemelia, but unknown ...", "DROMIO OF SYRACUSE, the two Antipholuses" continue
    their neighbours'). "the Weaver" or "the right Duke of Milan" is a role of its own."""
    words = normalise(description).split()
    return bool(words) and words[0] not in ("and", "but") and words[:2] != ["the", "two"]


def _is_heading(lines: Sequence[str], i: int) -> bool:
    line = lines[i].strip()
    if not _HEADING.match(line) or _NOT_SPEAKER.match(line) or line != lines[i].rstrip():
        return False
    if i + 1 >= len(lines) or not lines[i + 1].strip() or lines[i + 1].lstrip().startswith("["):
        return i + 1 < len(lines) and lines[i + 1].lstrip().startswith("[") and line.isupper()
    return (i == 0 or not lines[i - 1].strip()) and (line.isupper() or line.endswith("."))


def parse_speeches(lines: Sequence[str]) -> list[tuple[int, str, list[str]]]:
    """(scene, speaker, lines) for each speech: a heading line after a blank line, then lines up to a blank one."""
    speeches, scene, i = [], 0, 0
    while i < len(lines):
        line = lines[i].strip()
        if re.match(r"^(SCENE|Scene)\b", line):
            scene += 1
        if _is_heading(lines, i):
            body, i = [], i + 1
            while i < len(lines) and lines[i].strip():
                if not lines[i].lstrip().startswith("["):
                    body.append(" ".join(lines[i].split()))
                i += 1
            if body:
                speeches.append((scene, _title_case(line), body))
        i += 1
    return speeches


def read_plays(text: str) -> list[Play]:
    """Every work with a persons list and speeches; a speaker must head three speeches to count as one."""
    plays = []
    for title, lines in split_works(text):
        persons, body_start = parse_persons(lines)
        if not persons:
            continue
        speeches = parse_speeches(lines[body_start:])
        heads = Counter(speaker for _, speaker, _ in speeches)
        speeches = [s for s in speeches if heads[s[1]] >= 3]
        if speeches:
            plays.append(Play(_title_case(title), persons, speeches))
    return plays


# ----------------------------------------------------------------------------- making questions


def in_test(group: str, test_fraction: float, seed: int) -> bool:
    """Whether a passage is held out: a seeded hash, so the split is the same on every machine."""
    digest = hashlib.sha256(f"{seed}:{group}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < test_fraction


def _usable(line: str) -> bool:
    return 20 <= len(line) <= 80 and len(line.split()) >= 4 and '"' not in line


def _line_questions(play: Play, unique: set[str], rng: random.Random) -> list[Question]:
    """Who speaks, which play, what comes next: one of each per speech, on lines found once in the corpus.

    The play question names the speaker, as the speaker question names the play: a reader answers one from the
    other (who appears in which play), which is knowledge a model can learn, not a guess at a line's style.
    """
    out = []
    for scene, speaker, body in play.speeches:
        group = f"{play.title}#scene {scene}"
        lines = [k for k, line in enumerate(body) if _usable(line) and normalise(line) in unique]
        if not lines:
            continue
        line = body[rng.choice(lines)]
        out.append(Question("speaker", f'In {play.title}, who says: "{line}"?', speaker, group))
        out.append(Question("play", f'Which play has {speaker} saying: "{line}"?', play.title, group))
        follow = [k for k in lines if k + 1 < len(body) and 10 <= len(body[k + 1]) <= 80]
        if follow:
            k = rng.choice(follow)
            out.append(Question("next_line", f'What line comes after: "{body[k]}"?', body[k + 1], group))
    return out


def _character_questions(play: Play) -> list[Question]:
    return [Question("character", f"Who is {name} in {play.title}?", description[:1].upper() + description[1:] + ".",
                     f"{play.title}#persons#{name}") for name, description in play.persons]


def _theme_questions(play: Play, rng: random.Random) -> list[Question]:
    """One question per (play, theme word) that some usable line of the play contains."""
    words: dict[str, list[str]] = defaultdict(list)
    for _, _, body in play.speeches:
        for line in body:
            if _usable(line):
                for word in set(normalise(line).split()) & set(THEMES):
                    words[word].append(line)
    return [Question("theme", f"Write a line of verse with the word {word}, as in {play.title}.",
                     rng.choice(lines), f"{play.title}#theme#{word}", word) for word, lines in sorted(words.items())]


def split_questions(questions: Iterable[Question], test_fraction: float, seed: int, max_train: int,
                    max_test: int) -> QASet:
    """Passages to train or test by hash; at most max_train / max_test per kind (seeded sample); no shared text."""
    by_split: dict[str, dict[str, list[Question]]] = {"train": defaultdict(list), "test": defaultdict(list)}
    for q in questions:
        by_split["test" if in_test(q.group, test_fraction, seed) else "train"][q.kind].append(q)
    rng = random.Random(seed)
    test = [q for qs in by_split["test"].values() for q in rng.sample(qs, min(max_test, len(qs)))]
    asked = {q.question for q in test}
    train = [q for qs in by_split["train"].values() for q in qs if q.question not in asked]
    train = [q for kind in dict.fromkeys(q.kind for q in train)
             for q in _sample([q for q in train if q.kind == kind], max_train, rng)]
    rng.shuffle(train)
    return QASet(train, test)


def _sample(items: list, k: int, rng: random.Random) -> list:
    return rng.sample(items, min(k, len(items)))


def shakespeare_qa(seed: int = 0, test_fraction: float = 0.1, max_train: int = 3000, max_test: int = 100,
                   text: str | None = None) -> QASet:
    """The built-in question set from the embedded corpus (or `text` in its format), split by scene/entry."""
    text = load_corpus("shakespeare").text if text is None else text
    plays = read_plays(text)
    counts = Counter(normalise(line) for p in plays for _, _, body in p.speeches for line in body)
    unique = {line for line, n in counts.items() if n == 1}
    rng = random.Random(seed)
    questions = []
    for play in plays:
        questions += _line_questions(play, unique, rng) + _character_questions(play) + _theme_questions(play, rng)
    return split_questions(questions, test_fraction, seed, max_train, max_test)


def corpus_qa(text: str, seed: int = 0, test_fraction: float = 0.1, max_train: int = 3000,
              max_test: int = 100) -> QASet:
    """Next-line and fill-the-gap questions from any text, one of each per paragraph (split by paragraph)."""
    rng = random.Random(seed)
    paragraphs = [[" ".join(s.split()) for s in p.splitlines() if s.strip()] for p in re.split(r"\n\s*\n", text)]
    counts = Counter(normalise(line) for p in paragraphs for line in p)
    questions = []
    for number, lines in enumerate(paragraphs):
        group = f"paragraph {number}"
        ok = [k for k, line in enumerate(lines) if _usable(line) and counts[normalise(line)] == 1]
        follow = [k for k in ok if k + 1 < len(lines) and 10 <= len(lines[k + 1]) <= 80]
        if follow:
            k = rng.choice(follow)
            questions.append(Question("next_line", f'What line comes after: "{lines[k]}"?', lines[k + 1], group))
        if ok:
            questions += _gap_question(lines[rng.choice(ok)], group, rng)
    return split_questions(questions, test_fraction, seed, max_train, max_test)


def _gap_question(line: str, group: str, rng: random.Random) -> list[Question]:
    words = [w for w in re.findall(r"[^\W\d_]{4,}", line)]
    if not words:
        return []
    word = rng.choice(words)
    gapped = re.sub(rf"\b{re.escape(word)}\b", "____", line, count=1)
    return [Question("fill_gap", f'Fill the gap with one word: "{gapped}"', word, group)]
