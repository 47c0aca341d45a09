"""Debian's Chromium driven by Playwright, for the GPU board's test and benchmark.

Never `playwright install`: the browser is /usr/bin/chromium, installed by the
Makefile's install target (`apt-get install chromium`), started headless with
a fresh profile and nothing that reaches the network on its own.
"""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import BrowserContext, Playwright

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def launch(playwright: Playwright, user_data_dir: Path) -> BrowserContext:
    """A headless Chromium with a fresh profile in `user_data_dir` (an empty folder)."""
    return playwright.chromium.launch_persistent_context(
        str(user_data_dir),
        executable_path=CHROMIUM,
        headless=True,
        args=FLAGS,
        viewport={"width": 1280, "height": 860},
    )
