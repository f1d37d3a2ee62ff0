"""Does the curriculum pay? Arms trained at matched compute (arms.py), their FLOPs (flops.py), the report
(report.py) and its plot (plot.py)."""
