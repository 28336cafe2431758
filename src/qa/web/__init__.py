"""The web face: the Gradio chat app, the long-lived service behind it, its HTML and its logins."""
