"""Pure values: instruments, exact money, orders, books, events and the clock. No I/O."""
