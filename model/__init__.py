"""The GPT, its configuration presets, optimizer set-up and checkpoint files. No Prefect, no data code."""
