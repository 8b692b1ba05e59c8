"""CPU share of the console process, measured from /proc (Linux) while it runs in a terminal.

    python benchmarks/console_cpu.py            # the demo: simulated market moving in real time
    python benchmarks/console_cpu.py --idle     # the console with the market frozen (manual clock)

Starts the console under tmux (160x48), waits 5 s, then measures user+system CPU over 20 s.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time

IDLE_APP = (
    "from arbtui.config import default_config; from arbtui.domain.clock import ManualClock; "
    "from arbtui.ui.app import ArbApp; ArbApp(default_config(), clock=ManualClock(1_795_617_000_000_000_000)).run()"
)


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--idle", action="store_true")
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    if shutil.which("tmux") is None:
        print("tmux is needed for this benchmark", file=sys.stderr)
        return 2
    cmd = f"{sys.executable} -c '{IDLE_APP}'" if args.idle else f"{sys.executable} -m arbtui"
    session = f"arbtui-bench-{os.getpid()}"
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "160", "-y", "48", cmd], check=True)
    try:
        time.sleep(5)
        pane_pid = int(
            subprocess.run(
                ["tmux", "list-panes", "-t", session, "-F", "#{pane_pid}"], capture_output=True, text=True, check=True
            ).stdout.split()[0]
        )
        c0, t0 = cpu_seconds(pane_pid), time.monotonic()
        time.sleep(args.seconds)
        c1, t1 = cpu_seconds(pane_pid), time.monotonic()
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], check=False)
    label = "idle (market frozen)" if args.idle else "demo running"
    print(
        f"console CPU, {label}: {100 * (c1 - c0) / (t1 - t0):.1f}% of one core over {t1 - t0:.0f} s "
        f"(refresh 10 Hz, 160x48)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
