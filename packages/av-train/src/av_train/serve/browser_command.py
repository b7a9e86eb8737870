"""Drive the page in a real headless Chromium: load it, upload a clip, press Recognise, read the word.

``python -m av_train.serve.browser_command URL CLIP [SCREENSHOT]`` prints one JSON object (word, message,
external requests, screenshot); exit 0 when a word came back and the page requested nothing from outside,
1 otherwise, 2 when the browser could not run or the page did not behave (``BrowserError``). The work is in
:mod:`av_train.serve.browser`.
"""

from __future__ import annotations

import argparse
import json
import sys

from av_train.serve.browser import BrowserError, recognise_in_page


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m av_train.serve.browser_command", description=__doc__.split("\n\n")[0])
    p.add_argument("url", help="the page of a running av-cli serve, e.g. http://127.0.0.1:7860")
    p.add_argument("clip", help="a face video with sound")
    p.add_argument("screenshot", nargs="?", help="write a PNG of the page with its answer here")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        run = recognise_in_page(args.url, args.clip, args.screenshot)
    except BrowserError as e:
        print(f"browser: {e}", file=sys.stderr)
        return 2
    print(json.dumps({"word": run.word, "message": run.message, "external_requests": run.external,
                      "screenshot": None if run.screenshot is None else str(run.screenshot)}))
    return 0 if run.word and not run.external else 1


if __name__ == "__main__":
    sys.exit(main())
