"""What commands report beyond their rows: text and PNG charts, and compare's report.

- `charts`: every PNG chart in one style (size, dpi, palette), Agg canvas, saved atomically;
- `histogram`: score histograms (half-point bins, a terminal chart, a PNG) for rate and select;
- `compare`: compare's evaluation report from saved verdicts (tallies, Markdown, chart).

Each command's own summary lines are built by the command's library module (stages/, codeclm/,
experiment/report.py) from these pieces; the click commands print them.
"""
