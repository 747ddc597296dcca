"""The book's layer: what the notebooks call (`report`), their figures (`figures`), the
seed's claims as data (`claims`) and the rules that rule on them (`verdicts`), and the
reproducibility checks (`reproducibility`). Nothing in training imports it, so editing it
retrains nothing (`rundir.imported_modules`)."""
