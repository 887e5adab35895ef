"""Ad copy written locally: product-specific, deterministic, shaped by tone and length.

The local provider's stand-in for a language model. It reads the product description for
what the product *is* (a lead such as "A stainless steel bottle ...") and what it *does*
or *has* (feature clauses), then frames those in the vocabulary of the requested tone.
The same input always gives the same copy: every choice is drawn from a generator seeded
with the input.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

TONES = ("professional", "playful", "bold", "luxury", "friendly")
BODY_SENTENCES = {"short": 1, "medium": 3, "long": 6}
MAX_HASHTAGS = 5

FeatureKind = Literal["does", "has", "is", "says"]


@dataclass(frozen=True)
class Feature:
    """One selling point from the description, classified by how it fits in a sentence.

    does: a verb phrase ("keeps drinks cold for 24 hours") -> "It keeps drinks cold ...".
    has:  a noun phrase ("a leak-proof lid") -> "Featuring a leak-proof lid."
    is:   an attribute ("perfect for long hikes") -> "It's perfect for long hikes."
    says: a sentence of its own ("No cables needed").
    """

    kind: FeatureKind
    text: str


@dataclass(frozen=True)
class Voice:
    """How one tone speaks. Every template renders exactly one sentence."""

    end: str
    openers: tuple[str, ...]
    bare_openers: tuple[str, ...]
    does: tuple[str, ...]
    has: tuple[str, ...]
    is_: tuple[str, ...]
    fillers: tuple[str, ...]
    closers: tuple[str, ...]
    headlines: tuple[str, ...]
    bare_headlines: tuple[str, ...]
    ctas: tuple[str, ...]
    hashtag: str


VOICES: dict[str, Voice] = {
    "professional": Voice(
        end=".",
        openers=("Introducing {name}, {hook}.", "Meet {name}, {hook}."),
        bare_openers=("Introducing {name}, designed for people who expect more from every day.",
                      "Meet {name}: quality you can rely on, day after day."),
        does=("{It} {text}.", "{It} reliably {text}."),
        has=("Featuring {text}.", "Key features include {text}.", "It comes equipped with {text}."),
        is_=("It is {text}.", "{name} is {text}."),
        fillers=("Every detail of {name} reflects a focus on quality and long-term value.",
                 "It is a practical investment that pays off from the first day.",
                 "{name} is built to perform consistently, so you can focus on what matters.",
                 "Careful engineering keeps it dependable through years of daily use."),
        closers=("Choose {name} and see the difference for yourself.",),
        headlines=("{name}: {Benefit}", "{name}. {Benefit}."),
        bare_headlines=("{name}: Quality You Can Rely On", "{name}. Built to Perform."),
        ctas=("Learn more today", "Order {name} today", "Shop {name} now"),
        hashtag="#Quality",
    ),
    "playful": Voice(
        end="!",
        openers=("Say hello to {name}, {hook}!", "Psst, meet {name}, {hook}!", "Meet {name}, {hook}!"),
        bare_openers=("Say hello to {name}, your new favorite thing!",
                      "Heads up: {name} is about to make your day way more fun!"),
        does=("{It} {text}, which is honestly kind of amazing!", "Oh, and {it} {text}!",
              "Bonus: {it} {text}!"),
        has=("Oh, and did we mention {text}?", "It even comes with {text}!",
             "Plus, you get {text}, because why not!"),
        is_=("It's {text}, too!", "And the best part is that it's {text}!"),
        fillers=("Your everyday routine just got a serious upgrade!",
                 "Go ahead, show {name} off to your friends!",
                 "Warning: you may never want to go without {name} again!",
                 "It's the little upgrade that makes a big difference!"),
        closers=("Trust us, you're going to love {name}!",),
        headlines=("{name}: {Benefit}!", "Say Hello to {name}: {Benefit}!"),
        bare_headlines=("Say Hello to {name}!", "Oh Hey, {name}!"),
        ctas=("Grab yours now!", "Treat yourself, go on!", "Add {name} to your cart!"),
        hashtag="#TreatYourself",
    ),
    "bold": Voice(
        end=".",
        openers=("This is {name}, {hook}.", "Here it is: {name}, {hook}."),
        bare_openers=("This is {name}, and it changes everything.", "{name} raises the bar, no excuses."),
        does=("{It} {text}, every single time.", "{It} {text}, no excuses.", "{It} {text}, no compromises."),
        has=("Packed with {text}.", "Loaded with {text}.", "{Text}, built in."),
        is_=("It's {text}, no question.", "Make no mistake: it's {text}."),
        fillers=("Stop settling for less.", "Settle for nothing less than {name}.",
                 "Built to win, made to last.", "Others follow; {name} leads."),
        closers=("Demand more, and get {name}.",),
        headlines=("{name}. {Benefit}. No Compromises.", "{name}: {Benefit}. Period."),
        bare_headlines=("{name}. No Compromises.", "{name}. Nothing Else Comes Close."),
        ctas=("GET YOURS NOW", "ORDER TODAY", "CLAIM YOURS"),
        hashtag="#NoCompromises",
    ),
    "luxury": Voice(
        end=".",
        openers=("Discover {name}, {hook}.", "Presenting {name}, {hook}.",
                 "Allow us to present {name}, {hook}."),
        bare_openers=("Discover {name}, where craftsmanship meets quiet confidence.",
                      "Presenting {name}, an expression of effortless refinement."),
        does=("{It} {text}, effortlessly.", "{It} {text}, with quiet assurance.", "Gracefully, {it} {text}."),
        has=("Every detail is considered, down to {text}.", "Finished with {text}.",
             "Thoughtfully appointed with {text}."),
        is_=("It is {text}, naturally.", "Impeccably, it is {text}."),
        fillers=("An object of rare distinction, made to be treasured.",
                 "{name} is crafted for those who appreciate the finer things.",
                 "Timeless design meets uncompromising craftsmanship.",
                 "Understated, assured, unmistakably {name}."),
        closers=("{name} is an invitation to live beautifully.",),
        headlines=("{name}: {Benefit}, Beautifully", "{name}. {Benefit}. Effortlessly."),
        bare_headlines=("{name}. Quietly Exceptional.", "{name}. Timeless by Design."),
        ctas=("Discover {name}", "Experience it for yourself", "Reserve yours"),
        hashtag="#Luxury",
    ),
    "friendly": Voice(
        end=".",
        openers=("Meet {name}, {hook}.", "Say hi to {name}, {hook}.", "Here's {name}, {hook}."),
        bare_openers=("Meet {name}, the little everyday upgrade you'll be glad you made.",
                      "Say hi to {name}, made to make your day a bit easier."),
        does=("{It} {text}, so you can get on with your day.", "Good news: {it} {text}.",
              "{It} {text}, just like you'd hope."),
        has=("You also get {text}.", "It comes with {text}, too.",
             "We included {text}, because you deserve it."),
        is_=("It's {text}, which makes life easier.", "And yes, it's {text}."),
        fillers=("We think you'll love having {name} around.",
                 "It's the kind of thing you'll reach for every day.",
                 "{name} fits right into your routine.",
                 "Once you try it, you'll wonder how you managed without it."),
        closers=("Give {name} a try; we think you'll be glad you did.",),
        headlines=("You're Going to Love {name}", "{name}: {Benefit}"),
        bare_headlines=("Say Hi to {name}", "You're Going to Love {name}"),
        ctas=("Give it a try today!", "Find yours today", "Come see for yourself"),
        hashtag="#EverydayFavorites",
    ),
}

# Third-person verbs that open a feature clause: "keeps drinks cold", "folds flat".
_VERBS = frozenset("""
    adapts adds absorbs adjusts blocks blends boosts breathes brews brings builds charges cleans
    combines comes connects cools cuts delivers dries fits folds gives glides grips grows handles
    heats helps holds improves keeps lasts lets lifts lights locks makes measures moves offers pairs
    powers protects provides pumps reduces removes repels resists runs saves seals sends shields
    simplifies sits slides softens stays stores streams supports syncs takes tracks transforms
    traps turns warms washes wicks works wraps
""".split())
# A clause with one of these after its first word has its own subject: a sentence of its own.
_FINITE = _VERBS | frozenset("is are was were has have will can".split())
# Words that open an attribute: "perfect for hikes" -> "It's perfect for hikes".
_ATTRIBUTE_LEADS = frozenset("""
    available built certified compatible crafted designed dishwasher-safe easy engineered great
    handmade ideal machine-washable made perfect ready safe suitable tested
""".split())
_ATTRIBUTE_ENDS = ("resistant", "proof", "free", "safe", "friendly", "ready", "compatible",
                   "certified", "approved", "rated", "included", "washable")
_STANDALONE_LEADS = frozenset("no zero never enjoy forget skip you your".split())
_DETERMINERS = frozenset("""
    a an the our your its their this these those every each all any some no one two three four five
    six seven eight nine ten up over more less extra double twice
""".split())
# Uncountable heads that take no "a": "with memory foam", "with full-grain leather".
_MASS_NOUNS = frozenset("""
    aluminum aluminium audio bamboo bass canvas cashmere ceramic comfort copper cotton coverage denim
    design durability fleece foam glass gold grip insulation leather life linen marble mesh nylon
    oak performance plastic polyester power protection quality rubber silk silver sound steel stone
    storage style suede support technology titanium traction walnut warmth wood wool
""".split())
_HEAD_END = frozenset("of for with in on from to at by and that which".split())
_ADJECTIVE_SUFFIXES = ("less", "ive", "ful", "ous", "able", "ible", "ed", "ly", "al")
_STOPWORDS = frozenset("""
    about after all also and any are because been best both but can day days each even every for
    from get good great has have hour hours into its just keep less made make more most much new
    not now one only other our out over own same some such than that the their them then there
    these they thing things this those through time times too under use very was way well were what
    when where which while who why will with without would you your yours
""".split())
_ARTICLES = ("a ", "an ", "the ", "our ", "this ")
_SMALL_WORDS = frozenset("a an and as at but by for in nor of on or per the to with".split())

_SENTENCE_BREAK = re.compile(r"(?<=[.!?])\s+|\n+")
_CLAUSE_BREAK = re.compile(r"\s*[,;:]\s+|\s+[-–—]\s+|\s*[()]\s*")
_RELATIVE = re.compile(r"\s+(?:that|which)\s+", re.IGNORECASE)
_WORD = re.compile(r"[a-z][a-z0-9'-]*[a-z0-9]")
_ALNUM = re.compile(r"[A-Za-z0-9]+")


def generate_copy(input: Mapping[str, Any]) -> dict[str, Any]:
    """Write ad copy for a `copy` job input; the same input always gives the same copy."""
    name = " ".join(str(input["product_name"]).split())
    description = str(input.get("product_description") or "")
    tone = input.get("tone", "professional")
    length = input.get("length", "medium")
    if not name:
        raise ValueError("product_name is empty")
    if tone not in VOICES:
        raise ValueError(f"unknown tone {tone!r}; expected one of {', '.join(TONES)}")
    if length not in BODY_SENTENCES:
        raise ValueError(f"unknown length {length!r}; expected one of {', '.join(BODY_SENTENCES)}")

    pick = _Picker(random.Random(_seed(input)))
    voice = VOICES[tone]
    category, features = read_description(description, name)
    copy: dict[str, Any] = {
        "headline": _headline(voice, name, features, pick),
        "body": " ".join(_body(voice, name, category, features, BODY_SENTENCES[length], pick)),
        "call_to_action": pick(voice.ctas).format(name=name),
        "hashtags": _hashtags(voice, name, category, description),
    }
    copy["word_count"] = count_words(copy)
    return copy


def count_words(copy: Mapping[str, Any]) -> int:
    """Words a reader sees: headline, body and call to action (hashtags excluded)."""
    text = " ".join(str(copy.get(field) or "") for field in ("headline", "body", "call_to_action"))
    return sum(1 for token in text.split() if any(ch.isalnum() for ch in token))


def read_description(description: str, name: str) -> tuple[str | None, list[Feature]]:
    """The product's category ("stainless steel water bottle"), if the description names it,
    and its selling points in the order written."""
    category: str | None = None
    features: list[Feature] = []
    seen: set[str] = set()

    def add(feature: Feature | None) -> None:
        if feature and feature.text.lower() not in seen and 2 <= len(feature.text.split()) <= 14:
            seen.add(feature.text.lower())
            features.append(feature)

    sentences = [s for s in _SENTENCE_BREAK.split(description.strip()) if s.strip()]
    for s_index, sentence in enumerate(sentences):
        for c_index, raw in enumerate(c for c in _CLAUSE_BREAK.split(sentence) if c.strip()):
            clause = _strip_subject(_tidy(raw), name)
            if not clause:
                continue
            head, *rest = _RELATIVE.split(clause, maxsplit=1)
            relative = _relative_feature(rest[0]) if rest else None
            if s_index == 0 and c_index == 0 and category is None:
                category, extra = _category(head, followed=relative is not None)
                if category:
                    add(extra)
                    add(relative)
                    continue
            add(_classify(clause if rest and relative is None else head))
            add(relative)
    return category, features


class _Picker:
    """Seeded choices that go round a template list before repeating one."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self._orders: dict[tuple[str, ...], list[str]] = {}

    def __call__(self, options: tuple[str, ...]) -> str:
        order = self._orders.get(options)
        if not order:
            order = self._orders[options] = self.rng.sample(options, len(options))
        return order.pop()

    def shuffled(self, options: tuple[str, ...]) -> list[str]:
        return self.rng.sample(options, len(options))


def _seed(input: Mapping[str, Any]) -> int:
    canonical = json.dumps(dict(input), sort_keys=True, ensure_ascii=False, default=str)
    return int.from_bytes(hashlib.sha256(canonical.encode()).digest()[:8], "big")


def _tidy(text: str) -> str:
    text = " ".join(text.split()).strip(" .!?\"'“”‘’")
    return re.sub(r"^(?:and|plus|also|but|then)\s+", "", text, flags=re.IGNORECASE)


def _strip_subject(clause: str, name: str) -> str:
    """"Aurora keeps ..." and "It keeps ..." become "keeps ..."; "It's ..." becomes "is ..."."""
    lowered = clause.lower()
    for subject in (name.lower() + " ", "it ", "this "):
        if lowered.startswith(subject):
            return clause[len(subject):]
    if lowered.startswith(("it's ", "it’s ")):
        return "is " + clause[5:]
    return clause


def _category(head: str, *, followed: bool) -> tuple[str | None, Feature | None]:
    """Read "A stainless steel bottle with a bamboo lid" as the category and a feature."""
    if head.lower().startswith("is "):
        head = head[3:]
    has_article = head.lower().startswith(_ARTICLES)
    noun, sep, extra = head.partition(" with ")
    if has_article:
        noun = noun.split(" ", 1)[1] if " " in noun else ""
    if not (has_article or sep or followed) or not 1 <= len(noun.split()) <= 6:
        return None, None
    if _classify(noun).kind != "has" or noun.split()[-1].lower() in _ATTRIBUTE_ENDS:
        return None, None
    return _lower_first(noun), (_noun_feature(extra) if extra else None)


def _classify(clause: str) -> Feature:
    words = clause.split()
    first, rest = words[0].lower(), " ".join(words[1:])
    if first in _VERBS:
        return Feature("does", _lower_first(clause))
    if first == "is" and rest:
        return Feature("is", rest)
    if first in _ATTRIBUTE_LEADS or words[-1].lower().endswith(_ATTRIBUTE_ENDS):
        return Feature("is", _lower_first(clause))
    if first in _STANDALONE_LEADS or any(w.lower() in _FINITE for w in words[1:]):
        return Feature("says", clause)
    if first == "with" and rest:
        return _noun_feature(rest)
    if first == "for" and rest:
        return Feature("is", "made " + clause)
    return _noun_feature(clause)


def _noun_feature(phrase: str) -> Feature:
    """A noun phrase, given "a"/"an" when it reads as one countable thing ("a leak-proof lid")."""
    phrase = _lower_first(phrase)
    words = phrase.split()
    head_words = [w.lower() for w in words]
    for i, word in enumerate(head_words[1:], start=1):
        if word in _HEAD_END:
            head_words = head_words[:i]
            break
    head, first = head_words[-1], head_words[0]
    countable_one = not (
        first in _DETERMINERS or first[0].isdigit()
        or (head.endswith("s") and not head.endswith("ss")) or head in _MASS_NOUNS
        or head.endswith(("ing", "ness", "ity", "tion", "sion", "ment"))
    )
    if countable_one:
        phrase = ("an " if first[0] in "aeio" else "a ") + phrase
    return Feature("has", phrase)


def _relative_feature(clause: str) -> Feature | None:
    """The part after "that"/"which": kept only when it reads as "<product> <verb> ..."."""
    first = clause.split(" ", 1)[0].lower()
    if first in _VERBS or (first.endswith("s") and not first.endswith("ss") and len(first) > 3):
        return Feature("does", clause)
    if first == "is" and " " in clause:
        return Feature("is", clause.split(" ", 1)[1])
    return None


def _lower_first(text: str) -> str:
    """Lower-case a leading ordinary word, but leave "USB-C" or "iPhone" as written."""
    word = text.split(" ", 1)[0]
    if not word or any(ch.isupper() for ch in word[1:]) or any(ch.isdigit() for ch in word):
        return text
    return text[0].lower() + text[1:]


def _upper_first(text: str) -> str:
    return text[:1].upper() + text[1:]


def _title(text: str) -> str:
    return " ".join(
        w if (i and w.lower() in _SMALL_WORDS) or any(ch.isupper() for ch in w)
        else "-".join(_upper_first(part) for part in w.split("-"))
        for i, w in enumerate(text.split())
    )


def _hook(category: str | None, feature: Feature | None) -> str:
    """What follows "Meet <name>, ...": "the water bottle that keeps drinks cold"."""
    if category is None:
        assert feature is not None and feature.kind in ("has", "is")
        return ("with " if feature.kind == "has" else "") + feature.text
    if feature is None:
        return f"the {category}"
    joiner = {"does": "that", "has": "with", "is": "that is"}[feature.kind]
    return f"the {category} {joiner} {feature.text}"


def _feature_sentence(voice: Voice, feature: Feature, name: str, pick: _Picker, *,
                      subject: str | None = None) -> str:
    if feature.kind == "says":
        return _upper_first(feature.text) + voice.end
    templates = {"does": voice.does, "has": voice.has, "is": voice.is_}[feature.kind]
    return pick(templates).format(It=subject or "It", it=subject or "it", name=name,
                                  text=feature.text, Text=_upper_first(feature.text))


def _body(voice: Voice, name: str, category: str | None, features: list[Feature], sentences: int,
          pick: _Picker) -> list[str]:
    remaining = list(features)
    lead = next((f for f in remaining if f.kind != "says"), None)
    if lead:
        remaining.remove(lead)
    if lead and lead.kind == "does" and category is None:
        opener = _feature_sentence(voice, lead, name, pick, subject=name)
    elif lead or category:
        opener = pick(voice.openers).format(name=name, hook=_hook(category, lead))
    else:
        opener = pick(voice.bare_openers).format(name=name)

    lines = [opener] + [_feature_sentence(voice, f, name, pick) for f in remaining]
    fillers = [f.format(name=name) for f in pick.shuffled(voice.fillers)]
    closer = pick(voice.closers).format(name=name)
    if sentences >= 6:
        return (lines + fillers)[: sentences - 1] + [closer]
    return (lines + fillers + [closer])[:sentences]


def _headline(voice: Voice, name: str, features: list[Feature], pick: _Picker) -> str:
    short = [f for f in features if f.kind != "says" and len(f.text.split()) <= 6]
    if not short:
        return pick(voice.bare_headlines).format(name=name)
    best = min(short, key=lambda f: ("does", "has", "is").index(f.kind))
    benefit = re.sub(r"^(?:a|an|the)\s+", "", best.text, flags=re.IGNORECASE)
    return pick(voice.headlines).format(name=name, Benefit=_title(benefit))


def _hashtags(voice: Voice, name: str, category: str | None, description: str) -> list[str]:
    def camel(words: list[str]) -> str:
        return "#" + "".join(_upper_first(w) for w in words)

    name_words = {w.lower() for w in _ALNUM.findall(name)}
    tags = [camel(_ALNUM.findall(name))]
    if category:
        tags.append(camel(_ALNUM.findall(category)[-2:]))
    words = [w for w in _WORD.findall(description.lower())
             if len(w) > 2 and w not in _STOPWORDS and w not in _VERBS and w not in name_words
             and not w.endswith(_ADJECTIVE_SUFFIXES)]
    # Most frequent first; Counter keeps first-seen order among equals and sorted() is stable.
    ranked = sorted(Counter(words).items(), key=lambda item: -item[1])
    tags += [camel(re.split(r"[-']", w)) for w, _ in ranked]

    unique: list[str] = []
    for tag in tags:
        if len(tag) > 1 and tag.lower() not in {t.lower() for t in unique}:
            unique.append(tag)
    # The tone's own tag always makes the cut, last.
    return [t for t in unique if t.lower() != voice.hashtag.lower()][: MAX_HASHTAGS - 1] + [
        voice.hashtag]
