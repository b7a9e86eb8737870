"""``av-cli serve``: a web page (Gradio) to try a model on one's own face video, audio file or recording.

The page calls ``av_train.inference.transcribe`` (the command line's own path to ``recognize``), so a file
gets the same word in the page as with ``av-cli transcribe``. Modules, one job each:

- ``cli``: arguments, the upload folder, start / stop on SIGINT and SIGTERM;
- ``uploads``: the temporary folder of a running server, checks on an upload before it is decoded,
  browser recordings re-timed to a constant frame rate;
- ``babble``: babble noise at a chosen SNR for the comparison tab (``av_train.data.noise``'s mixing);
- ``recognizer``: one upload -> one ``Result`` per model (word, top-5, mouth crops, routes, seconds, error);
- ``pictures``: what the page draws (the strip of mouth crops, probabilities for the bar charts);
- ``app``: the Gradio page itself;
- ``browser``: drives the page in a headless Chromium (the browser test and the README screenshot).
"""
