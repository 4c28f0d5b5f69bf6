"""Derived data shipped with the classifier (gazetteer.tsv; see classifiers.build_gazetteer)."""
