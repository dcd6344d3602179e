"""Core: what every floor may use: settings, errors, the ordered outcome, the clock, durations, names, console,
processes."""
