"""Loopback venue servers: 127.0.0.1 servers that speak each real venue's WebSocket and REST wire
formats (and verify its authentication), for tests, benchmarks and trying the console without the
real venues. ``python -m arbtui.sim.loopback`` starts them."""
