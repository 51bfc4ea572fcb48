"""The demo catalog: shop products generated from concepts, deterministically.

Each product belongs to a concept (a rain jacket for hiking, a burr coffee grinder) and is worded
with one of the concept's names in its title while its description opens with the same name or
another one, so the same thing is said in several ways across products. That is what a keyword
ranker misses and a semantic one should find.

Determinism: every draw comes from one `random.Random(seed)` in a fixed order, the tables are
read in sorted file order, and no set or hash order is ever iterated, so a seed gives the same
bytes in any process.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from app.catalog.tables import load_tables
from app.catalog.types import AttributeValue, Concept, Product, Tables, Templates
from app.catalog.wording import agreement, capitalize, title_case

__all__ = ["DEFAULT_N", "DEFAULT_SEED", "concept_order", "generate_catalog"]

DEFAULT_N = 5000
DEFAULT_SEED = 7
TITLE_USE_SHARE = 0.25
"""Share of titles that end with a use case ("… for Hill Walking"), as many shop titles do."""
OTHER_NAME_SHARE = 0.5
"""Share of descriptions that call the product by another of its concept's names."""
VARIANT_SEPARATORS = (", ", " \u2013 ", " - ")
"""Between a title and its variant (", Navy", " - Men's", an en dash): shops use all three."""


def concept_order(tables: Tables) -> list[tuple[Concept, tuple[str, ...]]]:
    """Every concept with its category's brands, categories interleaved (first concept of each
    category, then the second of each, …), so any 20 consecutive products span the categories."""
    columns = [[(c, cat.brands) for c in cat.concepts] for cat in tables.categories]
    depth = max(len(col) for col in columns)
    return [col[i] for i in range(depth) for col in columns if i < len(col)]


def _price(rng: random.Random, low: float, high: float) -> float:
    # Log-uniform, then shop pricing: 128.99, 7.49.
    value = math.exp(rng.uniform(math.log(low), math.log(high)))
    if value < 10:
        return round(math.floor(value) + rng.choice((0.49, 0.99)), 2)
    return round(max(1, round(value)) - 0.01, 2)


def _model(rng: random.Random, templates: Templates) -> str:
    suffix = rng.choice(templates.model_suffixes)
    return f"{rng.choice(templates.models)} {suffix}".strip()


@dataclass
class _Builder:
    """Draws products one at a time; remembers used titles and each concept's product count."""

    rng: random.Random
    templates: Templates
    seen_titles: set[str] = field(default_factory=set)
    per_concept: dict[str, int] = field(default_factory=dict)
    # Pure functions of a name, memoized: title casing and article/number agreement.
    titled: dict[str, str] = field(default_factory=dict)
    agreeing: dict[str, dict[str, str]] = field(default_factory=dict)

    def _title_case(self, phrase: str, start: bool = True) -> str:
        key = phrase if start else " " + phrase
        if key not in self.titled:
            self.titled[key] = title_case(phrase, start=start)
        return self.titled[key]

    def _title(self, brand: str, model: str, name: str, use: str, variant: str) -> str:
        rng = self.rng
        core = self._title_case(name)
        title = f"{brand} {core} {model}" if rng.random() < 0.3 else f"{brand} {model} {core}"
        if rng.random() < TITLE_USE_SHARE:
            title += " for " + self._title_case(use, start=False)
        if variant:
            title += rng.choice(VARIANT_SEPARATORS) + variant
        return title

    def _description(
        self, concept: Concept, name: str, brand: str, model: str, material: str
    ) -> str:
        rng, templates = self.rng, self.templates
        noun = name
        if rng.random() < OTHER_NAME_SHARE:
            noun = rng.choice([n for n in concept.names if n != name])
        if noun not in self.agreeing:
            self.agreeing[noun] = agreement(noun)
        uses = rng.sample(concept.uses, 3)
        features = rng.sample(concept.features, 3)
        fields = {
            "noun": noun,
            "model": model,
            "brand": brand,
            "material": material,
            "use": uses[0],
            "use2": uses[1],
            "use3": uses[2],
            "feature": features[0],
            "feature2": features[1],
            "feature3": features[2],
            **self.agreeing[noun],
        }
        # An opener, then one to three of features / material / uses, in that (natural) order.
        kinds = (templates.features, templates.materials, templates.uses)
        chosen = sorted(rng.sample(range(3), rng.choice((1, 2, 2, 3))))
        sentences = [rng.choice(templates.openers)] + [rng.choice(kinds[k]) for k in chosen]
        return " ".join(capitalize(s.format(**fields)) for s in sentences)

    def product(self, concept: Concept, brands: tuple[str, ...]) -> Product:
        rng = self.rng
        k = self.per_concept.get(concept.key, 0)
        self.per_concept[concept.key] = k + 1
        # Names rotate within a concept, so every wording shows up in its titles.
        name = concept.names[k % len(concept.names)]
        brand = rng.choice(brands)
        attributes: dict[str, AttributeValue] = {
            attr: rng.choice(values) for attr, values in concept.attributes
        }
        material = rng.choice(concept.materials)
        variant = ", ".join(str(attributes[a]) for a in concept.title_attrs if a in attributes)
        use = rng.choice(concept.uses)
        title = model = ""
        for _ in range(20):
            model = _model(rng, self.templates)
            title = self._title(brand, model, name, use, variant)
            if title not in self.seen_titles:
                break
        else:
            title = f"{title} ({k + 1})"
        self.seen_titles.add(title)
        # The attribute drops the article a description needs ("made from a steel frame").
        attributes["material"] = material.removeprefix("a ").removeprefix("an ")
        attributes["price"] = _price(rng, *concept.price)
        attributes["rating"] = round(min(5.0, max(2.5, rng.gauss(4.3, 0.4))), 1)
        attributes["reviews"] = min(9999, int(rng.paretovariate(1.0) * 12) - 12)
        return Product(
            id="",
            title=title,
            text=self._description(concept, name, brand, model, material),
            category=concept.category,
            brand=brand,
            concept=concept.key,
            attributes=attributes,
        )


def generate_catalog(
    n: int = DEFAULT_N, seed: int = DEFAULT_SEED, tables: Tables | None = None
) -> list[Product]:
    """`n` products; the same `n` and `seed` always give the same products, in the same order.

    Concepts take turns (categories interleaved), so every concept gets n / 291 products or one
    more, and any n >= 20 covers every category. The list is then shuffled and numbered
    p00001, p00002, …
    """
    if n < 0:
        raise ValueError(f"n must be at least 0, got {n}")
    tables = tables if tables is not None else load_tables()
    rng = random.Random(seed)
    order = concept_order(tables)
    builder = _Builder(rng, tables.templates)
    products = [builder.product(*order[i % len(order)]) for i in range(n)]
    rng.shuffle(products)
    width = max(5, len(str(n)))
    for i, product in enumerate(products, start=1):
        product["id"] = f"p{i:0{width}d}"
    return products
