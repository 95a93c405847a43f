"""The demo collection: a small MS MARCO-shaped collection the project generates itself.

Made-up towns and people, eight facts about each, one short passage per fact and one
natural-language question per fact whose single judged relevant passage is that
fact's passage. It is built so that reranking has something to do:

* **Questions paraphrase the passage.** "how many people live in Velmora?" is
  answered by "Velmora has about 12,400 inhabitants." Most question templates share
  no content word with their passage except the entity name, so BM25 finds the
  entity's eight passages and then ranks them almost at random among themselves.
* **Distractors share the question's words.** Passages about other facts of the same
  entity use words that other questions ask with ("many people travel to Velmora
  to see ..."), and people's passages name towns ("in the town of Velmora"), so
  lexical matching is pulled towards wrong passages. BM25 (k1=0.9, b=0.4) has every
  relevant passage in its top 100 but an MRR@100 of 0.315 on the test questions.
* **A reranker can learn the mapping.** The paraphrases come from a closed set of
  templates (one passage and two question wordings per fact), so a model trained on
  the training questions can learn which question words go with which passage words
  and beat BM25 (the embedded ``pipeline run`` measures by how much).

Training, validation and test questions are about disjoint sets of entities, so a
reranker cannot memorise the facts it is tested on. Training triples (docpairs:
query, positive, negative) pair each training question with hard negatives: the
other passages of the same entity (those BM25 ranks highest), a passage of another
entity that names this one, the same fact about another entity, and random passages.

Everything is a pure function of the seed and the sizes; a few thousand passages take
well under a second.

Example:
    >>> files = generate("/tmp/demo-src", seed=0, entities=40)
    >>> sorted(files)[:3]
    ['docpairs', 'docs', 'qrels']
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pipeline import paths
from pipeline.errors import PipelineError
from pipeline.runs import atomic_path, write_json

SPLITS = ("train", "valid", "test")
# Bump when the generator's output changes for the same parameters (templates, vocabulary,
# sampling): it is part of DemoSpec.key(), so old files and registrations are replaced.
FORMAT = 1

# --- vocabulary ------------------------------------------------------------------------
# Syllables for made-up names; town and person names use different pools so that a
# name tells which kind of entity it is only through the passages, as in real text.
_TOWN_START = ["vel", "mor", "tar", "bel", "quen", "sol", "dra", "fen", "kal", "ost", "ul", "bram", "cor", "ny", "zel"]
_TOWN_MID = ["a", "o", "e", "i", "an", "or", "el", "is", "un", "ar"]
_TOWN_END = ["mora", "wick", "dale", "grad", "heim", "port", "ville", "stead", "burg", "mouth", "ford", "holm"]
_FIRST = ["orlen", "maela", "tavis", "ysolde", "bram", "idris", "kessa", "lorcan", "nerys", "oswin", "petra", "quill"]
_FIRST += ["rhoswen", "soren", "talia", "ulric", "vesna", "wren", "xanthe", "yorick", "zora", "alaric", "brisa", "cato"]
_LAST_START = ["bat", "cor", "dun", "ev", "gal", "har", "iv", "jor", "kes", "lam", "mar", "nov", "pell", "rast", "sib"]
_LAST_END = ["avic", "enko", "ström", "ford", "ley", "arian", "elli", "oux", "ardt", "ington", "qvist", "ado"]

_REGIONS = ["northern", "southern", "eastern", "western", "central", "coastal", "highland", "lowland"]
_INDUSTRIES = ["fishing", "wool weaving", "copper mining", "shipbuilding", "glassmaking", "timber", "salt trading"]
_INDUSTRIES += ["olive farming", "clockmaking", "printing"]
_BUILDINGS = ["lighthouse", "cathedral", "stone bridge", "clock tower", "fortress", "observatory", "opera house"]
_BUILDINGS += ["botanical garden", "windmill", "aqueduct"]
_BUILD_ADJ = ["old", "crooked", "white", "ancient", "famous", "restored", "tall", "painted"]
_DISHES = ["barley stew", "smoked eel", "rye dumplings", "honey cake", "lamb pie", "fish soup", "chestnut bread"]
_DISHES += ["plum tart", "goat cheese", "pickled herring"]
_SEASON = ["mild", "hot", "dry", "humid", "short", "foggy", "windy", "rainy"]
_WINTER = ["heavy snow", "freezing rain", "long frosts", "icy storms", "grey drizzle", "bitter winds"]
_JOBS = ["cartographer", "glassblower", "botanist", "architect", "composer", "astronomer", "engineer", "painter"]
_JOBS += ["chemist", "sculptor", "surgeon", "poet"]
_FIELDS = ["mathematics", "medicine", "chemistry", "architecture", "music", "geology", "philosophy", "astronomy"]
_PRIZES = ["Halvard", "Ostrin", "Meridian", "Corvane", "Lumen", "Serrat"]
_DEVICES = ["pocket barometer", "folding telescope", "steam loom", "water clock", "lens grinder", "rope bridge"]
_DEVICES += ["signal lamp", "seed drill", "printing roller", "diving bell"]

# --- facts: a passage template and two question templates each --------------------------
# Question templates mostly avoid the passage's content words (a few share one, e.g.
# "married", so BM25 gets some questions right for the right reason). Passage templates
# borrow words that *other* facts' questions use (people, year, work, town, ...), which
# is what misleads lexical matching. One passage and two question wordings per fact keep
# the mapping learnable by a 0.5M-parameter T5 in minutes on a CPU (four wordings and two
# passage forms per fact took several times longer to learn).
TOWN_FACTS: dict[str, tuple[str, tuple[str, str]]] = {
    "population": (
        "{e} has about {num} inhabitants, most of them in the old quarter near the {building}.",
        ("how many people live in {e}", "what is the population of {e}"),
    ),
    "founded": (
        "{e} was established in {year} by settlers from the {region} valleys.",
        ("when was {e} founded", "how old is the town of {e}"),
    ),
    "elevation": (
        "{e} sits {small} metres above sea level on a {region} plateau.",
        ("how high is {e}", "what is the altitude of {e}"),
    ),
    "mayor": (
        "The council of {e} has been led by {person} since {year}.",
        ("who is the mayor of {e}", "who governs {e}"),
    ),
    "economy": (
        "Most families in {e} earn their living from {industry}, which employs {pct} percent of workers.",
        ("what do people in {e} do for work", "main industry of {e}"),
    ),
    "climate": (
        "Summers in {e} are {season} and winters bring {winter}.",
        ("what is the weather like in {e}", "climate of {e}"),
    ),
    "landmark": (
        "Many people travel to {e} to see its {badj} {building}, built in {year}.",
        ("what is {e} famous for", "what should tourists see in {e}"),
    ),
    "cuisine": (
        "A traditional dish of {e} is {dish}, served at every festival since {year}.",
        ("what food is {e} known for", "what do they eat in {e}"),
    ),
}

PERSON_FACTS: dict[str, tuple[str, tuple[str, str]]] = {
    "born": (
        "{e} came into the world in {year} in the town of {town}.",
        ("when was {e} born", "birth date of {e}"),
    ),
    "died": (
        "{e} passed away in {year} at the age of {age}, in a house near {town}.",
        ("when did {e} die", "date of death of {e}"),
    ),
    "occupation": (
        "{e} worked as a {job} for most of {poss} life.",
        ("what was the profession of {e}", "what did {e} do for a living"),
    ),
    "spouse": (
        "{e} married {person} in {year} in {town}.",
        ("who was the wife or husband of {e}", "who was {e} married to"),
    ),
    "education": (
        "{e} studied {field} at the university of {town}.",
        ("where did {e} go to college", "what school did {e} attend"),
    ),
    "award": (
        "In {year} {e} received the {prize} Prize for work in {field}.",
        ("what honours did {e} win", "which prize was given to {e}"),
    ),
    "invention": (
        "{e} is best remembered for designing the first {device}.",
        ("what did {e} invent", "what is {e} famous for"),
    ),
    "children": (
        "{e} raised {kids} children, and {some} of them became {job}s too.",
        ("how many kids did {e} have", "did {e} have a family"),
    ),
}

# Second sentences that make passages MS MARCO-length and carry misleading words.
_FILLERS = [
    "Local guides often mention this when people ask about the area.",
    "The archive of the {region} historical society keeps records of it.",
    "It is a detail many visitors find surprising.",
    "Older residents still talk about it every year.",
    "Few sources outside the region report it.",
    "",
    "",
    "",
]


@dataclass(frozen=True)
class DemoSpec:
    """The parameters that determine a demo collection (a pure function of them).

    ``entities`` made-up entities (half towns, half people), eight facts each, one
    passage and one question per fact. ``split`` gives the fractions of *entities*
    whose questions form each split. ``negatives`` training triples per training
    question.

    Example:
        >>> DemoSpec(entities=40).passages
        320
    """

    name: str = "demo"
    seed: int = 0
    entities: int = 300
    split: tuple[tuple[str, float], ...] = (("train", 0.7), ("valid", 0.1), ("test", 0.2))
    negatives: int = 6
    facts_per_entity: int = field(default=8, init=False)

    @property
    def passages(self) -> int:
        return self.entities * self.facts_per_entity

    def key(self) -> str:
        """A short hash of every parameter; output folders and sidecars carry it."""
        text = json.dumps({**asdict(self), "format": FORMAT}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


def _check(spec: DemoSpec) -> None:
    if spec.entities < 10:
        raise PipelineError(f"demo: entities = {spec.entities}; need at least 10")
    names = [name for name, _ in spec.split]
    if sorted(names) != sorted(SPLITS):
        raise PipelineError(f"demo: split must name train, valid and test, got {names}")
    fractions = [frac for _, frac in spec.split]
    if any(f <= 0 for f in fractions) or abs(sum(fractions) - 1.0) > 1e-6:
        raise PipelineError(f"demo: split fractions must be positive and sum to 1, got {fractions}")
    if spec.negatives < 1:
        raise PipelineError(f"demo: negatives = {spec.negatives}; need at least 1")


def _unique_names(rng: random.Random, n: int, make) -> list[str]:
    names: list[str] = []
    seen: set[str] = set()
    while len(names) < n:
        name = make()
        if name not in seen:
            seen.add(name)
            names.append(name)
    return names


def _town_name(rng: random.Random) -> str:
    mid = rng.choice(_TOWN_MID) if rng.random() < 0.5 else ""
    return (rng.choice(_TOWN_START) + mid + rng.choice(_TOWN_END)).capitalize()


def _person_name(rng: random.Random) -> str:
    return f"{rng.choice(_FIRST).capitalize()} {(rng.choice(_LAST_START) + rng.choice(_LAST_END)).capitalize()}"


def _fill(template: str, rng: random.Random, entity: str, towns: list[str], people: list[str]) -> tuple[str, set[str]]:
    """One template with its slots filled from the seeded generator, and the other entities it names."""
    kids = rng.randint(2, 9)
    he = rng.random() < 0.5
    values = {
        "e": entity,
        "num": f"{rng.randint(2, 95) * 100 + rng.randint(0, 9) * 10:,}",
        "small": str(rng.randint(5, 2400)),
        "year": str(rng.randint(1420, 1990)),
        "age": str(rng.randint(38, 97)),
        "pct": str(rng.randint(15, 70)),
        "kids": str(kids),
        "some": str(rng.randint(1, kids - 1)),
        "region": rng.choice(_REGIONS),
        "industry": rng.choice(_INDUSTRIES),
        "building": rng.choice(_BUILDINGS),
        "badj": rng.choice(_BUILD_ADJ),
        "dish": rng.choice(_DISHES),
        "season": rng.choice(_SEASON),
        "winter": rng.choice(_WINTER),
        "job": rng.choice(_JOBS),
        "field": rng.choice(_FIELDS),
        "prize": rng.choice(_PRIZES),
        "device": rng.choice(_DEVICES),
        "town": rng.choice(towns),
        "person": rng.choice(people),
        "pron": "he" if he else "she",
        "poss": "his" if he else "her",
    }
    text = template.format(**values)
    mentions = {values[slot] for slot in ("town", "person") if "{" + slot + "}" in template}
    return text[0].upper() + text[1:], mentions - {entity}


def _negative_quotas(n: int) -> list[int]:
    """How many of a question's ``n`` negatives come from each pool (same entity, naming it, same fact)."""
    same_entity = (n + 1) // 2
    return [same_entity, 1 if n >= 3 else 0, 1 if n >= 4 else 0]


def build(spec: DemoSpec) -> dict:
    """The collection as Python data (no files): docs, queries, qrels, docpairs, splits.

    Returns ``{"docs": [(docid, text)], "queries": [(qid, text)], "qrels": [(qid, docid)],
    "docpairs": [(qid, pos, neg)], "split": "train=…,valid=…,test=…", "split_of": {qid: split},
    "facts": {docid: (entity, fact)}}``, every list sorted. ``split`` is the argument for
    :func:`pipeline.data.register` that reproduces ``split_of`` with seed ``spec.seed``.

    Example:
        >>> data = build(DemoSpec(entities=20))
        >>> len(data["docs"])
        160
    """
    _check(spec)
    rng = random.Random(spec.seed)
    n_towns = spec.entities // 2
    n_people = spec.entities - n_towns
    towns = _unique_names(rng, n_towns, lambda: _town_name(rng))
    people = _unique_names(rng, n_people, lambda: _person_name(rng))
    entities = [(t, TOWN_FACTS) for t in towns] + [(p, PERSON_FACTS) for p in people]

    # One passage and one question per (entity, fact).
    records = []  # (entity index, fact, passage, question)
    mentioned_in: dict[str, list[int]] = {}  # entity name -> records of *other* entities naming it
    for ei, (entity, facts) in enumerate(entities):
        for fact, (passage_template, question_templates) in facts.items():
            passage, mentions = _fill(passage_template, rng, entity, towns, people)
            filler = rng.choice(_FILLERS)
            if filler:
                passage += " " + _fill(filler, rng, entity, towns, people)[0]
            question = _fill(rng.choice(question_templates), rng, entity, towns, people)[0] + "?"
            records.append((ei, fact, passage, question))
            for name in mentions:
                mentioned_in.setdefault(name, []).append(len(records) - 1)

    # Split by entity: all questions about an entity fall in one split, so a reranker
    # is tested on entities it never saw in training.
    entity_order = list(range(len(entities)))
    rng.shuffle(entity_order)
    fractions = dict(spec.split)
    n_train = round(fractions["train"] * len(entities))
    n_valid = max(1, round(fractions["valid"] * len(entities)))
    if n_train < 1 or n_train + n_valid >= len(entities):
        raise PipelineError(f"demo: split {spec.split} leaves a split of {len(entities)} entities empty")
    split_of_entity = {}
    for pos, ei in enumerate(entity_order):
        split_of_entity[ei] = "train" if pos < n_train else "valid" if pos < n_train + n_valid else "test"
    n_records = len(records)
    sizes = {s: sum(1 for r in records if split_of_entity[r[0]] == s) for s in SPLITS}
    # The registration splits the questions with pipeline.data's seeded split (register(...,
    # split=...)); give each question the id that this split puts in its entity's part.
    # Ids thus carry no information, and the registered train/valid/test are entity-disjoint.
    split_text = ",".join(f"{s}={sizes[s] / n_records!r}" for s in SPLITS)
    width = len(str(n_records))
    from pipeline.data import parse_split, split_queries

    parts = split_queries([f"Q{i:0{width}d}" for i in range(n_records)], parse_split(split_text), spec.seed)
    if {s: len(parts[s]) for s in SPLITS} != sizes:  # cannot happen with exact fractions; guard anyway
        raise PipelineError(f"demo: data.split_queries sizes {parts} differ from the entity split {sizes}")
    qids = [""] * n_records
    for split in SPLITS:
        members = [ri for ri in range(n_records) if split_of_entity[records[ri][0]] == split]
        rng.shuffle(members)
        for ri, qid in zip(members, parts[split], strict=True):
            qids[ri] = qid
    split_of = {qids[ri]: split_of_entity[records[ri][0]] for ri in range(n_records)}

    # Shuffled document numbering, so that BM25's docid tie-breaking cannot favour the
    # relevant passage.
    doc_order = list(range(n_records))
    rng.shuffle(doc_order)
    docids = [""] * n_records
    for rank, ri in enumerate(doc_order):
        docids[ri] = f"D{rank:0{width}d}"

    queries = sorted((qids[ri], records[ri][3]) for ri in range(n_records))
    qrels = sorted((qids[ri], docids[ri]) for ri in range(n_records))

    # Training triples, hard negatives first, the kinds BM25 puts in a question's top 100:
    # half are the entity's other passages (BM25's top ranks), then a passage of another
    # entity that names this one ("born in Velmora"), the same fact about another entity
    # (teaches entity matching), and random passages for the rest.
    by_entity: dict[int, list[int]] = {}
    by_fact: dict[str, list[int]] = {}
    for ri, (ei, fact, _, _) in enumerate(records):
        by_entity.setdefault(ei, []).append(ri)
        by_fact.setdefault(fact, []).append(ri)
    quotas = _negative_quotas(spec.negatives)
    docpairs = []
    train_records = sorted((ri for ri in range(n_records) if split_of[qids[ri]] == "train"), key=lambda i: qids[i])
    for ri in train_records:
        ei, fact, _, _ = records[ri]
        pools = [
            [r for r in by_entity[ei] if r != ri],
            mentioned_in.get(entities[ei][0], []),
            [r for r in by_fact[fact] if records[r][0] != ei],
        ]
        negatives: list[int] = []
        for pool, quota in zip(pools, quotas, strict=True):
            pool = [r for r in pool if r not in negatives]
            negatives += rng.sample(pool, min(quota, len(pool)))
        while len(negatives) < spec.negatives:
            r = rng.randrange(n_records)
            if r != ri and r not in negatives:
                negatives.append(r)
        docpairs.extend((qids[ri], docids[ri], docids[neg]) for neg in negatives)

    docs = sorted((docids[ri], records[ri][2]) for ri in range(n_records))
    facts = {docids[ri]: (entities[records[ri][0]][0], records[ri][1]) for ri in range(n_records)}
    return {
        "docs": docs,
        "queries": queries,
        "qrels": qrels,
        "docpairs": docpairs,
        "split": split_text,
        "split_of": split_of,
        "facts": facts,
    }


def _write_lines(path: Path, lines) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for line in lines:
            f.write(line + "\n")


def generate(output: str | os.PathLike, seed: int = 0, entities: int = 300, **spec_fields) -> dict[str, Path]:
    """Write the demo collection to ``output`` and return its files by role.

    Files: ``docs.jsonl`` (Pyserini JsonCollection: ``{"id", "contents"}``),
    ``queries.tsv``, ``qrels.txt`` (TREC, one relevant passage per question),
    ``docpairs.tsv`` (training questions only: ``qid<TAB>pos<TAB>neg``) and
    ``spec.json`` (the parameters, the ``split`` argument for registration, counts).
    Every file is written atomically; the same parameters give byte-identical files.

    Example:
        >>> files = generate("/tmp/demo-src", seed=1, entities=20)
        >>> files["docs"].name
        'docs.jsonl'
    """
    return write(DemoSpec(seed=seed, entities=entities, **spec_fields), output)


def write(spec: DemoSpec, output: str | os.PathLike) -> dict[str, Path]:
    """Write the collection of ``spec`` to the folder ``output`` (see :func:`generate`)."""
    data = build(spec)
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "docs": out / "docs.jsonl",
        "queries": out / "queries.tsv",
        "qrels": out / "qrels.txt",
        "docpairs": out / "docpairs.tsv",
        "spec": out / "spec.json",
    }
    _write_lines(files["docs"], (json.dumps({"id": d, "contents": t}, ensure_ascii=False) for d, t in data["docs"]))
    _write_lines(files["queries"], (f"{q}\t{t}" for q, t in data["queries"]))
    _write_lines(files["qrels"], (f"{q} 0 {d} 1" for q, d in data["qrels"]))
    _write_lines(files["docpairs"], (f"{q}\t{p}\t{n}" for q, p, n in data["docpairs"]))
    counts = {"docs": len(data["docs"]), "docpairs": len(data["docpairs"])}
    for split in SPLITS:
        counts[f"queries/{split}"] = sum(1 for s in data["split_of"].values() if s == split)
    # spec.json last: a folder with it is complete.
    write_json({"spec": asdict(spec), "key": spec.key(), "split": data["split"], "counts": counts}, files["spec"])
    return files


def source_dir(spec: DemoSpec) -> Path:
    """Where the files of ``spec`` are generated: ``data/demo-src/<name>-<key>/``."""
    return paths.data_dir() / "demo-src" / f"{spec.name}-{spec.key()}"


def dataset_ids(spec: DemoSpec) -> dict[str, str]:
    """The ids the demo is registered under, by split: ``{"train": "demo/train", …}``."""
    return {split: f"{spec.name}/{split}" for split in SPLITS}


def is_registered(spec: DemoSpec) -> bool:
    """Whether ``spec``'s collection is the one registered under ``spec.name``."""
    from pipeline import data

    docs = str((source_dir(spec) / "docs.jsonl").resolve())
    return any(row["id"] == spec.name and row["sources"].get("docs") == docs for row in data.list_datasets())


def ensure(spec: DemoSpec | None = None, force: bool = False) -> dict[str, str]:
    """Generate the demo collection and register it, unless that is done already.

    Registers ``NAME`` (all questions) and ``NAME/train``, ``NAME/valid``, ``NAME/test``
    through :func:`pipeline.data.register`, sharing one corpus (one index). A
    registration under ``NAME`` made from other parameters is replaced; ``force``
    generates and registers again in any case.

    Example:
        >>> ensure(DemoSpec())  # doctest: +SKIP
        {'train': 'demo/train', 'valid': 'demo/valid', 'test': 'demo/test'}
    """
    from pipeline import data

    spec = spec or DemoSpec()
    demo_root = (paths.data_dir() / "demo-src").resolve()
    for row in data.list_datasets():
        docs = row["sources"].get("docs", "")
        if row["id"] == spec.name and not docs.startswith(str(demo_root) + os.sep):
            raise PipelineError(
                f"dataset name {spec.name!r} is taken by a collection registered from {docs}; "
                "choose another [demo] name in the config (the demo would replace it)"
            )
    if force or not is_registered(spec):
        files = write(spec, source_dir(spec))
        split = json.loads(files["spec"].read_text(encoding="utf-8"))["split"]
        data.register(
            spec.name,
            docs=files["docs"],
            queries=files["queries"],
            qrels=files["qrels"],
            docpairs=files["docpairs"],
            split=split,
            seed=spec.seed,
            force=True,
        )
    return dataset_ids(spec)
