"""How well shopping requests are understood: the rules alone vs the rules plus an LLM.

The labelled requests are in ``evals/requests.yaml`` (written by hand over the demo shop,
MovieLens 100K and Amazon Industrial & Scientific; see its header for the fields), and
held-out sets: ``--requests heldout`` (``evals/requests_heldout.yaml``), ``heldout2`` and
``heldout3`` were each written before the rules were tuned on them, and their misses have
since been read; ``--requests heldout4`` (``evals/requests_heldout4.yaml``) was written
before ``heldout2``'s misses were read, ``heldout5`` and ``heldout6`` before ``heldout4``'s,
``heldout7`` before ``heldout5``'s and ``heldout6``'s, ``heldout8`` before anything was trained
on the read sets' readings (``recagent train-reader``), ``heldout9`` before ``heldout8``'s misses
were read and the reader was retrained, ``heldout10`` before ``heldout9``'s misses were
read, ``heldout11`` before ``heldout10``'s, ``heldout12`` before ``heldout11`` was run (it
chose the request reader), ``heldout13`` before ``heldout12``'s misses were read, ``heldout14``
before the reader was trained on ``heldout13``, ``heldout15`` after ``heldout14``'s misses were
read, ``heldout16`` before ``heldout15``'s were read, ``heldout17`` before ``heldout16`` was
run, ``heldout18`` before ``heldout17``'s misses were read, ``heldout19`` before
``heldout18``'s, ``heldout20`` before ``heldout19``'s, ``heldout21`` before ``heldout20``
was run, ``heldout22`` before ``heldout21``'s misses were read, ``heldout23`` before
``heldout22``'s, ``heldout24`` after ``heldout23`` was run (heldout22's and heldout23's
misses were read before ``heldout24`` was run once), ``heldout25`` after ``heldout24`` was
run, ``heldout26`` after ``heldout25`` was run (heldout25's misses since read),
``heldout27`` after ``heldout26`` was run (heldout26's misses unread; heldout27, never run,
is the unseen one). For
each request and each reader (``rules``: :class:`ConstraintParser`; ``rules+llm``: the
rules completed by :func:`parse_with_llm` through :func:`combine`, as the agent does; and
where ``recagent train-reader`` left an adapter that validation chose, ``rules+llm+reader``: the same with the LLM reading through
it, as the agent then does):

- per-field precision and recall against the labels: ``price`` (bounds), ``brands``,
  ``exclude_brands``, ``categories``, ``exclude_categories``;
- the share of shown items that meet the request: the first 10 of the 50 items the real
  ``search_items`` tool (Chroma index, MiniLM) finds for the parsed query under the parsed
  constraints, one per title, as the agent's plan shows them to a shopper without history
  (since session 34; before, the search's own top 10, twins included), each checked against
  every labelled field.

A price bound counts as right when it is the stated one (``max_price``/``min_price``), lies
in [X/2, X] (a minimum) or [X, 1.5X] (a maximum) for "around X", or for a price level is on
the right side of the wanted category's median price (a maximum at or below it for
"cheap", a minimum at or above it for "premium"). A shown item meets "around X" within 25%,
"cheap" at or below its category's median, "premium" at or above it. Catalogs without prices
(MovieLens, Amazon) drop price bounds, as the agent does.

    recagent eval requests --llm instruct        (or: python -m recagent.evals.requests)
"""

from __future__ import annotations

import json
import re
import statistics
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from recagent.agent.constraints import READER, ConstraintParser, combine, parse_with_llm
from recagent.agent.plan import N_CANDIDATES
from recagent.catalog.errors import RecAgentError
from recagent.catalog.model import Dataset, Item
from recagent.evals.data import data_root
from recagent.tools.filter_items import Constraints

__all__ = ["FIELDS", "Request", "agent_reading", "as_the_agent_prices", "attainable", "load_requests",
           "main", "read_right", "run_requests", "score_fields", "shown_meets", "write_reports"]

FIELDS = ("price", "brands", "exclude_brands", "categories", "exclude_categories")
SHOWN = 10
AROUND_SHOWN = 0.25


@dataclass(frozen=True)
class Request:
    dataset: str
    message: str
    max_price: float | None = None
    min_price: float | None = None
    around: float | None = None
    price_level: str | None = None
    brands: tuple[str, ...] = ()
    exclude_brands: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    exclude_categories: tuple[str, ...] = ()
    keywords: tuple[str, ...] = ()


REQUEST_SETS = {"labelled": "requests.yaml", "heldout": "requests_heldout.yaml",
                "heldout2": "requests_heldout2.yaml", "heldout3": "requests_heldout3.yaml",
                "heldout4": "requests_heldout4.yaml", "heldout5": "requests_heldout5.yaml",
                "heldout6": "requests_heldout6.yaml", "heldout7": "requests_heldout7.yaml",
                "heldout8": "requests_heldout8.yaml", "heldout9": "requests_heldout9.yaml",
                "heldout10": "requests_heldout10.yaml", "heldout11": "requests_heldout11.yaml",
                "heldout12": "requests_heldout12.yaml", "heldout13": "requests_heldout13.yaml",
                "heldout14": "requests_heldout14.yaml", "heldout15": "requests_heldout15.yaml",
                "heldout16": "requests_heldout16.yaml", "heldout17": "requests_heldout17.yaml",
                "heldout18": "requests_heldout18.yaml", "heldout19": "requests_heldout19.yaml",
                "heldout20": "requests_heldout20.yaml", "heldout21": "requests_heldout21.yaml",
                "heldout22": "requests_heldout22.yaml", "heldout23": "requests_heldout23.yaml",
                "heldout24": "requests_heldout24.yaml", "heldout25": "requests_heldout25.yaml",
                "heldout26": "requests_heldout26.yaml", "heldout27": "requests_heldout27.yaml"}


def load_requests(path: Path | str | None = None) -> tuple[dict[str, str | None], list[Request]]:
    """(dataset name -> folder under the data dir, or None for the demo shop; requests).

    ``path``: a file, or the name of a set that ships with recagent (``labelled``, the
    default; ``heldout``, ``heldout2`` ... ``heldout27``)."""
    name = REQUEST_SETS.get(str(path or "labelled"))
    text = (resources.files("recagent.evals").joinpath(name).read_text(encoding="utf-8") if name
            else Path(path).read_text(encoding="utf-8"))
    data = yaml.safe_load(text)
    known = set(Request.__dataclass_fields__)
    requests = []
    for i, raw in enumerate(data["requests"]):
        unknown = set(raw) - known
        if unknown:
            raise RecAgentError(f"request {i + 1} ({raw.get('message')!r}): unknown fields {sorted(unknown)}")
        if raw["dataset"] not in data["datasets"]:
            raise RecAgentError(f"request {i + 1}: unknown dataset {raw['dataset']!r}")
        requests.append(Request(**{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()}))
    return data["datasets"], requests


def check_labels(requests: Iterable[Request], dataset: Dataset) -> None:
    """Every labelled brand and category must be the catalog's own spelling."""
    brands = {i.brand for i in dataset.items.values() if i.brand}
    categories = {c for i in dataset.items.values() for c in i.categories}
    for r in requests:
        bad = [b for b in (*r.brands, *r.exclude_brands) if b not in brands]
        bad += [c for c in (*r.categories, *r.exclude_categories) if c not in categories]
        if bad:
            raise RecAgentError(f"request {r.message!r}: not in the {r.dataset} catalog: {bad}")


@dataclass
class _Prices:
    dataset: Dataset
    _by_category: dict[str, list[float]] = field(default_factory=dict)

    def median(self, categories: Iterable[str]) -> float | None:
        values = [p for c in categories for p in self._of(c)] or self._of("")
        return statistics.median(values) if values else None

    def _of(self, category: str) -> list[float]:
        if category not in self._by_category:
            self._by_category[category] = [
                i.price for i in self.dataset.items.values()
                if i.price is not None and (not category or category in i.categories)]
        return self._by_category[category]


def _truth_bounds(r: Request) -> int:
    if r.min_price is not None or r.max_price is not None:
        return (r.min_price is not None) + (r.max_price is not None)
    if r.around is not None:
        return 2
    return {"cheap": 1, "premium": 1, "mid-range": 2}.get(r.price_level or "", 0)


def _right_bounds(r: Request, c: Constraints, prices: _Prices) -> int:
    """How many of the parsed price bounds are right for the request."""
    right = 0
    if r.min_price is not None or r.max_price is not None:
        right += c.min_price is not None and r.min_price is not None and abs(c.min_price - r.min_price) < 0.01
        right += c.max_price is not None and r.max_price is not None and abs(c.max_price - r.max_price) < 0.01
        return right
    if r.around is not None:
        x = r.around
        right += c.min_price is not None and x / 2 <= c.min_price <= x
        right += c.max_price is not None and x <= c.max_price <= 1.5 * x
        return right
    median = prices.median(r.categories)
    if r.price_level in ("cheap", "mid-range") and c.max_price is not None and median is not None:
        right += c.max_price <= median if r.price_level == "cheap" else c.max_price >= median
    if r.price_level in ("premium", "mid-range") and c.min_price is not None and median is not None:
        right += c.min_price >= median if r.price_level == "premium" else c.min_price <= median
    return right


def score_fields(r: Request, c: Constraints, prices: _Prices) -> dict[str, tuple[int, int, int, int]]:
    """Per field: (right parsed values, parsed values, labelled values, labelled values found):
    precision is the first over the second, recall the last over the third."""
    parsed_bounds = (c.min_price is not None) + (c.max_price is not None)
    right = _right_bounds(r, c, prices)
    out = {"price": (right, parsed_bounds, _truth_bounds(r), right)}
    for name in ("brands", "exclude_brands", "exclude_categories"):
        truth = {x.casefold() for x in getattr(r, name)}
        got = {x.casefold() for x in getattr(c, name)}
        out[name] = (len(truth & got), len(got), len(truth), len(truth & got))
    # Categories: the labels are alternatives; recall counts a request whose parse names one
    # (once, however many of them it names).
    acceptable = {x.casefold() for x in r.categories}
    got = {x.casefold() for x in c.categories}
    out["categories"] = (len(got & acceptable), len(got), int(bool(acceptable)), int(bool(got & acceptable)))
    return out


def agent_reading(parser: ConstraintParser, llm, message: str, *, adapter: str | None = None) -> Constraints:
    """``message`` read as the agent reads it: the rules completed by the LLM's reading
    (with ``adapter``), the rules winning (:func:`combine`)."""
    return combine(parser.parse(message), parse_with_llm(llm, parser, message, adapter=adapter), parser)


def as_the_agent_prices(parser: ConstraintParser, c: Constraints) -> Constraints:
    """``c`` without price bounds where the catalog lists no prices, as the agent drops them."""
    return c if parser.has_prices else replace(c, min_price=None, max_price=None)


def read_right(r: Request, c: Constraints, prices: _Prices) -> bool:
    """Whether every labelled field of ``r`` is read, and nothing besides."""
    return all(right == got == truth for right, got, truth, _ in score_fields(r, c, prices).values())


def shown_meets(r: Request, item: Item, prices: _Prices) -> bool:
    """Whether one shown item meets everything the request asks for."""
    path = {c.casefold() for c in item.categories}
    if item.price is not None:
        if r.max_price is not None and item.price > r.max_price + 0.005:
            return False
        if r.min_price is not None and item.price < r.min_price - 0.005:
            return False
        if r.around is not None and abs(item.price - r.around) > AROUND_SHOWN * r.around:
            return False
        if r.price_level:
            median = prices.median([item.category[-1]])
            if median is not None and r.price_level == "cheap" and item.price > median:
                return False
            if median is not None and r.price_level == "premium" and item.price < median:
                return False
    if r.categories and not path & {c.casefold() for c in r.categories}:
        return False
    if path & {c.casefold() for c in r.exclude_categories}:
        return False
    brand = (item.brand or "").casefold()
    if r.brands and brand not in {b.casefold() for b in r.brands}:
        return False
    if brand and brand in {b.casefold() for b in r.exclude_brands}:
        return False
    return not r.keywords or names_a_keyword(r, item)


def names_a_keyword(r: Request, item: Item) -> bool:
    """Whether the item's title or category path holds one of the request's product words,
    at the start of a word: "fuse" is in "Fuses" but not in "Diffused", "duct" not in
    "Products" (until session 37 any substring counted, which let every item under a
    "... Products" category meet "duct tape, not 3M")."""
    text = f"{item.title} {' '.join(item.category)}".casefold()
    return any(re.search(r"(?<![a-z0-9])" + re.escape(k.casefold()), text) for k in r.keywords)


Reader = Callable[[ConstraintParser, str], Constraints]


def attainable(r: Request, dataset: Dataset, prices: _Prices) -> tuple[int, int]:
    """(items that could meet ``r``, items that could be shown): over the catalog, one per
    title, at most :data:`SHOWN` each; the first counts what meets every labelled field, the
    second what meets the fields a filter can hold (all but ``keywords``: Amazon's product
    words). Their ratio is the most a list that keeps the request's filters could score: four
    anti-seize compounds among the items a search may show mean at most 0.4."""
    loose = replace(r, keywords=())
    meet: set[str] = set()
    could: set[str] = set()
    for item in dataset.items.values():
        if shown_meets(loose, item, prices):
            could.add(item.title_key)
            if r.keywords and names_a_keyword(r, item):
                meet.add(item.title_key)
    return min(len(meet if r.keywords else could), SHOWN), min(len(could), SHOWN)


def run_requests(dataset: Dataset, requests: list[Request], readers: dict[str, Reader],
                 search: Callable[[str, Constraints], list[str]], *, encoder=None) -> dict[str, Any]:
    """Per reader: field counts, shown-item counts, per-request rows and timings. ``encoder``:
    the search tool's, which the parser uses as the agent's does (categories by meaning)."""
    parser = ConstraintParser(dataset, encoder=encoder)
    prices = _Prices(dataset)
    best = [attainable(r, dataset, prices) for r in requests]
    ceiling = {"ceiling_met": sum(m for m, _ in best), "ceiling_shown": sum(n for _, n in best)}
    out: dict[str, Any] = {}
    for name, read in readers.items():
        counts = {f: [0, 0, 0, 0] for f in FIELDS}
        met = shown = exact = 0
        rows, seconds = [], []
        for r in requests:
            started = time.perf_counter()
            c = as_the_agent_prices(parser, read(parser, r.message))
            seconds.append(time.perf_counter() - started)
            exact += read_right(r, c, prices)
            for f, scores in score_fields(r, c, prices).items():
                for k, n in enumerate(scores):
                    counts[f][k] += n
            ids = search(c.query or r.message, c)
            ok = [shown_meets(r, dataset.items[i], prices) for i in ids]
            met += sum(ok)
            shown += len(ok)
            rows.append({"message": r.message, "parsed": c.describe(), "query": c.query,
                         "shown": len(ok), "met": sum(ok)})
        out[name] = {"fields": counts, "met": met, "shown": shown, "rows": rows, **ceiling,
                     "read_right": exact, "requests": len(requests),
                     "seconds_median": round(statistics.median(seconds), 3),
                     "seconds_p95": round(sorted(seconds)[int(0.95 * (len(seconds) - 1))], 3)}
    return out


def _ratio(a: int, b: int) -> float | None:
    return round(a / b, 3) if b else None


def summarize(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Per dataset and over all: per reader, per-field precision and recall, shown met."""
    summary: dict[str, Any] = {}
    total: dict[str, dict[str, Any]] = defaultdict(lambda: {"fields": {f: [0, 0, 0, 0] for f in FIELDS},
                                                            "met": 0, "shown": 0,
                                                            "read_right": 0, "requests": 0,
                                                            "ceiling_met": 0, "ceiling_shown": 0})
    for dataset, by_reader in results.items():
        summary[dataset] = {}
        for reader, res in by_reader.items():
            summary[dataset][reader] = _metrics(res)
            for f in FIELDS:
                for k in range(4):
                    total[reader]["fields"][f][k] += res["fields"][f][k]
            for key in ("met", "shown", "read_right", "requests", "ceiling_met", "ceiling_shown"):
                total[reader][key] += res.get(key, 0)
    summary["all"] = {reader: _metrics(res) for reader, res in total.items()}
    return summary


def _metrics(res: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        f: {"precision": _ratio(right, got), "recall": _ratio(found, truth), "labelled": truth}
        for f, (right, got, truth, found) in res["fields"].items()
    }
    out["shown_met"] = _ratio(res["met"], res["shown"])
    out["ceiling"] = _ratio(res.get("ceiling_met", 0), res.get("ceiling_shown", 0))
    out["shown"] = res["shown"]
    out["read_right"] = _ratio(res.get("read_right", 0), res.get("requests", 0))
    for key in ("seconds_median", "seconds_p95"):
        if key in res:
            out[key] = res[key]
    return out


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def to_markdown(summary: dict[str, Any], meta: dict[str, Any]) -> str:
    title = f"{meta['n_requests']} labelled requests ({meta.get('request_set', 'labelled')} set)"
    lines = [f"# Request understanding: {title}", "",
             f"LLM: {meta['llm'] or 'none'}; CPU: {meta['cpu']}; command: `{meta['command']}`", "",
             ("Precision / recall per field; `shown met`: share of the 10 shown items "
              "(the first 10 of search_items' 50 under the parsed constraints, one per title, "
              "as the agent shows them) that meet the whole request; "
              "`read right`: share of the requests read exactly (every labelled field, "
              "nothing more); `ceiling`: the most any reading and search could score here, "
              "where the catalog holds fewer than 10 items (one per title) that meet a "
              "request among those its filters leave."), ""]
    readers = sorted({r for by in summary.values() for r in by})
    header = ("| dataset | reader | " + " | ".join(FIELDS) +
              " | shown met | ceiling | read right | parse s (median / p95) |")
    lines += [header, "|" + "---|" * (len(FIELDS) + 6)]
    for dataset, by_reader in summary.items():
        for reader in readers:
            m = by_reader.get(reader)
            if m is None:
                continue
            cells = [f"{_fmt(m[f]['precision'])} / {_fmt(m[f]['recall'])}" if m[f]["labelled"]
                     or m[f]["precision"] is not None else "-" for f in FIELDS]
            timing = (f"{m['seconds_median']:.2f} / {m['seconds_p95']:.2f}"
                      if "seconds_median" in m else "")
            lines.append(f"| {dataset} | {reader} | " + " | ".join(cells) +
                         f" | {_fmt(m['shown_met'])} | {_fmt(m.get('ceiling'))} | {_fmt(m.get('read_right'))}"
                         f" | {timing} |")
    return "\n".join(lines) + "\n"


def write_reports(summary: dict[str, Any], results: dict[str, Any], meta: dict[str, Any],
                  out_dir: Path, tag: str) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / f"requests-{tag}.json"
    md_path = out_dir / f"requests-{tag}.md"
    rows = {d: {r: res["rows"] for r, res in by.items()} for d, by in results.items()}
    json_path.write_text(json.dumps({"meta": meta, "summary": summary, "rows": rows}, indent=1))
    md_path.write_text(to_markdown(summary, meta))
    return json_path, md_path


def main(argv: list[str] | None = None) -> int:
    import argparse
    import platform
    import shlex
    import sys

    ap = argparse.ArgumentParser(prog="python -m recagent.evals.requests", description=__doc__.splitlines()[0])
    ap.add_argument("--llm", default="instruct", help="instruct, vllm or none (rules only)")
    ap.add_argument("--datasets", nargs="+", default=None, help="demo, ml-100k, amazon (default: all found)")
    ap.add_argument("--limit", type=int, default=None, help="at most this many requests per dataset")
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("reports"))
    ap.add_argument("--tag", default=None, help="report name: requests-<tag>.json/.md (default: the LLM)")
    ap.add_argument("--requests", default="labelled",
                    help="labelled (evals/requests.yaml), heldout, heldout2 ... heldout27 "
                         "(evals/requests_heldout*.yaml) or a file")
    args = ap.parse_args(argv)
    return evaluate(llm_name=args.llm, datasets=args.datasets, limit=args.limit, out_dir=args.out,
                    tag=args.tag, request_set=args.requests,
                    command="python -m recagent.evals.requests " + shlex.join(argv or sys.argv[1:]),
                    cpu=platform.processor() or platform.machine())


def evaluate(*, llm_name: str, datasets: list[str] | None, limit: int | None, out_dir: Path,
             command: str, cpu: str, tag: str | None = None, request_set: str = "labelled",
             echo: Callable[[str], None] = print) -> int:
    from dataclasses import replace as dc_replace

    from recagent.app.llm_backend import make_llm, reader_adapters
    from recagent.app.runtime import Runtime
    from recagent.app.settings import Settings
    from recagent.evals.bench_spine import machine_info
    from recagent.tools.filter_items import FilterItems
    from recagent.tools.search_items import SearchItems

    folders, requests = load_requests(request_set)
    settings = Settings.from_env()
    settings = dc_replace(settings, llm=llm_name)
    adapters = reader_adapters(settings)  # none but for the embedded instruct model
    llm = make_llm(settings, adapters=adapters) if llm_name != "none" else None
    if llm is not None and not llm.structured_output:
        raise RecAgentError(f"{llm.name} has no structured output; use --llm instruct or vllm")
    readers: dict[str, Reader] = {"rules": lambda p, m: p.parse(m)}
    if llm is not None:
        readers["rules+llm"] = lambda p, m: agent_reading(p, llm, m)
    if READER in adapters:  # the request-reading adapter, beside the model alone
        readers["rules+llm+reader"] = lambda p, m: agent_reading(p, llm, m, adapter=READER)
    root = data_root()
    results: dict[str, Any] = {}
    for name, folder in folders.items():
        if datasets and name not in datasets:
            continue
        chosen = [r for r in requests if r.dataset == name][:limit]
        path = None if folder is None else root / folder
        if path is not None and not path.is_dir():
            echo(f"skipping {name}: no data at {path} (set RECAGENT_DATA_DIR)")
            continue
        runtime = Runtime(dc_replace(settings, data=None if folder is None else path))
        dataset = runtime.dataset
        check_labels(chosen, dataset)
        runtime.ensure_index(show_progress=False)
        search_tool = SearchItems(dataset, runtime.encoder, runtime.index)
        one_per_title = FilterItems(dataset)

        def search(query: str, c: Constraints, tool=search_tool, keep=one_per_title) -> list[str]:
            return [x.item_id for x in keep(tool(query, N_CANDIDATES, c), c).kept[:SHOWN]]

        echo(f"{name}: {len(chosen)} requests")
        results[name] = run_requests(dataset, chosen, readers, search, encoder=runtime.encoder)
    summary = summarize(results)
    meta = {"n_requests": sum(len(by["rules"]["rows"]) for by in results.values()),
            "request_set": request_set,
            "llm": llm.name if llm else None, "cpu": cpu, "command": command,
            "machine": machine_info()}
    tag = tag or ("rules" if llm is None else llm_name)
    json_path, md_path = write_reports(summary, results, meta, out_dir, tag)
    echo(to_markdown(summary, meta))
    echo(f"wrote {json_path} and {md_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
