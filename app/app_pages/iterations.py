"""iterations page."""

import streamlit as st

st.title("Iterations")
