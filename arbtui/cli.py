"""The ``arbtui`` command: run the console, check or write a configuration.

``arbtui`` alone runs the console on ``./config.toml`` if there is one, else on the built-in demo
(simulated venues: no keys, no network).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from arbtui import __version__
from arbtui.config import DEFAULT_CONFIG_NAME, Config, ConfigError, default_config, default_config_data, load_config

if TYPE_CHECKING:
    from arbtui.engine.builder import RunOptions


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


def _run_config(config: Config, args: argparse.Namespace, journal: Path | None) -> int:
    from arbtui.engine.builder import LiveRefused, RunOptions, check_run_options
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

    from arbtui.headless import run_headless

    if args.duration is None or args.duration <= 0:
        print("--headless needs --duration SECONDS (> 0)", file=sys.stderr)
        return 2
    summary = asyncio.run(run_headless(config, args.duration, armed=args.armed, journal_path=journal, options=options))
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
    if path.exists() and not args.force:
        print(f"{path} already exists; not overwriting it (use --force to replace it)", file=sys.stderr)
        return 1
    header = (
        "# arbtui configuration, written by `arbtui init`.\n"
        "# Every key is documented in the config.toml of the arbtui repository.\n"
        "# Secrets (API keys) never go here: they come from the environment or a secrets file.\n\n"
    )
    path.write_text(header + tomli_w.dumps(default_config_data()), encoding="utf-8")
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
    speed = None if args.max or (args.headless and args.speed is None) else (args.speed or 1.0)
    if speed is not None and speed <= 0:
        print("--speed must be greater than 0", file=sys.stderr)
        return 2
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

    from arbtui.ui.scenarios import save_screenshots

    for path in asyncio.run(save_screenshots(Path(args.out))):
        print(f"wrote {path}")
    return 0


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

    def add_run_options(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--config",
            metavar="PATH",
            help=f"configuration file (default: ./{DEFAULT_CONFIG_NAME} if it "
            "exists, else the built-in simulated demo)",
        )
        p.add_argument("--seed", type=int, help="override the simulation seed")
        p.add_argument(
            "--journal",
            metavar="PATH",
            help="execution journal (SQLite; default: "
            "$XDG_DATA_HOME/arbtui/journal.sqlite; headless runs default to a temporary one)",
        )
        p.add_argument("--headless", action="store_true", help="run the engine without the console")
        p.add_argument("--duration", type=int, metavar="SECONDS", help="headless: simulated seconds to run")
        p.add_argument("--armed", action="store_true", help="headless: confirm opportunities automatically")
        p.add_argument("--json", action="store_true", help="headless: print the summary as JSON")
        p.add_argument(
            "--live",
            action="store_true",
            help="send real orders to real venues (also needs [trading] live = true and every real venue's keys); "
            "without it real venues trade on paper",
        )
        p.add_argument(
            "--loopback",
            action="store_true",
            help="run the real venues' connectors against 127.0.0.1 loopback servers that speak their protocols "
            "(paper trading; no network, no keys)",
        )
        p.add_argument(
            "--record",
            metavar="PATH",
            help="record the session (frames, orders, replies, actions) to PATH (JSON Lines; .gz compresses)",
        )
        p.add_argument(
            "--secrets",
            metavar="PATH",
            help="secrets file (TOML, mode 0600; default: [trading] secrets_file, else "
            "$XDG_CONFIG_HOME/arbtui/secrets.toml if it exists); the environment wins",
        )

    add_run_options(parser)
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
        "--speed", type=float, metavar="X", help="session time runs X times real time (console default: 1)"
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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
