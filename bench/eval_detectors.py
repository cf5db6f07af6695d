"""Rerunnable detector evaluation on the shipped real data (issue 3, part 4).

    python bench/eval_detectors.py [--quick] [--out var/eval_detectors]

Writes ``report.json`` and PNG plots to ``--out`` and, with ``--docs``, copies the plots to
docs/img/ and rewrites the numbers section of docs/detectors.md. A full run takes a few minutes
on 2 cores; ``--quick`` uses smaller sizes.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from detectors.engine import EngineConfig, WindowEngine
from detectors.reference_model import ReferenceModel
from detectors.shortcuts import ShortcutDetectors, format_gaming, hedging, repetition, sycophancy
from gateway.tools import eval as E
from gateway.tools import shipped

REPO = Path(__file__).resolve().parents[1]
CHEAP = {"hedging": hedging, "repetition": repetition}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def latency(det: ShortcutDetectors, pool: list[E.PoolItem], n: int) -> dict[str, Any]:
    """p50/p99 wall time per interaction (ms) of each cheap detector and of the full bundle."""
    items = pool[:n]
    out: dict[str, Any] = {}
    for name, fn in (
        ("hedging", lambda it: hedging(it.reply)),
        ("repetition", lambda it: repetition(it.reply)),
        ("sycophancy", lambda it: sycophancy([{"role": "user", "content": it.prompt}], it.reply)),
        ("format_gaming", lambda it: format_gaming([{"role": "user", "content": it.prompt}], it.reply)),
        ("all_detectors_single", lambda it: det.score([{"role": "user", "content": it.prompt}], it.reply)),
    ):
        ts = []
        for it in items:
            t = time.perf_counter()
            fn(it)
            ts.append((time.perf_counter() - t) * 1000)
        out[name] = {
            "p50_ms": round(float(np.percentile(ts, 50)), 3),
            "p99_ms": round(float(np.percentile(ts, 99)), 3),
        }
    return out


def degenerate(reply: str, rng: random.Random) -> str:
    """A degenerate loop built from a real reply: its first sentence(s) repeated to 3x length."""
    words = reply.split()
    chunk = " ".join(words[: max(8, min(25, len(words) // 3))])
    text = reply[: len(reply) // 3]
    while len(text) < len(reply) * 1.5 or len(text) < 400:
        text += " " + chunk
    return text


def per_interaction(det: ShortcutDetectors, pool: list[E.PoolItem], seed: int) -> dict[str, Any]:
    card = json.loads((REPO / "detectors" / "data" / "model_card.json").read_text())
    rng = random.Random(seed)
    sample = [it for it in pool if len(it.reply) > 300]
    rng.shuffle(sample)
    sample = sample[:400]
    texts = [it.reply for it in sample] + [degenerate(it.reply, rng) for it in sample]
    y = np.array([0] * len(sample) + [1] * len(sample))
    pred = np.array([repetition(t).flagged for t in texts])
    tp = int((pred & (y == 1)).sum())
    fp = int((pred & (y == 0)).sum())
    fn = int((~pred & (y == 1)).sum())
    prec = tp / max(tp + fp, 1)
    rec = tp / max(tp + fn, 1)
    return {
        "refusal_xstest_grouped_cv": card["refusal_cv"],
        "repetition_synthetic_loops": {
            "n": len(texts),
            "precision": round(prec, 4),
            "recall": round(rec, 4),
            "f1": round(2 * prec * rec / max(prec + rec, 1e-9), 4),
            "note": "negatives: 400 real replies > 300 chars; positives: the same replies turned into loops",
        },
    }


def flag_rates(pool: list[E.PoolItem]) -> dict[str, dict[str, float]]:
    by: dict[str, list[E.PoolItem]] = {}
    for it in pool:
        by.setdefault(it.source.split("/")[0] + "/" + it.source.split("/")[-1], []).append(it)
    out = {}
    for src, items in sorted(by.items()):
        out[src] = {
            k: round(sum(i.metrics[k] for i in items) / len(items), 4)
            for k in items[0].metrics
            if k not in ("blocked", "error")
        }
        out[src]["n"] = len(items)
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default=str(REPO / "var" / "eval_detectors"))
    ap.add_argument(
        "--docs", action="store_true", help="copy plots to docs/img and numbers to docs/detectors.md"
    )
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    quick = args.quick
    t0 = time.time()
    det = ShortcutDetectors()
    ref = ReferenceModel()
    report: dict[str, Any] = {"quick": quick}

    log("scoring the replay pool")
    xs = shipped.xstest_completions()
    exchanges = shipped.hh_exchanges() + shipped.arena_answers() + shipped.oasst_outputs() + xs
    pool = E.score_pool(exchanges, det, ref)
    rejected = E.score_pool(shipped.hh_exchanges(side="rejected"), det, ref)
    report["pool"] = {"n": len(pool), "flag_rates_by_source": flag_rates(pool + rejected)}
    report["pool_scoring_seconds"] = round(time.time() - t0, 1)
    report["latency"] = latency(det, pool, 300 if quick else 1500)
    log(f"latency {report['latency']}")
    report["per_interaction"] = per_interaction(det, pool, 0)

    # ---- A/A ---------------------------------------------------------------------------------------
    aa_n = 6000 if quick else 20_000
    aa_runs = []
    aa_trace = None
    for seed in (1, 2):
        log(f"A/A seed {seed}")
        res = E.replay(
            E.aa_stream(pool, aa_n, seed), EngineConfig(), trace=[("all", "refusal"), ("all", "hedging")]
        )
        aa_runs.append(res)
        if aa_trace is None:
            aa_trace = res.traces
    total = sum(r.n for r in aa_runs)
    alerts = [a for r in aa_runs for _, a in r.alerts]
    per_det: dict[str, int] = {}
    for a in alerts:
        per_det[a.detector] = per_det.get(a.detector, 0) + 1
    report["aa"] = {
        "requests": total,
        "runs": len(aa_runs),
        "alerts": len(alerts),
        "anomalies_emitted": sum(len(r.anomalies) for r in aa_runs),
        "false_alarms_per_10k_by_detector": {d: round(10_000 * k / total, 3) for d, k in per_det.items()},
        "alert_details": [a.to_dict() for a in alerts][:10],
    }
    log(f"A/A {report['aa']['alerts']} alerts in {total}")

    # ---- topic shift -------------------------------------------------------------------------------
    before_domains = ("banking", "credit_cards", "work", "utility", "home")
    after_domains = ("travel", "auto_and_commute", "kitchen_and_dining", "small_talk", "meta")
    cfg_in = EngineConfig(group_by=("all",), input_group_by=("all",))
    topic: dict[str, Any] = {}
    auc_trace: list[tuple[int, float, float]] = []
    for label, after, mix in (
        ("switch_5_to_5_domains", after_domains, 1.0),
        ("add_one_domain_30pct", ("travel",), 0.3),
    ):
        delays = []
        emitted_delays: list[int | None] = []
        for seed in range(3 if quick else 5):
            before = E.clinc_items(ref, before_domains, seed)
            new = E.clinc_items(ref, after, seed + 100)
            onset = 2000
            stream = E.topic_shift_stream(before, new, 3500, onset, seed, mix)
            eng = WindowEngine(cfg_in)
            first = None
            emitted = None
            for i, obs in enumerate(stream):
                got = eng.update(obs)
                if (i + 1) % 100 == 0:  # the worker's batch: anomalies are written once per batch
                    opens = [e for e in eng.drain() if e["event"] == "open"]
                    if (
                        emitted is None
                        and i >= onset
                        and any(e["detector"].startswith("input_") for e in opens)
                    ):
                        emitted = i - onset
                if label.startswith("switch") and seed == 0 and i % 100 == 0 and "all" in eng.inputs:
                    d = eng.inputs["all"]
                    if d.calibrated and len(d.cur) == d.window:
                        auc_trace.append((i, d.last_auc, d.auc_threshold))
                if first is None and i >= onset and any(a.detector.startswith("input_") for a in got):
                    first = i - onset
                    if seed == 0:
                        topic.setdefault("example_alerts", {})[label] = [a.to_dict() for a in got][:2]
            delays.append(first)
            emitted_delays.append(emitted)
        topic[label] = E.summarise(delays)
        topic[label]["first_anomaly_written"] = E.summarise(emitted_delays)
        log(f"topic {label}: {topic[label]}")
    report["topic_shift"] = topic

    # ---- regressed canary --------------------------------------------------------------------------
    cfg_cmp = EngineConfig(group_by=("all", "variant"), input_group_by=())
    canary_n = 12_000 if quick else 25_000
    regressed: dict[str, Any] = {}
    arena = {m: [p for p in pool if p.source == f"arena/{m}"] for m in ("gpt-4-0314", "gpt-3.5-turbo-0125")}
    hh_chosen = [p for p in pool if p.source == "hh/chosen"]
    for label, control, canary in (
        ("hh_rejected_vs_chosen", hh_chosen, rejected),
        ("arena_gpt35_vs_gpt4", arena["gpt-4-0314"], arena["gpt-3.5-turbo-0125"]),
    ):
        res = E.replay(E.canary_stream(control, canary, canary_n, 0.10, 7), cfg_cmp)
        stream_variants = E.canary_stream(control, canary, canary_n, 0.10, 7)
        canary_idx = np.cumsum([o.variant == "canary" for o in stream_variants])
        firsts: dict[tuple[str, str], tuple[int, Any]] = {}
        for i, a in res.alerts:  # a comparison fires at every look while it holds: its first firing
            if "control" in a.group:
                firsts.setdefault((a.detector, a.direction), (i, a))
        comps = sorted(firsts.values(), key=lambda x: x[0])
        regressed[label] = {
            "control_rates": {
                k: round(float(np.mean([p.metrics[k] for p in control])), 4) for k in control[0].metrics
            },
            "canary_rates": {
                k: round(float(np.mean([p.metrics[k] for p in canary])), 4) for k in canary[0].metrics
            },
            "comparison_alerts": [
                {
                    "detector": a.detector,
                    "canary_requests_at_alert": int(canary_idx[i]),
                    "effect": a.effect,
                    "p_value": a.p_value,
                    "direction": a.direction,
                }
                for i, a in comps
            ],
            "over_time_alerts": sorted({a.detector for _, a in res.alerts if "control" not in a.group}),
            "firings": len(res.alerts),
            "anomalies_emitted": len(res.anomalies),
        }
        hits = [(c["detector"], c["canary_requests_at_alert"]) for c in regressed[label]["comparison_alerts"]]
        log(f"regressed {label}: {hits}")
    report["regressed_canary"] = regressed

    # ---- +5 points refusal on a 10 % canary ----------------------------------------------------------
    refusers = [p for p in pool if p.source.startswith("xstest") and p.metrics["refusal"] == 1.0]
    cfg_ref = EngineConfig(group_by=("all",), input_group_by=())
    delays_ref: list[int | None] = []
    emitted_ref: list[int | None] = []
    z_trace: list[tuple[int, float, float]] = []
    for seed in range(3 if quick else 6):
        shifted = E.add_refusals(pool, refusers, 0.05, seed)
        stream = E.canary_stream(pool, shifted, canary_n, 0.10, seed)
        eng = WindowEngine(cfg_ref)
        n_canary = 0
        hit = None
        hit_emitted = None
        for i, obs in enumerate(stream):
            n_canary += obs.variant == "canary"
            got = eng.update(obs)
            if (i + 1) % 100 == 0 and hit_emitted is None:
                opens = [e for e in eng.drain() if e["event"] == "open"]
                if any(e["detector"] == "refusal" and e["statistic"] == "msprt_log_lr" for e in opens):
                    hit_emitted = n_canary
            if seed == 0 and obs.variant == "canary" and n_canary % 50 == 0 and eng.comparisons:
                comp = next(iter(eng.comparisons.values()))["refusal"]
                z = comp.log_mixture_lr()
                thr = math.log(1.0 / comp.floors.comparison_alpha)
                z_trace.append((n_canary, z, thr))
            if hit is None and any(a.detector == "refusal" and "control" in a.group for a in got):
                hit = n_canary
        delays_ref.append(hit)
        emitted_ref.append(hit_emitted)
    report["refusal_canary_plus5"] = {
        "canary_share": 0.10,
        "requests": canary_n,
        "canary_requests_to_detect": E.summarise(delays_ref),
        "canary_requests_to_anomaly_written": E.summarise(emitted_ref),
        "target": "<= 2000 canary requests",
    }
    log(f"refusal canary {report['refusal_canary_plus5']}")

    # ---- synthetic shifts over time (one arm) --------------------------------------------------------
    rng = random.Random(3)
    base = list(pool)
    rng.shuffle(base)
    base = base[: 1500 if quick else 3000]
    log("scoring synthetic shifts")
    longer = E.score_pool(E.lengthen(base, 1.3, 0), det, ref)
    hedgier = E.score_pool(E.double_hedges(base, 0), det, ref)
    more_ref = E.add_refusals(base, refusers, 0.05, 0)
    synth: dict[str, Any] = {}
    cfg_t = EngineConfig(group_by=("all",), input_group_by=())
    len_trace = None
    for label, shifted, metric in (
        ("length_plus30pct", longer, "reply_log_chars"),
        ("refusals_plus5pts", more_ref, "refusal"),
        ("hedges_doubled", hedgier, "hedging"),
    ):
        delays = []
        for seed in range(2 if quick else 3):
            onset = 4000
            res = E.replay(
                E.shifted_stream(base, shifted, 16_000, onset, seed), cfg_t, trace=[("all", metric)]
            )
            if seed == 0 and metric == "reply_log_chars":
                len_trace = res.traces
            delays.append(res.first(lambda a, m=metric: a.detector == m, after=onset))
            if delays[-1] is not None:
                delays[-1] -= onset
        synth[label] = {
            "metric": metric,
            "base_rate": round(float(np.mean([b.metrics[metric] for b in base])), 4),
            "shifted_rate": round(float(np.mean([s.metrics[metric] for s in shifted])), 4),
            "requests_after_onset_to_detect": E.summarise(delays),
        }
        log(f"synthetic {label}: {synth[label]}")
    report["synthetic_over_time"] = synth
    report["alert_volume"] = alert_volume(pool, base, hedgier, quick)
    report["seconds"] = round(time.time() - t0, 1)
    (out / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")

    plots(out, aa_trace or {}, auc_trace, z_trace, len_trace or {})
    if args.docs:
        img = REPO / "docs" / "img"
        img.mkdir(parents=True, exist_ok=True)
        for p in out.glob("*.png"):
            shutil.copy(p, img / p.name)
        shutil.copy(out / "report.json", REPO / "docs" / "detectors_report.json")
    log(f"done in {report['seconds']} s -> {out}")
    return 0


def alert_volume(
    pool: list[E.PoolItem], base: list[E.PoolItem], hedgier: list[E.PoolItem], quick: bool
) -> dict[str, Any]:
    """Anomalies written for one real shift of 2,000 requests at the default settings (every group,
    10 % canary, two tenants; drained per batch of 100 like the worker): ``firings`` is what was
    written before the alert lifecycle (one anomaly per firing), ``anomalies`` what is written now.
    3,000 requests of the old traffic follow, so the incidents resolve."""
    xstest = [p for p in pool if p.source.startswith("xstest")]
    other = [p for p in pool if not p.source.startswith("xstest")]
    out: dict[str, Any] = {}
    n_before, n_shift, n_after = 4500, 2000, 3000
    for label, b, shifted in (
        ("traffic_becomes_xstest", other, xstest),
        ("hedges_doubled", base, hedgier),
    ):
        runs = []
        for seed in range(1 if quick else 3):
            res = E.replay(E.one_shift_stream(b, shifted, n_before, n_shift, n_after, seed), EngineConfig())
            during = [(i, a) for i, a in res.alerts if n_before <= i < n_before + n_shift]
            opens = res.anomalies
            runs.append(
                {
                    "seed": seed,
                    "firings_during_shift": len(during),
                    "firings_before_shift": sum(1 for i, _ in res.alerts if i < n_before),
                    "anomalies_during_shift": sum(1 for i, _ in opens if n_before <= i < n_before + n_shift),
                    "anomalies_total": len(opens),
                    "updates": sum(1 for _, e in res.events if e["event"] == "update"),
                    "resolved": sum(1 for _, e in res.events if e["event"] == "resolve"),
                    "anomalies": [
                        {
                            "at": i,
                            "detector": e["detector"],
                            "statistic": e["statistic"],
                            "direction": e["direction"],
                            "groups": e["group_keys"],
                        }
                        for i, e in opens
                    ],
                }
            )
        out[label] = runs
        log(
            f"alert volume {label}: "
            + "; ".join(
                f"{r['firings_during_shift']} firings -> {r['anomalies_during_shift']} anomalies"
                for r in runs
            )
        )
    return out


def plots(
    out: Path,
    aa: dict[str, list[tuple[int, float, float]]],
    auc: list[tuple[int, float, float]],
    z: list[tuple[int, float, float]],
    length: dict[str, list[tuple[int, float, float]]],
) -> None:
    def one(
        name: str,
        series: list[tuple[int, float, float]],
        title: str,
        xlabel: str,
        ylabel: str,
        onset: int | None,
    ) -> None:
        if not series:
            return
        fig, ax = plt.subplots(figsize=(7, 3.2))
        xs = [s[0] for s in series]
        ax.plot(xs, [s[1] for s in series], label="statistic", lw=1)
        ax.plot(xs, [s[2] for s in series], label="threshold", ls="--", color="red", lw=1)
        if onset is not None:
            ax.axvline(onset, color="black", ls=":", label="fault onset")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / name, dpi=110)
        plt.close(fig)

    one(
        "detectors_aa_refusal_cusum.png",
        aa.get("all/refusal", []),
        "A/A replay: refusal-rate CUSUM (no fault)",
        "request",
        "max(S+, S-)",
        None,
    )
    one(
        "detectors_topic_shift_auc.png",
        auc,
        "Topic shift (clinc150 domains): domain-classifier AUC",
        "request",
        "ROC AUC",
        2000,
    )
    one(
        "detectors_refusal_canary_z.png",
        z,
        "+5 pt refusals on a 10% canary: mSPRT log likelihood ratio",
        "canary requests",
        "log Lambda",
        None,
    )
    one(
        "detectors_length_cusum.png",
        length.get("all/reply_log_chars", []),
        "+30% reply length: log-length CUSUM",
        "request",
        "max(S+, S-)",
        4000,
    )


if __name__ == "__main__":
    raise SystemExit(main())
