"""``av-cli serve MODEL [AV_MODEL] [--host 127.0.0.1] [--port 7860]``: try a model in the browser.

MODEL is an exported folder (``av-cli export``), a run folder or a ``.ckpt``, as for ``av-cli transcribe``.
With two models (an audio-only one, then an audio-visual one) the page has a second tab that puts both side
by side on the same upload, with babble noise at a chosen SNR.

The page is served on 127.0.0.1 (this machine only) unless ``--host`` says otherwise: binding to another
address (``--host 0.0.0.0``) lets anyone who reaches this machine use the model, so it is an explicit choice.
Nothing is fetched from the internet (no share link, no analytics, no fonts from a CDN).

Uploads and the files made from them live in one temporary folder (printed at the start), removed when the
server stops. Stopping: Ctrl-C (SIGINT) exits 0, the ordinary end of a server; SIGTERM exits 143 (128 + 15,
as ``av-cli train`` does); both close the server and remove the folder first. Exit 2: a bad command
(no such model, port in use).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
EXIT_CODES = {signal.SIGINT: 0, signal.SIGTERM: 128 + signal.SIGTERM}


class Stopped(Exception):
    """A stop signal arrived before the server was up (while the models load)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class Stopper:
    """SIGINT / SIGTERM -> stop. Before the server is up the signal unwinds the start (``Stopped``); once it
    serves, the main thread waits on ``event`` and closes everything itself."""

    def __init__(self):
        self.event = threading.Event()
        self.signum: int | None = None
        self.serving = False
        self._previous = {s: signal.signal(s, self._handle) for s in EXIT_CODES}

    def _handle(self, signum, frame) -> None:
        if self.signum is None:
            self.signum = signum
        self.event.set()
        if not self.serving:
            raise Stopped(signum)

    def wait(self) -> int:
        while not self.event.wait(0.5):  # a timeout keeps the main thread ready for signals
            pass
        return EXIT_CODES[self.signum]

    def restore(self) -> None:
        for s, h in self._previous.items():
            signal.signal(s, h)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="av-cli serve", description=__doc__.split("\n\n")[0],
                                epilog="Example: av-cli serve demo_out/weights/checkpoint/demo_audio "
                                       "demo_out/models/demo_av --babble demo_out/corpus/audio")
    p.add_argument("models", nargs="+", metavar="MODEL",
                   help="exported model folder, run folder or .ckpt; two models: audio-only then audio-visual")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1: this machine only; 0.0.0.0 opens it to the network)")
    p.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    p.add_argument("--vocabulary", default=None, metavar="open|uaspeech|FILE",
                   help="closed vocabulary for every model (default: each model's own; 'open' for free text)")
    p.add_argument("--babble", default=None, metavar="DIR",
                   help="audio files whose talkers make the babble noise (default: the upload itself, backwards)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--max-upload-mb", type=int, default=100, help="largest upload accepted (default 100 MB)")
    p.add_argument("--sync", choices=("auto", "off"), default="off",
                   help="auto: re-time the mouth crops by their audio-video offset when it is confident, as "
                        "av-cli transcribe --sync auto; the page shows the offset and confidence (default off)")
    return p


def main(argv: list[str] | None = None) -> int:
    """A bad command (no such model, bad vocabulary file, port in use) is one line and exit 2 (``--debug``: the
    traceback), as for every command of the toolkit."""
    from av_common.cli_errors import run_command

    return run_command("av-cli serve", _main, argv)


def _main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if len(args.models) > 2:
        print("av-cli serve: give one model, or two (audio-only then audio-visual) to compare", file=sys.stderr)
        return 2
    if not 0 < args.port < 65536:
        print(f"av-cli serve: --port {args.port}: use a port between 1 and 65535", file=sys.stderr)
        return 2
    if args.host not in LOCAL_HOSTS:
        print(f"av-cli serve: binding to {args.host}: anyone who can reach this machine on port {args.port} can "
              "use the page", file=sys.stderr)
    stopper = Stopper()
    workspace = None
    try:
        from av_train.serve.uploads import Workspace

        workspace = Workspace()
        # before gradio is imported (some of its modules read it at import); no telemetry, no version check
        os.environ["GRADIO_TEMP_DIR"] = str(workspace.gradio_dir)
        os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
        os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
        return _serve(args, workspace, stopper)
    except Stopped as s:
        return EXIT_CODES[s.signum]
    finally:
        if workspace is not None:
            workspace.remove()
        stopper.restore()


def _serve(args: argparse.Namespace, workspace, stopper: Stopper) -> int:
    import torch

    from av_train.serve.babble import BabbleSource
    from av_train.serve.recognizer import Recognizer, load_served

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        print("av-cli serve: --device cuda but no CUDA GPU is available; use --device cpu", file=sys.stderr)
        return 2
    babble = BabbleSource(args.babble)  # before the models load: a wrong folder is said at once
    served = load_served(args.models, device, args.vocabulary)
    if any(m.processor.uses_video for m in served):
        # the face tracker is made here, in the main thread: mediapipe's profiler timers (SIGPROF) are then
        # ignored process-wide (uaspeech_prep.roi), which a tracker made in a request thread cannot arrange
        from uaspeech_prep.roi import shared_tracker

        shared_tracker()
    recognizer = Recognizer(served, workspace, babble, sync=args.sync)

    from av_train.serve.app import CSS, build_app

    app = build_app(recognizer)
    try:
        try:
            app.launch(server_name=args.host, server_port=args.port, prevent_thread_lock=True, share=False,
                       inbrowser=False, quiet=True, show_error=False, ssr_mode=False, mcp_server=False, pwa=False,
                       enable_monitoring=False, max_file_size=f"{args.max_upload_mb}mb", css=CSS,
                       footer_links=["api", "settings"])
        except OSError as e:  # gradio: "Cannot find empty port in range ..." (its advice names its own knobs)
            why = "the port is in use" if "empty port" in str(e) else str(e)
            print(f"av-cli serve: cannot serve on {args.host}:{args.port}: {why}; pass another --port, or stop "
                  "what uses it", file=sys.stderr)
            return 2
        stopper.serving = True
        host = f"[{args.host}]" if ":" in args.host else args.host
        print(f"serving on http://{host}:{args.port}  (uploads in {workspace.root}, removed on exit; "
              "Ctrl-C to stop)", flush=True)
        code = stopper.wait()
        print(f"av-cli serve: {signal.Signals(stopper.signum).name}: closing the server and removing "
              f"{workspace.root}", file=sys.stderr, flush=True)
        return code
    finally:
        app.close()

if __name__ == "__main__":
    sys.exit(main())
