"""Attention Atlas: `streamlit run app.py` serves the pages (attention_maps.py first, then pages/).

The server starts importing the model stack and runs the default example as it starts (see
ui/cold_start.py), so the first visitor does not wait for those after opening the page.
"""

import streamlit as st

from ui.cold_start import lifespan

app = st.App("attention_maps.py", lifespan=lifespan)
