"""What a person looks like, in the project's attribute set and in everyday words.

:data:`ATTRIBUTES` is the documented set every gallery entry gets a probability for (gender,
PETA's age groups, upper- and lower-body colour, sleeve length, the kind of lower-body
clothing, carried bags, hat, long hair), each defined by the PETA labels that make it present.
:func:`parse_description` turns a description such as ``"woman, red top, black trousers,
backpack"`` into :class:`Term` objects (one asked property each, possibly negated); a
:class:`Description`'s probability for an entry is the product of its terms' probabilities
(the attributes are treated as independent, as their calibrated probabilities allow).

Usage::

    >>> d = parse_description("woman in a red top with a backpack, no hat")
    >>> [t.show() for t in d.terms]
    ['not male', 'upper_red', 'backpack', 'not hat']
    >>> parse_description("purpel top")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    reid_search.attributes.vocabulary.DescriptionError: unknown word 'purpel' ...; closest known: purple
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from ..errors import InputError

COLOURS = ("black", "blue", "brown", "green", "grey", "orange", "pink", "purple", "red", "white", "yellow")
# PETA's lower-body orange, pink, yellow and green: fewer than 7 labelled people in extra-crops
# (orange none): too few to learn or to score, so not in the set (the card says so)
LOWER_COLOURS = ("black", "blue", "brown", "grey", "purple", "red", "white")


class DescriptionError(InputError):
    """A description the vocabulary cannot read (empty, unknown words, contradictory)."""


@dataclass(frozen=True)
class Attribute:
    """One predicted property: present when a person has any of its ``peta`` labels."""

    name: str
    label: str  # what it means, in words
    peta: tuple[str, ...]
    group: str


def _colour_attributes(part: str, peta_part: str, colours: tuple[str, ...]) -> list[Attribute]:
    return [
        Attribute(f"{part}_{c}", f"{c} {part}-body clothing", (f"{peta_part}{c.title()}",), f"{part} colour")
        for c in colours
    ]


ATTRIBUTES: tuple[Attribute, ...] = (
    Attribute("male", "a man (not: a woman)", ("personalMale",), "gender"),
    Attribute("age_under_30", "younger than 30", ("personalLess15", "personalLess30"), "age"),
    Attribute("age_30_44", "30 to 44 years old", ("personalLess45",), "age"),
    Attribute("age_45_59", "45 to 59 years old", ("personalLess60",), "age"),
    Attribute("age_60_plus", "60 or older", ("personalLarger60",), "age"),
    *_colour_attributes("upper", "upperBody", COLOURS),
    *_colour_attributes("lower", "lowerBody", LOWER_COLOURS),
    Attribute(
        "short_sleeve", "short sleeves or none", ("upperBodyShortSleeve", "upperBodyNoSleeve"), "upper"
    ),
    Attribute("trousers", "trousers (not jeans)", ("lowerBodyTrousers",), "lower"),
    Attribute("jeans", "jeans", ("lowerBodyJeans",), "lower"),
    Attribute("shorts", "shorts or hot pants", ("lowerBodyShorts", "lowerBodyHotPants"), "lower"),
    Attribute("skirt", "a skirt, short or long", ("lowerBodyShortSkirt", "lowerBodyLongSkirt"), "lower"),
    Attribute("backpack", "carries a backpack", ("carryingBackpack",), "carried"),
    Attribute("messenger_bag", "carries a messenger (shoulder) bag", ("carryingMessengerBag",), "carried"),
    Attribute("plastic_bag", "carries a plastic bag", ("carryingPlasticBags",), "carried"),
    Attribute(
        "bag",
        "carries any bag (backpack, messenger, plastic, suitcase)",
        (
            "carryingBackpack",
            "carryingMessengerBag",
            "carryingPlasticBags",
            "carryingSuitcase",
            "carryingLuggageCase",
        ),
        "carried",
    ),
    Attribute("hat", "wears a hat", ("accessoryHat",), "head"),
    Attribute("long_hair", "long hair", ("hairLong",), "head"),
)
ATTRIBUTE_NAMES: tuple[str, ...] = tuple(a.name for a in ATTRIBUTES)
EXCLUSIVE: tuple[frozenset[str], ...] = (  # at most one of each holds for a person
    frozenset({"age_under_30", "age_30_44", "age_45_59", "age_60_plus"}),
    frozenset({"trousers", "jeans", "shorts", "skirt"}),
)
IMPLIES = {"backpack": "bag", "messenger_bag": "bag", "plastic_bag": "bag"}


@dataclass(frozen=True)
class Term:
    """One asked property: any of ``attributes`` (``not`` any of them when ``negated``).
    ``words`` are the description's words it was read from."""

    words: str
    attributes: tuple[str, ...]
    negated: bool = False

    def show(self) -> str:
        """``'upper_red'``, ``'not hat'``, ``'upper_red or lower_red'``."""
        body = " or ".join(self.attributes)
        return f"not {body}" if self.negated else body


@dataclass(frozen=True)
class Description:
    """A parsed description: its text and its terms (all must hold)."""

    text: str
    terms: tuple[Term, ...]

    @property
    def attributes(self) -> tuple[str, ...]:
        """Every attribute the description reads, in set order."""
        used = {a for t in self.terms for a in t.attributes}
        return tuple(a for a in ATTRIBUTE_NAMES if a in used)

    def to_dict(self) -> dict:
        return {"text": self.text, "terms": [{"words": t.words, "means": t.show()} for t in self.terms]}


# everyday words -> (kind, value); phrases of two words first (matched before single words)
_GENDER = {w: False for w in ("man", "men", "male", "guy", "boy", "gentleman", "he")}
_GENDER |= {w: True for w in ("woman", "women", "female", "lady", "girl", "she")}  # True: negated male
_AGE = {w: ("age_under_30",) for w in ("young", "youth", "teen", "teenager", "teenage", "kid", "child")}
_AGE |= {"middle-aged": ("age_30_44", "age_45_59")}
_AGE |= {w: ("age_60_plus",) for w in ("old", "older", "elderly", "senior", "aged")}
_COLOUR_WORDS = {c: c for c in COLOURS} | {"gray": "grey", "navy": "blue", "violet": "purple", "tan": "brown"}
_UPPER = ("top", "tops", "shirt", "tshirt", "t-shirt", "jacket", "coat", "sweater", "jumper", "hoodie")
_UPPER += ("blouse", "upper", "jersey", "pullover", "cardigan", "torso", "vest")
_LOWER_KIND = {"trousers": "trousers", "pants": "trousers", "slacks": "trousers", "jeans": "jeans"}
_LOWER_KIND |= {"shorts": "shorts", "skirt": "skirt", "dress": "skirt"}
_LOWER = ("bottoms", "bottom", "lower", "legs") + tuple(_LOWER_KIND)
_THINGS = {  # properties that take no colour
    "backpack": ("backpack",), "rucksack": ("backpack",), "knapsack": ("backpack",),
    "messenger bag": ("messenger_bag",), "shoulder bag": ("messenger_bag",), "satchel": ("messenger_bag",),
    "plastic bag": ("plastic_bag",), "shopping bag": ("plastic_bag",), "carrier bag": ("plastic_bag",),
    "bag": ("bag",), "bags": ("bag",), "hat": ("hat",), "cap": ("hat",), "beanie": ("hat",),
    "long hair": ("long_hair",), "long-haired": ("long_hair",),
    "short sleeves": ("short_sleeve",), "short sleeve": ("short_sleeve",), "short-sleeved": ("short_sleeve",),
    "sleeveless": ("short_sleeve",),
}  # fmt: skip
_NEGATED_THINGS = {  # words that mean "not" a property
    "short hair": ("long_hair",), "short-haired": ("long_hair",),
    "long sleeves": ("short_sleeve",), "long sleeve": ("short_sleeve",), "long-sleeved": ("short_sleeve",),
}  # fmt: skip
_NEGATORS = ("no", "not", "without", "never")
_FILLER = frozenset(
    ("a", "an", "the", "in", "with", "and", "wearing", "wears", "wear", "dressed", "carrying", "carries")
    + ("carry", "holding", "has", "have", "having", "who", "is", "person", "someone", "somebody")
    + ("pedestrian", "of", "on", "clothes", "clothing", "also", "plus", "some")
)
KNOWN_WORDS: tuple[str, ...] = tuple(  # words and two-word phrases the vocabulary reads
    sorted({*_GENDER, *_AGE, *_COLOUR_WORDS, *_UPPER, *_LOWER, *_NEGATORS, *_THINGS, *_NEGATED_THINGS})
)


def _tokens(text: str) -> list[str]:
    words = re.findall(r"[a-z]+(?:-[a-z]+)*", text.lower())
    out: list[str] = []
    i = 0
    while i < len(words):
        pair = " ".join(words[i : i + 2])
        if pair in _THINGS or pair in _NEGATED_THINGS or pair == "t shirt":
            out.append("t-shirt" if pair == "t shirt" else pair)
            i += 2
        else:
            out.append(words[i])
            i += 1
    return out


def _unknown(words: list[str]) -> DescriptionError:
    word = words[0]
    phrases = [k for k in KNOWN_WORDS if k.startswith(word + " ") or k.endswith(" " + word)]
    close = phrases[:4] or difflib.get_close_matches(word, KNOWN_WORDS, n=4, cutoff=0.6)
    hint = f"; closest known: {', '.join(close)}" if close else "; docs/querying.md lists the words"
    more = f" (and {len(words) - 1} more unknown)" if len(words) > 1 else ""
    return DescriptionError(f"unknown word {word!r} in the description{more}{hint}")


def parse_description(text: str) -> Description:
    """Read a description into terms (see the module); one clear error for an empty one, an
    unknown word (with the closest known words) or a contradiction."""
    if not text or not text.strip():
        raise DescriptionError(
            "empty description: say what the person looks like, e.g. 'woman, red top, backpack'"
        )
    tokens = _tokens(text)
    unknown = [t for t in tokens if not _known(t)]
    if unknown:
        raise _unknown(unknown)
    terms: list[Term] = []
    negate = False
    colours: list[str] = []

    def add(words: str, attributes: tuple[str, ...], negated: bool = False) -> None:
        nonlocal negate
        terms.append(Term(f"no {words}" if negate else words, attributes, negated != negate))
        negate = False

    def flush_colours() -> None:  # colours no garment followed: any clothing of that colour
        for colour in colours:
            parts = ("upper",) + (("lower",) if colour in LOWER_COLOURS else ())
            add(colour, tuple(f"{p}_{colour}" for p in parts))
        colours.clear()

    for token in tokens:
        if token in _FILLER:
            continue
        if token in _NEGATORS:
            flush_colours()
            negate = True
        elif token in _COLOUR_WORDS:
            colours.append(_COLOUR_WORDS[token])
        elif token in _UPPER or token in _LOWER:
            _garment(token, colours, add)
            colours.clear()
        else:
            if colours:
                raise DescriptionError(
                    f"'{colours[0]} {token}': colours are known for clothing only (a top, trousers, ...)"
                )
            if token in _GENDER:
                add(token, ("male",), _GENDER[token])
            elif token in _AGE:
                add(token, _AGE[token])
            elif token in _THINGS:
                add(token, _THINGS[token])
            else:
                add(token, _NEGATED_THINGS[token], True)
    flush_colours()
    if negate:
        raise DescriptionError(f"{text.strip()!r}: a 'no' / 'without' at the end says nothing: no what?")
    if not terms:
        raise DescriptionError(f"{text.strip()!r} names no attribute; e.g. 'man, blue jeans, backpack'")
    _check_consistent(terms)
    return Description(text.strip(), tuple(terms))


def _known(token: str) -> bool:
    return any(
        token in table
        for table in (
            _FILLER,
            _NEGATORS,
            _COLOUR_WORDS,
            _UPPER,
            _LOWER,
            _GENDER,
            _AGE,
            _THINGS,
            _NEGATED_THINGS,
        )
    )


def _garment(token: str, colours: list[str], add) -> None:
    """Terms of a garment word and the colours before it: 'red top' -> upper_red; 'black
    jeans' -> lower_black and jeans."""
    part = "upper" if token in _UPPER else "lower"
    for colour in colours:
        if part == "lower" and colour not in LOWER_COLOURS:
            raise DescriptionError(
                f"'{colour} {token}': lower-body {colour} is not in the attribute set "
                "(too few labelled people); "
                f"known lower-body colours: {', '.join(LOWER_COLOURS)}"
            )
        add(f"{colour} {token}", (f"{part}_{colour}",))
    if token in _LOWER_KIND:
        add(token, (_LOWER_KIND[token],))


def _check_consistent(terms: list[Term]) -> None:
    """Refuse what no person can be: an attribute asked and refused, two of one exclusive
    group, a bag kind with 'no bag'."""
    wanted = {t.attributes[0]: t for t in terms if not t.negated and len(t.attributes) == 1}
    refused = {a: t for t in terms if t.negated for a in t.attributes}
    for name, term in wanted.items():
        clash = refused.get(name) or refused.get(IMPLIES.get(name, ""))
        if clash is not None:
            raise DescriptionError(
                f"contradictory description: {term.words!r} and {clash.words!r} cannot both hold"
            )
    for group in EXCLUSIVE:
        asked = [t for t in terms if not t.negated and set(t.attributes) <= group]
        if len(asked) > 1 and not set(asked[0].attributes) & set(asked[1].attributes):
            raise DescriptionError(
                f"contradictory description: {asked[0].words!r} and {asked[1].words!r} cannot both hold"
            )
