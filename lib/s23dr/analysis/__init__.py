"""The book's layer. A page's set-up (`notebook`), the pages' own sections (`stage_report`,
`results_page`, `data_page`), what they read: recipes (`recipes`), runs and their numbers
(`run_summaries`), probes of models (`probes`), the benchmarks' saved tables
(`benchmark_tables`), the baseline's claims as data (`claims`) and the rules that rule on them
(`verdicts`, `point_counts`), the reproducibility checks (`reproducibility`); and the figures
(`figures`, `views3d`). Nothing in training imports it, so editing it retrains nothing
(`rundir.imported_modules`)."""
