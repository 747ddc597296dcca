"""The synthetic world (the book, The synthetic dataset): procedural houses with their exact
wireframes (`houses`), simulated fused point clouds in the real data's schema (`synthetic`)
and the real data's sampling to a point budget (`sampling`). It touches the rest of the
package only through `schema`; `python -m s23dr.synthetic_data` writes its datasets."""
