"""The ``arbtui`` command: run the console, check or write a configuration.

``arbtui`` alone runs the console on ``./config.toml`` if there is one, else on the built-in demo
(simulated venues: no keys, no network).

Bad input is one line on stderr naming the file, key, option or variable, and exit code 2, before
anything starts: a configuration, secrets, journal, record or session path that cannot be used, a
malformed key, an out-of-range ``--seed`` or ``--speed``. The run options may come before ``run``
(``arbtui --config X run``) or after it; before any other command they are refused.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from arbtui import __version__
from arbtui.config import (
    DEFAULT_CONFIG_NAME,
    SEED_MAX,
    Config,
    ConfigError,
    default_config,
    default_config_data,
    load_config,
)

if TYPE_CHECKING:
    from arbtui.assembly import RunOptions


def _resolve_config(path: str | None) -> Config:
    if path is not None:
        return load_config(Path(path))
    local = Path(DEFAULT_CONFIG_NAME)
    if local.is_file():
        return load_config(local)
    return default_config()


def _cmd_run(args: argparse.Namespace) -> int:
    try:
        config = _resolve_config(args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    if args.seed is not None:
        from dataclasses import replace

        config = replace(config, seed=args.seed)
    journal = Path(args.journal) if args.journal else None
    problem = _check_run_paths(args, journal)
    if problem is not None:
        print(f"arbtui: {problem}", file=sys.stderr)
        return 2
    if args.loopback:
        if args.live:
            print("--loopback and --live do not mix: loopback servers are not real venues", file=sys.stderr)
            return 2
        from arbtui.sim.loopback.launcher import LoopbackThread

        loopback = LoopbackThread(config)
        try:
            config = loopback.start()
        except OSError as exc:
            print(f"arbtui: cannot start the loopback venue servers: {exc}", file=sys.stderr)
            return 2
        try:
            return _run_config(config, args, journal)
        finally:
            loopback.stop()
    return _run_config(config, args, journal)


def _check_run_paths(args: argparse.Namespace, journal: Path | None) -> str | None:
    """What is wrong with the run's record and journal paths, before anything starts (None: nothing).
    The journal is opened as the engine would open it (created or stamped if it is arbtui's), so
    another program's database, a folder or a damaged file is refused here, untouched."""
    from arbtui.engine.journal import JournalError, default_journal_path, prepare_journal
    from arbtui.replay.recorder import RecordPathError, check_record_path

    if args.record:
        try:
            check_record_path(Path(args.record))
        except RecordPathError as exc:
            return f"--record {exc}"
    target = journal if journal is not None else None if args.headless else default_journal_path()
    if target is not None:
        try:
            prepare_journal(target)
        except JournalError as exc:
            return f"{'--journal' if journal is not None else 'journal'} {exc}"
    return None


def _run_config(config: Config, args: argparse.Namespace, journal: Path | None) -> int:
    from arbtui.assembly import LiveRefused, RunOptions, check_run_options
    from arbtui.venues.secrets import SecretsError

    options = RunOptions(
        live=args.live,
        secrets_file=Path(args.secrets) if args.secrets else None,
        record=Path(args.record) if args.record else None,
    )
    try:
        check_run_options(config, options)
    except (LiveRefused, SecretsError) as exc:
        print(f"arbtui: {exc}", file=sys.stderr)
        return 2
    if args.headless:
        return _headless(config, args, journal, options)
    if args.armed:
        print("--armed is for headless runs; in the console, arm with its key binding", file=sys.stderr)
        return 2
    from arbtui.ui.app import ArbApp  # the UI is imported only when it is needed

    app = ArbApp(config, journal_path=journal, options=options)
    app.run()
    if app.engine_error is not None:
        print(f"arbtui: the engine stopped with an error: {app.engine_error}", file=sys.stderr)
        return 1
    return 0


def _headless(config: Config, args: argparse.Namespace, journal: Path | None, options: RunOptions) -> int:
    import asyncio

    import orjson

    from arbtui.engine.journal import JournalError
    from arbtui.headless import run_headless
    from arbtui.replay.recorder import RecordPathError

    if args.duration is None or args.duration <= 0:
        print("--headless needs --duration SECONDS (> 0)", file=sys.stderr)
        return 2
    try:
        summary = asyncio.run(
            run_headless(config, args.duration, armed=args.armed, journal_path=journal, options=options)
        )
    except (JournalError, RecordPathError) as exc:  # checked before, but a path can change meanwhile
        print(f"arbtui: {exc}", file=sys.stderr)
        return 2
    if args.json:
        sys.stdout.write(orjson.dumps(summary, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        states = ", ".join(f"{k} {v}" for k, v in summary["pairs"]["by_state"].items()) or "none"
        print(
            f"{summary['opportunities']} opportunities, {summary['pairs']['total']} pairs ({states}), "
            f"realized PnL {summary['realized_pnl']}, expected {summary['expected_pnl']}, "
            f"exposure left: {len(summary['exposure'])}"
        )
    code: int = summary["exit"]["code"]
    if code != 0:
        print(f"arbtui: exit {code}: {summary['exit']['reason']}", file=sys.stderr)
    return code


def _cmd_check_config(args: argparse.Namespace) -> int:
    path = Path(args.path)
    try:
        config = load_config(path)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        print(f"{path}: {len(exc.problems)} problem(s)", file=sys.stderr)
        return 2
    listings = sum(len(m.listings) for m in config.markets)
    print(
        f"{path}: valid ({len(config.venues)} venues, {len(config.markets)} markets, {listings} listings, "
        f"mode {config.mode})"
    )
    return 0


def _cmd_init(args: argparse.Namespace) -> int:
    import tomli_w

    path = Path(args.path)
    if path.is_dir():
        print(f"arbtui: {path} is a folder; give the file to write, e.g. {path / DEFAULT_CONFIG_NAME}", file=sys.stderr)
        return 2
    if path.exists() and not args.force:
        print(f"{path} already exists; not overwriting it (use --force to replace it)", file=sys.stderr)
        return 1
    header = (
        "# arbtui configuration, written by `arbtui init`.\n"
        "# Every key is documented in the config.toml of the arbtui repository.\n"
        "# Secrets (API keys) never go here: they come from the environment or a secrets file.\n\n"
    )
    try:
        path.write_text(header + tomli_w.dumps(default_config_data()), encoding="utf-8")
    except OSError as exc:
        print(f"arbtui: cannot write {path}: {exc.strerror}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0


def _cmd_replay(args: argparse.Namespace) -> int:
    import asyncio

    import orjson

    from arbtui.replay.player import ReplayPlayer
    from arbtui.replay.session_format import SessionError

    config = None
    if args.config:
        try:
            config = load_config(Path(args.config))
        except ConfigError as exc:
            print(exc, file=sys.stderr)
            return 2
    # --speed is finite and > 0 (its type checks it); absent, the console plays at 1x, headless at max.
    speed = None if args.max or (args.headless and args.speed is None) else (args.speed or 1.0)
    try:
        if not args.headless:
            player = ReplayPlayer(
                Path(args.path), config=config, actions=args.actions, skip_bad=args.skip_bad, speed=speed
            )
            from arbtui.ui.app import ArbApp

            app = ArbApp(player.config, engine=player.engine, clock=player.clock, replay=player)
            app.run()
            if app.engine_error is not None:
                print(f"arbtui: the replay stopped with an error: {app.engine_error}", file=sys.stderr)
                return 2 if isinstance(app.engine_error, SessionError) else 1
            return 0
        player = ReplayPlayer(Path(args.path), config=config, actions=args.actions, skip_bad=args.skip_bad, speed=speed)
        summary = asyncio.run(_run_replay(player, progress=sys.stderr.isatty()))
    except SessionError as exc:
        print(f"arbtui: {exc}", file=sys.stderr)
        return 2
    from arbtui.headless import exit_status

    code, why = exit_status(player.engine)  # the same codes as a headless run
    summary["exit"] = {"code": code, "reason": why}
    if args.json:
        sys.stdout.write(orjson.dumps(summary, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        states = ", ".join(f"{k} {v}" for k, v in summary["pairs"]["by_state"].items()) or "none"
        print(
            f"{summary['frames']} frames in {summary['elapsed_s']} s ({summary['frames_per_s']} frames/s), "
            f"{summary['opportunities']} opportunities, pairs: {states}, PnL {summary['pnl']}"
        )
    if code != 0:
        print(f"arbtui: exit {code}: {why}", file=sys.stderr)
    return code


async def _run_replay(player: Any, *, progress: bool) -> dict[str, Any]:
    import asyncio

    if not progress:
        result: dict[str, Any] = await player.run()
        return result
    task = asyncio.create_task(player.run(), name="replay")
    while not task.done():
        await asyncio.sleep(0.2)
        done = int(player.progress * 40)
        sys.stderr.write(f"\r[{'#' * done}{'.' * (40 - done)}] {player.stats.frames} frames")
        sys.stderr.flush()
    sys.stderr.write("\n")
    summary: dict[str, Any] = await task
    return summary


def _cmd_bench(args: argparse.Namespace) -> int:
    import orjson

    from arbtui.bench.runner import FIGURES, machine, render_text, run_figures

    names = tuple(args.only) if args.only else FIGURES
    unknown = [n for n in names if n not in FIGURES]
    if unknown:
        print(f"unknown figure(s): {', '.join(unknown)} (known: {', '.join(FIGURES)})", file=sys.stderr)
        return 2
    figs = run_figures(names, args.quick)
    if args.json:
        doc = {"machine": machine(), "quick": args.quick, "figures": {f.name: f.as_dict() for f in figs}}
        sys.stdout.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS).decode() + "\n")
    else:
        print(render_text(figs))
    return 0


def _cmd_screenshots(args: argparse.Namespace) -> int:
    import asyncio

    out = Path(args.out)
    problem = _writable_folder(out)
    if problem is not None:
        print(f"arbtui: {problem}", file=sys.stderr)
        return 2
    from arbtui.ui.scenarios import save_screenshots

    try:
        paths = asyncio.run(save_screenshots(out))
    except OSError as exc:
        print(f"arbtui: cannot write the screenshots into {out}: {exc.strerror}", file=sys.stderr)
        return 2
    for path in paths:
        print(f"wrote {path}")
    return 0


def _writable_folder(folder: Path) -> str | None:
    """What stops files being written into ``folder`` (created if missing), probed with a temporary
    file: permission bits alone do not say (root ignores them; a read-only mount does not show)."""
    import tempfile

    if folder.exists() and not folder.is_dir():
        return f"{folder} is a file; expected a folder for the screenshots"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        return f"cannot write into {folder}: {exc.strerror}"
    return None


def _seed(text: str) -> int:
    try:
        value = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number from 0 to 2**64-1, got {text[:40]!r}") from None
    if not 0 <= value <= SEED_MAX:
        raise argparse.ArgumentTypeError(f"expected a whole number from 0 to 2**64-1 ({SEED_MAX}), got {text}")
    return value


def _seconds(text: str) -> int:
    try:
        value = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of seconds, got {text[:40]!r}") from None
    if not 0 < value <= 10**9:
        raise argparse.ArgumentTypeError(f"expected a whole number of seconds from 1 to 10**9, got {text}")
    return value


def _speed(text: str) -> float:
    try:
        value = float(text)  # float ok: a playback rate, not money
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number greater than 0, got {text[:40]!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a finite number greater than 0 (e.g. 1, 10, 0.5), got {text}")
    return value


# The run options and their values when not given. They are accepted before ``run`` (or with no
# command) as well as after it: both places parse with SUPPRESS defaults, so the namespace shows
# which place gave an option, and the defaults are filled in afterwards (_merge_run_options).
RUN_DEFAULTS: dict[str, Any] = {
    "config": None,
    "seed": None,
    "journal": None,
    "headless": False,
    "duration": None,
    "armed": False,
    "json": False,
    "live": False,
    "loopback": False,
    "record": None,
    "secrets": None,
}
_TOP = "top_"  # the namespace prefix of run options given before the command


HEADLESS_EXIT_CODES = """exit codes (--headless; replay --headless too):
  0  every pair final, no BROKEN exposure
  1  the engine failed (a driver or engine task raised); the summary's "failure" says what
  2  bad input (configuration, options, session file): nothing ran
  3  BROKEN pairs with exposure remain unresolved; the summary's "exit" lists them
  4  pairs still not final when the settle window ran out"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="arbtui",
        description="A terminal operator console for cross-venue arbitrage. With no command, runs the console.",
    )
    parser.add_argument("--version", action="version", version=f"arbtui {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def add_run_options(p: argparse.ArgumentParser, prefix: str = "") -> None:
        def add(*names: str, **kw: Any) -> None:
            dest = names[0].removeprefix("--").replace("-", "_")
            p.add_argument(*names, dest=prefix + dest, default=argparse.SUPPRESS, **kw)

        add(
            "--config",
            metavar="PATH",
            help=f"configuration file (default: ./{DEFAULT_CONFIG_NAME} if it "
            "exists, else the built-in simulated demo)",
        )
        add("--seed", type=_seed, metavar="N", help="override the simulation seed (0 to 2**64-1)")
        add(
            "--journal",
            metavar="PATH",
            help="execution journal (SQLite; default: "
            "$XDG_DATA_HOME/arbtui/journal.sqlite; headless runs default to a temporary one)",
        )
        add("--headless", action="store_true", help="run the engine without the console")
        add("--duration", type=_seconds, metavar="SECONDS", help="headless: simulated seconds to run")
        add("--armed", action="store_true", help="headless: confirm opportunities automatically")
        add("--json", action="store_true", help="headless: print the summary as JSON")
        add(
            "--live",
            action="store_true",
            help="send real orders to real venues (also needs [trading] live = true and every real venue's keys); "
            "without it real venues trade on paper",
        )
        add(
            "--loopback",
            action="store_true",
            help="run the real venues' connectors against 127.0.0.1 loopback servers that speak their protocols "
            "(paper trading; no network, no keys)",
        )
        add(
            "--record",
            metavar="PATH",
            help="record the session (frames, orders, replies, actions) to PATH (JSON Lines; .gz compresses)",
        )
        add(
            "--secrets",
            metavar="PATH",
            help="secrets file (TOML, mode 0600; default: [trading] secrets_file, else "
            "$XDG_CONFIG_HOME/arbtui/secrets.toml if it exists); the environment wins",
        )

    add_run_options(parser, _TOP)
    run = sub.add_parser(
        "run",
        help="run the console (the default)",
        epilog=HEADLESS_EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_run_options(run)
    run.set_defaults(func=_cmd_run)
    check = sub.add_parser("check-config", help="validate a configuration file (exit 2 on error)")
    check.add_argument("path", nargs="?", default=DEFAULT_CONFIG_NAME, metavar="PATH")
    check.set_defaults(func=_cmd_check_config)
    init = sub.add_parser("init", help="write the default configuration")
    init.add_argument("path", nargs="?", default=DEFAULT_CONFIG_NAME, metavar="PATH")
    init.add_argument("--force", action="store_true", help="overwrite an existing file")
    init.set_defaults(func=_cmd_init)
    rp = sub.add_parser("replay", help="replay a recorded session through the engine (console or headless)")
    rp.add_argument("path", metavar="PATH", help="the session file (.jsonl or .jsonl.gz)")
    pace = rp.add_mutually_exclusive_group()
    pace.add_argument(
        "--speed", type=_speed, metavar="X", help="session time runs X times real time, X > 0 (console default: 1)"
    )
    pace.add_argument("--max", action="store_true", help="as fast as possible (the default when headless)")
    rp.add_argument("--headless", action="store_true", help="no console: print a summary")
    rp.add_argument("--json", action="store_true", help="headless: the summary as one JSON object")
    rp.add_argument(
        "--actions",
        action="store_true",
        help="re-apply the recorded operator actions and venue replies (reproduces the original pairs); "
        "by default executions fill on paper against the replayed books",
    )
    rp.add_argument("--skip-bad", action="store_true", help="skip (and count) corrupt lines instead of stopping")
    rp.add_argument("--config", metavar="PATH", help="replay with this configuration instead of the recorded one")
    rp.set_defaults(func=_cmd_replay)
    bench = sub.add_parser("bench", help="measure ingest, detection, execution, console, replay and memory figures")
    bench.add_argument("--quick", action="store_true", help="short runs (CI: checks the benchmarks still work)")
    bench.add_argument("--json", action="store_true", help="one JSON object with every figure")
    bench.add_argument("--only", nargs="+", metavar="FIGURE", help="run only these figures")
    bench.set_defaults(func=_cmd_bench)
    shots = sub.add_parser("screenshots", help="regenerate the SVG screenshots of the console's main states")
    shots.add_argument("out", nargs="?", default="screenshots", metavar="DIR")
    shots.set_defaults(func=_cmd_screenshots)
    parser.set_defaults(func=_cmd_run)
    return parser


def _merge_run_options(args: argparse.Namespace) -> str | None:
    """Apply the run options given before the command to ``run`` (the default command); refuse them
    before any other command, and an option given before and after ``run`` with two values. Returns
    the refusal, or None with every run option set on ``args``."""
    early = {k.removeprefix(_TOP): v for k, v in vars(args).items() if k.startswith(_TOP)}
    for key in early:
        delattr(args, _TOP + key)
    command = args.command or "run"
    if command != "run":
        if early:
            names = ", ".join(f"--{k}" for k in early)
            return f"{names} given before `{command}`: the run options go with `arbtui run` (or no command)"
        return None
    for key, value in early.items():
        if hasattr(args, key) and getattr(args, key) != value:
            return f"--{key} given twice, before and after `run`, with different values"
        setattr(args, key, value)
    for key, default in RUN_DEFAULTS.items():
        if not hasattr(args, key):
            setattr(args, key, default)
    return None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    problem = _merge_run_options(args)
    if problem is not None:
        print(f"arbtui: {problem}", file=sys.stderr)
        return 2
    result: int = args.func(args)
    return result


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
