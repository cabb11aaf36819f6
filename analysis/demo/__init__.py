"""The offline demo: the whole pipeline on the synthetic world, checked against its truth.

:func:`run_demo` needs no network and touches nothing outside ``<workspace>/demo/``:

1. generates the synthetic world (:func:`probes.world.generate_world`) into
   ``<workspace>/demo/world/``;
2. imports the world's reference data (CAIDA pfx2as, PeeringDB JSON, CAIDA IXP jsonl,
   CAIDA as2org, APNIC delegated-extended) as snapshot ``demo-<size>-seed<N>`` into a cache
   *inside the demo folder* (``<workspace>/demo/cache/``) unless ``cache_dir`` is given, so
   the demo neither reads nor pollutes the user's reference-data cache;
3. ingests the Atlas results and probe metadata into campaign ``demo``
   (``<workspace>/demo/`` is that campaign's folder);
4. annotates, analyzes (paths, exposure with 95% intervals, change events, graphs) and
   writes the report;
5. compares the outcome with the ground truth (the world's, read with
   :func:`probes.world.read_truth`; the scoring is :mod:`analysis.demo.accuracy`) and
   writes ``<workspace>/demo/accuracy.json``; ``demo.json`` records seed, size and stage
   timings.

Every run starts from an empty ``<workspace>/demo/`` (a folder there that the demo did not
create is refused, never deleted), so the same seed gives the same ``exposure.json``,
``paths/paths.parquet`` and ``accuracy.json`` byte for byte.

The room: this module runs the stages and writes ``accuracy.json`` and ``demo.json``;
:mod:`analysis.demo.accuracy` holds the pure scoring; ``pathexp demo``
(:mod:`analysis.cli.demo`) prints the result.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from probes.errors import ConfigError
from probes.workspace import DEFAULT_WORKSPACE, Campaign

if TYPE_CHECKING:
    from probes.world import Artefacts

__all__ = ["CAMPAIGN", "REFERENCE_KINDS", "DemoResult", "run_demo"]

#: The demo's campaign name (its folder is ``<workspace>/demo``).
CAMPAIGN = "demo"
#: Snapshot kind -> glob (relative to the world folder) of the files imported for it.
REFERENCE_KINDS = {
    "pfx2as": "reference/pfx2as/*",
    "peeringdb": "reference/peeringdb/*.json",
    "caida-ixp": "reference/caida-ixp/*",
    "as2org": "reference/as2org/*",
    "as-rel": "reference/as-rel/*",
    "rir-delegated": "reference/rir-delegated/*",
    "bgpdump": "reference/bgpdump/*",
}
#: Files and folders of the demo's own in ``<workspace>/demo/`` (the campaign's folder;
#: the pipeline's outputs are where :class:`probes.workspace.Campaign` says).
_MARKER = "demo.json"
_ACCURACY = "accuracy.json"
_WORLD = "world"
_CACHE = "cache"
_TOP_POPS = 8


@dataclass
class DemoResult:
    """What :func:`run_demo` produced.

    Attributes
    ----------
    campaign : probes.workspace.Campaign
        Campaign ``demo``; its folder holds everything the demo wrote.
    seed, size : int, str
    world : dict
        The world manifest (counts, diversion window, ...).
    exposure : dict
        What :func:`analysis.campaign_io.analyze_campaign` returned (``exposure.json``).
    top_pops : list of dict
        The most crossed flagged PoPs: family, asn, name, via, ixp_id, city, where (a
        readable place), detected and true traceroute counts (``true_traceroutes`` is None
        where the pipeline did not locate the PoP in a city).
    episodes : list of dict
        Change-event episodes found (:func:`analysis.demo.accuracy.episodes`).
    accuracy : dict
        What ``accuracy.json`` holds.
    timings : dict
        Wall seconds per stage.
    files : dict
        Name -> path of the main outputs.
    family_names : dict
        Family id -> display name (from the flagged-carrier registry).
    report_error : str or None
        Why the report step failed (the other outputs are complete), None if it did not.
    """

    campaign: Campaign
    seed: int
    size: str
    world: dict
    exposure: dict
    top_pops: list[dict]
    episodes: list[dict]
    accuracy: dict
    timings: dict[str, float] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)
    family_names: dict[str, str] = field(default_factory=dict)
    report_error: str | None = None


def _say(console: Any, text: str) -> None:
    if console is not None:
        console.print(text)


def _prepare(root: Path) -> None:
    """Empty ``root`` if an earlier demo made it; refuse a folder the demo did not make."""
    if root.exists():
        if not (root / _MARKER).is_file():
            if root.is_dir() and not any(root.iterdir()):
                return
            raise ConfigError(
                f"{root} exists and was not created by `pathexp demo`; "
                "choose another folder with --workspace (nothing was changed)"
            )
        shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True)


def run_demo(
    *,
    workspace: Path = DEFAULT_WORKSPACE,
    seed: int = 0,
    size: str = "small",
    cache_dir: Path | None = None,
    console: Any = None,
    artefacts: Artefacts | None | Literal["default"] = "default",
) -> DemoResult:
    """Run the whole pipeline offline on the synthetic world and score it against the truth.

    Parameters
    ----------
    workspace : path
        Folder of campaign workspaces; the demo owns ``<workspace>/demo/``.
    seed : int
        World seed (same seed, same outputs).
    size : {"small", "large"}
        World size.
    cache_dir : path, optional
        Reference-data cache for the world's snapshot. Default: ``<workspace>/demo/cache``,
        so the user's cache (``PATHEXP_CACHE_DIR`` / the platform cache) is never touched.
    console : rich.console.Console, optional
        Where to print one line per stage as it finishes.
    artefacts : probes.world.Artefacts, optional
        Generate the world with these measurement artefacts (neighbour-numbered links,
        third-party replies, invisible MPLS, stale PeeringDB, imprecise probe locations
        ...). ``"default"``: every artefact at its default rate (``Artefacts()``); None:
        the clean world, for comparison.

    Returns
    -------
    DemoResult

    Raises
    ------
    probes.errors.ConfigError
        ``<workspace>/demo`` holds something the demo did not create, or a bad seed/size.
    """
    from analysis.campaign_io import (
        analyze_campaign,
        annotate_campaign,
        read_annotated,
        write_report,
    )
    from analysis.datasets import import_files
    from analysis.demo import accuracy as acc
    from analysis.ownership import apply_owners
    from analysis.registry import load_registry
    from probes import store
    from probes.fileio import write_bytes
    from probes.metadata import read_probe_objects
    from probes.world import SIZES, Artefacts, generate_world, read_truth

    if artefacts == "default":
        artefacts = Artefacts()
    if size not in SIZES:
        raise ConfigError(f"unknown world size {size!r}; choose one of {sorted(SIZES)}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"world seed must be a non-negative integer, got {seed!r}")
    campaign = Campaign(CAMPAIGN, Path(workspace))
    root = campaign.root
    _prepare(root)
    timings: dict[str, float] = {}
    marker = {"generator": "pathexp demo", "seed": seed, "size": size,
              "artefacts": None if artefacts is None else artefacts.as_dict()}
    write_bytes(root / _MARKER, orjson.dumps(marker, option=orjson.OPT_INDENT_2) + b"\n")

    def stage(name: str, t0: float, text: str) -> None:
        timings[name] = round(time.perf_counter() - t0, 3)
        _say(console, f"[green]✓[/green] {text} [dim]({timings[name]:.1f} s)[/dim]")

    # 1. world
    t0 = time.perf_counter()
    world_dir = root / _WORLD
    manifest = generate_world(world_dir, seed=seed, size=size, artefacts=artefacts)
    c = manifest.counts
    stage("world", t0, f"synthetic world: {c['ases']} ASes, {c['ixps']} IXPs, {c['probes']} probes, "
                       f"{c['traces']:,} traceroutes")

    # 2. reference data
    t0 = time.perf_counter()
    cache = Path(cache_dir) if cache_dir is not None else root / _CACHE
    snapshot_id = f"demo-{size}-seed{seed}"
    for kind, pattern in REFERENCE_KINDS.items():
        sources = sorted(world_dir.glob(pattern))
        if not sources:
            raise ConfigError(f"the world in {world_dir} has no {kind} reference data ({pattern})")
        import_files(kind, sources, snapshot_id=snapshot_id, cache_dir=cache, replace=True,
                     source_url="synthetic:pathexp-world")
    stage("reference", t0, f"reference data imported as snapshot {snapshot_id}")

    # 3. ingest
    t0 = time.perf_counter()
    results = sorted((world_dir / "atlas" / "results").glob("*.ndjson.gz"))
    ingest = store.ingest_files(campaign, results)
    n_probes = store.write_probe_meta(campaign, read_probe_objects(world_dir / "atlas" / "probes.json"))
    stage("ingest", t0, f"ingested {ingest.added:,} traceroutes ({ingest.hop_rows:,} hop rows), "
                        f"{n_probes} probes")

    # 4. annotate
    t0 = time.perf_counter()
    ann = annotate_campaign(campaign, snapshot_id=snapshot_id, cache_dir=cache)
    counts = ann["counts"]
    replies = max(int(counts.get("replies", 0)), 1)
    resolved = sum(v for k, v in counts.items() if k.startswith("resolved:"))
    public_unresolved = sum(counts.get(f"unresolved:{k}", 0) for k in ("no-route", "rdap-failed"))
    stage("annotate", t0, f"annotated {counts.get('replies', 0):,} replies: {resolved / replies:.1%} "
                          f"to an AS or IXP, {public_unresolved:,} public addresses unresolved, "
                          "the rest private/shared")

    # 5. analyze
    t0 = time.perf_counter()
    exposure = analyze_campaign(campaign, cache_dir=cache)
    stage("analyze", t0, f"paths, exposure, change events and graphs for {exposure['traceroutes']:,} "
                         "traceroutes")

    files: dict[str, Path] = {
        "world": world_dir,
        "exposure": campaign.exposure_json,
        "paths": campaign.paths_parquet,
        "tables": campaign.exposure_dir,
        "graph": campaign.as_graph_graphml,
    }

    # 6. accuracy against the truth
    t0 = time.perf_counter()
    world_truth = read_truth(world_dir)
    truth = world_truth.world
    t_traces = world_truth.table("traces")
    t_flagged = world_truth.table("flagged_crossings")
    t_ixp = world_truth.table("ixp_crossings")
    paths = pq.read_table(files["paths"])
    events = pq.read_table(campaign.exposure_table("change_events"))

    t_hops = world_truth.table("hops", columns=[*acc.TRACE_KEY, "hop", "responded", "addr", "kind",
                                                "owner_asn", "artefact"])
    entries = acc.true_entries(t_flagged, t_traces, truth["families"], t_hops)
    found = acc.detected_crossings(paths)
    key = [*acc.TRACE_KEY, "family", "asn"]
    crossing = acc.score(entries, found, keys=key, observable="observable")
    located = found.filter(pc.not_equal(found.column("via"), "unknown"))  # no claim, no error
    location = acc.score(entries, located, keys=[*key, "via", "ixp_id"], observable="location_observable",
                         cause="cause")
    claimed = found.filter(pc.is_valid(found.column("city")))  # crossings the pipeline located
    cities = acc.score(entries, claimed, keys=[*key, "city"], observable="observable")
    pop_cc = exposure["pop_country"]
    # a crossing located in the country counts whether or not its city is known
    in_cc = acc.score(entries.filter(pc.equal(entries.column("country"), pop_cc)),
                      found.filter(pc.equal(found.column("country"), pop_cc)),
                      keys=[*key, "country"], observable="observable")
    ixp = acc.score(acc.true_ixp_crossings(t_ixp), acc.detected_ixp_crossings(paths),
                    keys=[*acc.TRACE_KEY, "ixp_id", "member_asn"], observable="observable")
    families = sorted(truth["families"])
    t_scoped = acc.in_scope_truth(t_traces, paths)  # the figures are over the in-scope traceroutes
    true_exp = acc.truth_exposure(t_scoped, entries, families, pop_country=exposure["pop_country"])
    checks = acc.exposure_checks(exposure["families"], true_exp)
    annotated = read_annotated(campaign)
    if campaign.owners_parquet.is_file():  # the ownership stage ran: score its owner AS
        annotated = apply_owners(annotated, pq.read_table(campaign.owners_parquet))
    owner = acc.router_owner(t_hops, annotated)
    del annotated

    div = truth["diversion"]
    registry = load_registry()
    leak_family = registry.family_of(int(div["leaker_asn"]))
    leak_family_id = leak_family.family if leak_family else None
    eps = acc.episodes(events.filter(pc.not_equal(events.column("family"), "any")))
    diversion = acc.diversion_check(eps, family=leak_family_id or "", start=div["start"], end=div["end"])
    # the leak seen in the control plane: valley-free violations in the collector's BGP data
    from analysis.bgp import more_specific_signals, valley_signals
    from analysis.datasets import load_snapshot

    snap = load_snapshot(snapshot_id, cache_dir=cache)
    bgp_routes = snap.table("bgpdump", "routes")
    signals = pa.concat_tables([
        t.select(["asn", "prefix", "first_seen"]) for t in (
            valley_signals(bgp_routes, snap.table("as-rel", "links"), registry),
            more_specific_signals(bgp_routes, registry))])
    leak_bgp = acc.leak_signals(signals, leaked_prefixes=div["leaked_prefixes"], leaker=int(div["leaker_asn"]),
                                start=int(div["start"]))
    del snap, bgp_routes, signals
    change_scores = {}
    for fam in families:
        true_ev = acc.truth_change_events(t_scoped, family=fam)
        got = events.filter(pc.equal(events.column("family"), fam))
        got = got.set_column(got.schema.get_field_index("timestamp"), "timestamp",
                             acc.epoch_seconds(got.column("timestamp")))
        change_scores[fam] = acc.score(true_ev, got, keys=["prb_id", "dst_addr", "family", "event", "timestamp"]).as_dict()

    accuracy = {
        "synthetic": True,
        "seed": seed,
        "size": size,
        "definitions": {
            "flagged_crossing": "entry of a traceroute into a flagged family, keyed by "
            "(msm_id, prb_id, timestamp, family, entering ASN); hand-overs between ASes of one "
            "family are not entries",
            "crossing_location": "the same, plus via (ixp | private) and ixp_id; the place is "
            "unobservable when the hops showing it did not answer (the peering-LAN hop for an "
            "IXP; the entering hop and the one before it for a private interconnect); a "
            "detection of unknown kind makes no claim",
            "crossing_city": "the same as flagged_crossing plus the PoP city; detections count "
            "only where the pipeline located the PoP (pop_city set), so recall is the share of "
            "entries it placed in the right city; false ones are wrong cities",
            "crossing_pop_country": "flagged crossings whose PoP is in the PoP country "
            "(truth: entry city there; detected: located there), keyed with the country",
            "ixp_crossing": "(msm_id, prb_id, timestamp, ixp_id, member ASN); true crossings "
            "whose LAN hop did not answer are unobservable (left out of recall)",
            "recall": "over observable true items; recall_all over every true item",
            "exposure_truth": "path: share of the measured traceroutes whose true path "
            "transits the family; pop: share whose true entry into the family is at a PoP "
            f"in {exposure['pop_country']} (IXP or private interconnect); the reported PoP "
            "exposure counts only the PoPs the pipeline locates, so it is a lower bound",
            "router_owner": "responding public router hops (truth kind router, border or "
            "ixp), keyed by trace, hop and address; right when the pipeline's AS (owner_asn if "
            "it has an ownership stage, else the origin asn: see scored) is the AS operating "
            "the router; by_artefact splits them by the truth's artefact label",
            "pop_city": "crossing_cities' precision and recall (entries placed in the right city)",
            "pop_us": "crossing_pop_country's precision and recall (entries placed in the PoP "
            "country)",
            "location_by_evidence": "per location evidence (first part of location_evidence): "
            "located crossings, those with a city, the share of right cities and countries (a "
            "false crossing's place counts as wrong) and the mean location_confidence given",
            "world_artefacts": "the artefact rates the world was generated with (null rates: "
            "the clean world) and the realised counts, from the truth",
            "bgp_leak": "prefixes with a route-leak signal in the world's BGP data (a flagged AS "
            "in a valley of some announced path, analysis.bgp.valley_signals, or a new more-specific "
            "through a flagged AS, analysis.bgp.more_specific_signals) against the leaked "
            "more-specifics; precision over every signalled prefix, recall over the leaked ones",
            "diversion_detected": "the largest change-event episode of the leaker's family "
            "starts in the measurement round where the leak began and ends in the round "
            "where it ended",
        },
        "flagged_crossings": crossing.as_dict(),
        "crossing_locations": location.as_dict(),
        "crossing_cities": cities.as_dict(),
        "crossing_pop_country": {"country": pop_cc, **in_cc.as_dict()},
        "ixp_crossings": ixp.as_dict(),
        "exposure": checks,
        "change_events": change_scores,
        "diversion": diversion,
        "bgp_leak": leak_bgp,
        "router_owner": owner,
        "pop_city": {"precision": cities.precision, "recall": cities.recall},
        "pop_us": {"country": pop_cc, "precision": in_cc.precision, "recall": in_cc.recall},
        "location_by_evidence": acc.location_calibration(entries, found),
        "world_artefacts": truth.get("world_artefacts"),
    }
    write_bytes(root / _ACCURACY,
                orjson.dumps(accuracy, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS
                             | orjson.OPT_NON_STR_KEYS) + b"\n")
    files["accuracy"] = root / _ACCURACY
    stage("accuracy", t0, "scored against the ground truth")

    # 7. report; a failure there is shown, not fatal
    report_error = None
    t0 = time.perf_counter()
    try:
        report_path = write_report(campaign)
    except Exception as exc:  # noqa: BLE001 - last stage: surfaced to the caller
        report_error = f"{type(exc).__name__}: {exc}"
        _say(console, f"[red]✗[/red] report step failed: {report_error}")
    else:
        files["report"] = report_path
        stage("report", t0, f"report written to {report_path}")

    top = _top_pops(found, entries, paths, registry)
    marker.update({"timings": timings, "files": {k: str(v) for k, v in files.items()},
                   "report_error": report_error})
    write_bytes(root / _MARKER, orjson.dumps(marker, option=orjson.OPT_INDENT_2) + b"\n")
    return DemoResult(
        campaign=campaign,
        seed=seed,
        size=size,
        world=manifest.as_dict() | {"diversion": {k: v for k, v in div.items() if k != "affected_pairs"}},
        exposure=exposure,
        top_pops=top,
        episodes=eps,
        accuracy=accuracy,
        timings=timings,
        files=files,
        family_names=dict(registry.families),
        report_error=report_error,
    )


def _top_pops(found: pa.Table, entries: pa.Table, paths: pa.Table, registry: Any) -> list[dict]:
    """The most crossed flagged PoPs (family entry points), detected vs true traceroutes.

    A PoP is (family, AS, IXP or private interconnect, city); the city is the pipeline's
    located ``pop_city`` (empty when it could not locate the crossing: no true count then).
    """
    from analysis.demo.accuracy import TRACE_KEY

    lists = paths.column("pop_crossings").combine_chunks()
    flat = pc.list_flatten(lists)
    det = found.append_column("ixp_name", pc.fill_null(flat.field("ixp_name"), ""))
    det = det.set_column(det.schema.get_field_index("city"), "city", pc.fill_null(det.column("city"), ""))
    keys = ["family", "asn", "via", "ixp_id", "city"]
    # distinct traceroutes per place: a forwarding loop repeats a crossing within one traceroute
    det = det.group_by([*keys, "ixp_name", *TRACE_KEY], use_threads=False).aggregate([])
    counted = det.group_by([*keys, "ixp_name"], use_threads=False).aggregate([("msm_id", "count")])
    true = entries.group_by([*keys, *TRACE_KEY], use_threads=False).aggregate([])
    true = true.group_by(keys, use_threads=False).aggregate([("msm_id", "count")])
    true = true.rename_columns([*keys, "true"])
    counted = counted.join(true, keys=keys, join_type="left outer", use_threads=False)
    rows = sorted(counted.to_pylist(),
                  key=lambda r: (-r["msm_id_count"], r["family"], r["asn"], r["ixp_id"], r["city"]))
    out = []
    for r in rows[:_TOP_POPS]:
        entry = registry.family_of(int(r["asn"]))
        city = r["city"] or None
        if r["via"] == "ixp":
            name = r["ixp_name"] or r["ixp_id"]
            where = name + (f" ({city})" if city and city not in name else "")
        elif r["via"] == "private":
            where = f"private interconnect, {city or 'not located'}"
        else:
            where = f"IXP or private?, {city or 'not located'}"
        out.append(
            {
                "family": r["family"],
                "family_name": registry.families.get(r["family"], r["family"]),
                "asn": r["asn"],
                "name": entry.name if entry else None,
                "via": r["via"],
                "ixp_id": r["ixp_id"] or None,
                "city": city,
                "where": where,
                "traceroutes": r["msm_id_count"],
                "true_traceroutes": (r["true"] or 0) if city and r["via"] != "unknown" else None,
            }
        )
    return out
