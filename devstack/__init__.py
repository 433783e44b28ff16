"""The embedded development stack and the tools around it: the launcher behind `make run`, the demo,
synthetic scenes with known geometry (tests, demo, `make quality`), the development credentials and
the model export of `make models`. No server imports this package."""
