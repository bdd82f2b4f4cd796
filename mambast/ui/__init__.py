"""The web UI (`mambast ui`, optional extra `mambast[ui]`): a local Gradio page over the inference engine.

`session.py` is what a click does (no Gradio); `app.py` builds the page (`build_app`) and serves it
(`launch`). Importing `mambast.ui.app` imports Gradio; this package itself does not.
"""
