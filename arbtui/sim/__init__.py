"""The simulated market: fair-value processes, matching, and the driver that moves them in time."""
