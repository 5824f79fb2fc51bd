"""The ``kolmo`` command: argument parsing and printing only; all work goes through the public API.

    kolmo gap [X Y] [--compressor NAME] [-O key=value] [--json]
    kolmo bits FILE... [--compressor NAME] [--json]
    kolmo compress FILE -o OUT [--compressor NAME]
    kolmo decompress OUT -o FILE
    kolmo list [--json]
    kolmo matrix PATH... [--compressor NAME] [--measure ncd] [--out m.csv] [--plot m.png] [--workers N]
    kolmo explain Y --given X [--compressor NAME] [-O key=value] [--block N] [--html out.html] [--json]

With no X and Y, ``kolmo gap`` compares two texts every Python installation has: the source of
the standard library's ``json.decoder`` and ``json.encoder`` modules.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any, List, Optional, Sequence

from . import framing
from ._version import __version__
from .errors import CorruptStreamError, KolmoError, StreamMismatchError
from .registry import get_compressor, list_compressors


def _option(text: str) -> tuple:
    """``KEY=VALUE`` as (key, value): an int, a float, true / false, none (None), a string, or with
    commas a tuple of those (``mix=learner,ngram``, ``eta=0.1,0.02,1``)."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE (for example level=3), got {text!r}")
    if "," in value:
        return key, tuple(_value(v) for v in value.split(","))
    return key, _value(value)


def _value(text: str):
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    return {"true": True, "false": False, "none": None}.get(text.lower(), text)


def _compressor(args: argparse.Namespace):
    return get_compressor(args.compressor, **dict(args.option or []))


def default_pair() -> List[Path]:
    """The built-in demo inputs: two related modules of the Python standard library."""
    import json.decoder
    import json.encoder
    return [Path(json.decoder.__file__), Path(json.encoder.__file__)]


def _print_table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> None:
    cells = [[str(c) for c in header]] + [[f"{c:,.1f}" if isinstance(c, float) else str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    for j, r in enumerate(cells):
        print("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))))
        if j == 0:
            print("  ".join("-" * w for w in widths))


def cmd_gap(args: argparse.Namespace) -> int:
    from .measures import joint_gap
    if args.x is None:
        x, y = default_pair()
    elif args.y is None:
        raise SystemExit("kolmo gap: give two inputs X and Y, or none for the built-in demo")
    else:
        x, y = Path(args.x), Path(args.y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # recorded in the result and printed below
        r = joint_gap(x, y, compressor=_compressor(args))
    if args.json:
        d = r.to_dict()
        d.update(x=str(x), y=str(y))
        print(json.dumps(d, indent=2))
        return 0
    print(f"X = {x}\nY = {y}")
    print(r)
    return 0


def cmd_bits(args: argparse.Namespace) -> int:
    comp = _compressor(args)
    paths = [Path(p) for p in args.files]
    values = comp.bits_many(paths)
    rows = [(str(p), p.stat().st_size, b, (b / p.stat().st_size) if p.stat().st_size else 0.0)
            for p, b in zip(paths, values)]
    if args.json:
        print(json.dumps({"compressor": comp.name, "config": comp.config, "bits_kind": comp.bits_kind,
                          "files": [{"path": p, "bytes": n, "bits": b, "bits_per_byte": bpb} for p, n, b, bpb in rows]},
                         indent=2))
    else:
        print(f"compressor: {comp.name} ({comp.bits_kind} code lengths)")
        _print_table([(p, n, b, f"{bpb:.4f}") for p, n, b, bpb in rows], ["file", "bytes", "bits", "bits/byte"])
    return 0


def cmd_compress(args: argparse.Namespace) -> int:
    comp = _compressor(args)
    blob = comp.compress(Path(args.file))
    # The stream names its compressor; the options go beside it so decompress can rebuild it.
    # Options resolved by this machine's hardware (lm-online's autocast) are written as resolved.
    options = {**dict(args.option or []), **getattr(comp, "resolved_options", dict)()}
    Path(args.output).write_bytes(framing.pack_cli_file(comp.name, options, blob))
    n = Path(args.file).stat().st_size
    print(f"{args.file}: {n} -> {len(blob)} bytes ({comp.name}), written to {args.output}", file=sys.stderr)
    return 0


def cmd_decompress(args: argparse.Namespace) -> int:
    name, options, stream = framing.unpack_cli_file(Path(args.file).read_bytes(), what=args.file)
    try:
        comp = get_compressor(name, **options)
    except (ValueError, KeyError, TypeError) as exc:
        raise CorruptStreamError(f"{args.file}: unreadable header ({exc})") from None
    try:
        out = comp.decompress(stream)
    except StreamMismatchError as exc:
        record = getattr(exc, "record", None)  # kolmo.lm.machine.FloatMismatchError: other CPU floats
        if record is None or os.environ.get("KOLMO_REEXEC") or not getattr(exc, "reproducible", False):
            raise
        # this CPU can compute the encoder's floats in a process started with its settings
        print(f"kolmo decompress: the stream needs {record.describe()}; decoding in a new process with "
              + " ".join(f"{k}={v}" for k, v in record.settings().items()), file=sys.stderr)
        env = {**os.environ, **record.settings(), "KOLMO_REEXEC": "1"}
        return subprocess.run([sys.executable, "-m", "kolmo.cli", "decompress", args.file, "-o", args.output],
                              env=env).returncode
    # Write only after the whole stream decoded and passed its checks: never leave a wrong file.
    tmp = Path(args.output + ".kolmo-tmp")
    tmp.write_bytes(out)
    tmp.replace(args.output)
    print(f"{args.file} -> {args.output}: {len(out)} bytes, checks passed", file=sys.stderr)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    names = list_compressors()
    print(json.dumps({"kolmo_version": __version__, "compressors": names}) if args.json else "\n".join(names))
    return 0


def cmd_matrix(args: argparse.Namespace) -> int:
    from .matrices import matrix
    paths = [Path(p) for p in args.paths]
    items: Any
    if len(paths) == 1 and paths[0].is_dir():
        items = paths[0]
    else:
        items = {str(p): p for p in paths}
    m = matrix(items, compressor=_compressor(args), measure=args.measure, workers=args.workers,
               progress=not args.no_progress)
    if args.out:
        m.to_csv(args.out)
    if args.plot:
        from .plot import heatmap
        heatmap(m, path=args.plot)
    if args.json:
        print(json.dumps(m.to_dict(), indent=2))
    elif not args.out:
        print(m.to_pandas().to_string(float_format=lambda v: f"{v:.4f}"))
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    from .explain import explain
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # recorded in the result and printed below
        e = explain(Path(args.y), given=Path(args.given), compressor=_compressor(args), block=args.block)
    if args.html:
        Path(args.html).write_text(e.to_html(full_page=True), encoding="utf-8")
        print(f"information map of {args.y} given {args.given} written to {args.html}", file=sys.stderr)
    if args.json:
        d = e.to_dict()
        d.update(y=args.y, given=args.given)
        print(json.dumps(d, indent=2))
    else:
        print(f"Y = {args.y}\nX = {args.given}")
        print(e)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kolmo", description="Compression-based information measures, in bits.")
    p.add_argument("--version", action="version", version=f"kolmo {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    def comp_opts(sp: argparse.ArgumentParser, default: str = "zstd") -> None:
        sp.add_argument("--compressor", "-c", default=default, help=f"registered name (default {default}); see `kolmo list`")
        sp.add_argument("-O", "--option", action="append", type=_option, metavar="KEY=VALUE",
                        help="compressor option, e.g. -O level=3 or -O model=gpt2 (repeatable)")

    sp = sub.add_parser("gap", help="C(X), C(Y), C(XY), the gap and the NCD of two inputs")
    sp.add_argument("x", nargs="?"), sp.add_argument("y", nargs="?")
    comp_opts(sp), sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=cmd_gap)

    sp = sub.add_parser("bits", help="code length of each file")
    sp.add_argument("files", nargs="+")
    comp_opts(sp), sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=cmd_bits)

    sp = sub.add_parser("compress", help="compress a file into a self-checking stream")
    sp.add_argument("file"), sp.add_argument("-o", "--output", required=True)
    comp_opts(sp)
    sp.set_defaults(func=cmd_compress)

    sp = sub.add_parser("decompress", help="restore a file written by `kolmo compress`")
    sp.add_argument("file"), sp.add_argument("-o", "--output", required=True)
    sp.set_defaults(func=cmd_decompress)

    sp = sub.add_parser("list", help="registered compressors")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=cmd_list)

    sp = sub.add_parser("matrix", help="distance matrix over files (or one folder)")
    sp.add_argument("paths", nargs="+")
    comp_opts(sp)
    sp.add_argument("--measure", default="ncd", choices=["ncd", "gap", "conditional", "c_xy"])
    sp.add_argument("--out", help="write the matrix as CSV")
    sp.add_argument("--plot", help="write a heatmap (PNG, PDF or SVG)")
    sp.add_argument("--workers", type=int, default=1)
    sp.add_argument("--json", action="store_true")
    sp.add_argument("--no-progress", action="store_true")
    sp.set_defaults(func=cmd_matrix)

    sp = sub.add_parser("explain", help="which parts of Y does X explain: bits of each part of Y alone and given X")
    sp.add_argument("y"), sp.add_argument("--given", "-g", required=True, metavar="X")
    comp_opts(sp)
    sp.add_argument("--block", type=int, help="bytes per part for the codecs (default: at most 256 parts)")
    sp.add_argument("--html", metavar="OUT.html", help="write Y coloured by the bits X saves")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=cmd_explain)
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (KolmoError, OSError, ValueError, TypeError) as exc:
        print(f"kolmo {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
