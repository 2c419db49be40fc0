"""What to take: glob patterns, rule files, the pruned matcher and the rule importers."""
