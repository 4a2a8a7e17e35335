"""Commands that read a store: ``info`` and ``validate``."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from datakit.cli.common import cli_errors

MAX_LISTED = 20  # skipped patients / notes listed in the text summary (--json has all)


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


@cli_errors
def info(store: Path = typer.Argument(..., help="Store file (.h5)."),
         as_json: bool = typer.Option(False, "--json", help="Print JSON instead of text.")) -> None:
    """A short summary: samples, patients, classes, splits, size on disk."""
    from datakit.store import store_info

    d = store_info(store)
    if as_json:
        from datakit.stats import json_safe

        typer.echo(json.dumps(json_safe(d), indent=2, allow_nan=False))  # strict: null, never NaN
        return
    def mm(v: list[float] | None) -> str:
        return "unknown" if v is None else " x ".join(f"{x:g}" for x in v) + " mm"

    spacing = mm(d["spacing_mm"]) if d["spacing"] != "mixed" else "mixed (" + ", ".join(
        f"{name} {mm(v)}" for name, v in d["spacing_mm_by_dataset"].items()) + ")"
    lines = [
        f"{d['path']}  ({d['size']})",
        f"  samples   {d['samples']} from {d['patients']} patients ({', '.join(d['datasets'])})",
        f"  images    {d['channels']} x {d['image_size'][0]} x {d['image_size'][1]} {d['image_dtype']}"
        f"{'' if d['image_compression'] == 'none' else ' ' + d['image_compression']}, spacing {spacing}, "
        f"normalisation {d['normalization'] or 'unnamed'}",
        f"  classes   {', '.join(f'{i} {c}' for i, c in enumerate(d['classes']))}",
        f"  scribbles {', '.join(d['scribble_sources'])}",
        f"  splits    {d['split_method'] or 'none'}: " + (", ".join(
            f"{k} {v['samples']} samples / {_n(v['patients'], 'patient')}" for k, v in d["splits"].items())
            or "none"),
        f"  created   {d['created']} by: {d['command']}",
    ]
    if d["provenance"]:
        p = d["provenance"]
        libs = ", ".join(f"{k} {p[k]}" for k in ("numpy", "h5py", "nibabel", "SimpleITK", "torch") if p.get(k))
        commit = f"; git {str(p['git_commit'])[:10]}{' + uncommitted changes' if p.get('git_dirty') else ''}" \
            if p.get("git_commit") else ""
        lines.append(f"  software  datakit {p.get('datakit')}, {libs}{commit}")
    lines.append(f"  skipped   {len(d['skipped']) or 'none'}")
    lines += [f"    {x.get('patient', '?')}: {x.get('reason', '')}" if isinstance(x, dict) else f"    {x}"
              for x in d["skipped"][:MAX_LISTED]]
    lines.append(f"  notes     {len(d['notes']) or 'none'}")
    lines += [f"    {note}" for note in d["notes"][:MAX_LISTED]]
    for what in ("skipped", "notes"):
        if len(d[what]) > MAX_LISTED:
            lines.append(f"  ({len(d[what]) - MAX_LISTED} more {what}: datakit info --json lists them all)")
    typer.echo("\n".join(lines))


@cli_errors
def validate(store: Path = typer.Argument(..., help="Store file (.h5).")) -> None:
    """Check every clause of the store contract; list each violation; exit 1 if any."""
    from datakit.store import validate_store

    violations = validate_store(store)
    for v in violations:
        typer.echo(f"  {v}", err=True)
    if violations:
        typer.echo(f"{store}: {len(violations)} violation(s) of the store contract", err=True)
        raise typer.Exit(1)
    typer.echo(f"{store}: valid (datakit store contract v1)")
