"""Turn one history record into a markdown table (with the issue's targets) and plot the history."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FALLBACK_FILTER = "box"


def _get(record: dict[str, Any], *keys: str) -> Any:
    value: Any = record
    for key in keys:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def _default_filter(record: dict[str, Any]) -> str:
    """The build's default filter at the recorded commit (records before it was stored: box)."""
    return str(_get(record, "build", "default_filter") or FALLBACK_FILTER)


def main_backend(build: dict[str, Any]) -> str:
    """The backend the targets are judged on: the driver's own (Pillow-SIMD where it installed)."""
    backends = build["backends"]
    name = build.get("main_backend") or ("Pillow-SIMD" if "Pillow-SIMD" in backends else next(iter(backends)))
    return str(name)


def _check(ok: bool | None) -> str:
    return "—" if ok is None else ("met" if ok else "**missed**")


def _num(value: Any, fmt: str = "{:,.0f}") -> str:
    return "n/a" if value is None else fmt.format(value)


def headline(record: dict[str, Any]) -> str:
    """One line saying when, on which data and machine, and with which backends (the commit is in the history)."""
    m, d = record["machine"], record["data"]
    backends = ", ".join(v["imaging"] for v in record.get("versions", {}).values())
    return (
        f"Measured {record['date'][:10]} on {d['files']} images ({d['bytes'] / 1e6:.0f} MB) "
        f"from `{Path(d['path']).name}`; {m['cpu']}, {m['cores']} cores, "
        f"{m['ram_gb']} GB RAM (shared machine, load average {_get(record, 'build', 'load_average') or '?'} during "
        f"the build runs); {backends}; medians of {_get(record, 'build', 'reps') or '?'} reps."
    )


def target_rows(record: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(figure, measured, target, met?) rows for the issue's targets, from the first (main) backend."""
    rows: list[tuple[str, str, str, str]] = []
    dflt = _default_filter(record)
    build = record.get("build")
    fid = record.get("fidelity") or {}
    worst = _get(fid, dflt, "worst_db")
    if build:
        main = main_backend(build)
        f = build["backends"][main]["filters"].get(dflt)
        if f:
            rows.append(
                (
                    f"build ({dflt}, --jobs 2, {main}) / notebook",
                    f"{f['vs_notebook']:.2f}x",
                    ">= 1.8x",
                    _check(f["vs_notebook"] >= 1.8),
                )
            )
            rows.append(
                (
                    f"build / decode-only limit (draft {build['limit_ratio_uses_draft']})",
                    f"{f['vs_limit']:.0%} ({f['vs_limit_1x']:.0%} of the 1x-draft limit)",
                    ">= 85%",
                    _check(f["vs_limit"] >= 0.85),
                )
            )
            if "vs_limit_cpu" in f:
                limit_cpu = build["backends"][main]["limit_cpu_ms_per_image"]
                rows.append(
                    (
                        "idle-machine ceilings, from CPU ms per image (main + workers)",
                        f"build {f['cpu_ms_per_image_j2']:.2f} (--jobs 1: {f['cpu_ms_per_image_j1']:.2f}), limit "
                        f"{limit_cpu:.2f}, notebook {build['notebook']['cpu_ms_per_image']:.2f}: build/limit <= "
                        f"{f['vs_limit_cpu']:.0%}, build/notebook <= {f['vs_notebook_cpu_ceiling']:.2f}x",
                        "(what bounds the rows above)",
                        "",
                    )
                )
            rows.append(
                (
                    "build scaling --jobs 2 / --jobs 1",
                    f"{f['scaling_j2_over_j1']:.2f}x",
                    ">= 1.8x",
                    _check(f["scaling_j2_over_j1"] >= 1.8),
                )
            )
    if worst is not None:
        rows.append((f"fidelity worst image ({dflt})", f"{worst:.1f} dB", ">= 40 dB", _check(worst >= 40)))
    real = _get(record, "load", "real")
    if real and real.get("measured"):
        rows.append(
            ("load() / np.load", f"{real['load_vs_np_load']:.0%}", ">= 50%", _check(real["load_vs_np_load"] >= 0.5))
        )
        if "load_vs_redecode" in real:
            rows.append(
                (
                    "load() / re-decoding",
                    f"{real['load_vs_redecode']:,.0f}x",
                    ">= 100x",
                    _check(real["load_vs_redecode"] >= 100),
                )
            )
        for name, entry in (("real", real), ("> 2 GB generated", _get(record, "load", "big"))):
            if entry and entry.get("measured"):
                ips = entry["batches"]["images_per_s"]
                rows.append(
                    (f"shuffled batches(64), warm, {name}", f"{ips:,.0f} img/s", ">= 20,000", _check(ips >= 20_000))
                )
    mem = record.get("memory")
    if mem and mem.get("measured"):
        counts = [k for k in mem if k.isdigit()]
        peak = max(mem[k]["total_mb"] for k in counts)
        rows.append(("build peak RSS (main + workers)", f"{peak:,.0f} MB", "<= 400 MB", _check(peak <= 400)))
        if "growth" in mem:
            rows.append(
                (
                    f"RSS {counts[-1]} / {counts[0]} images",
                    f"{mem['growth']:.2f}x",
                    "<= 1.2x",
                    _check(mem["growth"] <= 1.2),
                )
            )
    return rows


def markdown(record: dict[str, Any], compact: bool = False) -> str:
    """The run as markdown: headline, targets, then every figure by section (COMPACT: default filter only)."""
    dflt = _default_filter(record)
    out = [headline(record), "", "| target | measured | wanted | |", "|---|---|---|---|"]
    out += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in target_rows(record)]
    build = record.get("build")
    if build:
        nb = build["notebook"]
        out += [
            "",
            "| build | images/s | input MB/s | s | vs notebook | vs limit | jobs2/jobs1 |",
            "|---|---|---|---|---|---|---|",
            f"| notebook loop (serial cv2) | {nb['images_per_s']:,.0f} | {nb['mb_per_s']:,.0f} | "
            f"{nb['seconds']:.2f} | 1.00 | | |",
        ]
        main = main_backend(build)
        for lab, entry in sorted(build["backends"].items(), key=lambda item: item[0] != main):
            for draft, lim in entry["limit"].items():
                out.append(
                    f"| limit: draft decode >= {draft} px, all cores, {lab} | {lim['images_per_s']:,.0f} | "
                    f"{lim['mb_per_s']:,.0f} | {lim['seconds']:.2f} | | | |"
                )
            for f, fig in entry["filters"].items():
                if compact and f != dflt:
                    continue
                for jobs in ("jobs1", "jobs2"):
                    r = fig[jobs]
                    ratios = (
                        f"{fig['vs_notebook']:.2f} | {fig['vs_limit']:.0%} | {fig['scaling_j2_over_j1']:.2f}"
                        if jobs == "jobs2"
                        else " | | "
                    )
                    out.append(
                        f"| API build {f} --{jobs[:-1]} {jobs[-1]}, {lab} | {r['images_per_s']:,.0f} | "
                        f"{r['mb_per_s']:,.0f} | {r['seconds']:.2f} | {ratios} |"
                    )
            cli = entry.get("cli")
            if cli:
                for jobs in ("jobs1", "jobs2"):
                    r = cli[jobs]
                    ratios = (
                        f"{cli['vs_notebook']:.2f} | | {cli['scaling_j2_over_j1']:.2f}" if jobs == "jobs2" else " | | "
                    )
                    out.append(
                        f"| CLI process {dflt} --{jobs[:-1]} {jobs[-1]}, {lab} | {r['images_per_s']:,.0f} | "
                        f"{r['mb_per_s']:,.0f} | {r['seconds']:.2f} | {ratios} |"
                    )
                out.append(f"| (CLI minus API, --jobs 2, {lab}: {cli['overhead_s_vs_api']:.2f} s) | | | | | | |")
        for key, value in build.items():
            if "_over_" in key:
                out.append(f"| {key.replace('_over_', ' speed / ')} ({dflt}, jobs 2): {value:.2f}x | | | | | | |")
    rebuild = record.get("rebuild")
    if rebuild:
        if rebuild.get("measured"):
            out += [
                "",
                f"Rebuild of the unchanged dataset, in a warm process (the API; the CLI adds its start-up): "
                f"{rebuild['rebuild']['seconds']:.3f} s, nothing rewritten; cold build {rebuild['cold']['seconds']:.2f} s "
                f"({rebuild['speedup']:,.0f}x).",
            ]
        else:
            out += ["", f"Rebuild: not measured ({rebuild['why']})."]
    load = record.get("load")
    if load:
        out += [
            "",
            "| load | images | GB | load() s | np.load s | load/np.load | vs re-decode "
            "| batches(64) img/s | cold img/s |",
        ]
        out.append("|---|---|---|---|---|---|---|---|---|")
        for name, e in load.items():
            if not e.get("measured"):
                out.append(f"| {name}: not measured ({e.get('why')}) | | | | | | | | |")
                continue
            cold = e.get("batches_cold", {})
            cold_s = _num(cold.get("images_per_s")) if cold.get("measured", True) else "n/a (no drop_caches)"
            out.append(
                f"| {name} | {e['images']:,} | {e['gb']:.2f} | {e['load']['seconds']:.3f} | "
                f"{e['np_load']['seconds']:.3f} | "
                f"{e['load_vs_np_load']:.0%} | {_num(e.get('load_vs_redecode'), '{:,.0f}x')} | "
                f"{e['batches']['images_per_s']:,.0f} | {cold_s} |"
            )
        if any(
            isinstance(e.get("batches_cold"), dict) and e["batches_cold"].get("images_per_s") for e in load.values()
        ):
            out += [
                "",
                "Cold: the page cache dropped before each pass (`echo 3 > /proc/sys/vm/drop_caches`); on a virtual "
                "disk the host may still cache the file, so this is not a true cold-disk figure.",
            ]
    mem = record.get("memory")
    if mem and mem.get("measured"):
        out += [
            "",
            "| build of N generated images | peak RSS main + workers | peak PSS main + workers | main process | s |",
            "|---|---|---|---|---|",
        ]
        out += [
            f"| {int(k):,} | {v['total_mb']:,.0f} MB | "
            + (f"{v['total_pss_mb']:,.0f} MB" if "total_pss_mb" in v else "-")
            + f" | {v['main_mb']:,.0f} MB | {v['seconds']:.1f} |"
            for k, v in mem.items()
            if k.isdigit()
        ]
    fid = record.get("fidelity")
    if fid:
        out += ["", "| fidelity vs exact area average | median dB | worst dB | worst file |", "|---|---|---|---|"]
        out += [f"| {k} | {v['median_db']:.1f} | {v['worst_db']:.1f} | {v['worst_file']} |" for k, v in fid.items()]
    size = record.get("size")
    if size:
        out += ["", "| compression | bytes/image | build img/s | load() s | load img/s |", "|---|---|---|---|---|"]
        for comp, v in size.items():
            load_s = v["load"].get("seconds")
            out.append(
                f"| {comp} | {v['bytes_per_image']:,} | {v['build']['images_per_s']:,.0f} | "
                f"{_num(load_s, '{:.3f}')} | {_num(v['load'].get('images_per_s'))} |"
            )
    return "\n".join(out)


def plot_history(history: Path, png: Path) -> None:
    """Plot the main figures of every non-quick run in HISTORY (small PNG: few points, low dpi)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = [json.loads(line) for line in history.read_text().splitlines() if line.strip()]
    records = [r for r in records if not r.get("quick")] or records
    series: dict[str, list[tuple[int, float]]] = {}
    for i, r in enumerate(records):
        b = r.get("build")
        dflt = _default_filter(r)
        if b:
            series.setdefault("notebook img/s", []).append((i, b["notebook"]["images_per_s"]))
            for lab, entry in b["backends"].items():
                series.setdefault(f"limit img/s ({lab})", []).append((i, entry["limit"]["512"]["images_per_s"]))
                fig = entry["filters"].get(dflt)
                if fig:
                    series.setdefault(f"build default filter j2 img/s ({lab})", []).append(
                        (i, fig["jobs2"]["images_per_s"])
                    )
    fig_, ax = plt.subplots(figsize=(6, 3.2), dpi=80)
    for name, points in series.items():
        xs, ys = zip(*points, strict=True)
        ax.plot(xs, ys, marker="o", label=name)
    ax.set_xlabel("run (benchmarks/results/history.jsonl line)")
    ax.set_ylabel("images/s")
    ax.set_title("xraycache build throughput, by run", fontsize=9)
    ax.legend(fontsize=6)
    ax.grid(alpha=0.3)
    ax.xaxis.get_major_locator().set_params(integer=True)
    fig_.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig_.savefig(png)
    plt.close(fig_)
