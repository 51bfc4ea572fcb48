"""A simulated user clicks on the enhanced phase's results; the ranking learned from those
clicks is scored on other, judged queries.

    python -m bench.click_learning --index /tmp/demo-shipped --dataset /tmp/demo-beir

The judged queries are split (seeded) into training and test queries. For every training
query ``--searches`` users are served as a stream serves them: the enhanced top 10 as
installed (`Engine.enhanced_payload`), or for the ``--explore-share`` of them that the
server's own `app.explore.Explorer` draws, the phase computed for 10 + ``--explore-depth``
hits and cut back to 10 in the explored order (`app.explore.sent_payload`: one candidate from
ranks 11..10+depth at a uniformly random rank). A user examines rank r with probability
(1 / r) ** eta_sim and clicks an examined result with probability ``--p-rel`` when judged
relevant and ``--p-noise`` when not. Searches that got a click are stored through `ClickLog`,
as the server stores them. Then the periodic task's body (`app.click_schedule.tick`,
threshold 1) trains and installs (or not; a refused model is then installed anyway, to show
what the rule kept out), and nDCG@10, Recall@100 and MRR@10 of the enhanced phase are
computed on the test queries (pytrec_eval, as `progsearch eval`) before and after. Three
trainings, each on its own copy of the index: the log without exploration with the
position-bias correction (``--eta``), the explored log with it, and the explored log without
(eta 0). The peer, on a fourth copy: tune's linear search fitted to the training queries'
judgements, the most these features could learn from perfect feedback. Nothing is chosen on
the test queries.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from app.beir import split_queries
from app.click_log import ClickLog, Shown
from app.click_schedule import ClickSchedule, tick
from app.engine import Engine
from app.evaluate import METRICS, evaluate_run, phase_runs
from app.explore import Explorer, sent_payload
from app.params import SearchParams
from app.phases import ENHANCED
from app.phases.bare import ready_phases
from app.tune import LINEAR_FEATURES, collect, linear_table, simplex, weights_of
from rankers.enhance import EnhanceSettings, score_candidates
from rankers.learned import LinearModel, RankModel
from rankers.model_store import install_model

Clicks = list[tuple[Shown, list[str]]]


def open_root(root: Path) -> Engine:
    engine = Engine.open(root)
    engine.load_encoder()
    ready_phases(engine, [ENHANCED], strict=True)
    return engine


def figures(root: Path, queries: dict[str, str], qrels: dict[str, dict[str, int]]
            ) -> dict[str, float]:
    """The enhanced phase's figures on ``queries``, ranked by the model installed in ``root``."""
    engine = open_root(root)
    return evaluate_run(phase_runs(engine, queries, [ENHANCED])[ENHANCED.name], qrels)


def simulate(engine: Engine, queries: dict[str, str], qrels: dict[str, dict[str, int]],
             args: argparse.Namespace, share: float) -> tuple[Clicks, int]:
    """``args.searches`` users per training query, and their clicks on what each was shown:
    the enhanced top 10 as served, or for the explored share of them (drawn by the server's
    own `Explorer`), the explored order of the phase computed for 10 + depth hits, cut back
    by `sent_payload`, as a stream sends it; and how many searches showed a deeper one."""
    rng = np.random.default_rng(args.seed + 1)
    explorer = Explorer(share, args.explore_depth, np.random.default_rng(args.seed + 2))
    out: Clicks = []
    n_explored = 0
    start = time.time() - 3600.0
    for qid, text in queries.items():
        params = SearchParams(text, 10, False)
        vector = engine.encode(params.text)
        plain = tuple(h["id"] for h in engine.enhanced_payload(params, vector)["hits"])
        deep = engine.enhanced_payload(explorer.deep(params), vector) if explorer.on else None
        if not plain:
            continue
        for n in range(args.searches):
            shown = plain
            if deep is not None and explorer.wants(params, 0):
                sent, explored = sent_payload(deep, params.k,
                                              explorer.order(len(deep["hits"]), params.k))
                n_explored += explored
                shown = tuple(h["id"] for h in sent["hits"])
            ranks = np.arange(1, len(shown) + 1)
            examine = (1.0 / ranks) ** args.eta_sim
            relevant = np.array([qrels[qid].get(d, 0) > 0 for d in shown])
            p_click = np.where(relevant, args.p_rel, args.p_noise)
            clicked = rng.random(len(shown)) < examine * p_click
            if clicked.any():
                s = Shown(f"{qid}-{n}", text, "", shown, engine.model_version, start + n)
                out.append((s, [shown[i] for i in np.flatnonzero(clicked)]))
    return out, n_explored


def store(root: Path, clicks: Clicks) -> None:
    log = ClickLog.open(root)
    for shown, docs in clicks:
        for doc in docs:
            log.add(shown, doc, at=shown.at + 1.0)
    log.close()


def reorder_only(engine: Engine, model: RankModel, queries: dict[str, str],
                 qrels: dict[str, dict[str, int]]) -> float:
    """nDCG@10 of the default's top 10 of each query reordered by ``model``, nothing else
    brought in: what clicks on those ten can show of a model."""
    out = []
    for q in collect(engine, queries, qrels):
        if not q.ids:
            out.append(0.0)
            continue
        default = score_candidates(q.features, EnhanceSettings())
        top = np.argsort(-default, kind="stable")[:10]
        scores = np.full(default.size, -np.inf)
        scores[top] = model.score(q.features)[top]  # z-scored over every candidate
        out.append(q.ndcg(scores))
    return float(np.mean(out))


def copy_root(source: Path, dest: Path) -> Path:
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(source, dest, ignore=shutil.ignore_patterns(
        "delta.sqlite*", "clicks.sqlite*", "models", "clicks-trained.json", ".clicks-train.lock"))
    return dest


def row(name: str, before: dict[str, float], after: dict[str, float], installed: str) -> str:
    cells = "".join(f"{before[m]:>10.4f}{after[m]:>10.4f}{after[m] - before[m]:>+9.4f}"
                    for m in METRICS)
    return f"{name:<22}{cells}  {installed}"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--index", type=Path, required=True, help="an index root (copied)")
    p.add_argument("--dataset", type=Path, required=True)
    p.add_argument("--split", default="test")
    p.add_argument("--work", type=Path, default=Path("/tmp/click-learning"))
    p.add_argument("--train-share", type=float, default=0.5)
    p.add_argument("--searches", type=int, default=200, help="users per training query")
    p.add_argument("--eta-sim", type=float, default=1.0, help="the users' examination exponent")
    p.add_argument("--p-rel", type=float, default=0.9)
    p.add_argument("--p-noise", type=float, default=0.1)
    p.add_argument("--eta", type=float, default=1.0, help="the training's correction exponent")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--explore-share", type=float, default=0.2,
                   help="share of the users served an explored search (the server's "
                   "PROGSEARCH_EXPLORE_SHARE, 0.05 by default)")
    p.add_argument("--explore-depth", type=int, default=20,
                   help="ranks below 10 an explored candidate comes from")
    args = p.parse_args()

    queries, qrels = split_queries(args.dataset, args.split)
    judged = sorted(q for q in queries if any(g > 0 for g in qrels[q].values()))
    order = np.random.default_rng(args.seed).permutation(len(judged))
    n_train = round(args.train_share * len(judged))
    train = {judged[i]: queries[judged[i]] for i in sorted(order[:n_train].tolist())}
    test = {judged[i]: queries[judged[i]] for i in sorted(order[n_train:].tolist())}
    test_qrels = {q: qrels[q] for q in test}

    args.work.mkdir(parents=True, exist_ok=True)
    print(f"$ python -m bench.click_learning {shlex.join(sys.argv[1:])}")
    engine = open_root(copy_root(args.index, args.work / "default"))
    before = figures(args.work / "default", test, test_qrels)
    print(f"{len(train)} training queries, {len(test)} test queries (seed {args.seed}); "
          f"{args.searches} users per training query: examination (1/r)^{args.eta_sim:g}, "
          f"click {args.p_rel:g} if relevant, {args.p_noise:g} if not")
    logs: dict[float, Clicks] = {}
    for share in (0.0, args.explore_share):
        started = time.perf_counter()
        logs[share], explored = simulate(engine, train, qrels, args, share)
        print(f"explore share {share:g} (depth {args.explore_depth}): {explored} searches "
              "showed a candidate from below rank 10; "
              f"{len(logs[share])} searches with a click, "
              f"{sum(len(d) for _, d in logs[share])} clicks "
              f"({time.perf_counter() - started:.1f} s)")
    runs = [(f"no exploration, eta {args.eta:g}", 0.0, args.eta, "plain"),
            (f"explored, eta {args.eta:g}", args.explore_share, args.eta, "explored-ipw"),
            ("explored, eta 0", args.explore_share, 0.0, "explored-naive")]
    rows = []
    for name, share, eta, folder in runs:
        root = copy_root(args.index, args.work / folder)
        store(root, logs[share])
        started = time.perf_counter()
        report = tick(root, open_root(root), ClickSchedule(min_clicks=1, eta=eta))
        assert report is not None
        print(f"\n{name} ({time.perf_counter() - started:.1f} s):")
        for line in report.lines():
            print(f"  {line}")
        after = figures(root, test, test_qrels)
        rows.append(row(name, before, after, report.installed or "nothing installed"))
        if report.installed is None and report.model is not None:
            # What the refused model would have done: the install rule's cost, if any.
            install_model(root, report.model)
            shown_only = reorder_only(open_root(root), report.model, test, test_qrels)
            rows.append(row(f"  {report.chosen}, forced", before,
                            figures(root, test, test_qrels),
                            f"(refused by the rule; nDCG@10 {shown_only:.4f} when it only "
                            "reorders the default's top 10)"))
    # The peer: tune's linear search on the training queries' judgements themselves, what
    # clicks could teach at best with these features.
    root = copy_root(args.index, args.work / "judged")
    labelled = collect(open_root(root), train, qrels)
    grid = simplex(len(LINEAR_FEATURES))
    peer = LinearModel(weights_of(grid[int(np.argmax(linear_table(labelled, grid).mean(axis=0)))]))
    install_model(root, peer)
    rows.append(row("judgements (tune)", before, figures(root, test, test_qrels),
                    str(peer.weights)))
    print("\nenhanced phase on the test queries, before / after / difference:")
    print(f"{'':<22}" + "".join(f"{m:>29}" for m in METRICS))
    print(f"{'training':<22}" + "".join(f"{'before':>10}{'after':>10}{'diff':>9}"
                                        for _ in METRICS))
    for line in rows:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
