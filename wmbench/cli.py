"""The ``wmbench`` command line: list, run, leaderboard, reproduce, tune, show.

It sits above every other package (``bench``, ``defenses``, ``attacks``, ``leaderboard``); nothing below
imports it."""

from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap

from bench.errors import WmbenchError, shorten

EPILOG = "Docs: README.md. Every bad input exits with status 2 and one line saying what to do."
MAX_SEED = 2**31 - 1



class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad command line in one line (not the usage block) and exits 2."""

    def error(self, message: str):  # noqa: D102 - argparse's hook
        self.exit(2, f"wmbench: error: {shorten(message, 200)}; see `{self.prog} --help`\n")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="wmbench",
        description="Benchmark DNN ownership watermarks against extraction, removal and detection attacks.",
        epilog=EPILOG,
    )
    p.add_argument("--plugin", action="append", default=[], metavar="FILE.py", dest="global_plugins",
                   help="import a loose file that registers defenses/attacks (repeatable)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    ls = sub.add_parser("list", help="list defenses, attacks, datasets, architectures and profiles")
    ls.add_argument("pattern", nargs="?", default="*", help="fnmatch pattern on names (default: *)")
    ls.add_argument("--plugin", action="append", default=[], metavar="FILE.py",
                    help="import a loose file that registers defenses/attacks (repeatable)")

    run = sub.add_parser("run", help="fill the defense x attack x seed matrix with result cards",
                         formatter_class=argparse.RawDescriptionHelpFormatter,
                         epilog=textwrap.dedent("""\
                             examples:
                               wmbench run --defense 'none,content' --attack '*' --profile quick
                               wmbench run --attack 'soft_label[temperature=1,7]' --seeds 0,1,2
                               wmbench run --plugin my_attack.py --attack my_attack
                             """))
    run.add_argument("--board", default=None, metavar="NAME",
                     help="run the missing cells of a declared board (bench/boards.py: data, profile, seeds, schemes, "
                          "columns); --defense/--attack/--seeds then narrow it, e.g. one scheme per run")
    run.add_argument("--dataset", default=None, help="data set (default: fashion-mnist, or the board's)")
    run.add_argument("--arch", default=None, help="architecture (default: the data set's; see `wmbench list`)")
    run.add_argument("--defense", default="*", help="comma-separated names/wildcards/specs (default: *)")
    run.add_argument("--attack", default="*", help="comma-separated names/wildcards/specs (default: *)")
    run.add_argument("--seeds", default=None, help="comma-separated seeds (default: 0, or the board's)")
    run.add_argument("--profile", default=None, help="smoke | quick | paper (default: quick, or the board's)")
    _precision_arg(run, "the profile's, or the board's")
    _work_args(run)
    run.add_argument("--force", action="store_true", help="re-run cells whose card exists")
    run.add_argument("--dry-run", action="store_true",
                     help="say what would run (cells, models to train, cached ones) and run nothing")
    run.add_argument("-v", "--verbose", action="store_true", help="epoch progress bars")
    run.add_argument("--plugin", action="append", default=[], metavar="FILE.py",
                     help="import a loose file that registers defenses/attacks (repeatable)")

    lb = sub.add_parser("leaderboard", help="render LEADERBOARD.md, index.html and figures from the cards")
    lb.add_argument("--results", default="results", help="cards to render (default: results)")
    lb.add_argument("--out", default="leaderboard", help="output folder (default: leaderboard)")
    lb.add_argument("--readme", default=None, metavar="FILE",
                    help="README whose ranked-board section (between its markers) is kept in step with the cards "
                         "(default: README.md beside the --out folder, when it exists)")
    lb.add_argument("--check", action="store_true",
                    help="render into a temporary folder and fail (exit 1) unless --out matches byte for byte")

    rep = sub.add_parser("reproduce", help="re-run a pinned published result and compare it with the paper")
    rep.add_argument("name", help="e.g. mea-defender-fmnist (see `wmbench reproduce --list`)", nargs="?")
    rep.add_argument("--list", action="store_true", help="list the pinned reproductions")
    rep.add_argument("--arch", default=None, help="architecture (default: the data set's)")
    rep.add_argument("--seeds", default="0", help="comma-separated seeds (default: 0)")
    rep.add_argument("--profile", default="quick", help="smoke | quick | paper (default: quick)")
    _precision_arg(rep, "the profile's")
    _work_args(rep)
    rep.add_argument("--plugin", action="append", default=[], metavar="FILE.py", help=argparse.SUPPRESS)

    tune = sub.add_parser("tune", help="run the tuning protocol (docs/protocol.md): every scheme and declared grid "
                          "point against the victim-side gate on the tuning seeds")
    tune.add_argument("--dataset", default="fashion-mnist", help="data set (default: fashion-mnist)")
    tune.add_argument("--seeds", default=None, help="comma-separated tuning seeds (default: 100,101)")
    tune.add_argument("--profile", default="quick", help="smoke | quick | paper (default: quick)")
    tune.add_argument("--report-only", action="store_true", help="render the page from the cards; train nothing")
    _work_args(tune)
    tune.add_argument("--plugin", action="append", default=[], metavar="FILE.py", help=argparse.SUPPRESS)

    ver = sub.add_parser("verify", help="re-run published cells from scratch and compare their numbers with the cards")
    ver.add_argument("cards", nargs="+", metavar="CARD", help="seed-<k>.json cards to re-run")
    ver.add_argument("--reuse-cache", action="store_true",
                     help="train in --cache-dir (models cached there are reused) instead of an empty temporary cache")
    _work_args(ver)
    ver.add_argument("--plugin", action="append", default=[], metavar="FILE.py",
                     help="a plugin the card's scheme or attack needs (repeatable)")

    show = sub.add_parser("show", help="print one result card")
    show.add_argument("card", help="path to a seed-<k>.json card")
    return p


def _precision_arg(parser: argparse.ArgumentParser, default: str) -> None:
    parser.add_argument("--precision", default=None, help=f"training precision: fp32 | bf16 (default: {default}); "
                        "evaluation and scoring are fp32 either way")


def _work_args(parser: argparse.ArgumentParser) -> None:
    """The arguments of every command that trains: jobs, folders, device, progress, where jobs run."""
    parser.add_argument("--jobs", type=int, default=1, help="parallel jobs (default: 1)")
    parser.add_argument("--results", default="results", help="where cards go (default: results)")
    parser.add_argument("--cache-dir", default=os.environ.get("WMBENCH_CACHE", ".wmbench-cache"),
                        help="artifact cache (default: $WMBENCH_CACHE or .wmbench-cache)")
    parser.add_argument("--data-root", default=os.environ.get("WMBENCH_DATA"),
                        help="data sets root (default: $WMBENCH_DATA or ./data)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda (default: auto)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--backend", default="loky",
                        help="where jobs run: loky (local processes) | threading | dask | ray (default: loky)")
    parser.add_argument("--scheduler", default=None, metavar="ADDRESS",
                        help="with --backend dask: the scheduler, e.g. tcp://10.0.0.5:8786 (default: a local "
                             "cluster of --jobs workers); cache and results must be shared folders")


def _seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise WmbenchError(f"--seeds {shorten(text)!r} must be comma-separated integers, e.g. 0,1,2") from None
    if not seeds or any(s < 0 or s > MAX_SEED for s in seeds):
        raise WmbenchError(f"--seeds {shorten(text)!r} must list integers from 0 to {MAX_SEED}, e.g. 0,1,2")
    return seeds


def _settings(args, dataset: str, **more):
    """The run settings of a training command's arguments (``_work_args``)."""
    from bench.settings import make_settings

    return make_settings(dataset=dataset, profile=args.profile, precision=getattr(args, "precision", None),
                         results_dir=args.results, cache_dir=args.cache_dir,
                         device=args.device, data_root=args.data_root, jobs=args.jobs, plugins=tuple(args.plugin),
                         **more)


def _run_options(args) -> dict:
    """What :func:`bench.runner.run` takes from a training command's arguments."""
    return {"backend": args.backend, "scheduler": args.scheduler, "progress": not args.quiet,
            "say": lambda note: print(f"wmbench: {note}", file=sys.stderr)}


def cmd_list(args) -> int:
    from bench.boards import BOARDS, STUDIES
    from bench.data import DATASETS
    from bench.models import list_archs
    from bench.profiles import PROFILES
    from bench.registry import ATTACKS, DEFENSES, load_plugins

    load_plugins(args.plugin)
    print("defenses:")
    for name in DEFENSES.list(args.pattern):
        print(f"  {name:<24} {DEFENSES.get(name).describe()}")
    print("attacks:")
    for name in ATTACKS.list(args.pattern):
        cls = ATTACKS.get(name)
        print(f"  {name:<24} {cls.kind:<11} {cls.describe()}")
    print("datasets:      " + ", ".join(DATASETS))
    print("architectures: " + ", ".join(list_archs()) + ", timm:<name>, tv:<name>")
    print("profiles:      " + ", ".join(PROFILES))
    print("boards:        " + ", ".join(f"{b.name} ({b.description})" for b in BOARDS.values()))
    print("studies:       " + ", ".join(STUDIES))
    return 0


def _board_run(args) -> tuple[str, str, list[int]]:
    """Fill the run's data, architecture and profile from ``--board`` (refusing contradicting flags) and return its
    (defenses, attacks, seeds)."""
    if args.board is None:
        args.dataset, args.profile = args.dataset or "fashion-mnist", args.profile or "quick"
        return args.defense, args.attack, _seeds(args.seeds or "0")
    from bench.boards import get_board
    from bench.registry import ATTACKS, DEFENSES, load_plugins

    board = get_board(args.board)
    for flag, given, fixed in (("--dataset", args.dataset, board.dataset), ("--arch", args.arch, board.arch),
                               ("--profile", args.profile, board.profile),
                               ("--precision", args.precision, board.precision)):
        if given is not None and given != fixed:
            raise WmbenchError(f"board {board.name!r} is declared on {flag} {fixed}; drop {flag} {shorten(given)}")
    args.dataset, args.arch, args.profile, args.precision = board.dataset, board.arch, board.profile, board.precision
    load_plugins(args.plugin)
    defenses, attacks = board.select(DEFENSES, ATTACKS, args.defense, args.attack)
    return defenses, attacks, _seeds(args.seeds) if args.seeds else list(board.seeds)


def cmd_run(args) -> int:
    from bench.runner import run

    defenses, attacks, seeds = _board_run(args)
    settings = _settings(args, args.dataset, arch=args.arch, verbose=args.verbose)
    if args.dry_run:
        from pathlib import Path

        from bench.boards import get_board
        from bench.cache import entry_exists, entry_meta
        from bench.planning import describe, estimate, estimate_text, plan_matrix
        from bench.results import slug
        from bench.settings import device_name

        matrix = plan_matrix(settings, defenses, attacks, seeds, force=args.force)
        what = f"board {args.board}" if args.board else "the run"
        print(f"wmbench: dry run of {what} ({settings.dataset} / {settings.arch} / {settings.profile.name}, "
              f"seeds {','.join(map(str, seeds))}); nothing was run")

        def has(key: str) -> bool:
            return entry_exists(settings.cache_dir, key)

        for line in describe(matrix, has):
            print(f"  {line}")
        # the same jobs at the other seeds of the board or of the cards already in the results folder say how
        # long they take
        folder = Path(args.results) / slug(settings.dataset) / slug(settings.arch)
        ran = {int(p.stem[5:]) for p in folder.glob("*/*/seed-*.json") if p.stem[5:].isdigit()}
        every = sorted({*seeds, *ran, *(get_board(args.board).seeds if args.board else ())})
        reference = plan_matrix(settings, defenses, attacks, every, force=True)
        est = estimate(matrix, reference, has, lambda key: entry_meta(settings.cache_dir, key),
                       device_name(settings.device))
        print(f"  {estimate_text(est, settings.jobs)}")
        return 0
    summary = run(settings, defenses, attacks, seeds, force=args.force, **_run_options(args))
    c = summary.counts
    print(f"wmbench: {summary.cells} cells: {c['ok']} ok, {c['error']} error, {c['n/a']} n/a, "
          f"{c['skipped']} already done; models trained: {summary.built['victims']} victims, "
          f"{summary.built['attacks']} by attacks ({sum(summary.loaded.values())} from cache); "
          f"{summary.wall_s:.1f} s; cards in {args.results}/")
    if summary.rebuilt_line():
        print(f"wmbench: {summary.rebuilt_line()}", file=sys.stderr)
    for line in summary.errors[:10]:
        print(f"  error: {line}", file=sys.stderr)
    if summary.errors:
        print(f"wmbench: {len(summary.errors)} cell(s) failed; their cards hold the message", file=sys.stderr)
    print(f"next: wmbench leaderboard --results {args.results}")
    return 1 if c["error"] else 0


def cmd_reproduce(args) -> int:
    import reproductions  # noqa: F401  (declares the pinned reproductions: they register on import)
    from bench.reproduce import get_reproduction, list_reproductions, run_reproduction

    if args.list or not args.name:
        for r in list_reproductions():
            print(f"{r.name:<24} {r.title}")
        return 0 if args.list else 2
    rep = get_reproduction(args.name)
    text, path = run_reproduction(rep.name, _settings(args, rep.dataset, arch=args.arch), _seeds(args.seeds),
                                  **_run_options(args))
    print(text)
    print(f"written to {path}")
    return 0


def cmd_tune(args) -> int:
    from pathlib import Path

    from bench.registry import DEFENSES, load_plugins
    from bench.results import load_results
    from bench.tuning import TUNING_SEEDS, run_tuning, tuning_report

    seeds = _seeds(args.seeds) if args.seeds else list(TUNING_SEEDS)
    if args.report_only:
        load_plugins(args.plugin)
        cards = load_results(args.results)
        text, _ = tuning_report(cards[cards.dataset == args.dataset], DEFENSES, seeds, args.profile)
        out = Path(args.results) / "reproductions" / "tuning.md"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
    else:
        text, out = run_tuning(_settings(args, args.dataset), seeds, **_run_options(args))
    print(text)
    print(f"written to {out}")
    return 0


def cmd_leaderboard(args) -> int:
    from pathlib import Path

    from leaderboard.render import render

    if args.readme is not None and not Path(args.readme).is_file():
        raise WmbenchError(f"--readme {shorten(args.readme, 200)!r} is not a file; pass the README to keep in step "
                           "or leave the option out")
    readme = args.readme or Path(args.out).resolve().parent / "README.md"
    if args.check:
        from leaderboard.check import check_leaderboard

        problems = check_leaderboard(args.results, args.out, readme=readme)
        for line in problems:
            print(f"wmbench: {line}", file=sys.stderr)
        if problems:
            print(f"wmbench: the leaderboard in {args.out}/ does not match the cards in {args.results}/; "
                  f"re-render it with `wmbench leaderboard --results {args.results} --out {args.out}`", file=sys.stderr)
            return 1
        print(f"wmbench: {args.out}/ matches the cards in {args.results}/")
        return 0
    paths = render(args.results, args.out, readme=readme)
    for name, path in paths.items():
        print(f"{name}: {path}")
    return 0


def cmd_verify(args) -> int:
    from bench.settings import make_settings
    from bench.verify import verify_card

    # the data set, architecture and profile are each card's own; these settings give device, jobs and folders
    settings = make_settings(results_dir=args.results, cache_dir=args.cache_dir, device=args.device,
                             data_root=args.data_root, jobs=args.jobs, plugins=tuple(args.plugin))
    failed = 0
    for path in args.cards:
        print(f"wmbench: verify {path}: re-running the cell from {'the cache' if args.reuse_cache else 'scratch'}")
        try:
            published, rerun, diffs = verify_card(path, settings, cache_dir=args.cache_dir if args.reuse_cache
                                                  else None, **_run_options(args))
        except WmbenchError as exc:  # this card cannot be verified; the others still are
            failed += 1
            print(f"wmbench: error: {exc}", file=sys.stderr)
            continue
        what = f"{published['defense']} x {published['attack']} seed {published['seed']}"
        if rerun["status"] == "error":
            failed += 1
            print(f"wmbench: {what}: the re-run failed, so nothing was compared: {rerun['error']}", file=sys.stderr)
            continue
        for d in diffs:
            print(f"  {d.line()}")
        bad = [d.field for d in diffs if not d.ok]
        if bad:
            failed += 1
            print(f"wmbench: {what}: {', '.join(bad)} differ{'s' if len(bad) == 1 else ''} from a re-run (numbers "
                  "beyond their tolerance, verdicts not equal); the card does not hold what its cell produces")
        else:
            print(f"wmbench: {what}: the card agrees with a re-run ({len(diffs)} fields)")
    return 1 if failed else 0


def cmd_show(args) -> int:
    from bench.results import read_card

    print(json.dumps(read_card(args.card), indent=2, sort_keys=True))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if hasattr(args, "plugin"):
        args.plugin = list(args.global_plugins) + list(args.plugin)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return {"list": cmd_list, "run": cmd_run, "leaderboard": cmd_leaderboard, "show": cmd_show,
                "reproduce": cmd_reproduce, "tune": cmd_tune, "verify": cmd_verify}[
            args.command
        ](args)
    except WmbenchError as exc:
        print(f"wmbench: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("wmbench: interrupted; finished cards are kept, re-run to do the rest", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `wmbench list | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
