"""Heads across a corpus: a batch run (engine, on Ray Data) writes each text's head scores, top cells,
tokens and contextual embeddings to Parquet (store, queried with DuckDB) and a FAISS index (index);
projection makes AttentionViz's joint query–key view. `python3 -m viz.corpus` runs a corpus from the
command line."""
