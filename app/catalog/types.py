"""Shared vocabulary of the demo catalog: concepts, categories, products, judged queries."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, TypedDict

__all__ = [
    "AttributeValue",
    "Category",
    "Concept",
    "JudgedQuery",
    "Product",
    "Tables",
    "Templates",
]

AttributeValue = str | int | float


@dataclass(frozen=True)
class Concept:
    """One kind of product and the many ways a shop might word it.

    `names` are interchangeable title wordings, `uses` use cases that fit "for …", `features` noun
    phrases that fit "with …", `materials` fit "made from …". `asks` are a shopper's paraphrases,
    kept out of every product: they only become judged queries.
    """

    key: str
    category: str
    names: tuple[str, ...]
    uses: tuple[str, ...]
    features: tuple[str, ...]
    materials: tuple[str, ...]
    price: tuple[float, float]
    asks: tuple[str, ...]
    attributes: tuple[tuple[str, tuple[AttributeValue, ...]], ...]
    """Attribute name and its possible values, in output order (category's, then concept's)."""
    title_attrs: tuple[str, ...]
    """Attributes whose value is appended to the title (", Navy", " - 1.7 L")."""


@dataclass(frozen=True)
class Category:
    name: str
    brands: tuple[str, ...]
    concepts: tuple[Concept, ...]


@dataclass(frozen=True)
class Templates:
    """Model names and sentence templates shared by every category."""

    models: tuple[str, ...]
    model_suffixes: tuple[str, ...]
    openers: tuple[str, ...]
    features: tuple[str, ...]
    materials: tuple[str, ...]
    uses: tuple[str, ...]


@dataclass(frozen=True)
class Tables:
    categories: tuple[Category, ...]
    templates: Templates

    def concepts(self) -> tuple[Concept, ...]:
        return tuple(c for category in self.categories for c in category.concepts)


class Product(TypedDict):
    """One catalog line, as written to JSONL (`id`, `title`, `text` plus stored fields)."""

    id: str
    title: str
    text: str
    category: str
    brand: str
    concept: str
    attributes: dict[str, AttributeValue]


class JudgedQuery(NamedTuple):
    """A paraphrase query and the products it should find: every product of its concept."""

    id: str
    text: str
    relevant: frozenset[str]
    concept: str
    category: str
    overlap: float
    """Share of the query's index terms found in the titles of its relevant products."""
